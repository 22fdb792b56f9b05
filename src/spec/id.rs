//! Resource identity: the [`Kind`]s cairn knows and the [`ResourceId`] (`kind.name`, with a
//! module prefix for module resources) every later layer uses to name a resource. A leaf of the
//! spec layer: it imports nothing from its siblings.

use std::fmt;

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
    /// A clustered service's membership (one member per host), run by a driver (`etcd`).
    Cluster,
}

impl Kind {
    /// Every kind, in the order a spec's tables are read.
    pub const ALL: &'static [Kind] =
        &[Kind::Dir, Kind::File, Kind::Unit, Kind::User, Kind::Check, Kind::Firewall, Kind::Binary, Kind::Ca, Kind::Cert, Kind::Cluster];

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
            Kind::Cluster => "cluster",
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
