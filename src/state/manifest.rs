//! The manifest: what one spec manages on one host, kept there as
//! `/var/lib/cairn/manifests/<spec>.json` (directory 0700, file 0600, one JSON line; the probe
//! reads it with one `cat`). This module owns the format (its types, parsing, the text
//! written) and the rule for the next manifest after a run ([`Manifest::updated`]); writing it
//! to a host is [`super::host::write_manifest`]. What an entry means on a host, and how it is
//! removed, belongs to the resource kinds (`resource::removal`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Where manifests live on every host (mode 0700, files 0600).
pub const MANIFEST_DIR: &str = "/var/lib/cairn/manifests";

/// `format` of a manifest file.
pub const FORMAT: &str = "cairn-manifest";

/// One spec's record of what it manages on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Bumped on incompatible changes.
    pub format_version: u32,
    /// The spec's name.
    pub spec: String,
    /// The cairn version that wrote it.
    pub cairn_version: String,
    /// What the spec manages here, in graph order.
    pub resources: Vec<Managed>,
}

/// One resource's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managed {
    /// The resource's id (`file.motd`, `etcd.unit.etcd`).
    pub id: String,
    /// `prevent_destroy = true` when it was last applied: removing it fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_destroy: bool,
    /// What it owns.
    #[serde(flatten)]
    pub owns: Owned,
}

/// What a resource owns on the host. Each variant's removal is implemented by the kind that
/// makes it (`resource::removal::Removal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "owns", rename_all = "kebab-case")]
pub enum Owned {
    /// Files (a `file`, the files a `binary` installs, a certificate and its key).
    Files(OwnedFiles),
    /// A directory.
    Dir(OwnedDir),
    /// A systemd unit.
    Unit(OwnedUnit),
    /// A user account.
    User(OwnedUser),
    /// Rules in cairn's nftables table.
    Firewall(OwnedFirewall),
}

/// Files a resource wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedFiles {
    /// The files.
    pub files: Vec<OwnedFile>,
    /// Folders cairn made for them (they did not exist when it first wrote the files): deleted
    /// after the files when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
}

/// A file with the hash of what cairn wrote (none for secrets and for content made at apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedFile {
    /// Absolute path.
    pub path: String,
    /// sha256 of the content cairn wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedDir {
    /// Its path.
    pub path: String,
    /// cairn made it (it did not exist when first applied): it may be deleted when empty.
    pub created: bool,
    /// `purge = true`: deleted with its contents.
    pub purge: bool,
}

/// A systemd unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedUnit {
    /// Its name.
    pub name: String,
    /// The unit file, when cairn wrote it.
    pub file: Option<String>,
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedUser {
    /// Login name.
    pub name: String,
    /// `remove = true`: deleted when it leaves the spec.
    pub remove: bool,
}

/// Rules in cairn's nftables table (the table is shared by every firewall resource of a host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedFirewall {}

/// A manifest file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the manifest's shape.
    #[error("not a cairn manifest: {0}")]
    NotAManifest(String),
    /// A manifest of another format or version.
    #[error("format {format} version {version} is not one this cairn reads")]
    UnknownFormat {
        /// Its `format`.
        format: String,
        /// Its `format_version`.
        version: u32,
    },
}

impl Manifest {
    /// An empty manifest for `spec`.
    pub fn new(spec: &str) -> Self {
        Self {
            format: FORMAT.to_string(),
            format_version: 1,
            spec: spec.to_string(),
            cairn_version: env!("CARGO_PKG_VERSION").to_string(),
            resources: Vec::new(),
        }
    }

    /// The manifest's path on a host.
    pub fn path_for(spec: &str) -> String {
        format!("{MANIFEST_DIR}/{spec}.json")
    }

    /// Parses a manifest file's text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| ManifestError::NotAManifest(e.to_string()))?;
        if m.format != FORMAT || m.format_version != 1 {
            return Err(ManifestError::UnknownFormat { format: m.format, version: m.format_version });
        }
        Ok(m)
    }

    /// The file's text: one JSON line (the probe reads it with shell builtins).
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The entry for `id`.
    pub fn get(&self, id: &str) -> Option<&Managed> {
        self.resources.iter().find(|m| m.id == id)
    }

    /// The manifest a host should have after a run: `previous` with the entries of instances
    /// that ended well (`kept`: id, `prevent_destroy`, what it owns — `created` set on a
    /// directory cairn made in this run) put in, and the removals that ended well (`removed`)
    /// taken out. Entries of anything that failed or was not run stay as they were, so a later
    /// run still knows about them.
    pub fn updated(spec: &str, previous: Option<&Manifest>, kept: &[(String, bool, Owned)], removed: &BTreeSet<String>) -> Manifest {
        let mut next = Manifest::new(spec);
        let mut seen = BTreeSet::new();
        for (id, prevent_destroy, owns) in kept {
            // A directory stays "made by cairn" once it was, and so do the folders made for files.
            let owns = match (owns, previous.and_then(|p| p.get(id)).map(|m| &m.owns)) {
                (Owned::Dir(dir @ OwnedDir { created: false, .. }), Some(Owned::Dir(old))) if old.created && dir.path == old.path => {
                    Owned::Dir(OwnedDir { created: true, ..dir.clone() })
                }
                (Owned::Files(files), Some(Owned::Files(old))) if old.dirs.iter().any(|d| !files.dirs.contains(d)) => {
                    let mut dirs = files.dirs.clone();
                    dirs.extend(old.dirs.iter().filter(|d| !files.dirs.contains(d)).cloned());
                    Owned::Files(OwnedFiles { files: files.files.clone(), dirs })
                }
                _ => owns.clone(),
            };
            seen.insert(id.clone());
            next.resources.push(Managed { id: id.clone(), prevent_destroy: *prevent_destroy, owns });
        }
        for old in previous.map(|p| p.resources.as_slice()).unwrap_or_default() {
            if !seen.contains(&old.id) && !removed.contains(&old.id) {
                next.resources.push(old.clone());
            }
        }
        next
    }
}

impl Owned {
    /// Every path it owns (files, the directory, the unit file cairn wrote).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Owned::Files(f) => f.files.iter().map(|f| f.path.as_str()).chain(f.dirs.iter().map(String::as_str)).collect(),
            Owned::Dir(d) => vec![d.path.as_str()],
            Owned::Unit(u) => u.file.iter().map(String::as_str).collect(),
            Owned::User(_) | Owned::Firewall(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn file_entry(id: &str, path: &str, sha: Option<&str>) -> Managed {
        Managed {
            id: id.into(),
            prevent_destroy: false,
            owns: Owned::Files(OwnedFiles {
                files: vec![OwnedFile { path: path.into(), sha256: sha.map(str::to_string) }],
                dirs: Vec::new(),
            }),
        }
    }

    fn dir(path: &str, created: bool) -> Owned {
        Owned::Dir(OwnedDir { path: path.into(), created, purge: false })
    }

    #[test]
    fn manifest_round_trips_as_one_line() {
        let mut m = Manifest::new("demo");
        m.resources.push(file_entry("file.motd", "/etc/motd", Some("abc")));
        m.resources.push(Managed { id: "dir.d".into(), prevent_destroy: true, owns: dir("/d", true) });
        m.resources.push(Managed { id: "firewall.f".into(), prevent_destroy: false, owns: Owned::Firewall(OwnedFirewall {}) });
        let text = m.to_text();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        assert!(Manifest::parse("{\"format\":\"other\"}").is_err());
    }

    #[test]
    fn reads_the_format_earlier_versions_wrote() {
        let text = r#"{"format":"cairn-manifest","format_version":1,"spec":"s","cairn_version":"0.1.0","resources":[{"id":"file.a","owns":"files","files":[{"path":"/a","sha256":"ab"}]},{"id":"dir.d","prevent_destroy":true,"owns":"dir","path":"/d","created":true,"purge":false},{"id":"unit.u","owns":"unit","name":"u.service","file":null},{"id":"user.u","owns":"user","name":"u","remove":false},{"id":"firewall.f","owns":"firewall"}]}"#;
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.resources.len(), 5);
        assert_eq!(m.to_text().trim_end(), text);
    }

    #[test]
    fn updated_manifest_keeps_what_failed_and_drops_what_was_removed() {
        let mut prev = Manifest::new("s");
        prev.resources.push(Managed { id: "dir.d".into(), prevent_destroy: false, owns: dir("/d", true) });
        prev.resources.push(file_entry("file.gone", "/g", None));
        prev.resources.push(file_entry("file.failed", "/f", None));
        let kept = vec![("dir.d".to_string(), false, dir("/d", false))];
        let removed: BTreeSet<String> = ["file.gone".to_string()].into();
        let next = Manifest::updated("s", Some(&prev), &kept, &removed);
        let ids: Vec<&str> = next.resources.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["dir.d", "file.failed"]);
        assert_eq!(next.resources[0].owns, dir("/d", true));
    }
}
