//! `dir`: a directory with mode and (optionally) owner and group. Parents are created as needed.

use super::{Action, ApplyError, AttrChange, Decision, PathFact, PathKind, attr_changes, fix_attrs, run_checked};
use crate::spec::{Diagnostic, DirSpec, TemplateText};
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
    pub fn diff(&self, observed: Option<&PathFact>) -> Decision {
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

    /// Carries out a decision made by [`DesiredDir::diff`].
    pub async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<(), ApplyError> {
        if decision.action == Action::Create {
            run_checked(transport, &argv(&["mkdir", "-p", "--", &self.path])).await?;
        }
        let attrs: Vec<AttrChange> = decision.attrs.iter().filter(|a| a.name != "mode" || a.after.is_some()).cloned().collect();
        fix_attrs(transport, &self.path, &attrs).await
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
        let d = desired().diff(None);
        assert_eq!((d.action, d.reason.as_str()), (Action::Create, "directory does not exist"));
        assert_eq!(d.attrs.len(), 2);
    }

    #[test]
    fn matching_dir_is_a_noop() {
        let d = desired().diff(Some(&observed(PathKind::Dir, 0o750, "etcd")));
        assert_eq!(d, Decision::noop("directory exists with the right mode and ownership"));
    }

    #[test]
    fn drifted_mode_and_group_are_updated() {
        let d = desired().diff(Some(&observed(PathKind::Dir, 0o755, "root")));
        assert_eq!((d.action, d.reason.as_str()), (Action::Update, "mode differs, group differs"));
    }

    #[test]
    fn file_in_the_way_is_a_conflict() {
        let d = desired().diff(Some(&observed(PathKind::File, 0o644, "root")));
        assert_eq!(d.action, Action::Conflict);
        assert!(d.reason.contains("a regular file"), "{}", d.reason);
    }
}
