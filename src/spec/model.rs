//! The validated spec: what the user asked for, with every value's source position kept so later
//! layers (templating, graph building) can still point at the line that caused a problem.
//! Strings that may hold template syntax are kept as [`TemplateText`] and rendered per host later.
//!
//! The leaf types the kind models share (ids, hosts and selectors, template text) live in their
//! own files (`id.rs`, `host.rs`, `template.rs`) and are re-exported here, so the dependencies
//! between the model files point one way: `model` → `module`/`pki`/`firewall` → leaves.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::diagnostic::{Located, SourceMap, Span};
use super::firewall::FirewallSpec;
pub use super::host::{HostKeyChecking, HostSpec, Selector, SshDefaults, TransportKind};
pub use super::id::{Kind, ResourceId};
use super::module::ModuleScope;
use super::pki::CertSpec;
pub use super::template::TemplateText;

/// A whole spec after loading and validation, includes merged.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Every file read, for diagnostics.
    pub sources: SourceMap,
    /// The main spec file.
    pub path: PathBuf,
    /// The spec's name (`name = "..."`; default the spec's directory name): each host keeps one
    /// manifest per spec name of what that spec manages there.
    pub name: String,
    /// The directory relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    /// Local state (CA keys, caches); default `.cairn/` beside the spec.
    pub state_dir: PathBuf,
    /// Free values for templates (`[vars]`).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Connection defaults for every ssh host (`[ssh]`).
    pub ssh: SshDefaults,
    /// Hosts by name (`[hosts.NAME]`).
    pub hosts: BTreeMap<String, HostSpec>,
    /// Resources in the order they were written (module resources where the module is used).
    pub resources: Vec<ResourceSpec>,
    /// Module instances (`[module.NAME]`), in the order they were written.
    pub modules: Vec<Arc<ModuleScope>>,
}

impl Spec {
    /// Every secret the spec read, by the field it fills (`file.token.content`,
    /// `module.etcd.inputs.token`), in spec order (module inputs after resources).
    pub fn secrets(&self) -> Vec<(String, &super::secret::Secret)> {
        let files = self.resources.iter().filter_map(|r| match &r.body {
            ResourceBody::File(f) => f.content.secret().map(|s| (format!("{}.content", r.id), s)),
            _ => None,
        });
        let inputs =
            self.modules.iter().flat_map(|m| m.secret_inputs.iter().map(move |(name, s)| (format!("module.{}.inputs.{name}", m.name), s)));
        files.chain(inputs).collect()
    }
}

/// A Unix permission mode, e.g. `0o644`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    /// `content = "..."` (a template) or `template = "path"` (a template file).
    Template(TemplateText),
    /// `source = "path"`: bytes copied as they are.
    Bytes {
        /// The bytes.
        bytes: Vec<u8>,
        /// The local file they came from.
        path: PathBuf,
    },
    /// `content = { env = … }`, `{ file = … }` or `{ command = […] }`: a secret read on the
    /// machine running cairn (the file is always `sensitive`).
    Secret(super::secret::Secret),
}

impl ContentSource {
    /// The secret, when the content is one.
    pub fn secret(&self) -> Option<&super::secret::Secret> {
        match self {
            ContentSource::Secret(s) => Some(s),
            _ => None,
        }
    }
}

/// `[file.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Absolute destination path (may be templated).
    pub path: TemplateText,
    /// The content.
    pub content: ContentSource,
    /// Mode; default 0644.
    pub mode: Option<Mode>,
    /// Owner user name; default root.
    pub owner: Option<Located<String>>,
    /// Group name; default root.
    pub group: Option<Located<String>>,
    /// Content never printed (`sensitive = true`).
    pub sensitive: bool,
}

/// `[dir.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    /// Absolute path (may be templated).
    pub path: TemplateText,
    /// Mode; default 0755.
    pub mode: Option<Mode>,
    /// Owner user name; default root.
    pub owner: Option<Located<String>>,
    /// Group name; default root.
    pub group: Option<Located<String>>,
    /// When the resource leaves the spec, delete the directory with its contents (default: only
    /// when cairn made it and it is empty).
    pub purge: bool,
}

/// `state` of a `[unit.NAME]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnitState {
    /// Active (started, and restarted when its `restart_on` resources change).
    #[default]
    Running,
    /// Inactive.
    Stopped,
}

/// `start` of a `[unit.NAME]`: how its instances on several hosts are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartMode {
    /// Each host on its own; `systemctl start` waits for the unit to be up.
    #[default]
    PerHost,
    /// All hosts at once (`systemctl start --no-block` everywhere, then wait for all), for
    /// clusters whose members only become ready when their peers are up.
    Together,
}

/// `[unit.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    /// The unit's name with its suffix (`etcd.service`).
    pub name: Located<String>,
    /// The unit file's content, written to `/etc/systemd/system/<name>`; `None`: the unit file
    /// is not managed (a unit shipped by a package).
    pub content: Option<ContentSource>,
    /// Enabled at boot; default true.
    pub enabled: bool,
    /// Running or stopped; default running.
    pub state: UnitState,
    /// Resources whose changes restart the unit (they are also dependencies).
    pub restart_on: Vec<Located<ResourceId>>,
    /// Certificates of `restart_on` the service re-reads by itself on each new connection: one
    /// issued again restarts nothing; a change of its CA file still restarts.
    pub reloads_certificates: Vec<Located<ResourceId>>,
    /// How instances on several hosts are started.
    pub start: StartMode,
    /// Seconds to wait for the unit to become active after a non-blocking start; default 90.
    pub start_timeout_secs: u64,
    /// Restart a running unit a few hosts at a time, each batch gated on a check.
    pub rolling: Option<RollingSpec>,
}

/// `rolling = { batch = 1, wait_for = "check.health" }` on a unit: when the unit is running and a
/// change restarts it, at most `batch` hosts restart at once, and the next batch starts only after
/// `wait_for` passed on every host of the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingSpec {
    /// Hosts restarted at the same time (at least 1).
    pub batch: u32,
    /// The check that must pass on a restarted host before the next batch.
    pub wait_for: Option<Located<ResourceId>>,
}

/// `[user.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Login name; default the resource's name.
    pub name: Located<String>,
    /// A system account (`useradd --system`).
    pub system: bool,
    /// Primary group; default a group named like the user (created when missing).
    pub group: Option<Located<String>>,
    /// Fixed uid.
    pub uid: Option<u32>,
    /// Home directory (not created; manage it with a `[dir]`).
    pub home: Option<Located<String>>,
    /// Login shell.
    pub shell: Option<Located<String>>,
    /// Supplementary groups the user must be in (they must exist; others are left alone).
    pub groups: Vec<Located<String>>,
    /// Delete the account when the resource leaves the spec (default: kept).
    pub remove: bool,
}

/// The command of a `[check.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckCommand {
    /// `command = ["prog", "arg"]`: run as is, no shell.
    Argv(Vec<TemplateText>),
    /// `command = "a | b"`: run by `sh -c`.
    Shell(TemplateText),
}

/// `[check.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// What to run.
    pub command: CheckCommand,
    /// How the plan names it ("etcd health"); default the resource name with `-` and `_` as spaces.
    pub description: String,
    /// Extra attempts after a failure; default 0.
    pub retries: u32,
    /// Seconds between attempts; default 2.
    pub interval_secs: u64,
    /// Seconds one attempt may take; default 30.
    pub timeout_secs: u64,
}

/// The kind-specific part of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceBody {
    /// A directory.
    Dir(DirSpec),
    /// A file.
    File(FileSpec),
    /// A systemd unit.
    Unit(UnitSpec),
    /// A user account.
    User(UserSpec),
    /// A check command.
    Check(CheckSpec),
    /// A certificate (`[cert.*]`; `[ca.*]` tables are not resources).
    Cert(Box<CertSpec>),
    /// A downloaded binary or archive.
    Binary(BinarySpec),
    /// Firewall rules.
    Firewall(FirewallSpec),
    /// A clustered service's membership.
    Cluster(ClusterSpec),
}

/// The clustered services cairn has a membership driver for (`driver = "etcd"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterDriverKind {
    /// etcd (v3.4 and later): learners, `member add/promote/remove`, `move-leader`.
    Etcd,
}

impl ClusterDriverKind {
    /// Every driver, by its name in `driver = "…"`.
    pub const ALL: &'static [(&'static str, ClusterDriverKind)] = &[("etcd", ClusterDriverKind::Etcd)];
}

/// `[cluster.NAME]`: the members of one clustered service, one per selected host. Its facts
/// (member list, leader, alarms) belong to the cluster, not to a host; its changes (add, remove,
/// replace a member) run one at a time, and `unit`'s disruptive changes are quorum-guarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Which service.
    pub driver: ClusterDriverKind,
    /// The member's service (`unit.etcd`): started by a member's join, restarted leader last,
    /// and never disrupted while the cluster is degraded.
    pub unit: Located<ResourceId>,
    /// The member's name on each host; default `{{ host.name }}`.
    pub member: TemplateText,
    /// The URL the other members reach this member at (`https://{{ host.address }}:2380`).
    pub peer_url: TemplateText,
    /// Driver settings (for etcd: `etcdctl`, `endpoint`, `cacert`, `cert`, `key`, `data_dir`),
    /// each a template; the driver checks the names.
    pub settings: Vec<(Located<String>, TemplateText)>,
    /// Seconds a joining member may take to start, catch up and be promoted; default 300.
    pub join_timeout_secs: u64,
    /// Resources a member waits for on every member's host, not only its own
    /// (`after_on_peers = ["firewall.etcd"]`: the others must let a new member in before it joins).
    pub after_on_peers: Vec<Located<ResourceId>>,
    /// Where snapshots before risky steps are copied on the machine running cairn
    /// (`<state_dir>/snapshots/<cluster id>`), set once the spec is loaded.
    pub snapshot_local_dir: PathBuf,
}

/// One resource table (`[file.motd]`).
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    /// `kind.name`.
    pub id: ResourceId,
    /// The table header's position.
    pub span: Span,
    /// Host selectors (default: every host).
    pub hosts: Vec<Located<Selector>>,
    /// Explicit dependencies, as written.
    pub after: Vec<Located<ResourceId>>,
    /// Kind-specific fields.
    pub body: ResourceBody,
    /// `prevent_destroy = true`: a plan that would remove or replace it fails.
    pub prevent_destroy: bool,
    /// Attributes whose drift is not reported nor corrected (`ignore = ["mode"]`).
    pub ignore: Vec<String>,
    /// The module instance this resource comes from (extra template context: `inputs`, `module`).
    pub scope: Option<Arc<ModuleScope>>,
}

/// What a `[binary.*]` installs: members of an archive, or the downloaded file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryFiles {
    /// `extract = { "member" = "/dest" }`: archive members (top folder stripped) → host paths.
    Extract(Vec<(Located<String>, TemplateText)>),
    /// `path = "/dest"`: the downloaded file as it is.
    Path(TemplateText),
}

/// `[binary.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinarySpec {
    /// `https://`, `http://` or `file://` url (may be templated).
    pub url: TemplateText,
    /// Expected sha256 of what the url serves, lower-case hex.
    pub sha256: Located<String>,
    /// What to install where.
    pub files: BinaryFiles,
    /// Mode of every installed file; default 0755.
    pub mode: Option<Mode>,
    /// Owner user name, when managed.
    pub owner: Option<Located<String>>,
    /// Group name, when managed.
    pub group: Option<Located<String>>,
    /// A command (argv, each word a template) run on the host by the probe to show the
    /// installed version in plans.
    pub version_command: Option<Vec<TemplateText>>,
    /// `optional = ["etcdutl"]`: `extract` members some releases do not have (installed when the
    /// archive has them).
    pub optional: Vec<String>,
    /// Local download cache (`<state_dir>/cache`), set once the spec is loaded.
    pub cache_dir: PathBuf,
}
