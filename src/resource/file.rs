//! `file`: a file with exact content, mode and (optionally) owner and group. Written atomically;
//! an attribute-only drift is fixed with chmod/chown without rewriting the content.

use super::batch::Staged;
use super::removal::{Orphan, Removal};
use super::{
    Action, Applied, ApplyError, AttrChange, ContentChange, Decision, HostFacts, PathFact, PathKind, Reason, Replacing, ResourceKind,
    attr_changes, attr_commands, fix_attrs, run_checked,
};
use crate::hash::sha256_hex;
use crate::spec::{ContentSource, Diagnostic, FileSpec, Kind, TemplateText};
use crate::state::manifest::{Owned, OwnedFile, OwnedFiles};
use crate::transport::{Content, FileAttrs, FileWrite, Transport, write_file_atomic};

/// Default mode of a managed file.
pub const DEFAULT_MODE: u32 = 0o644;

/// A file as it should be on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFile {
    /// Absolute path.
    pub path: String,
    /// Exact bytes.
    pub content: Vec<u8>,
    /// sha256 of `content`, hex.
    pub sha256: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner, when managed.
    pub owner: Option<String>,
    /// Group, when managed.
    pub group: Option<String>,
    /// Never show the content.
    pub sensitive: bool,
}

impl DesiredFile {
    /// Renders a `[file.*]` table for one host.
    pub fn from_spec(
        spec: &FileSpec,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let path = render(&spec.path).and_then(|p| super::check_rendered_path(p, &spec.path));
        let content = match &spec.content {
            ContentSource::Template(t) => render(t).map(String::into_bytes),
            ContentSource::Bytes { bytes, .. } => Ok(bytes.clone()),
            ContentSource::Secret(s) => Ok(s.value.expose().to_vec()),
        };
        match (path, content) {
            (Ok(path), Ok(content)) => Ok(Self::new(path, content, spec)),
            (path, content) => Err(path.err().into_iter().chain(content.err()).collect()),
        }
    }

    fn new(path: String, content: Vec<u8>, spec: &FileSpec) -> Self {
        Self {
            path,
            sha256: sha256_hex(&content),
            content,
            mode: spec.mode.map_or(DEFAULT_MODE, |m| m.0),
            owner: spec.owner.as_ref().map(|o| o.value.clone()),
            group: spec.group.as_ref().map(|g| g.value.clone()),
            sensitive: spec.sensitive,
        }
    }

    /// Mode, owner and group to write the file with.
    fn attrs(&self) -> FileAttrs {
        FileAttrs { mode: Some(self.mode), owner: self.owner.clone(), group: self.group.clone() }
    }

    fn new_attrs(&self) -> Vec<AttrChange> {
        let mut attrs = vec![
            AttrChange::new("mode", None, Some(format!("{:04o}", self.mode))),
            AttrChange::new("size", None, Some(format!("{} bytes", self.content.len()))),
        ];
        if let Some(o) = &self.owner {
            attrs.push(AttrChange::new("owner", None, Some(o.clone())));
        }
        if let Some(g) = &self.group {
            attrs.push(AttrChange::new("group", None, Some(g.clone())));
        }
        attrs
    }

    /// Decides what to do given what is at the path.
    pub fn diff_at(&self, observed: Option<&PathFact>) -> Decision {
        let Some(observed) = observed else {
            let mut d = Decision::new(Action::Create, "file does not exist");
            d.content = Some(ContentChange::FromEmpty);
            d.attrs = self.new_attrs();
            return d;
        };
        match observed.kind {
            PathKind::File => {}
            PathKind::Symlink => {
                let mut d = Decision::new(Action::Replace, "path is a symbolic link; it will be replaced by the file");
                d.content = Some(ContentChange::FromEmpty);
                d.attrs = self.new_attrs();
                return d;
            }
            other => {
                return Decision::new(
                    Action::Conflict,
                    format!("path is {}; cairn will not remove it to write a file there", other.describe()),
                );
            }
        }
        let attrs = attr_changes(observed, self.mode, self.owner.as_deref(), self.group.as_deref());
        let content_differs = observed.sha256.as_deref() != Some(self.sha256.as_str());
        if !content_differs && attrs.is_empty() {
            return Decision::noop("content, mode and ownership match");
        }
        let mut reasons = Vec::new();
        if content_differs {
            reasons.push("content differs".to_string());
        }
        reasons.extend(attrs.iter().map(|a| format!("{} differs", a.name)));
        let mut d = Decision::new(Action::Update, reasons.join(", "));
        if content_differs {
            d.content = Some(ContentChange::FetchOld { path: self.path.clone() });
            let before = observed.sha256.as_deref().map(short_hash);
            d.attrs.push(AttrChange::digest("sha256", before, Some(short_hash(&self.sha256))));
        }
        d.attrs.extend(attrs);
        d
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredFile {
    fn kind(&self) -> Kind {
        Kind::File
    }

    fn paths(&self) -> Vec<&str> {
        vec![self.path.as_str()]
    }

    fn sensitive(&self) -> bool {
        self.sensitive
    }

    /// Its path; its old content comes back with the probe for the diff, unless sensitive.
    fn add_to_probe(&self, probe: &mut super::ProbeRequest) {
        probe.paths.insert(self.path.clone());
        if !self.sensitive {
            probe.old_texts.insert(self.path.clone(), self.sha256.clone());
        }
    }

    fn new_text(&self) -> Option<&[u8]> {
        (!self.sensitive).then_some(self.content.as_slice())
    }

    fn diff(&self, facts: &HostFacts) -> Decision {
        self.diff_at(facts.path(&self.path))
    }

    fn owned(&self, _created: bool) -> Option<Owned> {
        Some(owned_files([(self.path.as_str(), (!self.sensitive).then_some(self.sha256.as_str()))]))
    }

    fn requires_users(&self) -> Vec<&str> {
        self.owner.iter().chain(&self.group).map(String::as_str).collect()
    }

    fn replaceable(&self) -> bool {
        true
    }

    /// The content written again (with mode and ownership), whatever is there.
    fn replaced(&self, mut decision: Decision) -> Decision {
        if decision.content.is_none() {
            decision.content = Some(ContentChange::FetchOld { path: self.path.clone() });
        }
        decision.action = Action::Update;
        decision.reason = Reason::Replace(Replacing::Rewrite);
        decision
    }

    /// Carries out a decision made by [`DesiredFile::diff_at`].
    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError> {
        if decision.content.is_some() {
            write_file_atomic(transport, &self.path, Content::Bytes(&self.content), &self.attrs()).await?;
        } else {
            fix_attrs(transport, &self.path, &decision.attrs).await?;
        }
        Ok(Applied::plain())
    }

    /// A content change is one file of its wave's batched write; an attribute-only fix is a
    /// chmod/chown among the wave's batched commands (the content is not rewritten).
    async fn stage(&self, decision: &Decision) -> Result<Option<Staged>, ApplyError> {
        if decision.content.is_none() {
            return Ok(Some(Staged::commands(attr_commands(&self.path, &decision.attrs))));
        }
        let file = FileWrite { path: self.path.clone(), content: self.content.clone().into(), attrs: self.attrs() };
        Ok(Some(Staged { files: vec![file], ..Staged::default() }))
    }
}

/// What a kind that writes files owns: each path, with the sha256 of what cairn wrote when it
/// may be recorded (never for secrets or content made at apply).
pub(crate) fn owned_files<'a>(files: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Owned {
    let files = files.into_iter().map(|(path, sha256)| OwnedFile { path: path.to_string(), sha256: sha256.map(str::to_string) });
    Owned::Files(OwnedFiles { files: files.collect(), dirs: Vec::new() })
}

/// The probe query listing folder `dir` (what is in it decides whether removing it is possible).
fn list_dir(dir: &str) -> Vec<String> {
    ["ls", "-A", "--", dir].map(str::to_string).to_vec()
}

/// Files leave with the spec (`file`, and the files of `binary` and `cert`): deleted, saying
/// which were edited on the host since cairn wrote them; then the folders cairn made for them,
/// deepest first, each when nothing else is in it (a kept folder is named, with what it holds).
#[async_trait::async_trait]
impl Removal for OwnedFiles {
    fn rank(&self) -> u8 {
        2
    }

    fn add_to_probe(&self, orphan: &Orphan, probe: &mut super::ProbeRequest) {
        probe.queries.extend(self.dirs.iter().filter(|d| !orphan.claimed.contains(d)).map(|d| list_dir(d)));
    }

    fn diff(&self, orphan: &Orphan, facts: &HostFacts) -> Decision {
        let files = self.remove_files(orphan, facts);
        let (gone, kept) = self.remove_dirs(orphan, facts);
        let mut parts: Vec<String> = files.into_iter().collect();
        if !gone.is_empty() {
            parts.push(format!("delete the folders cairn made: {}", gone.join(", ")));
        }
        let kept: Vec<String> = kept.into_iter().map(|(dir, holds)| format!("keep {dir}: it holds {}", holds.join(", "))).collect();
        if parts.is_empty() {
            return if kept.is_empty() {
                Decision::noop("already absent")
            } else {
                Decision::noop(format!("already absent; {}", kept.join("; ")))
            };
        }
        parts.extend(kept);
        Decision::new(Action::Delete, parts.join("; "))
    }

    async fn apply(&self, orphan: &Orphan, transport: &dyn Transport, _decision: &Decision) -> Result<(), ApplyError> {
        let unclaimed = |p: &&str| !orphan.claimed.iter().any(|c| c == p);
        let files: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).filter(unclaimed).collect();
        if !files.is_empty() {
            let mut cmd = vec!["rm".to_string(), "-f".into(), "--".into()];
            cmd.extend(files.into_iter().map(str::to_string));
            run_checked(transport, &cmd).await?;
        }
        let mut dirs: Vec<&str> = self.dirs.iter().map(String::as_str).filter(unclaimed).collect();
        // Deepest first: a folder is empty only once the ones inside it are gone.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        if !dirs.is_empty() {
            let mut cmd = vec!["rmdir".to_string(), "--ignore-fail-on-non-empty".into(), "--".into()];
            cmd.extend(dirs.into_iter().map(str::to_string));
            run_checked(transport, &cmd).await?;
        }
        Ok(())
    }
}

impl OwnedFiles {
    /// The removal's words for its files still on the host (`delete …`, and which were edited).
    fn remove_files(&self, orphan: &Orphan, facts: &HostFacts) -> Option<String> {
        let present: Vec<&OwnedFile> = self
            .files
            .iter()
            .filter(|f| !orphan.claimed.contains(&f.path))
            .filter(|f| facts.path(&f.path).is_some_and(|p| matches!(p.kind, PathKind::File | PathKind::Symlink)))
            .collect();
        if present.is_empty() {
            return None;
        }
        let edited: Vec<&str> = present
            .iter()
            .filter(|f| f.sha256.is_some() && facts.path(&f.path).and_then(|p| p.sha256.as_ref()) != f.sha256.as_ref())
            .map(|f| f.path.as_str())
            .collect();
        let what = present.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", ");
        let mut reason = format!("delete {what}");
        if !edited.is_empty() {
            reason.push_str(&format!(" (changed on the host since cairn wrote it: {})", edited.join(", ")));
        }
        Some(reason)
    }

    /// The folders cairn made that are still there: those that will be empty once this removal
    /// is done (deepest first), and those kept, each with what else it holds.
    fn remove_dirs(&self, orphan: &Orphan, facts: &HostFacts) -> (Vec<String>, Vec<(String, Vec<String>)>) {
        let mine = |p: &str| self.files.iter().any(|f| f.path == p) || self.dirs.iter().any(|d| d == p);
        let mut dirs: Vec<&String> = self
            .dirs
            .iter()
            .filter(|d| !orphan.claimed.contains(d))
            .filter(|d| facts.path(d).is_some_and(|p| p.kind == PathKind::Dir))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        let (mut gone, mut kept) = (Vec::new(), Vec::new());
        for dir in dirs {
            let listed = facts.queries.get(&list_dir(dir)).filter(|q| q.status == 0);
            let others: Vec<String> = match listed {
                Some(q) => q
                    .stdout
                    .lines()
                    .filter(|name| !name.is_empty() && !mine(&format!("{}/{name}", dir.trim_end_matches('/'))))
                    .map(str::to_string)
                    .collect(),
                None => vec!["what it holds could not be listed".to_string()],
            };
            if others.is_empty() {
                gone.push(dir.clone());
            } else {
                kept.push((dir.clone(), others));
            }
        }
        (gone, kept)
    }
}

fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(content: &str) -> DesiredFile {
        DesiredFile {
            path: "/etc/demo/motd".into(),
            content: content.as_bytes().to_vec(),
            sha256: sha256_hex(content.as_bytes()),
            mode: 0o644,
            owner: Some("root".into()),
            group: None,
            sensitive: false,
        }
    }

    fn observed(content: &str, mode: u32, owner: &str) -> PathFact {
        PathFact {
            kind: PathKind::File,
            mode,
            owner: owner.into(),
            group: "adm".into(),
            size: content.len() as u64,
            mtime: 0,
            sha256: Some(sha256_hex(content.as_bytes())),
        }
    }

    #[test]
    fn missing_file_is_created() {
        let d = desired("hi\n").diff_at(None);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Create, "file does not exist"));
        assert_eq!(d.content, Some(ContentChange::FromEmpty));
    }

    #[test]
    fn matching_file_is_a_noop_with_reason() {
        let d = desired("hi\n").diff_at(Some(&observed("hi\n", 0o644, "root")));
        assert_eq!(d, Decision::noop("content, mode and ownership match"));
    }

    #[test]
    fn unmanaged_group_is_not_reported() {
        // group is None in the spec, "adm" on the host: not a change.
        assert_eq!(desired("x").diff_at(Some(&observed("x", 0o644, "root"))).action, Action::NoOp);
    }

    #[test]
    fn content_change_fetches_old_content_for_the_diff() {
        let d = desired("new\n").diff_at(Some(&observed("old\n", 0o644, "root")));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "content differs"));
        assert_eq!(d.content, Some(ContentChange::FetchOld { path: "/etc/demo/motd".into() }));
        assert_eq!(d.attrs[0].name, "sha256");
    }

    #[test]
    fn mode_and_owner_drift_is_fixed_without_rewriting() {
        let d = desired("x").diff_at(Some(&observed("x", 0o600, "nobody")));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "mode differs, owner differs"));
        assert_eq!(d.content, None);
        assert_eq!(
            d.attrs,
            vec![
                AttrChange::new("mode", Some("0600".into()), Some("0644".into())),
                AttrChange::new("owner", Some("nobody".into()), Some("root".into())),
            ]
        );
    }

    #[test]
    fn ignored_attributes_are_accepted_drift() {
        let ignore = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mode_only = desired("x").diff_at(Some(&observed("x", 0o600, "root")));
        let d = mode_only.ignoring(&ignore(&["mode"]));
        assert_eq!(d, Decision::noop(crate::resource::Reason::OnlyIgnoredDrift { ignored: ignore(&["mode"]) }));
        assert_eq!(d.reason.to_string(), "matches the spec apart from drift it ignores (mode)");
        let both = desired("new\n").diff_at(Some(&observed("old\n", 0o600, "root"))).ignoring(&ignore(&["mode"]));
        assert_eq!((both.action, both.reason.to_string().as_str()), (Action::Update, "content differs (ignoring mode)"));
        assert!(both.attrs.iter().all(|a| a.name != "mode"));
        let content = desired("new\n").diff_at(Some(&observed("old\n", 0o644, "root"))).ignoring(&ignore(&["content"]));
        assert_eq!(content.action, Action::NoOp);
        // Creation is untouched: something new gets every attribute of the spec.
        assert_eq!(desired("x").diff_at(None).ignoring(&ignore(&["mode", "content"])).action, Action::Create);
    }

    #[test]
    fn directory_in_the_way_is_a_conflict() {
        let mut o = observed("", 0o755, "root");
        o.kind = PathKind::Dir;
        let d = desired("x").diff_at(Some(&o));
        assert_eq!(d.action, Action::Conflict);
        assert!(d.reason.to_string().contains("a directory"));
    }

    #[test]
    fn symlink_is_replaced() {
        let mut o = observed("", 0o777, "root");
        o.kind = PathKind::Symlink;
        assert_eq!(desired("x").diff_at(Some(&o)).action, Action::Replace);
    }
}
