//! Removing what a spec no longer has. The planner turns each manifest entry
//! ([`crate::state::manifest::Managed`]) whose resource left the spec into an [`Orphan`]: the
//! entry minus what resources still in the spec claim ([`Claims`]). What removing an entry takes
//! is decided and done by the kind that owns it, through [`Removal`] (implemented beside each
//! kind's create and update: `file.rs` for files, `dir.rs`, `unit.rs`, `user.rs`,
//! `firewall/mod.rs`); this module adds what every removal shares: adoption by a resource still
//! in the spec, `prevent_destroy`, the order of one host's removals.

use std::collections::BTreeMap;

use super::{Action, ApplyError, Decision, HostFacts, ProbeRequest, Reason, reason::Protected};
use crate::spec::ResourceId;
use crate::state::manifest::{Managed, Owned};
use crate::transport::Transport;

/// How one kind of owned thing is removed from a host. Pure `diff`, then `apply`, like a kind.
#[async_trait::async_trait]
pub trait Removal: Send + Sync {
    /// Order among one host's removals, lowest first: units stop before their files go, the
    /// firewall next, files, then directories (after what was in them), accounts last.
    fn rank(&self) -> u8;

    /// The resource still in the spec that now owns what this entry owned (a renamed
    /// resource), if any; `claimed_all` is set when every path of the entry is claimed.
    fn adopted_by(&self, claims: &Claims, claimed_all: Option<&str>) -> Option<String> {
        let _ = claims;
        claimed_all.map(str::to_string)
    }

    /// What the probe must read to decide, besides the entry's unclaimed paths.
    fn add_to_probe(&self, orphan: &Orphan, probe: &mut ProbeRequest) {
        let _ = (orphan, probe);
    }

    /// Decides, purely, what removing it takes; the reason is the kind's detail only
    /// ("delete /etc/old"), [`Orphan::diff`] makes it a [`Reason::Removal`].
    fn diff(&self, orphan: &Orphan, facts: &HostFacts) -> Decision;

    /// Carries out a removal decided by `diff`.
    async fn apply(&self, orphan: &Orphan, transport: &dyn Transport, decision: &Decision) -> Result<(), ApplyError>;

    /// What it acts on, for plans, given the paths still its to remove.
    fn target(&self, paths: &[&str]) -> String {
        paths.join(", ")
    }
}

/// The removal of what a manifest entry owns: the one place that maps the manifest's variants
/// to their kinds.
pub fn removal_of(owned: &Owned) -> &dyn Removal {
    match owned {
        Owned::Files(files) => files,
        Owned::Dir(dir) => dir,
        Owned::Unit(unit) => unit,
        Owned::User(user) => user,
        Owned::Firewall(firewall) => firewall,
    }
}

/// What the instances still in the spec claim on one host: a removal never touches these.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// Paths (including shared CA files), with the resource claiming each.
    pub paths: BTreeMap<String, String>,
    /// Unit names.
    pub units: BTreeMap<String, String>,
    /// User names.
    pub users: BTreeMap<String, String>,
    /// Some firewall resource remains (it rewrites the whole table).
    pub firewall: Option<String>,
}

impl Claims {
    /// Records that resource `id` claims `paths` (the first claim of a path wins).
    pub fn add_paths<'a>(&mut self, id: &ResourceId, paths: impl IntoIterator<Item = &'a str>) {
        for p in paths {
            self.paths.entry(p.to_string()).or_insert_with(|| id.to_string());
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
        let paths = entry.owns.paths();
        let claimed: Vec<String> = paths.iter().filter(|p| claims.paths.contains_key(**p)).map(|p| (*p).to_string()).collect();
        let claimed_all = (!claimed.is_empty() && claimed.len() == paths.len()).then(|| claims.paths[&claimed[0]].as_str());
        let adopted_by = removal_of(&entry.owns).adopted_by(claims, claimed_all);
        let firewall_remains = if matches!(entry.owns, Owned::Firewall(_)) { claims.firewall.clone() } else { None };
        Self { entry, claimed, adopted_by, firewall_remains }
    }

    /// The resource id, parsed (an unparsable id keeps its text as the name).
    pub fn id(&self) -> ResourceId {
        ResourceId::parse(&self.entry.id).unwrap_or_else(|| ResourceId::new(crate::spec::Kind::File, self.entry.id.clone()))
    }

    /// Paths this removal acts on (those no remaining resource claims).
    pub fn paths(&self) -> Vec<&str> {
        self.entry.owns.paths().into_iter().filter(|p| !self.claimed.iter().any(|c| c == p)).collect()
    }

    /// Order among one host's removals (see [`Removal::rank`]), deepest paths first.
    pub fn order_key(&self) -> (u8, std::cmp::Reverse<usize>, String) {
        let depth = self.entry.owns.paths().first().map_or(0, |p| p.matches('/').count());
        (removal_of(&self.entry.owns).rank(), std::cmp::Reverse(depth), self.entry.id.clone())
    }

    /// What the probe must read to decide.
    pub fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.paths.extend(self.paths().into_iter().map(str::to_string));
        if self.adopted_by.is_none() {
            removal_of(&self.entry.owns).add_to_probe(self, probe);
        }
    }

    /// Decides, purely, what removing it takes: a [`Reason::Removal`], or a block when
    /// `prevent_destroy` protects it.
    pub fn diff(&self, facts: &HostFacts) -> Decision {
        let removal = |mut d: Decision| {
            d.reason = Reason::Removal { destroy: false, detail: d.reason.to_string() };
            d
        };
        if let Some(by) = &self.adopted_by {
            return removal(Decision::noop(format!("now managed by {by}")));
        }
        let decision = removal_of(&self.entry.owns).diff(self, facts);
        if self.entry.prevent_destroy && decision.action.is_change() {
            return Decision::new(Action::Conflict, Reason::Protected(Protected::Removal { detail: decision.reason.to_string() }));
        }
        removal(decision)
    }

    /// Carries out a removal decided by [`Orphan::diff`].
    pub async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<(), ApplyError> {
        if decision.action != Action::Delete {
            return Ok(());
        }
        removal_of(&self.entry.owns).apply(self, transport, decision).await
    }

    /// What it acts on, for plans.
    pub fn target(&self) -> String {
        let paths = self.paths();
        let paths = if paths.is_empty() { self.entry.owns.paths() } else { paths };
        removal_of(&self.entry.owns).target(&paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::PathFact;
    use crate::resource::PathKind;
    use crate::state::manifest::{OwnedDir, OwnedFile, OwnedFiles, OwnedUnit, OwnedUser};

    fn file_entry(id: &str, path: &str, sha: Option<&str>) -> Managed {
        Managed {
            id: id.into(),
            prevent_destroy: false,
            owns: Owned::Files(OwnedFiles {
                files: vec![OwnedFile { path: path.into(), sha256: sha.map(str::to_string) }],
                dirs: Vec::new(),
            }),
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
    fn the_folders_a_removal_made_go_when_empty_and_a_kept_one_says_why() {
        let owns = OwnedFiles {
            files: ["/etc/web/pki/server.pem", "/etc/web/pki/ca.pem"].map(|p| OwnedFile { path: p.into(), sha256: None }).to_vec(),
            dirs: vec!["/etc/web".into(), "/etc/web/pki".into()],
        };
        let orphan =
            Orphan::new(Managed { id: "cert.server".into(), prevent_destroy: false, owns: Owned::Files(owns) }, &Claims::default());
        let mut request = ProbeRequest::default();
        orphan.add_to_probe(&mut request);
        let ls = |d: &str| ["ls", "-A", "--", d].map(str::to_string).to_vec();
        assert!(request.queries.contains(&ls("/etc/web")));
        let mut facts = HostFacts::default();
        let dir = PathFact { kind: PathKind::Dir, sha256: None, ..regular("") };
        for p in ["/etc/web", "/etc/web/pki"] {
            facts.paths.insert(p.into(), dir.clone());
        }
        facts.paths.insert("/etc/web/pki/server.pem".into(), regular("a"));
        let listing = |out: &str| crate::resource::QueryOutput { status: 0, stdout: out.into() };
        facts.queries.insert(ls("/etc/web/pki"), listing("server.pem\n"));
        facts.queries.insert(ls("/etc/web"), listing("pki\n"));
        let d = orphan.diff(&facts);
        assert_eq!(
            (d.action, d.reason.to_string().as_str()),
            (
                Action::Delete,
                "no longer in the spec; delete /etc/web/pki/server.pem; delete the folders cairn made: /etc/web/pki, /etc/web"
            )
        );
        facts.queries.insert(ls("/etc/web"), listing("pki\nnotes.txt\n"));
        let d = orphan.diff(&facts);
        assert_eq!(
            d.reason.to_string(),
            "no longer in the spec; delete /etc/web/pki/server.pem; delete the folders cairn made: /etc/web/pki; \
             keep /etc/web: it holds notes.txt"
        );
    }

    #[test]
    fn removed_file_is_deleted_and_an_edited_one_says_so() {
        let orphan = Orphan::new(file_entry("file.old", "/etc/old", Some("abc")), &Claims::default());
        let mut facts = HostFacts::default();
        assert_eq!(orphan.diff(&facts).action, Action::NoOp);
        facts.paths.insert("/etc/old".into(), regular("abc"));
        let d = orphan.diff(&facts);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Delete, "no longer in the spec; delete /etc/old"));
        assert_eq!(d.reason, Reason::Removal { destroy: false, detail: "delete /etc/old".into() });
        facts.paths.insert("/etc/old".into(), regular("def"));
        assert!(orphan.diff(&facts).reason.to_string().contains("changed on the host since cairn wrote it"));
    }

    #[test]
    fn a_path_another_resource_now_manages_is_left_alone() {
        let mut claims = Claims::default();
        claims.paths.insert("/etc/old".into(), "file.new".into());
        let orphan = Orphan::new(file_entry("file.old", "/etc/old", None), &claims);
        let mut facts = HostFacts::default();
        facts.paths.insert("/etc/old".into(), regular("abc"));
        let d = orphan.diff(&facts);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::NoOp, "no longer in the spec; now managed by file.new"));
    }

    #[test]
    fn directories_go_only_when_cairn_made_them_or_purge_says_so() {
        let dir = |created, purge| {
            let owns = Owned::Dir(OwnedDir { path: "/srv/d".into(), created, purge });
            Orphan::new(Managed { id: "dir.d".into(), prevent_destroy: false, owns }, &Claims::default())
        };
        let mut facts = HostFacts::default();
        facts.paths.insert("/srv/d".into(), PathFact { kind: PathKind::Dir, sha256: None, ..regular("") });
        assert_eq!(dir(false, false).diff(&facts).action, Action::NoOp);
        assert!(dir(true, false).diff(&facts).reason.to_string().ends_with("if empty (cairn made it)"));
        assert!(dir(false, true).diff(&facts).reason.to_string().ends_with("with its contents (purge)"));
    }

    #[test]
    fn accounts_are_kept_unless_remove_is_set() {
        let user = |remove| {
            let owns = Owned::User(OwnedUser { name: "u".into(), remove });
            Orphan::new(Managed { id: "user.u".into(), prevent_destroy: false, owns }, &Claims::default())
        };
        let mut facts = HostFacts::default();
        facts.users.insert("u".into(), crate::resource::user::UserFact { uid: 1000, gid: 1000, home: "/".into(), shell: "/bin/sh".into() });
        assert_eq!(user(false).diff(&facts).action, Action::NoOp);
        assert_eq!(user(true).diff(&facts).action, Action::Delete);
    }

    #[test]
    fn a_unit_removal_does_only_the_steps_it_needs() {
        let unit = |file: Option<&str>| {
            let owns = Owned::Unit(OwnedUnit { name: "u.service".into(), file: file.map(str::to_string) });
            Orphan::new(Managed { id: "unit.u".into(), prevent_destroy: false, owns }, &Claims::default())
        };
        let mut facts = HostFacts::default();
        facts.units.insert(
            "u.service".into(),
            crate::resource::unit::UnitFact { active_state: "active".into(), unit_file_state: "disabled".into(), ..Default::default() },
        );
        facts.paths.insert("/etc/systemd/system/u.service".into(), regular("abc"));
        let d = unit(Some("/etc/systemd/system/u.service")).diff(&facts);
        assert_eq!(d.reason.to_string(), "no longer in the spec; stop, delete its unit file u.service");
        let names: Vec<&str> = d.attrs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["state", "unit file"], "no disable step for a disabled unit");
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
        assert_eq!(d.reason, Reason::Protected(Protected::Removal { detail: "delete /etc/keep".into() }));
        assert!(d.reason.to_string().starts_with("protected by prevent_destroy"), "{}", d.reason);
        assert!(d.reason.to_string().contains("delete /etc/keep"), "{}", d.reason);
    }

    #[test]
    fn removals_are_ordered_units_first_accounts_last_deepest_directories_first() {
        let entry = |id: &str, owns: Owned| Orphan::new(Managed { id: id.into(), prevent_destroy: false, owns }, &Claims::default());
        let dir = |p: &str| Owned::Dir(OwnedDir { path: p.into(), created: true, purge: false });
        let mut orphans = [
            entry("user.u", Owned::User(OwnedUser { name: "u".into(), remove: true })),
            entry("dir.a", dir("/srv/a")),
            entry("dir.ab", dir("/srv/a/b")),
            entry("file.f", file_entry("file.f", "/srv/a/f", None).owns),
            entry("firewall.f", Owned::Firewall(crate::state::manifest::OwnedFirewall {})),
            entry("unit.u", Owned::Unit(OwnedUnit { name: "u.service".into(), file: None })),
        ];
        orphans.sort_by_key(Orphan::order_key);
        let ids: Vec<&str> = orphans.iter().map(|o| o.entry.id.as_str()).collect();
        assert_eq!(ids, ["unit.u", "firewall.f", "file.f", "dir.ab", "dir.a", "user.u"]);
    }
}
