//! The validated spec: what the user asked for, with every value's source position kept so later
//! layers (templating, graph building) can still point at the line that caused a problem.
//! Strings that may hold template syntax are kept as [`TemplateText`] and rendered per host later.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::diagnostic::{Located, SourceMap, Span};

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
    pub modules: Vec<Arc<super::module::ModuleScope>>,
}

/// How strictly an SSH server's host key is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// The key must already be in `known_hosts_file`.
    #[default]
    Strict,
    /// Unknown hosts are added on first contact; a changed key is still refused.
    AcceptNew,
    /// No checking at all (warned about).
    Off,
}

/// `[ssh]`: defaults for every host reached over ssh.
#[derive(Debug, Clone, Default)]
pub struct SshDefaults {
    /// Login user; default `root`.
    pub user: Option<String>,
    /// Port; default 22.
    pub port: Option<u16>,
    /// Private key file (`~` expanded).
    pub identity_file: Option<PathBuf>,
    /// known_hosts file (`~` expanded); default `~/.ssh/known_hosts`.
    pub known_hosts_file: Option<PathBuf>,
    /// Host key policy.
    pub host_key_checking: HostKeyChecking,
    /// Run commands through `sudo -n` (for non-root users).
    pub r#become: bool,
    /// Seconds to wait for a connection; default 10.
    pub connect_timeout_secs: Option<u64>,
}

/// How a host is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// Over SSH.
    #[default]
    Ssh,
    /// On the machine running cairn.
    Local,
}

/// `[hosts.NAME]`.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// The host's name (the table key).
    pub name: String,
    /// Address to connect to; also `host.address` in templates.
    pub address: String,
    /// Per-host overrides of `[ssh]`.
    pub port: Option<u16>,
    /// Per-host login user.
    pub user: Option<String>,
    /// Per-host `become`.
    pub r#become: Option<bool>,
    /// Labels for selectors (`role=etcd`).
    pub labels: BTreeMap<String, String>,
    /// ssh or local.
    pub transport: TransportKind,
    /// Where the host table was written.
    pub span: Span,
}

/// Resource kinds cairn knows. The id of a resource is `kind.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A file with content.
    File,
    /// A systemd unit.
    Unit,
    /// A user account (and its group).
    User,
    /// A command that must succeed.
    Check,
    /// A certificate authority on the machine running cairn (no hosts, no instances).
    Ca,
    /// A certificate and private key issued by a `ca`.
    Cert,
    /// A release file or archive fetched by url, verified by sha256, pushed to hosts.
    Binary,
    /// Firewall rules in cairn's nftables table.
    Firewall,
}

impl Kind {
    /// Every kind, in the order a spec's tables are read.
    pub const ALL: &'static [Kind] =
        &[Kind::Dir, Kind::File, Kind::Unit, Kind::User, Kind::Check, Kind::Firewall, Kind::Binary, Kind::Ca, Kind::Cert];

    /// The table name (`file`, `dir`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::File => "file",
            Kind::Unit => "unit",
            Kind::User => "user",
            Kind::Check => "check",
            Kind::Ca => "ca",
            Kind::Cert => "cert",
            Kind::Binary => "binary",
            Kind::Firewall => "firewall",
        }
    }

    /// Parses a table name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind.name`, e.g. `file.motd`; module resources carry a prefix (`etcd.file.config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ResourceId {
    /// Module instance path, empty for resources written in the spec itself.
    pub module: Option<String>,
    /// The kind.
    pub kind: Kind,
    /// The name within its kind.
    pub name: String,
}

impl ResourceId {
    /// A top-level resource id.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self { module: None, kind, name: name.into() }
    }

    /// Parses `kind.name` or `module.kind.name`.
    pub fn parse(s: &str) -> Option<ResourceId> {
        let parts: Vec<&str> = s.split('.').collect();
        match parts.as_slice() {
            [kind, name] => Some(ResourceId { module: None, kind: Kind::parse(kind)?, name: (*name).to_string() }),
            [module, kind, name] => {
                Some(ResourceId { module: Some((*module).to_string()), kind: Kind::parse(kind)?, name: (*name).to_string() })
            }
            _ => None,
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.module {
            write!(f, "{m}.")?;
        }
        write!(f, "{}.{}", self.kind, self.name)
    }
}

/// Which hosts a resource applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `"*"`: every host.
    All,
    /// A host name.
    Name(String),
    /// `label=value`.
    Label(String, String),
}

impl Selector {
    /// Parses `"*"`, `"name"` or `"label=value"`.
    pub fn parse(s: &str) -> Selector {
        if s == "*" {
            Selector::All
        } else if let Some((k, v)) = s.split_once('=') {
            Selector::Label(k.trim().to_string(), v.trim().to_string())
        } else {
            Selector::Name(s.to_string())
        }
    }

    /// Whether `host` is selected.
    pub fn matches(&self, host: &HostSpec) -> bool {
        match self {
            Selector::All => true,
            Selector::Name(n) => &host.name == n,
            Selector::Label(k, v) => host.labels.get(k) == Some(v),
        }
    }
}

/// A string that may contain template syntax, rendered per host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateText {
    /// The template source.
    pub text: String,
    /// Where it came from: the TOML string, or the template file (whole file span).
    pub span: Span,
    /// A name for error messages: the template file path, or `file.motd.content`.
    pub name: String,
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
    Cert(Box<super::pki::CertSpec>),
    /// A downloaded binary or archive.
    Binary(BinarySpec),
    /// Firewall rules.
    Firewall(super::firewall::FirewallSpec),
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
    pub scope: Option<Arc<super::module::ModuleScope>>,
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
    /// Local download cache (`<state_dir>/cache`), set once the spec is loaded.
    pub cache_dir: PathBuf,
}
