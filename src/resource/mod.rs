//! Resource kinds. Each kind turns its spec into a per-host desired state (`from_spec`, given a
//! template renderer), says what the host probe must gather for it, decides purely from desired
//! and observed state what to do and why (`diff`), and carries out that decision (`apply`).
//! Knows nothing of rendering plans or of the CLI.

pub mod binary;
pub mod ca;
pub mod cert;
pub mod check;
pub mod dir;
pub mod file;
pub mod firewall;
pub mod manifest;
pub mod probe;
pub mod unit;
pub mod user;

use serde::{Deserialize, Serialize};

use crate::spec::{Diagnostic, Kind, ResourceBody, ResourceId, Spec, StartMode, TemplateText, TransportKind};
use crate::transport::{Transport, TransportError};

pub use probe::{HostFacts, KeyFact, PathFact, PathKind, ProbeRequest};

/// What a change does to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing to do.
    NoOp,
    /// `+`: make it.
    Create,
    /// `~`: change it in place.
    Update,
    /// `±`: remove and make again.
    Replace,
    /// `-`: remove it.
    Delete,
    /// `↻`: restart a service.
    Restart,
    /// `!`: the host is in a state cairn will not overwrite (e.g. a directory where a file
    /// should be). The plan fails for this instance.
    Conflict,
    /// `?`: a check runs; nothing changes.
    Check,
}

impl Action {
    /// The one-character symbol used in plans.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "±",
            Action::Delete => "-",
            Action::Restart => "↻",
            Action::Conflict => "!",
            Action::Check => "?",
        }
    }

    /// A word for messages ("update").
    pub fn describe(self) -> &'static str {
        match self {
            Action::NoOp => "no change",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Restart => "restart",
            Action::Conflict => "blocked",
            Action::Check => "check",
        }
    }

    /// Whether this action changes the host.
    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp | Action::Conflict | Action::Check)
    }
}

/// One attribute that differs, for the plan ("mode: 0600 → 0644").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    /// Attribute name.
    pub name: String,
    /// Observed value (`None`: absent).
    pub before: Option<String>,
    /// Desired value.
    pub after: Option<String>,
}

impl AttrChange {
    /// An attribute going from `before` to `after`.
    pub fn new(name: &str, before: Option<String>, after: Option<String>) -> Self {
        Self { name: name.to_string(), before, after }
    }
}

/// Text content whose change the plan shows as a unified diff (not for sensitive content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentChange {
    /// The old content must be fetched from the host (at this path) to show a diff.
    FetchOld {
        /// Path on the host.
        path: String,
    },
    /// The old content is nothing (new file).
    FromEmpty,
    /// The old content as the kind itself renders it (e.g. a firewall table's canonical rules),
    /// diffed against [`Desired::new_text`].
    Text {
        /// The observed text.
        old: String,
    },
}

/// What `diff` decided for one instance, always with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why, in words a reviewer understands ("file does not exist", "up to date").
    pub reason: String,
    /// Attribute-level differences.
    pub attrs: Vec<AttrChange>,
    /// Whether the content must be (re)written, and how to show the change.
    pub content: Option<ContentChange>,
}

impl Decision {
    /// Nothing to do, and why.
    pub fn noop(reason: impl Into<String>) -> Self {
        Self { action: Action::NoOp, reason: reason.into(), attrs: Vec::new(), content: None }
    }

    /// `action` because of `reason`.
    pub fn new(action: Action, reason: impl Into<String>) -> Self {
        Self { action, reason: reason.into(), attrs: Vec::new(), content: None }
    }

    /// The decision once drift of the `ignore`d attributes is accepted: an update of only those
    /// is nothing to do, and an update of more leaves them out. Creations are untouched (a new
    /// thing gets every attribute of the spec). `content` stands for the file's bytes (its
    /// `sha256` and `size`).
    pub fn ignoring(mut self, ignore: &[String]) -> Decision {
        if ignore.is_empty() || self.action != Action::Update {
            return self;
        }
        let ignored = |name: &str| ignore.iter().any(|i| i == name || (i == "content" && matches!(name, "sha256" | "size")));
        let before = self.attrs.len();
        self.attrs.retain(|a| !ignored(&a.name));
        let content_ignored = ignore.iter().any(|i| i == "content");
        if content_ignored {
            self.content = None;
        }
        if self.attrs.len() == before && !content_ignored {
            return self;
        }
        let accepted = ignore.join(", ");
        if self.attrs.is_empty() && self.content.is_none() {
            return Decision::noop(format!("matches the spec apart from drift it ignores ({accepted})"));
        }
        let mut reasons: Vec<String> = Vec::new();
        for a in &self.attrs {
            let what = if a.name == "sha256" { "content differs".to_string() } else { format!("{} differs", a.name) };
            if a.name != "size" && !reasons.contains(&what) {
                reasons.push(what);
            }
        }
        self.reason = format!("{} (ignoring {accepted})", reasons.join(", "));
        self
    }
}

/// What one instance should look like on its host, after templating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// A directory.
    Dir(dir::DesiredDir),
    /// A file.
    File(file::DesiredFile),
    /// A systemd unit.
    Unit(unit::DesiredUnit),
    /// A user account.
    User(user::DesiredUser),
    /// A check command.
    Check(check::DesiredCheck),
    /// A certificate with its key.
    Cert(Box<cert::DesiredCert>),
    /// A fetched binary or archive members.
    Binary(binary::DesiredBinary),
    /// Firewall rules (cairn's nftables table).
    Firewall(firewall::DesiredFirewall),
}

/// A failure while applying one instance.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The host could not be reached or the command could not run.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The host refused the change.
    #[error("{0}")]
    Failed(String),
}

impl Desired {
    /// Renders a resource's spec for one host. `render` expands a template for that host.
    pub fn from_spec(
        body: &ResourceBody,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Desired, Vec<Diagnostic>> {
        match body {
            ResourceBody::Dir(d) => dir::DesiredDir::from_spec(d, render).map(Desired::Dir),
            ResourceBody::File(f) => file::DesiredFile::from_spec(f, render).map(Desired::File),
            ResourceBody::Unit(u) => unit::DesiredUnit::from_spec(u, render).map(Desired::Unit),
            ResourceBody::User(u) => Ok(Desired::User(user::DesiredUser::from_spec(u))),
            ResourceBody::Check(c) => check::DesiredCheck::from_spec(c, render).map(Desired::Check),
            ResourceBody::Cert(c) => cert::DesiredCert::from_spec(c, render).map(|c| Desired::Cert(Box::new(c))),
            ResourceBody::Binary(b) => binary::DesiredBinary::from_spec(b, render).map(Desired::Binary),
            ResourceBody::Firewall(f) => firewall::DesiredFirewall::from_spec(f, render).map(Desired::Firewall),
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Desired::Dir(_) => Kind::Dir,
            Desired::File(_) => Kind::File,
            Desired::Unit(_) => Kind::Unit,
            Desired::User(_) => Kind::User,
            Desired::Check(_) => Kind::Check,
            Desired::Cert(_) => Kind::Cert,
            Desired::Binary(_) => Kind::Binary,
            Desired::Firewall(_) => Kind::Firewall,
        }
    }

    /// The host paths this instance manages (for duplicate detection and implied edges).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Desired::Dir(d) => vec![d.path.as_str()],
            Desired::File(f) => vec![f.path.as_str()],
            Desired::Unit(u) => u.content.as_ref().map(|_| u.path.as_str()).into_iter().collect(),
            Desired::User(_) | Desired::Check(_) => Vec::new(),
            Desired::Cert(c) => c.paths(),
            Desired::Binary(b) => b.targets.iter().map(|t| t.path.as_str()).collect(),
            Desired::Firewall(_) => Vec::new(),
        }
    }

    /// The directory this instance manages, if any (files below it depend on it).
    pub fn managed_dir(&self) -> Option<&str> {
        match self {
            Desired::Dir(d) => Some(&d.path),
            Desired::File(_) | Desired::Cert(_) | Desired::Binary(_) | Desired::Firewall(_) => None,
            Desired::Unit(_) | Desired::User(_) | Desired::Check(_) => None,
        }
    }

    /// A short human summary of the target ("/etc/demo/motd").
    pub fn target(&self) -> String {
        match self {
            Desired::Unit(u) => u.name.clone(),
            Desired::User(u) => format!("user {}", u.name),
            Desired::Check(c) => c.target(),
            Desired::Firewall(f) => f.target(),
            _ => self.paths().join(", "),
        }
    }

    /// Whether the content must never be shown.
    pub fn sensitive(&self) -> bool {
        match self {
            Desired::Dir(_) | Desired::Binary(_) | Desired::Firewall(_) => false,
            Desired::File(f) => f.sensitive,
            Desired::Unit(_) | Desired::User(_) | Desired::Check(_) => false,
            Desired::Cert(_) => true,
        }
    }

    /// The new text content to diff against, when it is text and may be shown.
    pub fn new_text(&self) -> Option<&[u8]> {
        match self {
            Desired::File(f) if !f.sensitive => Some(&f.content),
            Desired::Unit(u) => u.content.as_deref(),
            Desired::Firewall(f) => Some(f.text.as_bytes()),
            _ => None,
        }
    }

    /// Adds what this instance needs to the host's probe.
    pub fn add_to_probe(&self, probe: &mut ProbeRequest) {
        if let Desired::Cert(c) = self {
            return c.add_to_probe(probe);
        }
        for p in self.paths() {
            probe.paths.insert(p.to_string());
        }
        match self {
            Desired::Unit(u) => {
                probe.units.insert(u.name.clone());
                probe.paths.extend(u.probe_paths().into_iter().map(str::to_string));
            }
            Desired::User(u) => {
                probe.users.insert(u.name.clone());
                probe.groups.extend(u.group_names().into_iter().map(str::to_string));
            }
            Desired::Binary(b) => {
                if let Some(cmd) = &b.version_command {
                    probe.versions.insert(cmd.clone());
                }
            }
            Desired::Firewall(_) => probe.firewall = true,
            _ => {}
        }
    }

    /// Gets ready locally what `diff` needs before it can decide (a binary's archive, fetched
    /// into the local cache once per run). Never fails: a failure is kept for `diff` to report.
    pub async fn prepare(&self) {
        if let Desired::Binary(b) = self {
            b.prepare().await;
        }
    }

    /// Decides, purely, what to do given what the probe found.
    pub fn diff(&self, facts: &HostFacts) -> Decision {
        match self {
            Desired::Dir(d) => d.diff(facts.path(&d.path)),
            Desired::File(f) => f.diff(facts.path(&f.path)),
            Desired::Unit(u) => u.diff(facts),
            Desired::User(u) => u.diff(facts),
            Desired::Check(c) => c.diff(),
            Desired::Cert(c) => c.diff(facts),
            Desired::Binary(b) => b.diff(facts),
            Desired::Firewall(f) => f.diff(facts.firewall.as_ref()),
        }
    }

    /// Carries out `decision` on the host.
    pub async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<(), ApplyError> {
        match self {
            Desired::Dir(d) => d.apply(transport, decision).await,
            Desired::File(f) => f.apply(transport, decision).await,
            Desired::Unit(u) => u.apply(transport, decision).await,
            Desired::User(u) => u.apply(transport, decision).await,
            Desired::Check(c) => c.run(transport).await.map(|_| ()),
            Desired::Cert(c) => c.apply(transport, decision).await,
            Desired::Binary(b) => b.apply(transport, decision).await,
            Desired::Firewall(f) => f.apply(transport, decision).await,
        }
    }

    /// The instance on the same host whose apply carries this one's state, when it is not this
    /// one (firewall resources share one table per host). The graph makes this instance wait for it.
    pub fn written_by(&self) -> Option<&ResourceId> {
        match self {
            Desired::Firewall(f) => f.written_by.as_ref(),
            _ => None,
        }
    }

    /// Resources whose changes restart this instance (`restart_on` of a unit); they are also
    /// dependencies.
    pub fn restart_triggers(&self) -> &[ResourceId] {
        match self {
            Desired::Unit(u) => &u.restart_on,
            _ => &[],
        }
    }

    /// Tells an instance the host paths its restart triggers manage on its host (their mtimes
    /// are compared with the service's start time).
    pub fn watch_paths(&mut self, paths: Vec<unit::WatchedPath>) {
        if let Desired::Unit(u) = self {
            u.watched = paths;
        }
    }

    /// Adjusts a decision for dependencies on the same host that changed (at apply time) or are
    /// planned to change (at plan time, `planned`): a unit restarts for its `restart_on`.
    pub fn with_changed_deps(&self, decision: Decision, changed: &[ResourceId], planned: bool) -> Decision {
        match self {
            Desired::Unit(u) => u.with_changed_deps(decision, changed, planned),
            _ => decision,
        }
    }

    /// User and group names this instance needs to exist (owners of files and directories):
    /// it is applied after the instance on its host that provides them.
    pub fn requires_users(&self) -> Vec<&str> {
        match self {
            Desired::Dir(d) => d.owner.iter().chain(&d.group).map(String::as_str).collect(),
            Desired::File(f) => f.owner.iter().chain(&f.group).map(String::as_str).collect(),
            Desired::Cert(c) => c.owner.iter().chain(&c.group).map(String::as_str).collect(),
            Desired::User(u) => u.groups.iter().map(String::as_str).filter(|g| *g != u.group).collect(),
            _ => Vec::new(),
        }
    }

    /// User and group names this instance creates.
    pub fn provides_users(&self) -> Vec<&str> {
        match self {
            Desired::User(u) => vec![u.name.as_str(), u.group.as_str()],
            _ => Vec::new(),
        }
    }

    /// Whether the executor must start this resource's instances on all their hosts at once.
    pub fn start_together(&self) -> bool {
        matches!(self, Desired::Unit(u) if u.start == StartMode::Together)
    }

    /// `rolling`: how many hosts may be disrupted at once, and the check gating each batch.
    pub fn rolling(&self) -> Option<(usize, Option<&crate::spec::ResourceId>)> {
        match self {
            Desired::Unit(u) => u.rolling.as_ref().map(|(batch, check)| (*batch, check.as_ref())),
            _ => None,
        }
    }

    /// Whether carrying out `decision` interrupts a running service (see `rolling`).
    pub fn disrupts(&self, facts: &HostFacts, decision: &Decision) -> bool {
        match self {
            Desired::Unit(u) => u.disrupts(facts, decision),
            _ => false,
        }
    }
}

/// Checks that a rendered path is absolute and has no characters the probe cannot carry.
pub(crate) fn check_rendered_path(path: String, template: &TemplateText) -> Result<String, Diagnostic> {
    if !path.starts_with('/') {
        return Err(Diagnostic::at(&template.span, format!("path `{path}` (after rendering) is not absolute"))
            .with_help("the rendered path must start with `/`"));
    }
    if path.contains(['\n', '\t', '\0']) {
        return Err(Diagnostic::at(&template.span, format!("path {path:?} (after rendering) contains a newline, tab or NUL"))
            .with_help("paths may not contain control characters"));
    }
    Ok(path)
}

/// Lets instances that share a host-wide object see each other; called once by the graph with
/// every instance as (host, resource, desired), in host then spec order. Today: every firewall
/// resource on a host renders into one table (see [`firewall`]).
pub fn link_instances(spec: &Spec, items: Vec<(&str, &ResourceId, &mut Desired)>) {
    let ssh_port =
        |host: &str| spec.hosts.get(host).filter(|h| h.transport == TransportKind::Ssh).map(|h| h.port.or(spec.ssh.port).unwrap_or(22));
    let mut firewalls: Vec<(&str, Option<u16>, &ResourceId, &mut firewall::DesiredFirewall)> = items
        .into_iter()
        .filter_map(|(host, id, d)| match d {
            Desired::Firewall(f) => Some((host, ssh_port(host), id, f)),
            _ => None,
        })
        .collect();
    firewall::link(&mut firewalls);
}

/// Parses an owner/mode triple observed on a host into attribute changes against the desired
/// values; attributes the spec leaves unset are not managed and never reported.
pub(crate) fn attr_changes(observed: &PathFact, mode: u32, owner: Option<&str>, group: Option<&str>) -> Vec<AttrChange> {
    let mut changes = Vec::new();
    if observed.mode != mode {
        changes.push(AttrChange::new("mode", Some(format!("{:04o}", observed.mode)), Some(format!("{mode:04o}"))));
    }
    if let Some(owner) = owner
        && observed.owner != owner
    {
        changes.push(AttrChange::new("owner", Some(observed.owner.clone()), Some(owner.to_string())));
    }
    if let Some(group) = group
        && observed.group != group
    {
        changes.push(AttrChange::new("group", Some(observed.group.clone()), Some(group.to_string())));
    }
    changes
}

/// Runs argv on the host and turns a non-zero exit into [`ApplyError::Failed`] with its output.
pub(crate) async fn run_checked(transport: &dyn Transport, argv: &[String]) -> Result<(), ApplyError> {
    let out = transport.run(argv, crate::transport::Stdin::Null).await?;
    if out.success() { Ok(()) } else { Err(ApplyError::Failed(format!("`{}` failed: {}", argv.join(" "), out.error_text()))) }
}

/// Sets mode, owner and group of an existing path, for attribute-only changes.
pub(crate) async fn fix_attrs(transport: &dyn Transport, path: &str, attrs: &[AttrChange]) -> Result<(), ApplyError> {
    let wanted = |name: &str| attrs.iter().find(|a| a.name == name).and_then(|a| a.after.clone());
    let owner = wanted("owner");
    let group = wanted("group");
    if owner.is_some() || group.is_some() {
        // `chown user:` would also change the group to the user's login group, so spell out only
        // what is managed.
        let spec = match (owner, group) {
            (Some(o), Some(g)) => format!("{o}:{g}"),
            (Some(o), None) => o,
            (None, Some(g)) => format!(":{g}"),
            (None, None) => String::new(),
        };
        run_checked(transport, &crate::transport::argv(&["chown", "--", &spec, path])).await?;
    }
    if let Some(mode) = wanted("mode") {
        run_checked(transport, &crate::transport::argv(&["chmod", "--", &mode, path])).await?;
    }
    Ok(())
}
