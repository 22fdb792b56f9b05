//! Hosts and how they are reached: `[hosts.NAME]` ([`HostSpec`]), the `[ssh]` defaults
//! ([`SshDefaults`], [`HostKeyChecking`]), and the [`Selector`]s that pick hosts for resources and
//! module instances. A leaf of the spec layer: it imports only spans from `diagnostic`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::diagnostic::Span;

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
