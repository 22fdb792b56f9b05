//! What cairn manages on a host: one manifest per spec name under [`MANIFEST_DIR`] (root-only),
//! listing each resource's id and what it owns there (paths with content hashes, a unit, an
//! account, the firewall table). The probe reads every manifest on the host; the planner turns
//! entries the spec no longer has into removals ([`Orphan`]) and refuses paths another spec owns.
//! Removing is this module's too: what to delete is decided purely from the probe, then done.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Action, ApplyError, AttrChange, Decision, Desired, HostFacts, PathKind, ProbeRequest, run_checked};
use crate::spec::ResourceId;
use crate::transport::{Transport, argv};

/// Where manifests live on every host (mode 0700, files 0600).
pub const MANIFEST_DIR: &str = "/var/lib/cairn/manifests";

/// `format` of a manifest file.
pub const FORMAT: &str = "cairn-manifest";

/// How a removal that `prevent_destroy` blocks begins (the CLI refuses the whole apply then).
pub const PROTECTED: &str = "protected by prevent_destroy";

/// The attribute of a unit removal that deletes its unit file.
const UNIT_FILE: &str = "unit file";

/// How every removal's reason begins.
pub const GONE: &str = "no longer in the spec";

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

/// What a resource owns on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "owns", rename_all = "kebab-case")]
pub enum Owned {
    /// Files (a `file`, the files a `binary` installs, a certificate and its key).
    Files {
        /// The files.
        files: Vec<OwnedFile>,
    },
    /// A directory.
    Dir {
        /// Its path.
        path: String,
        /// cairn made it (it did not exist when first applied): it may be deleted when empty.
        created: bool,
        /// `purge = true`: deleted with its contents.
        purge: bool,
    },
    /// A systemd unit.
    Unit {
        /// Its name.
        name: String,
        /// The unit file, when cairn wrote it.
        file: Option<String>,
    },
    /// A user account.
    User {
        /// Login name.
        name: String,
        /// `remove = true`: deleted when it leaves the spec.
        remove: bool,
    },
    /// Rules in cairn's nftables table.
    Firewall,
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
    pub fn parse(text: &str) -> Result<Self, String> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| format!("not a cairn manifest: {e}"))?;
        if m.format != FORMAT || m.format_version != 1 {
            return Err(format!("format {} version {} is not one this cairn reads", m.format, m.format_version));
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
}

impl Owned {
    /// Every path it owns (files, or the directory).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Owned::Files { files } => files.iter().map(|f| f.path.as_str()).collect(),
            Owned::Dir { path, .. } => vec![path.as_str()],
            Owned::Unit { file, .. } => file.iter().map(String::as_str).collect(),
            Owned::User { .. } | Owned::Firewall => Vec::new(),
        }
    }

    /// What it owns, for plans ("/etc/demo/motd", "etcd.service").
    pub fn target(&self) -> String {
        match self {
            Owned::Unit { name, .. } => name.clone(),
            Owned::User { name, .. } => format!("user {name}"),
            Owned::Firewall => format!("table {}", super::firewall::nft::TABLE),
            _ => self.paths().join(", "),
        }
    }
}

impl Desired {
    /// What this instance owns on its host, for the manifest (`None`: nothing, e.g. a check).
    /// `created` says whether cairn made the directory.
    pub fn owned(&self, created: bool) -> Option<Owned> {
        let file = |path: &str, sha256: Option<&str>| OwnedFile { path: path.to_string(), sha256: sha256.map(str::to_string) };
        Some(match self {
            Desired::File(f) => Owned::Files { files: vec![file(&f.path, (!f.sensitive).then_some(f.sha256.as_str()))] },
            Desired::Binary(b) => Owned::Files { files: b.targets.iter().map(|t| file(&t.path, None)).collect() },
            Desired::Cert(c) => Owned::Files { files: c.paths().into_iter().map(|p| file(p, None)).collect() },
            Desired::Dir(d) => Owned::Dir { path: d.path.clone(), created, purge: d.purge },
            Desired::Unit(u) => Owned::Unit { name: u.name.clone(), file: u.content.as_ref().map(|_| u.path.clone()) },
            Desired::User(u) => Owned::User { name: u.name.clone(), remove: u.remove },
            Desired::Firewall(_) => Owned::Firewall,
            Desired::Check(_) => return None,
        })
    }
}

/// What the instances still in the spec claim on one host: a removal never touches these.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// Paths (including shared CA files), with the resource claiming each.
    pub paths: std::collections::BTreeMap<String, String>,
    /// Unit names.
    pub units: std::collections::BTreeMap<String, String>,
    /// User names.
    pub users: std::collections::BTreeMap<String, String>,
    /// Some firewall resource remains (it rewrites the whole table).
    pub firewall: Option<String>,
}

impl Claims {
    /// Records what `desired` (resource `id`) claims.
    pub fn add(&mut self, id: &ResourceId, desired: &Desired) {
        let id = id.to_string();
        for p in desired.paths() {
            self.paths.entry(p.to_string()).or_insert_with(|| id.clone());
        }
        match desired {
            Desired::Cert(c) => {
                if let Some(ca) = &c.ca_path {
                    self.paths.entry(ca.clone()).or_insert_with(|| id.clone());
                }
            }
            Desired::Unit(u) => {
                self.units.entry(u.name.clone()).or_insert_with(|| id.clone());
            }
            Desired::User(u) => {
                self.users.entry(u.name.clone()).or_insert_with(|| id.clone());
            }
            Desired::Firewall(_) => {
                self.firewall.get_or_insert(id);
            }
            _ => {}
        }
    }
}

/// A manifest entry whose resource is no longer in the spec (or, for `destroy`, every entry),
/// minus what resources still in the spec claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The entry as the manifest has it.
    pub entry: Managed,
    /// Its paths that another resource of the spec now manages (left alone).
    pub claimed: Vec<String>,
    /// The resource still in the spec that now claims its unit, account or every path, if any.
    pub adopted_by: Option<String>,
    /// A firewall resource remains on the host: its rewrite drops these rules.
    pub firewall_remains: Option<String>,
}

impl Orphan {
    /// The orphan of `entry`, given what the spec still claims.
    pub fn new(entry: Managed, claims: &Claims) -> Self {
        let claimed: Vec<String> = entry.owns.paths().into_iter().filter(|p| claims.paths.contains_key(*p)).map(str::to_string).collect();
        let adopted_by = match &entry.owns {
            Owned::Unit { name, .. } => claims.units.get(name).cloned(),
            Owned::User { name, .. } => claims.users.get(name).cloned(),
            Owned::Files { .. } | Owned::Dir { .. } if !claimed.is_empty() && claimed.len() == entry.owns.paths().len() => {
                claims.paths.get(&claimed[0]).cloned()
            }
            _ => None,
        };
        let firewall_remains = if entry.owns == Owned::Firewall { claims.firewall.clone() } else { None };
        Self { entry, claimed, adopted_by, firewall_remains }
    }

    /// The resource id, parsed (an unparsable id keeps its text as the name).
    pub fn id(&self) -> ResourceId {
        ResourceId::parse(&self.entry.id).unwrap_or_else(|| ResourceId::new(crate::spec::Kind::File, self.entry.id.clone()))
    }

    /// Paths this removal acts on.
    fn paths(&self) -> Vec<&str> {
        self.entry.owns.paths().into_iter().filter(|p| !self.claimed.iter().any(|c| c == p)).collect()
    }

    /// Order among one host's removals: units stop first, accounts go last, directories after
    /// what was in them (deepest first).
    pub fn order_key(&self) -> (u8, std::cmp::Reverse<usize>, String) {
        let rank = match self.entry.owns {
            Owned::Unit { .. } => 0,
            Owned::Firewall => 1,
            Owned::Files { .. } => 2,
            Owned::Dir { .. } => 3,
            Owned::User { .. } => 4,
        };
        let depth = self.entry.owns.paths().first().map_or(0, |p| p.matches('/').count());
        (rank, std::cmp::Reverse(depth), self.entry.id.clone())
    }

    /// What the probe must read to decide.
    pub fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.paths.extend(self.paths().into_iter().map(str::to_string));
        match &self.entry.owns {
            Owned::Unit { name, .. } if self.adopted_by.is_none() => {
                probe.units.insert(name.clone());
            }
            Owned::User { name, remove: true } if self.adopted_by.is_none() => {
                probe.users.insert(name.clone());
            }
            Owned::Firewall if self.firewall_remains.is_none() => probe.firewall = true,
            _ => {}
        }
    }

    /// Decides, purely, what removing it takes. Every decision says "no longer in the spec".
    pub fn diff(&self, facts: &HostFacts) -> Decision {
        if let Some(by) = &self.adopted_by {
            return Decision::noop(format!("{GONE}; now managed by {by}"));
        }
        let decision = self.diff_unprotected(facts);
        if self.entry.prevent_destroy && decision.action.is_change() {
            return Decision::new(
                Action::Conflict,
                format!(
                    "{PROTECTED}: removing it would {}; keep it in the spec, \
                     or apply it once with prevent_destroy = false before removing it",
                    decision.reason.trim_start_matches(GONE).trim_start_matches("; ")
                ),
            );
        }
        decision
    }

    fn diff_unprotected(&self, facts: &HostFacts) -> Decision {
        match &self.entry.owns {
            Owned::Files { files } => {
                let present: Vec<&OwnedFile> = files
                    .iter()
                    .filter(|f| !self.claimed.contains(&f.path))
                    .filter(|f| facts.path(&f.path).is_some_and(|p| matches!(p.kind, PathKind::File | PathKind::Symlink)))
                    .collect();
                if present.is_empty() {
                    return Decision::noop(format!("{GONE}; already absent"));
                }
                let edited: Vec<&str> = present
                    .iter()
                    .filter(|f| f.sha256.is_some() && facts.path(&f.path).and_then(|p| p.sha256.as_ref()) != f.sha256.as_ref())
                    .map(|f| f.path.as_str())
                    .collect();
                let what = present.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", ");
                let mut reason = format!("{GONE}; delete {what}");
                if !edited.is_empty() {
                    reason.push_str(&format!(" (changed on the host since cairn wrote it: {})", edited.join(", ")));
                }
                Decision::new(Action::Delete, reason)
            }
            Owned::Dir { path, created, purge } => match facts.path(path) {
                None => Decision::noop(format!("{GONE}; already absent")),
                Some(p) if p.kind != PathKind::Dir => Decision::noop(format!("{GONE}; {path} is no longer a directory, left alone")),
                Some(_) if *purge => Decision::new(Action::Delete, format!("{GONE}; delete {path} with its contents (purge)")),
                Some(_) if *created => Decision::new(Action::Delete, format!("{GONE}; delete {path} if empty (cairn made it)")),
                Some(_) => Decision::noop(format!("{GONE}; {path} kept: cairn did not make it (set purge = true to delete it)")),
            },
            Owned::Unit { name, file } => {
                let unit = facts.units.get(name);
                let active = unit.is_some_and(|u| matches!(u.active_state.as_str(), "active" | "activating" | "reloading"));
                let enabled = unit.is_some_and(|u| u.unit_file_state.starts_with("enabled"));
                let unit_file = file.as_ref().filter(|f| facts.path(f).is_some());
                // The steps travel as attributes: the plan shows them, apply does exactly them.
                let mut d = Decision::new(Action::Delete, String::new());
                let mut steps = Vec::new();
                if active {
                    steps.push("stop");
                    d.attrs.push(AttrChange::new("state", unit.map(|u| u.active_state.clone()), Some("stopped".into())));
                }
                if enabled {
                    steps.push("disable");
                    d.attrs.push(AttrChange::new("enabled", Some("enabled".into()), Some("disabled".into())));
                }
                if let Some(f) = unit_file {
                    steps.push("delete its unit file");
                    d.attrs.push(AttrChange::new(UNIT_FILE, Some(f.clone()), None));
                }
                if steps.is_empty() {
                    return Decision::noop(format!("{GONE}; {name} is stopped, disabled and has no unit file"));
                }
                d.reason = format!("{GONE}; {} {name}", steps.join(", "));
                d
            }
            Owned::User { name, remove } => match (remove, facts.users.contains_key(name)) {
                (false, _) => Decision::noop(format!("{GONE}; account {name} kept (set remove = true to delete accounts)")),
                (true, false) => Decision::noop(format!("{GONE}; already absent")),
                (true, true) => Decision::new(Action::Delete, format!("{GONE}; delete account {name} (its home is kept)")),
            },
            Owned::Firewall => {
                if let Some(writer) = &self.firewall_remains {
                    return Decision::noop(format!("{GONE}; its rules leave the table that {writer} rewrites"));
                }
                use super::firewall::NftTable;
                match facts.firewall.as_ref().map(|f| &f.table) {
                    Some(NftTable::Json(_)) => Decision::new(
                        Action::Delete,
                        format!("{GONE}; drop table {} (no firewall resource remains)", super::firewall::nft::TABLE),
                    ),
                    Some(NftTable::Error(e)) => Decision::new(Action::Conflict, format!("{GONE}; cannot read the table: {e}")),
                    _ => Decision::noop(format!("{GONE}; already absent")),
                }
            }
        }
    }

    /// Carries out a removal decided by [`Orphan::diff`].
    pub async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<(), ApplyError> {
        if decision.action != Action::Delete {
            return Ok(());
        }
        match &self.entry.owns {
            Owned::Files { .. } => {
                let mut cmd = vec!["rm".to_string(), "-f".into(), "--".into()];
                cmd.extend(self.paths().into_iter().map(str::to_string));
                run_checked(transport, &cmd).await
            }
            Owned::Dir { path, purge, .. } => {
                if *purge {
                    // Never `rm -rf` a top-level directory, whatever the manifest says.
                    if path.trim_end_matches('/').matches('/').count() < 2 {
                        return Err(ApplyError::Failed(format!("refusing to purge {path}: too close to /; delete it by hand")));
                    }
                    run_checked(transport, &argv(&["rm", "-rf", "--", path])).await
                } else {
                    // Kept when something is still in it: it holds what no spec manages.
                    run_checked(transport, &argv(&["rmdir", "--ignore-fail-on-non-empty", "--", path])).await
                }
            }
            Owned::Unit { name, .. } => {
                let step = |attr: &str| decision.attrs.iter().find(|a| a.name == attr);
                let systemctl = |args: &[&str]| {
                    let mut v = vec!["systemctl"];
                    v.extend_from_slice(args);
                    argv(&v)
                };
                if step("state").is_some() {
                    run_checked(transport, &systemctl(&["stop", "--", name])).await?;
                }
                if step("enabled").is_some() {
                    run_checked(transport, &systemctl(&["disable", "--", name])).await?;
                }
                if let Some(path) = step(UNIT_FILE).and_then(|a| a.before.as_deref()) {
                    run_checked(transport, &argv(&["rm", "-f", "--", path])).await?;
                    run_checked(transport, &systemctl(&["daemon-reload"])).await?;
                }
                // A unit that failed while it ran stays listed as failed until this.
                let _ = transport.run(&systemctl(&["reset-failed", "--", name]), crate::transport::Stdin::Null).await;
                Ok(())
            }
            Owned::User { name, .. } => run_checked(transport, &argv(&["userdel", "--", name])).await,
            Owned::Firewall => {
                let mut cmd = argv(&["nft", "delete", "table"]);
                cmd.extend(super::firewall::nft::TABLE.split(' ').map(str::to_string));
                run_checked(transport, &cmd).await
            }
        }
    }

    /// What it acts on, for plans.
    pub fn target(&self) -> String {
        match &self.entry.owns {
            Owned::Files { .. } | Owned::Dir { .. } => {
                let paths = self.paths();
                if paths.is_empty() { self.entry.owns.target() } else { paths.join(", ") }
            }
            other => other.target(),
        }
    }
}

/// The manifest a host should have after a run: `previous` with the entries of instances that
/// ended well (`kept`, each with whether cairn made it in this run) put in, and the removals that
/// ended well (`removed`) taken out. Entries of anything that failed or was not run stay as they
/// were, so a later run still knows about them.
pub fn updated(spec: &str, previous: Option<&Manifest>, kept: &[(String, bool, Option<Owned>)], removed: &BTreeSet<String>) -> Manifest {
    let mut next = Manifest::new(spec);
    let mut seen = BTreeSet::new();
    for (id, prevent_destroy, owns) in kept {
        let Some(owns) = owns else { continue };
        // A directory stays "made by cairn" once it was.
        let owns = match (owns, previous.and_then(|p| p.get(id)).map(|m| &m.owns)) {
            (Owned::Dir { path, created: false, purge }, Some(Owned::Dir { path: old, created: true, .. })) if path == old => {
                Owned::Dir { path: path.clone(), created: true, purge: *purge }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::PathFact;

    fn file_entry(id: &str, path: &str, sha: Option<&str>) -> Managed {
        Managed {
            id: id.into(),
            prevent_destroy: false,
            owns: Owned::Files { files: vec![OwnedFile { path: path.into(), sha256: sha.map(str::to_string) }] },
        }
    }

    fn regular(sha: &str) -> PathFact {
        PathFact {
            kind: PathKind::File,
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            size: 1,
            mtime: 0,
            sha256: Some(sha.into()),
        }
    }

    #[test]
    fn manifest_round_trips_as_one_line() {
        let mut m = Manifest::new("demo");
        m.resources.push(file_entry("file.motd", "/etc/motd", Some("abc")));
        m.resources.push(Managed {
            id: "dir.d".into(),
            prevent_destroy: true,
            owns: Owned::Dir { path: "/d".into(), created: true, purge: false },
        });
        let text = m.to_text();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        assert!(Manifest::parse("{\"format\":\"other\"}").is_err());
    }

    #[test]
    fn removed_file_is_deleted_and_an_edited_one_says_so() {
        let orphan = Orphan::new(file_entry("file.old", "/etc/old", Some("abc")), &Claims::default());
        let mut facts = HostFacts::default();
        assert_eq!(orphan.diff(&facts).action, Action::NoOp);
        facts.paths.insert("/etc/old".into(), regular("abc"));
        let d = orphan.diff(&facts);
        assert_eq!((d.action, d.reason.as_str()), (Action::Delete, "no longer in the spec; delete /etc/old"));
        facts.paths.insert("/etc/old".into(), regular("def"));
        assert!(orphan.diff(&facts).reason.contains("changed on the host since cairn wrote it"));
    }

    #[test]
    fn a_path_another_resource_now_manages_is_left_alone() {
        let mut claims = Claims::default();
        claims.paths.insert("/etc/old".into(), "file.new".into());
        let orphan = Orphan::new(file_entry("file.old", "/etc/old", None), &claims);
        let mut facts = HostFacts::default();
        facts.paths.insert("/etc/old".into(), regular("abc"));
        let d = orphan.diff(&facts);
        assert_eq!((d.action, d.reason.as_str()), (Action::NoOp, "no longer in the spec; now managed by file.new"));
    }

    #[test]
    fn directories_go_only_when_cairn_made_them_or_purge_says_so() {
        let dir = |created, purge| {
            Orphan::new(
                Managed { id: "dir.d".into(), prevent_destroy: false, owns: Owned::Dir { path: "/srv/d".into(), created, purge } },
                &Claims::default(),
            )
        };
        let mut facts = HostFacts::default();
        facts.paths.insert("/srv/d".into(), PathFact { kind: PathKind::Dir, sha256: None, ..regular("") });
        assert_eq!(dir(false, false).diff(&facts).action, Action::NoOp);
        assert!(dir(true, false).diff(&facts).reason.ends_with("if empty (cairn made it)"));
        assert!(dir(false, true).diff(&facts).reason.ends_with("with its contents (purge)"));
    }

    #[test]
    fn accounts_are_kept_unless_remove_is_set() {
        let user = |remove| {
            Orphan::new(
                Managed { id: "user.u".into(), prevent_destroy: false, owns: Owned::User { name: "u".into(), remove } },
                &Claims::default(),
            )
        };
        let mut facts = HostFacts::default();
        facts.users.insert("u".into(), crate::resource::user::UserFact { uid: 1000, gid: 1000, home: "/".into(), shell: "/bin/sh".into() });
        assert_eq!(user(false).diff(&facts).action, Action::NoOp);
        assert_eq!(user(true).diff(&facts).action, Action::Delete);
    }

    #[test]
    fn a_unit_removal_does_only_the_steps_it_needs() {
        let unit = |file: Option<&str>| {
            Orphan::new(
                Managed {
                    id: "unit.u".into(),
                    prevent_destroy: false,
                    owns: Owned::Unit { name: "u.service".into(), file: file.map(str::to_string) },
                },
                &Claims::default(),
            )
        };
        let mut facts = HostFacts::default();
        facts.units.insert(
            "u.service".into(),
            crate::resource::unit::UnitFact { active_state: "active".into(), unit_file_state: "disabled".into(), ..Default::default() },
        );
        facts.paths.insert("/etc/systemd/system/u.service".into(), regular("abc"));
        let d = unit(Some("/etc/systemd/system/u.service")).diff(&facts);
        assert_eq!(d.reason, "no longer in the spec; stop, delete its unit file u.service");
        let names: Vec<&str> = d.attrs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["state", UNIT_FILE], "no disable step for a disabled unit");
        // A package's unit (no file of cairn's) that is already stopped: nothing to do.
        facts.units.get_mut("u.service").unwrap().active_state = "inactive".into();
        assert_eq!(unit(None).diff(&facts).action, Action::NoOp);
    }

    #[test]
    fn prevent_destroy_turns_a_removal_into_a_conflict() {
        let mut entry = file_entry("file.keep", "/etc/keep", None);
        entry.prevent_destroy = true;
        let orphan = Orphan::new(entry, &Claims::default());
        let mut facts = HostFacts::default();
        facts.paths.insert("/etc/keep".into(), regular("abc"));
        let d = orphan.diff(&facts);
        assert_eq!(d.action, Action::Conflict);
        assert!(d.reason.starts_with(PROTECTED), "{}", d.reason);
        assert!(d.reason.contains("delete /etc/keep"), "{}", d.reason);
    }

    #[test]
    fn updated_manifest_keeps_what_failed_and_drops_what_was_removed() {
        let mut prev = Manifest::new("s");
        prev.resources.push(Managed {
            id: "dir.d".into(),
            prevent_destroy: false,
            owns: Owned::Dir { path: "/d".into(), created: true, purge: false },
        });
        prev.resources.push(file_entry("file.gone", "/g", None));
        prev.resources.push(file_entry("file.failed", "/f", None));
        let kept = vec![("dir.d".to_string(), false, Some(Owned::Dir { path: "/d".into(), created: false, purge: false }))];
        let removed: BTreeSet<String> = ["file.gone".to_string()].into();
        let next = updated("s", Some(&prev), &kept, &removed);
        let ids: Vec<&str> = next.resources.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["dir.d", "file.failed"]);
        assert_eq!(next.resources[0].owns, Owned::Dir { path: "/d".into(), created: true, purge: false });
    }
}
