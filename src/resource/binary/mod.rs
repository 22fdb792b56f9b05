//! `binary`: release files fetched by url, verified by sha256, and pushed to hosts.
//!
//! A `[binary.*]` either extracts members of an archive (`extract`, top folder stripped) to
//! absolute destinations, or installs the downloaded file as it is (`path`). Every destination is
//! a managed path. The url is fetched on the machine running cairn into a cache keyed by sha256
//! ([`fetch`]), at most once per run however many hosts need it, and unpacked there
//! ([`archive`]); hosts receive the cached files streamed over their transport.
//!
//! What the plan needs: for a bare file, the spec's sha256 *is* the desired sha256 of the
//! installed file, so planning downloads nothing, and apply fetches only if some host needs the
//! file. For an archive, the desired sha256 of each member is unknown until the archive has been
//! fetched once; so planning fetches the archive into the cache when it is not there yet (once
//! per machine, since the cache is keyed by the archive's sha256), reads the members' sha256s,
//! and compares them with what the host probe found. A host whose files already hash right gets
//! nothing.

pub mod archive;
pub mod fetch;

use std::path::Path;

use super::batch::Staged;
use super::{
    Action, Applied, ApplyError, AttrChange, Decision, HostFacts, PathKind, ProbeRequest, Reason, Replacing, ResourceKind, attr_changes,
    attr_commands, check_rendered_path,
};
use crate::spec::{BinaryFiles, BinarySpec, Diagnostic, Kind, Located, TemplateText};
use crate::state::manifest::Owned;
use crate::transport::{FileAttrs, FileContent, FileWrite, Transport};
use fetch::{ArtifactSlot, FetchError};

/// Default mode of installed files.
pub const DEFAULT_MODE: u32 = 0o755;

/// One installed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The archive member it comes from (`None`: the downloaded file itself).
    pub member: Option<String>,
    /// Absolute path on the host.
    pub path: String,
    /// The archive may lack it (then it is not installed).
    pub optional: bool,
}

/// A binary as it should be on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBinary {
    /// Where it is fetched from (rendered).
    pub url: String,
    /// sha256 of what the url serves.
    pub sha256: String,
    /// What is installed where, in spec order.
    pub targets: Vec<Target>,
    /// Mode of every installed file.
    pub mode: u32,
    /// Owner, when managed.
    pub owner: Option<String>,
    /// Group, when managed.
    pub group: Option<String>,
    /// Run by the probe to show the installed version.
    pub version_command: Option<Vec<String>>,
    /// The fetch-once handle shared by every instance with this sha256.
    pub artifact: ArtifactSlot,
}

/// The spec's sha256, rendered when it is a template (e.g. a module input) and checked then:
/// 64 hex digits, upper case and a `sha256:` prefix accepted.
fn render_sha256(sum: &Located<String>, render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>) -> Result<String, Diagnostic> {
    if !(sum.value.contains("{{") || sum.value.contains("{%")) {
        return Ok(sum.value.clone());
    }
    let text = TemplateText { text: sum.value.clone(), span: sum.span.clone(), name: "sha256".to_string() };
    let rendered = render(&text)?;
    let hex = rendered.trim().to_ascii_lowercase();
    let hex = hex.strip_prefix("sha256:").unwrap_or(&hex).to_string();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(Diagnostic::at(&sum.span, format!("`sha256` rendered from `{}` is {rendered:?}, not 64 hex digits", sum.value))
            .with_help("copy the sha256 from the release's checksum file (e.g. `sha256sum FILE`): 64 characters 0-9a-f"))
    }
}

impl DesiredBinary {
    /// Renders a `[binary.*]` table for one host.
    pub fn from_spec(
        spec: &BinarySpec,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let url = render(&spec.url).and_then(|u| check_url(u, &spec.url)).map_err(|e| errors.push(e)).ok();
        let mut targets = Vec::new();
        match &spec.files {
            BinaryFiles::Path(p) => match render(p).and_then(|r| check_rendered_path(r, p)) {
                Ok(path) => targets.push(Target { member: None, path, optional: false }),
                Err(e) => errors.push(e),
            },
            BinaryFiles::Extract(list) => {
                for (member, dest) in list {
                    match render(dest).and_then(|r| check_rendered_path(r, dest)) {
                        Ok(path) if targets.iter().any(|t: &Target| t.path == path) => errors.push(
                            Diagnostic::at(&dest.span, format!("two members of `extract` are installed at {path}"))
                                .with_help("give every member its own destination"),
                        ),
                        Ok(path) => {
                            let optional = spec.optional.contains(&member.value);
                            targets.push(Target { member: Some(member.value.clone()), path, optional });
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        let mut version_command = None;
        if let Some(words) = &spec.version_command {
            let mut argv = Vec::new();
            for w in words {
                match render(w) {
                    Ok(s) if s.is_empty() || s.contains(['\t', '\n', '\r', '\0', '\u{1f}']) => errors.push(
                        Diagnostic::at(
                            &w.span,
                            format!("`version_command` argument {s:?} (after rendering) is empty or has control characters"),
                        )
                        .with_help("each argument must be non-empty, without tabs or newlines"),
                    ),
                    Ok(s) => argv.push(s),
                    Err(e) => errors.push(e),
                }
            }
            version_command = Some(argv);
        }
        let sha256 = render_sha256(&spec.sha256, render).map_err(|e| errors.push(e)).ok();
        let (Some(url), Some(sha256)) = (url, sha256) else { return Err(errors) };
        if !errors.is_empty() {
            return Err(errors);
        }
        let unpack = matches!(spec.files, BinaryFiles::Extract(_));
        Ok(Self {
            url,
            artifact: ArtifactSlot::new(&spec.cache_dir, &sha256, unpack),
            sha256,
            targets,
            mode: spec.mode.map_or(DEFAULT_MODE, |m| m.0),
            owner: spec.owner.as_ref().map(|o| o.value.clone()),
            group: spec.group.as_ref().map(|g| g.value.clone()),
            version_command,
        })
    }

    /// Whether the url is an archive whose members are installed.
    pub fn is_archive(&self) -> bool {
        self.targets.iter().any(|t| t.member.is_some())
    }

    /// The desired sha256 of every target, from the spec (bare file) or the fetched archive;
    /// `None` for an optional member this archive does not have.
    fn wanted(&self) -> Result<Vec<Option<String>>, FetchError> {
        if !self.is_archive() {
            return Ok(vec![Some(self.sha256.clone()); self.targets.len()]);
        }
        match self.artifact.get() {
            None => Err(FetchError::NotFetched { url: self.url.clone() }),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(a)) => self
                .targets
                .iter()
                .map(|t| match a.member(t.member.as_deref()) {
                    Ok(m) => Ok(Some(m.sha256)),
                    Err(_) if t.optional => Ok(None),
                    Err(e) => Err(e),
                })
                .collect(),
        }
    }

    /// The pure decision, given the desired sha256 of every target (or why it is unknown).
    pub fn decide<'a>(&'a self, wanted: Result<Vec<Option<String>>, FetchError>, facts: &HostFacts) -> Decision {
        let wanted = match wanted {
            Ok(w) => w,
            Err(why) => return Decision::new(Action::Conflict, why.to_string()),
        };
        let many = self.targets.len() > 1;
        let mut attrs = Vec::new();
        // (what, paths): "sha256 differs" on these paths, in the order first seen.
        let mut reasons: Vec<(String, Vec<&str>)> = Vec::new();
        let mut reason = |what: &str, path: &'a str| match reasons.iter_mut().find(|(w, _)| w == what) {
            Some((_, paths)) => paths.push(path),
            None => reasons.push((what.to_string(), vec![path])),
        };
        let mut conflicts = Vec::new();
        let mut missing = 0;
        // An optional member this release lacks is not installed (nor looked at).
        let present: Vec<(&Target, &String)> = self.targets.iter().zip(&wanted).filter_map(|(t, w)| w.as_ref().map(|w| (t, w))).collect();
        for &(t, want) in &present {
            let name = |attr: &str| self.attr_name(&t.path, attr);
            let Some(observed) = facts.path(&t.path) else {
                missing += 1;
                reason("no file", &t.path);
                attrs.push(AttrChange::new(&name("sha256"), None, Some(short_hash(want))));
                attrs.push(AttrChange::new(&name("mode"), None, Some(format!("{:04o}", self.mode))));
                continue;
            };
            match observed.kind {
                PathKind::File => {}
                PathKind::Symlink => {
                    reason("symbolic link in the way", &t.path);
                    attrs.push(AttrChange::new(&name("sha256"), Some("(symbolic link)".into()), Some(short_hash(want))));
                    continue;
                }
                other => {
                    conflicts.push(format!("{} is {}; cairn will not remove it to install a file there", t.path, other.describe()));
                    continue;
                }
            }
            if observed.sha256.as_deref() != Some(want.as_str()) {
                reason("sha256 differs", &t.path);
                attrs.push(AttrChange::new(&name("sha256"), observed.sha256.as_deref().map(short_hash), Some(short_hash(want))));
            }
            for a in attr_changes(observed, self.mode, self.owner.as_deref(), self.group.as_deref()) {
                reason(&format!("{} differs", a.name), &t.path);
                attrs.push(AttrChange { name: name(&a.name), ..a });
            }
        }
        if !conflicts.is_empty() {
            return Decision::new(Action::Conflict, conflicts.join("; "));
        }
        if reasons.is_empty() {
            return Decision::noop("sha256 matches");
        }
        let mut d = if missing == present.len() {
            Decision::new(Action::Create, if many { "files do not exist" } else { "file does not exist" })
        } else {
            let text: Vec<String> =
                reasons.iter().map(|(what, paths)| if many { format!("{what} on {}", paths.join(", ")) } else { what.clone() }).collect();
            Decision::new(Action::Update, text.join("; "))
        };
        if let Some(cmd) = &self.version_command {
            let before = facts.versions.get(cmd).cloned();
            d.attrs.push(AttrChange::new("version", before, Some(format!("from {}", url_file_name(&self.url)))));
        }
        d.attrs.extend(attrs);
        d
    }

    /// The attribute name for `attr` of the file at `path` ("sha256", or "/usr/bin/x sha256"
    /// when the resource installs several files).
    fn attr_name(&self, path: &str, attr: &str) -> String {
        if self.targets.len() > 1 { format!("{path} {attr}") } else { attr.to_string() }
    }

    /// The attribute changes of a decision that concern the file at `path`, by bare name.
    fn attrs_of(&self, path: &str, attrs: &[AttrChange]) -> Vec<AttrChange> {
        let prefix = format!("{path} ");
        attrs
            .iter()
            .filter(|a| a.name != "version")
            .filter_map(|a| {
                let bare = if self.targets.len() > 1 { a.name.strip_prefix(&prefix)? } else { a.name.as_str() };
                Some(AttrChange { name: bare.to_string(), ..a.clone() })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredBinary {
    fn kind(&self) -> Kind {
        Kind::Binary
    }

    fn paths(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.path.as_str()).collect()
    }

    fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.paths.extend(self.paths().into_iter().map(str::to_string));
        if let Some(cmd) = &self.version_command {
            probe.versions.insert(cmd.clone());
        }
    }

    fn owned(&self, _created: bool) -> Option<Owned> {
        Some(super::file::owned_files(self.paths().into_iter().map(|p| (p, None))))
    }

    /// Fetches what `diff` needs to know the desired sha256s: the archive, for `extract`
    /// (nothing for a bare file, whose sha256 is the spec's). Once per run; the outcome, good or
    /// bad, is kept for `diff` to read.
    async fn prepare(&self) {
        if self.is_archive() {
            self.artifact.resolve(&self.url).await;
        }
    }

    /// Decides what to do given what the probe found.
    fn diff(&self, facts: &HostFacts) -> Decision {
        self.decide(self.wanted(), facts)
    }

    fn replaceable(&self) -> bool {
        true
    }

    /// Every file installed again from the url.
    fn replaced(&self, mut decision: Decision) -> Decision {
        for t in &self.targets {
            let name = self.attr_name(&t.path, "sha256");
            if !decision.attrs.iter().any(|a| a.name == name) {
                decision.attrs.push(AttrChange::new(&name, Some("as wanted".into()), Some("installed again".into())));
            }
        }
        decision.action = Action::Update;
        decision.reason = Reason::Replace(Replacing::Reinstall);
        decision
    }

    /// The files whose content differs join their wave's batched write, streamed from the
    /// download cache (fetched now if this run has not yet); an attribute-only fix is a
    /// chmod/chown among the wave's batched commands.
    async fn stage(&self, decision: &Decision) -> Result<Option<Staged>, ApplyError> {
        let fattrs = FileAttrs { mode: Some(self.mode), owner: self.owner.clone(), group: self.group.clone() };
        let mut staged = Staged::default();
        for t in &self.targets {
            let attrs = self.attrs_of(&t.path, &decision.attrs);
            if attrs.iter().any(|a| a.name == "sha256") {
                let artifact = self.artifact.resolve(&self.url).await.clone().map_err(|e| ApplyError::Failed(e.to_string()))?;
                let local = artifact.member(t.member.as_deref()).map_err(|e| ApplyError::Failed(e.to_string()))?;
                staged.files.push(FileWrite { path: t.path.clone(), content: FileContent::Local(local.path), attrs: fattrs.clone() });
            } else {
                staged.commands.extend(attr_commands(&t.path, &attrs));
            }
        }
        Ok(Some(staged))
    }

    /// Carries out a decision made by [`DesiredBinary::diff`] on its own: what
    /// [`DesiredBinary::stage`] stages, written as a batch of one.
    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError> {
        let staged = self.stage(decision).await?.unwrap_or_default();
        super::batch::run_alone(transport, &staged).await?;
        Ok(Applied::plain())
    }
}

/// Checks a rendered url's scheme (templated urls are only known now).
fn check_url(url: String, template: &TemplateText) -> Result<String, Diagnostic> {
    if !crate::spec::binary_url_scheme_ok(&url) {
        return Err(crate::spec::binary_bad_scheme(&url, &template.span));
    }
    if url.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("file://")) {
        let rest = &url[7..];
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(Diagnostic::at(&template.span, format!("file url `{url}` does not name an absolute path"))
                .with_help("write file:///absolute/path (three slashes)"));
        }
    }
    Ok(url)
}

/// The last path segment of a url, for the plan ("etcd-v3.5.22-linux-amd64.tar.gz").
pub fn url_file_name(url: &str) -> &str {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    Path::new(no_query).file_name().and_then(|n| n.to_str()).unwrap_or(url)
}

fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

#[cfg(test)]
mod tests;
