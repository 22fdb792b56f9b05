//! Resource kinds. A kind is one file (`dir.rs`, `file.rs`, `unit.rs`, …) behind one trait,
//! [`ResourceKind`]: it turns its spec into a per-host desired state (`from_spec`, given a
//! template renderer, registered in [`Desired`]), says what the host probe must gather for it,
//! decides purely from desired and observed state what to do and why (`diff`, a [`Decision`]
//! with a typed [`Reason`]), carries that decision out (`apply`), says what it owns on the host
//! for the manifest, and removes what it owned once it leaves the spec ([`removal::Removal`]).
//! Knows nothing of rendering plans or of the CLI.

pub mod batch;
pub mod binary;
pub mod ca;
pub mod cert;
pub mod check;
pub mod cluster;
pub mod dir;
pub mod file;
pub mod firewall;
mod kind;
pub mod probe;
pub mod reason;
pub mod removal;
pub mod unit;
pub mod user;

use serde::{Deserialize, Serialize};

use crate::spec::{Diagnostic, ResourceBody, ResourceId, Spec, TemplateText, TransportKind};
use crate::transport::{Transport, TransportError};

pub use kind::ResourceKind;
pub use probe::{HostFacts, KeyFact, PathFact, PathKind, ProbeRequest, QueryOutput};
pub use reason::{Protected, Reason, Replacing};

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
    /// The values are digests of the content: hidden when the content is sensitive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub digest: bool,
}

impl AttrChange {
    /// An attribute going from `before` to `after`.
    pub fn new(name: &str, before: Option<String>, after: Option<String>) -> Self {
        Self { name: name.to_string(), before, after, digest: false }
    }

    /// A content digest (`sha256`) going from `before` to `after`.
    pub fn digest(name: &str, before: Option<String>, after: Option<String>) -> Self {
        Self { digest: true, ..Self::new(name, before, after) }
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
    /// diffed against [`ResourceKind::new_text`].
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
    /// Why ("file does not exist", "up to date"); words are made by the plan renderer.
    pub reason: Reason,
    /// Attribute-level differences.
    pub attrs: Vec<AttrChange>,
    /// Whether the content must be (re)written, and how to show the change.
    pub content: Option<ContentChange>,
}

impl Decision {
    /// Nothing to do, and why.
    pub fn noop(reason: impl Into<Reason>) -> Self {
        Self { action: Action::NoOp, reason: reason.into(), attrs: Vec::new(), content: None }
    }

    /// `action` because of `reason`.
    pub fn new(action: Action, reason: impl Into<Reason>) -> Self {
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
        let ignored = ignore.to_vec();
        if self.attrs.is_empty() && self.content.is_none() {
            return Decision::noop(Reason::OnlyIgnoredDrift { ignored });
        }
        let mut differs: Vec<String> = Vec::new();
        for a in &self.attrs {
            let what = if a.name == "sha256" { "content" } else { a.name.as_str() };
            if a.name != "size" && !differs.iter().any(|d| d == what) {
                differs.push(what.to_string());
            }
        }
        self.reason = Reason::DriftIgnoring { differs, ignored };
        self
    }
}

/// What one instance should look like on its host, after templating: one variant per kind, the
/// registry of kinds. Everything else a kind does is behind [`ResourceKind`].
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
    /// A cluster member.
    Cluster(Box<cluster::DesiredMember>),
}

/// What carrying out a decision went through that its outcome tells besides the decision's
/// reason. Data, not words: the apply layer words it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Applied {
    /// A start or restart that failed for a cause of systemd's own (the service never ran) and
    /// succeeded when tried again.
    pub start_retried: Option<unit::StartRetried>,
}

impl Applied {
    /// Done, with nothing to tell.
    pub fn plain() -> Self {
        Self::default()
    }
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
            ResourceBody::Cluster(c) => cluster::DesiredMember::from_spec(c, render).map(|m| Desired::Cluster(Box::new(m))),
        }
    }

    /// The kind's behaviour for this instance.
    pub fn get(&self) -> &(dyn ResourceKind + 'static) {
        match self {
            Desired::Dir(d) => d,
            Desired::File(f) => f,
            Desired::Unit(u) => u,
            Desired::User(u) => u,
            Desired::Check(c) => c,
            Desired::Cert(c) => c.as_ref(),
            Desired::Binary(b) => b,
            Desired::Firewall(f) => f,
            Desired::Cluster(m) => m.as_ref(),
        }
    }

    /// The kind's behaviour for this instance, to adjust it.
    pub fn get_mut(&mut self) -> &mut (dyn ResourceKind + 'static) {
        match self {
            Desired::Dir(d) => d,
            Desired::File(f) => f,
            Desired::Unit(u) => u,
            Desired::User(u) => u,
            Desired::Check(c) => c,
            Desired::Cert(c) => c.as_mut(),
            Desired::Binary(b) => b,
            Desired::Firewall(f) => f,
            Desired::Cluster(m) => m.as_mut(),
        }
    }
}

impl std::ops::Deref for Desired {
    type Target = dyn ResourceKind;

    fn deref(&self) -> &Self::Target {
        self.get()
    }
}

impl std::ops::DerefMut for Desired {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.get_mut()
    }
}

/// Checks that a rendered path is absolute, plain (no `.`, `..` or empty component: one file has
/// one name, as the probe, the manifest and the batched write compare names) and has no
/// characters the probe cannot carry.
pub(crate) fn check_rendered_path(path: String, template: &TemplateText) -> Result<String, Diagnostic> {
    if !path.starts_with('/') {
        return Err(Diagnostic::at(&template.span, format!("path `{path}` (after rendering) is not absolute"))
            .with_help("the rendered path must start with `/`"));
    }
    if path.contains(['\n', '\t', '\0']) {
        return Err(Diagnostic::at(&template.span, format!("path {path:?} (after rendering) contains a newline, tab or NUL"))
            .with_help("paths may not contain control characters"));
    }
    if let Some(odd) = crate::transport::odd_component(&path) {
        let what = match odd {
            "" => "an empty component (`//`, or a `/` at the end)",
            "." => "a `.` component",
            _ => "a `..` component",
        };
        let mut plain: Vec<&str> = Vec::new();
        for c in path[1..].split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    plain.pop();
                }
                name => plain.push(name),
            }
        }
        return Err(Diagnostic::at(&template.span, format!("path `{path}` (after rendering) has {what}"))
            .with_help(format!("write the plain path: `/{}`", plain.join("/"))));
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
    batch::run_all(transport, &attr_commands(path, attrs)).await
}

/// The chown and chmod commands that set the mode, owner and group `attrs` want on `path`.
pub(crate) fn attr_commands(path: &str, attrs: &[AttrChange]) -> Vec<Vec<String>> {
    let wanted = |name: &str| attrs.iter().find(|a| a.name == name).and_then(|a| a.after.clone());
    let owner = wanted("owner");
    let group = wanted("group");
    let mut commands = Vec::new();
    if owner.is_some() || group.is_some() {
        // `chown user:` would also change the group to the user's login group, so spell out only
        // what is managed.
        let spec = match (owner, group) {
            (Some(o), Some(g)) => format!("{o}:{g}"),
            (Some(o), None) => o,
            (None, Some(g)) => format!(":{g}"),
            (None, None) => String::new(),
        };
        commands.push(crate::transport::argv(&["chown", "--", &spec, path]));
    }
    if let Some(mode) = wanted("mode") {
        commands.push(crate::transport::argv(&["chmod", "--", &mode, path]));
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_path_must_be_plain() {
        let template = TemplateText { text: "{{ vars.dir }}/etcd".into(), span: Default::default(), name: "file.etcd.path".into() };
        let check = |p: &str| check_rendered_path(p.to_string(), &template);
        for ok in ["/", "/etc/etcd/etcd.conf", "/srv/a b/..x/.hidden"] {
            assert_eq!(check(ok).unwrap(), ok);
        }
        let problems = [
            ("/etc//etcd", "has an empty component (`//`, or a `/` at the end)", "write the plain path: `/etc/etcd`"),
            ("/srv/data/", "has an empty component (`//`, or a `/` at the end)", "write the plain path: `/srv/data`"),
            ("/etc/./etcd", "has a `.` component", "write the plain path: `/etc/etcd`"),
            ("/opt/cairn/../etcd/bin", "has a `..` component", "write the plain path: `/opt/etcd/bin`"),
        ];
        for (path, what, help) in problems {
            let d = check(path).unwrap_err();
            assert_eq!(d.message, format!("path `{path}` (after rendering) {what}"));
            assert_eq!(d.help.as_deref(), Some(help), "{path}");
        }
    }
}
