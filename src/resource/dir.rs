//! `dir`: a directory with mode and (optionally) owner and group. Parents are created as needed.

use super::batch::Staged;
use super::removal::{Orphan, Removal};
use super::{
    Action, Applied, ApplyError, AttrChange, Decision, HostFacts, PathFact, PathKind, ResourceKind, attr_changes, attr_commands,
    run_checked,
};
use crate::spec::{Diagnostic, DirSpec, Kind, TemplateText};
use crate::state::manifest::{Owned, OwnedDir};
use crate::transport::{Transport, argv};

/// Default mode of a managed directory.
pub const DEFAULT_MODE: u32 = 0o755;

/// A directory as it should be on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDir {
    /// Absolute path.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner, when managed.
    pub owner: Option<String>,
    /// Group, when managed.
    pub group: Option<String>,
    /// Deleted with its contents when it leaves the spec.
    pub purge: bool,
}

impl DesiredDir {
    /// Renders a `[dir.*]` table for one host.
    pub fn from_spec(spec: &DirSpec, render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>) -> Result<Self, Vec<Diagnostic>> {
        let path = render(&spec.path).and_then(|p| super::check_rendered_path(p, &spec.path)).map_err(|d| vec![d])?;
        Ok(Self {
            path,
            mode: spec.mode.map_or(DEFAULT_MODE, |m| m.0),
            owner: spec.owner.as_ref().map(|o| o.value.clone()),
            group: spec.group.as_ref().map(|g| g.value.clone()),
            purge: spec.purge,
        })
    }

    /// Decides what to do given what is at the path.
    pub fn diff_at(&self, observed: Option<&PathFact>) -> Decision {
        let Some(observed) = observed else {
            let mut d = Decision::new(Action::Create, "directory does not exist");
            d.attrs.push(AttrChange::new("mode", None, Some(format!("{:04o}", self.mode))));
            if let Some(o) = &self.owner {
                d.attrs.push(AttrChange::new("owner", None, Some(o.clone())));
            }
            if let Some(g) = &self.group {
                d.attrs.push(AttrChange::new("group", None, Some(g.clone())));
            }
            return d;
        };
        if observed.kind != PathKind::Dir {
            return Decision::new(
                Action::Conflict,
                format!("path is {}; cairn will not remove it to make a directory there", observed.kind.describe()),
            );
        }
        let attrs = attr_changes(observed, self.mode, self.owner.as_deref(), self.group.as_deref());
        if attrs.is_empty() {
            return Decision::noop("directory exists with the right mode and ownership");
        }
        let reason = attrs.iter().map(|a| format!("{} differs", a.name)).collect::<Vec<_>>().join(", ");
        let mut d = Decision::new(Action::Update, reason);
        d.attrs = attrs;
        d
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredDir {
    fn kind(&self) -> Kind {
        Kind::Dir
    }

    fn paths(&self) -> Vec<&str> {
        vec![self.path.as_str()]
    }

    fn managed_dir(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn diff(&self, facts: &HostFacts) -> Decision {
        self.diff_at(facts.path(&self.path))
    }

    fn owned(&self, created: bool) -> Option<Owned> {
        Some(Owned::Dir(OwnedDir { path: self.path.clone(), created, purge: self.purge }))
    }

    fn requires_users(&self) -> Vec<&str> {
        self.owner.iter().chain(&self.group).map(String::as_str).collect()
    }

    /// Carries out a decision made by [`DesiredDir::diff_at`].
    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError> {
        super::batch::run_all(transport, &self.commands(decision)).await.map(|()| Applied::plain())
    }

    /// mkdir, chown and chmod go with the other short commands of the wave.
    async fn stage(&self, decision: &Decision) -> Result<Option<Staged>, ApplyError> {
        Ok(Some(Staged::commands(self.commands(decision))))
    }
}

impl DesiredDir {
    /// The commands carrying out `decision`: make the directory, then set what it manages.
    fn commands(&self, decision: &Decision) -> Vec<Vec<String>> {
        let mut commands = Vec::new();
        if decision.action == Action::Create {
            commands.push(argv(&["mkdir", "-p", "--", &self.path]));
        }
        let attrs: Vec<AttrChange> = decision.attrs.iter().filter(|a| a.name != "mode" || a.after.is_some()).cloned().collect();
        commands.extend(attr_commands(&self.path, &attrs));
        commands
    }
}

/// A directory leaves with the spec only if cairn made it (and it is empty), or with `purge`.
#[async_trait::async_trait]
impl Removal for OwnedDir {
    fn rank(&self) -> u8 {
        3
    }

    fn diff(&self, _orphan: &Orphan, facts: &HostFacts) -> Decision {
        let path = &self.path;
        match facts.path(path) {
            None => Decision::noop("already absent"),
            Some(p) if p.kind != PathKind::Dir => Decision::noop(format!("{path} is no longer a directory, left alone")),
            Some(_) if self.purge => Decision::new(Action::Delete, format!("delete {path} with its contents (purge)")),
            Some(_) if self.created => Decision::new(Action::Delete, format!("delete {path} if empty (cairn made it)")),
            Some(_) => Decision::noop(format!("{path} kept: cairn did not make it (set purge = true to delete it)")),
        }
    }

    async fn apply(&self, _orphan: &Orphan, transport: &dyn Transport, _decision: &Decision) -> Result<(), ApplyError> {
        let path = &self.path;
        if self.purge {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredDir {
        DesiredDir { path: "/etc/demo".into(), mode: 0o750, owner: None, group: Some("etcd".into()), purge: false }
    }

    fn observed(kind: PathKind, mode: u32, group: &str) -> PathFact {
        PathFact { kind, mode, owner: "root".into(), group: group.into(), size: 4096, mtime: 0, sha256: None }
    }

    #[test]
    fn missing_dir_is_created_with_its_attributes() {
        let d = desired().diff_at(None);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Create, "directory does not exist"));
        assert_eq!(d.attrs.len(), 2);
    }

    #[test]
    fn matching_dir_is_a_noop() {
        let d = desired().diff_at(Some(&observed(PathKind::Dir, 0o750, "etcd")));
        assert_eq!(d, Decision::noop("directory exists with the right mode and ownership"));
    }

    #[test]
    fn drifted_mode_and_group_are_updated() {
        let d = desired().diff_at(Some(&observed(PathKind::Dir, 0o755, "root")));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "mode differs, group differs"));
    }

    #[test]
    fn file_in_the_way_is_a_conflict() {
        let d = desired().diff_at(Some(&observed(PathKind::File, 0o644, "root")));
        assert_eq!(d.action, Action::Conflict);
        assert!(d.reason.to_string().contains("a regular file"), "{}", d.reason);
    }
}
