//! `unit`: a systemd unit. Its unit file (when the spec gives content) is written atomically to
//! `/etc/systemd/system/<name>`, `daemon-reload` runs only when a unit file changed, the unit is
//! enabled or disabled, started or stopped, and restarted when a resource in `restart_on` changed
//! in this apply or when one of their files is newer than the running service
//! (`ActiveEnterTimestamp`), so a restart lost by an earlier failed run is never forgotten.
//!
//! A unit without `content` that systemd has not loaded (`LoadState=not-found`) is loaded with a
//! daemon-reload when its file is on the host (the probe stats `NAME` in every [`UNIT_DIRS`]) or
//! a `restart_on` resource on the host that changes in this run writes under one of them;
//! otherwise it is refused.
//!
//! The probe's share is one `systemctl show` for every unit of the host ([`parse_show`] reads its
//! blank-line-separated blocks) plus the unit file's stat and sha256 through the path probe.
//! After a start or restart the unit must be active; a failure carries the last journal lines.
//! A start systemd failed for a cause of its own, before the service ran (219/CGROUP, see
//! [`transient_start_failure`]), is tried again, and the outcome says so ([`start_unit`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::batch::Staged;
use super::probe::ProbeError;
use super::removal::{Claims, Orphan, Removal};
use super::{
    Action, Applied, ApplyError, AttrChange, ContentChange, Decision, HostFacts, PathFact, PathKind, ProbeRequest, Reason, Replacing,
    ResourceKind, attr_changes, fix_attrs, run_checked,
};
use crate::hash::sha256_hex;
use crate::spec::{ContentSource, Diagnostic, Kind, ResourceId, StartMode, TemplateText, UnitSpec, UnitState};
use crate::state::manifest::{Owned, OwnedUnit};
use crate::transport::{FileAttrs, FileWrite, Stdin, Transport, argv};

/// Where unit files are written.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// Where systemd finds unit files (system instance), most specific first: a unit the spec gives
/// no content for may have its file in any of them (a package's, another resource's).
pub const UNIT_DIRS: [&str; 4] = [UNIT_DIR, "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// Properties the probe asks `systemctl show` for.
pub const SHOW_PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,UnitFileState,ActiveEnterTimestamp,FragmentPath,NeedDaemonReload";

/// Attribute names a unit decision uses; `apply` acts on them.
const ATTR_ENABLED: &str = "enabled";
const ATTR_STATE: &str = "state";
const ATTR_RELOAD: &str = "daemon-reload";

/// `daemon-reload`'s `before` when the unit is not loaded (`LoadState=not-found`) and a reload
/// loads it; `apply` then checks it did.
const NOT_LOADED: &str = "not loaded";

/// A path of a `restart_on` resource whose changes restart the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedPath {
    /// The resource that manages it.
    pub by: ResourceId,
    /// The path on the host.
    pub path: String,
}

/// A unit as it should be on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUnit {
    /// Unit name with its type suffix.
    pub name: String,
    /// `/etc/systemd/system/<name>`.
    pub path: String,
    /// The unit file's bytes, when cairn manages the file.
    pub content: Option<Vec<u8>>,
    /// sha256 of `content`.
    pub sha256: Option<String>,
    /// Enabled at boot.
    pub enabled: bool,
    /// Running or stopped.
    pub state: UnitState,
    /// Resources whose changes restart the unit.
    pub restart_on: Vec<ResourceId>,
    /// Certificates of `restart_on` the service re-reads by itself (see
    /// [`ResourceKind::picked_up_live`]).
    pub reloads_certificates: Vec<ResourceId>,
    /// How instances on several hosts start.
    pub start: StartMode,
    /// Seconds to wait for a non-blocking start.
    pub start_timeout_secs: u64,
    /// Paths of the `restart_on` resources on this host (filled in by the graph).
    pub watched: Vec<WatchedPath>,
    /// Restart a running unit in batches gated on a check: (batch size, the check).
    pub rolling: Option<(usize, Option<ResourceId>)>,
}

/// What `systemctl show` said about one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFact {
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`.
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub active_state: String,
    /// e.g. `running`, `dead`, `exited`, `auto-restart`.
    pub sub_state: String,
    /// `enabled`, `disabled`, `static`, `masked`, … (empty when there is no unit file).
    pub unit_file_state: String,
    /// When the unit last became active, seconds since the epoch; `None` if never.
    pub active_enter: Option<i64>,
    /// The unit file systemd loaded.
    pub fragment_path: String,
    /// The unit file changed on disk since systemd loaded it.
    pub need_daemon_reload: bool,
}

impl UnitFact {
    fn is_active(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "reloading")
    }
}

/// A unit decision being put together from its parts (file, enablement, state).
struct Draft {
    action: Action,
    reasons: Vec<String>,
    attrs: Vec<AttrChange>,
    content: Option<ContentChange>,
    /// The unit file is (re)written.
    file_written: bool,
    /// The unit is not loaded and a daemon-reload will load it (the spec gives no content).
    load: Option<Load>,
}

impl Default for Draft {
    fn default() -> Self {
        Self { action: Action::NoOp, reasons: Vec::new(), attrs: Vec::new(), content: None, file_written: false, load: None }
    }
}

/// Where the file of a unit that is not loaded comes from.
enum Load {
    /// It is on the host already (the probe saw it at this path).
    Found(String),
    /// `restart_on` resources on this host write under a unit directory (their ids).
    WrittenBy(Vec<String>),
}

impl DesiredUnit {
    /// Renders a `[unit.*]` table for one host.
    pub fn from_spec(
        spec: &UnitSpec,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let content = match &spec.content {
            None => None,
            Some(ContentSource::Template(t)) => Some(render(t).map_err(|d| vec![d])?.into_bytes()),
            Some(ContentSource::Bytes { bytes, .. }) => Some(bytes.clone()),
            // The loader refuses a secret unit file.
            Some(ContentSource::Secret(_)) => None,
        };
        Ok(Self {
            name: spec.name.value.clone(),
            path: format!("{UNIT_DIR}/{}", spec.name.value),
            sha256: content.as_deref().map(sha256_hex),
            content,
            enabled: spec.enabled,
            state: spec.state,
            restart_on: spec.restart_on.iter().map(|r| r.value.clone()).collect(),
            reloads_certificates: spec.reloads_certificates.iter().map(|r| r.value.clone()).collect(),
            start: spec.start,
            start_timeout_secs: spec.start_timeout_secs,
            watched: Vec::new(),
            rolling: spec.rolling.as_ref().map(|r| (r.batch.max(1) as usize, r.wait_for.as_ref().map(|w| w.value.clone()))),
        })
    }

    /// The paths whose mtime the probe must report: the unit file and the watched paths.
    pub fn probe_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.watched.iter().map(|w| w.path.as_str()).collect();
        if self.content.is_some() {
            paths.push(&self.path);
        }
        paths
    }

    /// Where the unit's file may be when the spec gives no content: `NAME` in each of
    /// [`UNIT_DIRS`]. The probe stats them, so a unit whose file is there but that systemd has
    /// not loaded yet is loaded with a daemon-reload instead of being refused.
    pub fn candidate_paths(&self) -> Vec<String> {
        if self.content.is_some() {
            return Vec::new();
        }
        UNIT_DIRS.iter().map(|dir| format!("{dir}/{}", self.name)).collect()
    }

    /// The first candidate path the probe found a file (or symbolic link) at.
    fn unit_file_on_host(&self, facts: &HostFacts) -> Option<String> {
        self.candidate_paths().into_iter().find(|p| facts.path(p).is_some_and(|f| matches!(f.kind, PathKind::File | PathKind::Symlink)))
    }

    /// The `restart_on` resources on this host that manage a path under a unit directory: they
    /// may write this unit's file.
    fn unit_file_writers(&self) -> Vec<&ResourceId> {
        let mut writers: Vec<&ResourceId> = Vec::new();
        for w in &self.watched {
            let under = UNIT_DIRS.iter().any(|dir| w.path.strip_prefix(dir).is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')));
            if under && !writers.contains(&&w.by) {
                writers.push(&w.by);
            }
        }
        writers
    }

    /// Names of watched files (and the unit file) modified after the unit became active.
    /// Directories do not count: their mtime moves whenever anything (the service itself, say)
    /// adds or removes an entry, and cairn's changes to them (mode, owner) do not move it.
    fn restart_pending(&self, facts: &HostFacts, unit: &UnitFact, file_written: bool) -> Vec<String> {
        let Some(since) = unit.active_enter else { return Vec::new() };
        let newer = |p: &str| facts.path(p).is_some_and(|f: &PathFact| f.kind == PathKind::File && f.mtime > since);
        let mut names: Vec<String> = Vec::new();
        let own = (self.content.is_some() && !file_written).then_some(self.path.as_str());
        for path in self.watched.iter().map(|w| w.path.as_str()).chain(own) {
            let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(path).to_string();
            if newer(path) && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    async fn systemctl(&self, transport: &dyn Transport, args: &[&str]) -> Result<(), ApplyError> {
        let mut cmd = vec!["systemctl"];
        cmd.extend_from_slice(args);
        let out = transport.run(&argv(&cmd), Stdin::Null).await?;
        if out.success() { Ok(()) } else { Err(ApplyError::Failed(format!("`{}` failed: {}", cmd.join(" "), out.error_text()))) }
    }

    /// Starts or restarts the unit and makes sure it is active, trying again when systemd failed
    /// the start for a cause of its own (see [`start_unit`]).
    async fn start(&self, transport: &dyn Transport, verb: &str) -> Result<Applied, ApplyError> {
        let how = match self.start {
            StartMode::Together => StartHow::NoBlock { timeout: Duration::from_secs(self.start_timeout_secs) },
            StartMode::PerHost => StartHow::Blocking,
        };
        match start_unit(transport, &self.name, verb, how).await? {
            Ok(start_retried) => Ok(Applied { start_retried }),
            Err(failed) => Err(self.failure(transport, &failed.what).await),
        }
    }

    /// An error naming the unit, with the last lines of its journal.
    async fn failure(&self, transport: &dyn Transport, what: &str) -> ApplyError {
        let journal = transport.run(&argv(&["journalctl", "-u", &self.name, "-n", "20", "--no-pager"]), Stdin::Null).await;
        let lines = match journal {
            Ok(out) if out.success() => String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
            Ok(out) => format!("(journalctl failed: {})", out.error_text()),
            Err(e) => format!("(journalctl failed: {e})"),
        };
        let lines: Vec<String> = lines.lines().map(|l| format!("    {l}")).collect();
        ApplyError::Failed(format!(
            "{} {}\n  last journal lines (journalctl -u {} -n 20 --no-pager):\n{}",
            self.name,
            what.replace('\n', " "),
            self.name,
            lines.join("\n")
        ))
    }

    /// The unit file's share of a decision (and a pending daemon-reload); `Some` when the host's
    /// state blocks the unit.
    fn diff_unit_file(&self, facts: &HostFacts, unit: &UnitFact, d: &mut Draft) -> Option<Decision> {
        if let (Some(bytes), Some(sha)) = (&self.content, &self.sha256) {
            match facts.path(&self.path) {
                None => {
                    d.action = Action::Create;
                    d.reasons.push("unit file missing".into());
                    d.content = Some(ContentChange::FromEmpty);
                    d.attrs.push(AttrChange::new("size", None, Some(format!("{} bytes", bytes.len()))));
                    d.file_written = true;
                }
                Some(f) if matches!(f.kind, PathKind::Dir | PathKind::Other) => {
                    return Some(Decision::new(
                        Action::Conflict,
                        format!("{} is {}; cairn will not remove it to write a unit file there", self.path, f.kind.describe()),
                    ));
                }
                Some(f) if f.kind == PathKind::Symlink => {
                    d.action = Action::Update;
                    d.reasons.push("unit file is a symbolic link (masked?); it will be replaced".into());
                    d.content = Some(ContentChange::FromEmpty);
                    d.file_written = true;
                }
                Some(f) if f.sha256.as_deref() != Some(sha.as_str()) => {
                    d.action = Action::Update;
                    d.reasons.push("unit file content differs".into());
                    d.content = Some(ContentChange::FetchOld { path: self.path.clone() });
                    d.attrs.push(AttrChange::digest("sha256", f.sha256.as_deref().map(short), Some(short(sha))));
                    d.file_written = true;
                }
                Some(f) => {
                    let drift = attr_changes(f, 0o644, Some("root"), Some("root"));
                    if !drift.is_empty() {
                        d.action = Action::Update;
                        d.reasons.extend(drift.iter().map(|a| format!("unit file {} differs", a.name)));
                        d.attrs.extend(drift);
                    }
                }
            }
        } else if unit.load_state == "not-found" {
            if let Some(found) = self.unit_file_on_host(facts) {
                d.load = Some(Load::Found(found));
            } else {
                let writers = self.unit_file_writers();
                if writers.is_empty() {
                    return Some(Decision::new(Action::Conflict, self.no_unit_file()));
                }
                d.load = Some(Load::WrittenBy(writers.iter().map(ToString::to_string).collect()));
            }
            return None;
        }
        if !d.file_written && unit.need_daemon_reload {
            d.action = bump(d.action);
            d.reasons.push("unit file changed on disk; daemon-reload pending".into());
            d.attrs.push(AttrChange::new(ATTR_RELOAD, Some("pending".into()), Some("done".into())));
        }
        None
    }

    /// Why a unit without content and without a unit file on the host cannot be managed.
    fn no_unit_file(&self) -> String {
        format!("{} does not exist on the host and the spec gives no content to write its unit file", self.name)
    }

    /// Puts the loading of a unit that is not loaded yet in front of the rest of the decision,
    /// when there is a rest: a unit wanted stopped and disabled needs no loading.
    fn add_load(&self, d: &mut Draft) {
        let Some(load) = d.load.take() else { return };
        if d.action == Action::NoOp {
            return;
        }
        let mut attrs = Vec::new();
        let reason = match load {
            Load::Found(path) => format!("not loaded; its unit file {path} is on the host (daemon-reload)"),
            Load::WrittenBy(writers) => {
                let writers = writers.join(", ");
                attrs.push(AttrChange::new(ATTR_UNIT_FILE, None, Some(format!("written by {writers}"))));
                format!("not loaded; {writers} writes its unit file (daemon-reload)")
            }
        };
        attrs.push(AttrChange::new(ATTR_RELOAD, Some(NOT_LOADED.into()), Some("done".into())));
        d.reasons.insert(0, reason);
        d.attrs.splice(0..0, attrs);
    }

    /// After the daemon-reload that was to load a unit: checks it is loaded now and returns its
    /// unit file state.
    async fn check_loaded(&self, transport: &dyn Transport) -> Result<String, ApplyError> {
        let out = transport.run(&argv(&["systemctl", "show", "-p", "LoadState,UnitFileState", "--", &self.name]), Stdin::Null).await?;
        if !out.success() {
            return Err(ApplyError::Failed(format!("`systemctl show {}` failed: {}", self.name, out.error_text())));
        }
        let props = properties(&String::from_utf8_lossy(&out.stdout));
        if props.get("LoadState").map(String::as_str) == Some("not-found") {
            return Err(ApplyError::Failed(format!(
                "{} is not loaded after `systemctl daemon-reload`: no unit file for it in {}; the spec gives no content to write one",
                self.name,
                UNIT_DIRS.join(", ")
            )));
        }
        Ok(props.get("UnitFileState").cloned().unwrap_or_default())
    }

    /// Enablement's share of a decision. A new unit file has no state yet: it is enabled after it
    /// is written. Returns the unit file state as judged and whether it cannot be changed.
    fn diff_enablement<'u>(&self, unit: &'u UnitFact, d: &mut Draft) -> (&'u str, bool) {
        let ufs = if d.file_written && d.action == Action::Create { "" } else { unit.unit_file_state.as_str() };
        let is_enabled = matches!(ufs, "enabled" | "enabled-runtime" | "alias");
        let fixed = matches!(ufs, "static" | "generated" | "transient" | "indirect");
        let shown = |s: &str| if s.is_empty() { None } else { Some(s.to_string()) };
        if self.enabled && !is_enabled && !fixed {
            d.action = bump(d.action);
            d.reasons.push("not enabled".into());
            d.attrs.push(AttrChange::new(ATTR_ENABLED, shown(ufs), Some("enabled".into())));
        } else if !self.enabled && is_enabled {
            d.action = bump(d.action);
            d.reasons.push("enabled, wanted disabled".into());
            d.attrs.push(AttrChange::new(ATTR_ENABLED, shown(ufs), Some("disabled".into())));
        }
        (ufs, fixed)
    }

    /// The running state's share of a decision, and restarts of a running unit. Returns whether
    /// the only change is a pending restart.
    fn diff_state(&self, facts: &HostFacts, unit: &UnitFact, d: &mut Draft) -> bool {
        let active = unit.is_active();
        let before_state = Some(unit.active_state.clone());
        match self.state {
            UnitState::Running if !active => {
                d.action = bump(d.action);
                d.reasons.push(match unit.active_state.as_str() {
                    "inactive" => "stopped, wanted running".to_string(),
                    other => format!("{other}, wanted running"),
                });
                d.attrs.push(AttrChange::new(ATTR_STATE, before_state, Some("running".into())));
            }
            UnitState::Running => {
                let pending = self.restart_pending(facts, unit, d.file_written);
                if d.file_written {
                    d.reasons.push("the running unit will be restarted".into());
                    d.attrs.push(AttrChange::new(ATTR_STATE, before_state, Some("restarted".into())));
                } else if !pending.is_empty() {
                    d.reasons.extend(pending.iter().map(|p| format!("restart pending: {p} changed after the service started")));
                    d.attrs.push(AttrChange::new(ATTR_STATE, before_state, Some("restarted".into())));
                    return true;
                }
            }
            UnitState::Stopped if active || unit.active_state == "activating" => {
                d.action = bump(d.action);
                d.reasons.push(format!("{}, wanted stopped", if active { "running" } else { "activating" }));
                d.attrs.push(AttrChange::new(ATTR_STATE, before_state, Some("stopped".into())));
            }
            UnitState::Stopped => {}
        }
        false
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredUnit {
    fn systemd_unit(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn kind(&self) -> Kind {
        Kind::Unit
    }

    /// The unit file, when cairn writes it.
    fn paths(&self) -> Vec<&str> {
        self.content.as_ref().map(|_| self.path.as_str()).into_iter().collect()
    }

    fn target(&self) -> String {
        self.name.clone()
    }

    fn new_text(&self) -> Option<&[u8]> {
        self.content.as_deref()
    }

    fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.paths.extend(self.paths().into_iter().map(str::to_string));
        probe.units.insert(self.name.clone());
        probe.paths.extend(self.probe_paths().into_iter().map(str::to_string));
        probe.paths.extend(self.candidate_paths());
        // The old unit file comes back with the probe for the diff.
        if let (Some(_), Some(sha)) = (&self.content, &self.sha256) {
            probe.old_texts.insert(self.path.clone(), sha.clone());
        }
    }

    fn owned(&self, _created: bool) -> Option<Owned> {
        Some(Owned::Unit(OwnedUnit { name: self.name.clone(), file: self.content.as_ref().map(|_| self.path.clone()) }))
    }

    fn claim(&self, id: &ResourceId, claims: &mut Claims) {
        claims.add_paths(id, self.paths());
        claims.units.entry(self.name.clone()).or_insert_with(|| id.to_string());
    }

    fn restart_triggers(&self) -> &[ResourceId] {
        &self.restart_on
    }

    fn reloads(&self) -> &[ResourceId] {
        &self.reloads_certificates
    }

    /// A running unit is restarted; a stopped one has nothing to restart.
    fn replaceable(&self) -> bool {
        self.state == UnitState::Running
    }

    /// A restart, with whatever else the diff found; a unit the diff starts is only started.
    fn replaced(&self, mut decision: Decision) -> Decision {
        if self.state == UnitState::Stopped {
            return decision;
        }
        if !decision.attrs.iter().any(|a| a.name == ATTR_STATE) {
            decision.attrs.push(AttrChange::new(ATTR_STATE, Some("active".into()), Some("restarted".into())));
        }
        if decision.action == Action::NoOp {
            decision.action = Action::Restart;
        }
        decision.reason = Reason::Replace(Replacing::Restart);
        decision
    }

    fn watch_paths(&mut self, paths: Vec<WatchedPath>) {
        self.watched = paths;
    }

    fn start_together(&self) -> bool {
        self.start == StartMode::Together
    }

    fn rolling(&self) -> Option<(usize, Option<&ResourceId>)> {
        self.rolling.as_ref().map(|(batch, check)| (*batch, check.as_ref()))
    }

    /// Whether carrying out `decision` interrupts the running service (a restart, or a new unit
    /// file for an active unit): such changes are what `rolling` spaces out. Starting a stopped
    /// unit interrupts nothing.
    fn disrupts(&self, facts: &HostFacts, decision: &Decision) -> bool {
        let active = facts.units.get(&self.name).is_some_and(UnitFact::is_active);
        active && self.state == UnitState::Running && matches!(decision.action, Action::Restart | Action::Update | Action::Replace)
    }

    /// Decides, purely, what to do given what the probe found.
    fn diff(&self, facts: &HostFacts) -> Decision {
        let Some(unit) = facts.units.get(&self.name) else {
            return Decision::new(Action::Conflict, format!("the probe did not report {}", self.name));
        };
        let mut draft = Draft::default();
        if let Some(conflict) = self.diff_unit_file(facts, unit, &mut draft) {
            return conflict;
        }
        let (ufs, fixed) = self.diff_enablement(unit, &mut draft);
        let restart_only = self.diff_state(facts, unit, &mut draft);
        self.add_load(&mut draft);
        let Draft { mut action, reasons, attrs, content, .. } = draft;
        if restart_only && action == Action::NoOp {
            action = Action::Restart;
        }
        if action == Action::NoOp {
            let running = if self.state == UnitState::Running { "running" } else { "stopped" };
            let enabled = match (self.enabled, fixed) {
                (_, true) => ufs,
                (true, false) => "enabled",
                (false, false) => "disabled",
            };
            let file = if self.content.is_some() { ", unit file up to date" } else { "" };
            return Decision::noop(format!("{running} and {enabled}{file}"));
        }
        Decision { action, reason: reasons.join(", ").into(), attrs, content }
    }

    /// Adds a restart when resources in `restart_on` changed (at apply time) or will change (at
    /// plan time), unless the decision already starts, restarts or stops the unit.
    ///
    /// A unit that is not loaded and whose file a `restart_on` resource writes is loaded only
    /// if one of those resources changes; otherwise nothing writes the file and it is refused.
    fn with_changed_deps(&self, mut decision: Decision, changed: &[ResourceId], planned: bool) -> Decision {
        let awaits_file = decision.attrs.iter().any(|a| a.name == ATTR_UNIT_FILE && a.before.is_none());
        if awaits_file {
            let writers = self.unit_file_writers();
            if !writers.iter().any(|w| changed.contains(w)) {
                let writers: Vec<String> = writers.iter().map(ToString::to_string).collect();
                let verb = match (planned, writers.len()) {
                    (true, 1) => "is not planned to change",
                    (true, _) => "are not planned to change",
                    (false, _) => "did not change",
                };
                return Decision::new(Action::Conflict, format!("{}; {} {verb}", self.no_unit_file(), writers.join(", ")));
            }
        }
        let triggers: Vec<String> = self.restart_on.iter().filter(|r| changed.contains(r)).map(ToString::to_string).collect();
        if triggers.is_empty() || self.state == UnitState::Stopped || decision.action == Action::Conflict {
            return decision;
        }
        if decision.attrs.iter().any(|a| a.name == ATTR_STATE) {
            return decision;
        }
        let verb = match (planned, triggers.len()) {
            (true, 1) => "changes",
            (true, _) => "change",
            (false, _) => "changed",
        };
        let why = format!("restart: {} {verb}", triggers.join(", "));
        decision.attrs.push(AttrChange::new(ATTR_STATE, Some("active".into()), Some("restarted".into())));
        if decision.action == Action::NoOp {
            decision.action = Action::Restart;
            decision.reason = why.into();
        } else {
            decision.reason = format!("{}, {why}", decision.reason).into();
        }
        decision
    }

    /// Carries out a decision made by [`DesiredUnit::diff`] (and [`DesiredUnit::with_changed_deps`]).
    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError> {
        if let Some(staged) = self.stage(decision).await? {
            // The unit file, then the reload.
            super::batch::run_alone(transport, &staged).await?;
            return self.after_reload(transport, decision, true).await;
        }
        fix_attrs(transport, &self.path, &decision.attrs).await?;
        let reload = decision.attrs.iter().any(|a| a.name == ATTR_RELOAD && a.after.is_some());
        if reload {
            self.systemctl(transport, &["daemon-reload"]).await?;
        }
        self.after_reload(transport, decision, reload).await
    }

    /// A new unit file is one file of its wave's batched write, and the wave reloads systemd
    /// once for all its units.
    async fn stage(&self, decision: &Decision) -> Result<Option<Staged>, ApplyError> {
        let (Some(_), Some(bytes)) = (&decision.content, &self.content) else { return Ok(None) };
        let attrs = FileAttrs { mode: Some(0o644), owner: Some("root".into()), group: Some("root".into()) };
        let file = FileWrite { path: self.path.clone(), content: bytes.clone().into(), attrs };
        Ok(Some(Staged { files: vec![file], daemon_reload: true, ..Staged::default() }))
    }

    async fn apply_staged(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError> {
        self.after_reload(transport, decision, true).await
    }
}

impl DesiredUnit {
    /// What follows the unit file and the reload (`reloaded`: systemd has just re-read its unit
    /// files): enabling or disabling, then starting, restarting or stopping.
    async fn after_reload(&self, transport: &dyn Transport, decision: &Decision, reloaded: bool) -> Result<Applied, ApplyError> {
        let wanted = |name: &str| decision.attrs.iter().find(|a| a.name == name).and_then(|a| a.after.clone());
        let mut fixed = false;
        if reloaded {
            let loads = decision.attrs.iter().any(|a| a.name == ATTR_RELOAD && a.before.as_deref() == Some(NOT_LOADED));
            if loads {
                // A unit without an [Install] section cannot be enabled: found out only now.
                let ufs = self.check_loaded(transport).await?;
                fixed = matches!(ufs.as_str(), "static" | "generated" | "transient" | "indirect");
            }
        }
        match wanted(ATTR_ENABLED).as_deref() {
            Some("enabled") if fixed => {}
            Some("enabled") => self.systemctl(transport, &["enable", "--", &self.name]).await?,
            Some("disabled") => self.systemctl(transport, &["disable", "--", &self.name]).await?,
            _ => {}
        }
        match wanted(ATTR_STATE).as_deref() {
            Some("stopped") => self.systemctl(transport, &["stop", "--", &self.name]).await.map(|()| Applied::plain()),
            Some("running") => self.start(transport, "start").await,
            Some("restarted") => self.start(transport, "restart").await,
            _ => Ok(Applied::plain()),
        }
    }
}

/// One look at a unit while waiting for it to start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invocation {
    id: String,
    active_state: String,
    sub_state: String,
}

#[derive(Debug, PartialEq, Eq)]
enum StartVerdict {
    Active,
    Failed,
    Waiting,
}

impl Invocation {
    /// Whether a queued start has finished, judged against the state before it was queued: a
    /// new invocation that is active succeeded; a new one that ended failed; anything else
    /// (job not run yet, still activating, auto-restarting) is still waiting.
    fn verdict(&self, before: &Invocation, auto_restart_fails: bool) -> StartVerdict {
        let new = !self.id.is_empty() && self.id != before.id;
        match (new, self.active_state.as_str()) {
            (true, "active") => StartVerdict::Active,
            (true, "failed" | "inactive") => StartVerdict::Failed,
            (true, "activating") if auto_restart_fails && self.sub_state == "auto-restart" => StartVerdict::Failed,
            _ => StartVerdict::Waiting,
        }
    }
}

/// How many times a start that failed for a transient cause of systemd's own
/// ([`transient_start_failure`]) is tried again before the failure is reported.
pub const START_RETRIES: u32 = 2;

/// The pause before such a start is tried again: what failed is the host's cgroup bookkeeping,
/// which settles within moments; a retry at once tends to meet the same state.
const START_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The properties [`transient_start_failure`] reads.
pub const START_END_PROPERTIES: &str = "Result,ExecMainCode,ExecMainStatus,ExecMainExitTimestampMonotonic,InactiveExitTimestampMonotonic";

/// `si_code` of a process that exited by itself (`CLD_EXITED`), as `ExecMainCode` shows it.
const CLD_EXITED: &str = "1";

/// systemd's exit status for a service process it could not move into the unit's cgroup
/// (`EXIT_CGROUP`): set by systemd's own child before it exec's the service.
const EXIT_CGROUP: &str = "219";

/// A cause of a failed start that is systemd's, not the service's: the service never ran, and
/// the same start tried again is expected to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientStartFailure {
    /// The main process exited with status 219/CGROUP: systemd could not set up the unit's
    /// cgroup for it (seen with systemd in containers on cgroup v1 hosts, where writing
    /// `cgroup.procs` fails now and then with an I/O error).
    Cgroup,
}

impl std::fmt::Display for TransientStartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransientStartFailure::Cgroup => f.write_str("systemd could not set up the unit's cgroup, status 219/CGROUP"),
        }
    }
}

/// A start or restart that succeeded only when tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRetried {
    /// `start` or `restart`.
    pub verb: String,
    /// How many times it was tried again (at most [`START_RETRIES`]).
    pub retries: u32,
    /// Why the failed tries failed.
    pub cause: TransientStartFailure,
}

/// Whether a start that failed failed for a transient cause of systemd's own, judged from
/// `systemctl show -p` [`START_END_PROPERTIES`]: the unit's result is `exit-code` and its main
/// process, forked in this activation, exited with 219 (CGROUP). The main process's status
/// stays from an earlier run when this one failed before forking it (in `ExecStartPre=`, say),
/// so the main process must have exited no earlier than the unit left the inactive state. Its
/// exit, not its start: without `ExecStartPre=` systemd forks the main process a moment before
/// it records leaving the inactive state (seen in the `faults` lab test: a real 219 whose
/// process started 'before' this activation, so it was not retried).
/// Anything else is the service's own failure, or one cairn cannot tell apart from it.
pub fn transient_start_failure(show: &str) -> Option<TransientStartFailure> {
    let props = properties(show);
    let get = |k: &str| props.get(k).map(|v| v.trim());
    let monotonic = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok()).filter(|&t| t > 0);
    let this_activation = match (monotonic("ExecMainExitTimestampMonotonic"), monotonic("InactiveExitTimestampMonotonic")) {
        (Some(main_exited), Some(left_inactive)) => main_exited >= left_inactive,
        // systemd reports both for every service it has started; a main process with no exit
        // time never ran (or has not ended).
        (None, _) => false,
        (Some(_), None) => true,
    };
    let cgroup =
        get("Result") == Some("exit-code") && get("ExecMainCode") == Some(CLD_EXITED) && get("ExecMainStatus") == Some(EXIT_CGROUP);
    (cgroup && this_activation).then_some(TransientStartFailure::Cgroup)
}

/// How a start waits for the unit to be active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartHow {
    /// `systemctl VERB` (which waits for the start job), then `systemctl is-active`.
    Blocking,
    /// `systemctl VERB --no-block`, then polling for a new invocation to become active, up to
    /// `timeout`: peers started at the same moment can find each other (`start = "together"`).
    NoBlock {
        /// How long to wait.
        timeout: Duration,
    },
}

/// A start that did not make the unit active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartFailed {
    /// What happened, after the unit's name ("is failed after `systemctl start`").
    pub what: String,
    /// systemd is done with the start (it failed), rather than cairn having stopped waiting
    /// for it: only such a start can be judged for a transient cause and tried again.
    ended: bool,
}

/// Starts (`verb`: `start` or `restart`) unit `name` and makes sure it is active. When the start
/// fails and systemd says the cause is its own ([`transient_start_failure`]), the unit's failed
/// state and start rate limit are reset and the same start is tried again, at most
/// [`START_RETRIES`] times. `Ok(Ok(Some(..)))`: it succeeded when tried again; `Ok(Err(..))`:
/// the start failed; `Err`: the host could not be asked.
pub(crate) async fn start_unit(
    transport: &dyn Transport,
    name: &str,
    verb: &str,
    how: StartHow,
) -> Result<Result<Option<StartRetried>, StartFailed>, ApplyError> {
    let mut retries = 0;
    let mut last_cause = None;
    loop {
        let tried = match how {
            StartHow::Blocking => start_blocking(transport, name, verb).await?,
            StartHow::NoBlock { timeout } => start_no_block(transport, name, verb, timeout).await?,
        };
        let mut failed = match (tried, last_cause) {
            (Ok(()), None) => return Ok(Ok(None)),
            (Ok(()), Some(cause)) => return Ok(Ok(Some(StartRetried { verb: verb.to_string(), retries, cause }))),
            (Err(failed), _) => failed,
        };
        let cause = if failed.ended { start_failure_cause(transport, name).await? } else { None };
        match cause {
            Some(cause) if retries < START_RETRIES => {
                // Resets the start rate limit too: the failed tries must not use up the
                // service's own restart budget (StartLimitBurst=).
                let reset = transport.run(&argv(&["systemctl", "reset-failed", "--", name]), Stdin::Null).await?;
                if !reset.success() {
                    failed.what = format!("{}; `systemctl reset-failed` failed: {}", failed.what, reset.error_text());
                    return Ok(Err(failed));
                }
                retries += 1;
                last_cause = Some(cause);
                tokio::time::sleep(START_RETRY_PAUSE).await;
            }
            Some(cause) => {
                failed.what = format!(
                    "{}: {cause}, in each of {} tries, so the service never ran; the host needs a look \
                     (`systemctl status {name}`, `dmesg`) before cairn applies again",
                    failed.what,
                    retries + 1
                );
                return Ok(Err(failed));
            }
            None => {
                if let Some(cause) = last_cause {
                    let before = if retries == 1 { "the try before" } else { "the tries before" };
                    failed.what = format!("{} (this was a retry: {before} failed because {cause})", failed.what);
                }
                return Ok(Err(failed));
            }
        }
    }
}

/// Why systemd failed the unit's last start, when the cause is a transient one of its own.
async fn start_failure_cause(transport: &dyn Transport, name: &str) -> Result<Option<TransientStartFailure>, ApplyError> {
    let out = transport.run(&argv(&["systemctl", "show", "-p", START_END_PROPERTIES, "--", name]), Stdin::Null).await?;
    // Not knowing the cause is not a reason to retry: the failure is reported as it is.
    Ok(if out.success() { transient_start_failure(&String::from_utf8_lossy(&out.stdout)) } else { None })
}

/// One blocking start: `systemctl VERB`, then the unit must be active.
async fn start_blocking(transport: &dyn Transport, name: &str, verb: &str) -> Result<Result<(), StartFailed>, ApplyError> {
    let out = transport.run(&argv(&["systemctl", verb, "--", name]), Stdin::Null).await?;
    if !out.success() {
        return Ok(Err(StartFailed { what: format!("`systemctl {verb}` failed: {}", out.error_text()), ended: true }));
    }
    let state = transport.run(&argv(&["systemctl", "is-active", "--", name]), Stdin::Null).await?;
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    if state != "active" {
        return Ok(Err(StartFailed { what: format!("is {state} after `systemctl {verb}`"), ended: true }));
    }
    Ok(Ok(()))
}

/// One non-blocking start: queues the job and polls until a new invocation is active, has
/// failed, or `timeout` passed.
async fn start_no_block(
    transport: &dyn Transport,
    name: &str,
    verb: &str,
    timeout: Duration,
) -> Result<Result<(), StartFailed>, ApplyError> {
    let before = invocation(transport, name).await?;
    let out = transport.run(&argv(&["systemctl", verb, "--no-block", "--", name]), Stdin::Null).await?;
    if !out.success() {
        return Ok(Err(StartFailed { what: format!("`systemctl {verb} --no-block` failed: {}", out.error_text()), ended: true }));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = invocation(transport, name).await?;
        // A restarted service that exits and waits to be started again has failed: a rollout
        // must stop now, not after the whole timeout. A first start may still be waiting for
        // its peers (together), so only restarts fail this early.
        match now.verdict(&before, verb == "restart") {
            StartVerdict::Active => return Ok(Ok(())),
            StartVerdict::Failed => {
                let what = format!("is {} ({}) after `systemctl {verb} --no-block`", now.active_state, now.sub_state);
                return Ok(Err(StartFailed { what, ended: true }));
            }
            StartVerdict::Waiting => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let what = format!("did not become active within {}s (state: {} ({}))", timeout.as_secs(), now.active_state, now.sub_state);
            return Ok(Err(StartFailed { what, ended: false }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn invocation(transport: &dyn Transport, name: &str) -> Result<Invocation, ApplyError> {
    let out = transport.run(&argv(&["systemctl", "show", "-p", "InvocationID,ActiveState,SubState", "--", name]), Stdin::Null).await?;
    if !out.success() {
        return Err(ApplyError::Failed(format!("`systemctl show {name}` failed: {}", out.error_text())));
    }
    let props = properties(&String::from_utf8_lossy(&out.stdout));
    let get = |k: &str| props.get(k).cloned().unwrap_or_default();
    Ok(Invocation { id: get("InvocationID"), active_state: get("ActiveState"), sub_state: get("SubState") })
}

/// An action that changes the unit in place, unless it already creates the unit file.
fn bump(action: Action) -> Action {
    if action == Action::Create { action } else { Action::Update }
}

fn short(h: &str) -> String {
    h.chars().take(12).collect()
}

/// `KEY=value` lines into a map (later keys win).
fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The step of a unit removal that deletes its unit file (the steps travel as attributes: the
/// plan shows them, apply does exactly them). In a unit's own decision (no `before`): the unit
/// file another resource is to write, which [`DesiredUnit::with_changed_deps`] confirms.
const ATTR_UNIT_FILE: &str = "unit file";

/// A unit leaves with the spec: stopped, disabled and its unit file (when cairn wrote it)
/// deleted, doing only the steps it needs.
#[async_trait::async_trait]
impl Removal for OwnedUnit {
    fn rank(&self) -> u8 {
        0
    }

    fn adopted_by(&self, claims: &Claims, _claimed_all: Option<&str>) -> Option<String> {
        claims.units.get(&self.name).cloned()
    }

    fn add_to_probe(&self, _orphan: &Orphan, probe: &mut ProbeRequest) {
        probe.units.insert(self.name.clone());
    }

    fn diff(&self, _orphan: &Orphan, facts: &HostFacts) -> Decision {
        let name = &self.name;
        let unit = facts.units.get(name);
        let active = unit.is_some_and(|u| matches!(u.active_state.as_str(), "active" | "activating" | "reloading"));
        let enabled = unit.is_some_and(|u| u.unit_file_state.starts_with("enabled"));
        let unit_file = self.file.as_ref().filter(|f| facts.path(f).is_some());
        let mut d = Decision::noop("");
        let mut steps = Vec::new();
        if active {
            steps.push("stop");
            d.attrs.push(AttrChange::new(ATTR_STATE, unit.map(|u| u.active_state.clone()), Some("stopped".into())));
        }
        if enabled {
            steps.push("disable");
            d.attrs.push(AttrChange::new(ATTR_ENABLED, Some("enabled".into()), Some("disabled".into())));
        }
        if let Some(f) = unit_file {
            steps.push("delete its unit file");
            d.attrs.push(AttrChange::new(ATTR_UNIT_FILE, Some(f.clone()), None));
        }
        if steps.is_empty() {
            return Decision::noop(format!("{name} is stopped, disabled and has no unit file"));
        }
        d.action = Action::Delete;
        d.reason = format!("{} {name}", steps.join(", ")).into();
        d
    }

    async fn apply(&self, _orphan: &Orphan, transport: &dyn Transport, decision: &Decision) -> Result<(), ApplyError> {
        let name = self.name.as_str();
        let step = |attr: &str| decision.attrs.iter().find(|a| a.name == attr);
        if step(ATTR_STATE).is_some() {
            run_checked(transport, &argv(&["systemctl", "stop", "--", name])).await?;
        }
        if step(ATTR_ENABLED).is_some() {
            run_checked(transport, &argv(&["systemctl", "disable", "--", name])).await?;
        }
        if let Some(path) = step(ATTR_UNIT_FILE).and_then(|a| a.before.as_deref()) {
            run_checked(transport, &argv(&["rm", "-f", "--", path])).await?;
            run_checked(transport, &argv(&["systemctl", "daemon-reload"])).await?;
        }
        // A unit that failed while it ran stays listed as failed until this.
        let _ = transport.run(&argv(&["systemctl", "reset-failed", "--", name]), Stdin::Null).await;
        Ok(())
    }

    fn target(&self, _paths: &[&str]) -> String {
        self.name.clone()
    }
}

/// Pairs the unit names the probe echoed with the blocks of `systemctl show` output (one block
/// per name, in order, separated by blank lines). Pure; tested on raw output.
pub fn parse_show(names: &[String], lines: &[&str]) -> Result<BTreeMap<String, UnitFact>, ProbeError> {
    let mut blocks: Vec<BTreeMap<String, String>> = Vec::new();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    for line in lines {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| ProbeError::unexpected("systemctl show line", line))?;
        // xargs may split a long list over several systemctl runs without a blank line between.
        if current.contains_key(k) {
            blocks.push(std::mem::take(&mut current));
        }
        current.insert(k.to_string(), v.to_string());
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    if blocks.len() != names.len() {
        return Err(ProbeError::UnitCount { reported: blocks.len(), asked: names.len() });
    }
    let mut units = BTreeMap::new();
    for (name, block) in names.iter().zip(blocks) {
        let get = |k: &str| block.get(k).cloned().unwrap_or_default();
        let fact = UnitFact {
            load_state: get("LoadState"),
            active_state: get("ActiveState"),
            sub_state: get("SubState"),
            unit_file_state: get("UnitFileState"),
            active_enter: parse_timestamp(&get("ActiveEnterTimestamp"))
                .map_err(|e| ProbeError::Unit { name: name.clone(), source: Box::new(e) })?,
            fragment_path: get("FragmentPath"),
            need_daemon_reload: get("NeedDaemonReload") == "yes",
        };
        units.insert(name.clone(), fact);
    }
    Ok(units)
}

/// Parses `ActiveEnterTimestamp`: `@1700000000` (`--timestamp=unix`, systemd ≥ 251), or the
/// default `Mon 2026-11-23 19:44:28 UTC` (the probe sets `TZ=UTC` for older systemd), or empty
/// (never active).
pub fn parse_timestamp(s: &str) -> Result<Option<i64>, ProbeError> {
    let s = s.trim();
    if s.is_empty() || s == "n/a" {
        return Ok(None);
    }
    if let Some(secs) = s.strip_prefix('@') {
        let whole = secs.split('.').next().unwrap_or(secs);
        return whole.parse().map(Some).map_err(|_| ProbeError::bad("timestamp", s));
    }
    let bad = || ProbeError::bad("timestamp", s);
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, date, time, "UTC"] = parts.as_slice() else { return Err(bad()) };
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([y, m, dd], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else { return Err(bad()) };
    let ss = ss.split('.').next().unwrap_or(ss);
    // Out-of-range fields are a broken host's answer, not arithmetic to overflow on.
    let field = |x: &str, range: std::ops::RangeInclusive<i64>| num(x).and_then(|n| if range.contains(&n) { Ok(n) } else { Err(bad()) });
    let days = days_from_civil(field(y, 1970..=9999)?, field(m, 1..=12)?, field(dd, 1..=31)?);
    Ok(Some(days * 86_400 + field(hh, 0..=23)? * 3600 + field(mm, 0..=59)? * 60 + field(ss, 0..=60)?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Kind;

    const SHOW: &str = "Id=etcd.service\nLoadState=loaded\nActiveState=active\nSubState=running\nFragmentPath=/etc/systemd/system/etcd.service\nUnitFileState=enabled\nActiveEnterTimestamp=@1700000100\nNeedDaemonReload=no\n\nId=ghost.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nFragmentPath=\nUnitFileState=\nActiveEnterTimestamp=\nNeedDaemonReload=no\n";

    fn unit_file(content: &str, mtime: i64) -> PathFact {
        PathFact {
            kind: PathKind::File,
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            size: content.len() as u64,
            mtime,
            sha256: Some(sha256_hex(content.as_bytes())),
        }
    }

    fn desired(content: Option<&str>) -> DesiredUnit {
        DesiredUnit {
            name: "etcd.service".into(),
            path: "/etc/systemd/system/etcd.service".into(),
            content: content.map(|c| c.as_bytes().to_vec()),
            sha256: content.map(|c| sha256_hex(c.as_bytes())),
            enabled: true,
            state: UnitState::Running,
            restart_on: vec![ResourceId::new(Kind::File, "etcd-config")],
            reloads_certificates: Vec::new(),
            start: StartMode::PerHost,
            start_timeout_secs: 90,
            rolling: None,
            watched: vec![WatchedPath { by: ResourceId::new(Kind::File, "etcd-config"), path: "/etc/etcd/etcd.config.yml".into() }],
        }
    }

    fn running() -> UnitFact {
        UnitFact {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            unit_file_state: "enabled".into(),
            active_enter: Some(1_700_000_100),
            fragment_path: "/etc/systemd/system/etcd.service".into(),
            need_daemon_reload: false,
        }
    }

    fn facts(unit: UnitFact, file: Option<PathFact>, config_mtime: Option<i64>) -> HostFacts {
        let mut f = HostFacts::default();
        f.units.insert("etcd.service".into(), unit);
        if let Some(file) = file {
            f.paths.insert("/etc/systemd/system/etcd.service".into(), file);
        }
        if let Some(m) = config_mtime {
            f.paths.insert("/etc/etcd/etcd.config.yml".into(), unit_file("x", m));
        }
        f
    }

    fn state_attr(d: &Decision) -> Option<(Option<String>, Option<String>)> {
        d.attrs.iter().find(|a| a.name == "state").map(|a| (a.before.clone(), a.after.clone()))
    }

    #[test]
    fn parses_show_blocks_in_order() {
        let lines: Vec<&str> = SHOW.lines().collect();
        let units = parse_show(&["etcd.service".into(), "ghost.service".into()], &lines).unwrap();
        assert_eq!(units["etcd.service"], running());
        let ghost = &units["ghost.service"];
        assert_eq!((ghost.load_state.as_str(), ghost.active_enter, ghost.unit_file_state.as_str()), ("not-found", None, ""));
    }

    #[test]
    fn show_blocks_without_blank_line_and_count_mismatch() {
        let lines = ["Id=a.service", "ActiveState=active", "Id=b.service", "ActiveState=inactive"];
        let units = parse_show(&["a.service".into(), "b.service".into()], &lines).unwrap();
        assert_eq!(units["b.service"].active_state, "inactive");
        assert!(parse_show(&["a.service".into()], &lines).is_err());
        assert!(parse_show(&["a.service".into()], &["garbage"]).is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("@1700000000"), Ok(Some(1_700_000_000)));
        assert_eq!(parse_timestamp(""), Ok(None));
        assert_eq!(parse_timestamp("n/a"), Ok(None));
        assert_eq!(parse_timestamp("Tue 2023-11-14 22:13:20 UTC"), Ok(Some(1_700_000_000)));
        assert_eq!(parse_timestamp("Thu 1970-01-01 00:00:00 UTC"), Ok(Some(0)));
        assert_eq!(parse_timestamp("Mon 2024-02-29 12:00:00.123456 UTC"), Ok(Some(1_709_208_000)));
        assert!(parse_timestamp("Tue 2023-11-14 22:13:20 CET").is_err());
        assert!(parse_timestamp("@soon").is_err());
        // Found by tests/fuzz.rs: out-of-range fields overflowed the arithmetic (a panic in debug builds).
        assert!(parse_timestamp("Mon 99999999999999-11-14 22:13:20 UTC").is_err());
        assert!(parse_timestamp("Tue 2023-11-14 9223372036854775807:13:20 UTC").is_err());
        assert!(parse_timestamp("Tue 2023-13-14 22:13:20 UTC").is_err());
    }

    #[test]
    fn everything_in_place_is_a_noop() {
        let d = desired(Some("[Unit]\n")).diff(&facts(running(), Some(unit_file("[Unit]\n", 1_700_000_000)), Some(1_700_000_050)));
        assert_eq!(d, Decision::noop("running and enabled, unit file up to date"));
    }

    #[test]
    fn missing_unit_file_is_created_enabled_and_started() {
        let mut u = running();
        u.load_state = "not-found".into();
        u.active_state = "inactive".into();
        u.unit_file_state = String::new();
        u.active_enter = None;
        let d = desired(Some("[Unit]\n")).diff(&facts(u, None, None));
        assert_eq!(d.action, Action::Create);
        assert_eq!(d.reason.to_string(), "unit file missing, not enabled, stopped, wanted running");
        assert_eq!(d.content, Some(ContentChange::FromEmpty));
        assert_eq!(state_attr(&d), Some((Some("inactive".into()), Some("running".into()))));
    }

    #[test]
    fn changed_unit_file_is_rewritten_and_the_unit_restarted() {
        let d = desired(Some("new\n")).diff(&facts(running(), Some(unit_file("old\n", 1)), None));
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reason.to_string(), "unit file content differs, the running unit will be restarted");
        assert_eq!(d.content, Some(ContentChange::FetchOld { path: "/etc/systemd/system/etcd.service".into() }));
        assert_eq!(state_attr(&d), Some((Some("active".into()), Some("restarted".into()))));
    }

    #[test]
    fn disabled_and_stopped_unit() {
        let mut u = running();
        u.active_state = "inactive".into();
        u.unit_file_state = "disabled".into();
        let d = desired(None).diff(&facts(u, None, None));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "not enabled, stopped, wanted running"));
        let enabled = d.attrs.iter().find(|a| a.name == "enabled").unwrap();
        assert_eq!((enabled.before.as_deref(), enabled.after.as_deref()), (Some("disabled"), Some("enabled")));
    }

    #[test]
    fn failed_unit_is_started() {
        let mut u = running();
        u.active_state = "failed".into();
        let d = desired(None).diff(&facts(u, None, None));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "failed, wanted running"));
    }

    #[test]
    fn stopped_wanted_and_disabled_wanted() {
        let mut want = desired(None);
        want.state = UnitState::Stopped;
        want.enabled = false;
        let d = want.diff(&facts(running(), None, None));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "enabled, wanted disabled, running, wanted stopped"));
        assert_eq!(state_attr(&d), Some((Some("active".into()), Some("stopped".into()))));
        let mut u = running();
        u.active_state = "inactive".into();
        u.unit_file_state = "disabled".into();
        assert_eq!(want.diff(&facts(u, None, None)), Decision::noop("stopped and disabled"));
    }

    #[test]
    fn dependency_newer_than_the_service_is_a_pending_restart() {
        let d = desired(None).diff(&facts(running(), None, Some(1_700_000_200)));
        assert_eq!(d.action, Action::Restart);
        assert_eq!(d.reason.to_string(), "restart pending: etcd.config.yml changed after the service started");
        // Same second as the start: not newer.
        assert_eq!(desired(None).diff(&facts(running(), None, Some(1_700_000_100))).action, Action::NoOp);
    }

    #[test]
    fn a_watched_directory_newer_than_the_service_is_not_a_pending_restart() {
        let mut f = facts(running(), None, None);
        let mut dir = unit_file("", 1_700_000_500);
        dir.kind = PathKind::Dir;
        f.paths.insert("/etc/etcd/etcd.config.yml".into(), dir);
        assert_eq!(desired(None).diff(&f).action, Action::NoOp);
    }

    #[test]
    fn own_unit_file_newer_than_the_service_is_a_pending_restart() {
        let d = desired(Some("x")).diff(&facts(running(), Some(unit_file("x", 1_700_000_101)), None));
        assert_eq!(
            (d.action, d.reason.to_string().as_str()),
            (Action::Restart, "restart pending: etcd.service changed after the service started")
        );
    }

    #[test]
    fn pending_daemon_reload() {
        let mut u = running();
        u.need_daemon_reload = true;
        let d = desired(Some("x")).diff(&facts(u, Some(unit_file("x", 1)), None));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "unit file changed on disk; daemon-reload pending"));
    }

    #[test]
    fn unknown_unit_without_content_is_a_conflict() {
        let mut u = running();
        u.load_state = "not-found".into();
        assert_eq!(desired(None).diff(&facts(u, None, None)).action, Action::Conflict);
        assert_eq!(desired(None).diff(&HostFacts::default()).action, Action::Conflict);
    }

    fn not_found() -> UnitFact {
        UnitFact {
            load_state: "not-found".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            unit_file_state: String::new(),
            active_enter: None,
            fragment_path: String::new(),
            need_daemon_reload: false,
        }
    }

    /// A unit without content whose `restart_on` resource writes `path`.
    fn written_by(path: &str) -> DesiredUnit {
        let mut want = desired(None);
        want.restart_on = vec![ResourceId::new(Kind::File, "unit")];
        want.watched = vec![WatchedPath { by: ResourceId::new(Kind::File, "unit"), path: path.into() }];
        want
    }

    #[test]
    fn candidate_unit_files_are_probed_only_without_content() {
        let mut probe = ProbeRequest::default();
        desired(None).add_to_probe(&mut probe);
        for dir in UNIT_DIRS {
            assert!(probe.paths.contains(&format!("{dir}/etcd.service")), "{probe:?}");
        }
        let mut probe = ProbeRequest::default();
        desired(Some("x")).add_to_probe(&mut probe);
        assert!(!probe.paths.contains("/usr/lib/systemd/system/etcd.service"), "{probe:?}");
    }

    #[test]
    fn not_loaded_unit_whose_file_is_on_the_host_is_loaded_and_started() {
        let mut f = facts(not_found(), None, None);
        f.paths.insert("/usr/lib/systemd/system/etcd.service".into(), unit_file("[Service]\n", 5));
        let d = desired(None).diff(&f);
        assert_eq!(d.action, Action::Update);
        assert_eq!(
            d.reason.to_string(),
            "not loaded; its unit file /usr/lib/systemd/system/etcd.service is on the host (daemon-reload), not enabled, stopped, wanted running"
        );
        let reload = d.attrs.iter().find(|a| a.name == "daemon-reload").unwrap();
        assert_eq!((reload.before.as_deref(), reload.after.as_deref()), (Some("not loaded"), Some("done")));
        assert_eq!(state_attr(&d), Some((Some("inactive".into()), Some("running".into()))));
        assert!(d.attrs.iter().any(|a| a.name == "enabled" && a.after.as_deref() == Some("enabled")));
        // The restart_on dependency changed (it wrote the file): the decision stays as it is.
        let cfg = ResourceId::new(Kind::File, "etcd-config");
        assert_eq!(desired(None).with_changed_deps(d.clone(), std::slice::from_ref(&cfg), false), d);
        // Wanted stopped and disabled: a unit that is not loaded is both; nothing to load.
        let mut off = desired(None);
        off.state = UnitState::Stopped;
        off.enabled = false;
        assert_eq!(off.diff(&f), Decision::noop("stopped and disabled"));
    }

    #[test]
    fn not_loaded_unit_without_a_file_or_a_writer_is_still_a_conflict() {
        let d = desired(None).diff(&facts(not_found(), None, Some(1)));
        assert_eq!(
            (d.action, d.reason.to_string().as_str()),
            (Action::Conflict, "etcd.service does not exist on the host and the spec gives no content to write its unit file")
        );
        // A restart_on resource writing elsewhere does not count.
        let other = written_by("/etc/systemd/system-generators/x");
        assert_eq!(other.diff(&facts(not_found(), None, None)).action, Action::Conflict);
    }

    #[test]
    fn not_loaded_unit_whose_file_a_changing_dependency_writes_is_not_a_conflict() {
        let want = written_by("/etc/systemd/system/etcd.service");
        let unit = ResourceId::new(Kind::File, "unit");
        let d = want.diff(&facts(not_found(), None, None));
        assert_eq!(d.action, Action::Update);
        let planned = want.with_changed_deps(d.clone(), std::slice::from_ref(&unit), true);
        assert_eq!(planned.action, Action::Update);
        assert_eq!(
            planned.reason.to_string(),
            "not loaded; file.unit writes its unit file (daemon-reload), not enabled, stopped, wanted running"
        );
        let names: Vec<&str> = planned.attrs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["unit file", "daemon-reload", "enabled", "state"]);
        assert_eq!(planned.attrs[0].after.as_deref(), Some("written by file.unit"));
        // The writer does not change: nothing writes the file, so it is refused, saying why.
        let refused = want.with_changed_deps(d.clone(), &[], true);
        assert_eq!(
            (refused.action, refused.reason.to_string().as_str()),
            (
                Action::Conflict,
                "etcd.service does not exist on the host and the spec gives no content to write its unit file; file.unit is not planned to change"
            )
        );
        assert!(want.with_changed_deps(d, &[], false).reason.to_string().ends_with("file.unit did not change"));
    }

    #[test]
    fn directory_in_place_of_the_unit_file_is_a_conflict() {
        let mut dir = unit_file("", 0);
        dir.kind = PathKind::Dir;
        assert_eq!(desired(Some("x")).diff(&facts(running(), Some(dir), None)).action, Action::Conflict);
    }

    #[test]
    fn static_units_need_no_enabling() {
        let mut u = running();
        u.unit_file_state = "static".into();
        assert_eq!(desired(None).diff(&facts(u, None, None)), Decision::noop("running and static"));
    }

    #[test]
    fn restart_on_changes_restart_a_running_unit() {
        let want = desired(None);
        let cfg = ResourceId::new(Kind::File, "etcd-config");
        let other = ResourceId::new(Kind::File, "motd");
        let noop = want.diff(&facts(running(), None, None));
        let planned = want.with_changed_deps(noop.clone(), std::slice::from_ref(&cfg), true);
        assert_eq!((planned.action, planned.reason.to_string().as_str()), (Action::Restart, "restart: file.etcd-config changes"));
        let done = want.with_changed_deps(noop.clone(), std::slice::from_ref(&cfg), false);
        assert_eq!(done.reason.to_string(), "restart: file.etcd-config changed");
        assert_eq!(state_attr(&done), Some((Some("active".into()), Some("restarted".into()))));
        // Not in restart_on: nothing.
        assert_eq!(want.with_changed_deps(noop, &[other], true).action, Action::NoOp);
        // Already being started: no extra restart.
        let mut u = running();
        u.active_state = "inactive".into();
        let start = want.diff(&facts(u, None, None));
        assert_eq!(want.with_changed_deps(start.clone(), &[cfg], true), start);
    }

    #[test]
    fn start_verdicts() {
        let before = Invocation { id: "aaa".into(), active_state: "active".into(), sub_state: "running".into() };
        let at = |id: &str, state: &str| Invocation { id: id.into(), active_state: state.into(), sub_state: String::new() };
        for restart in [false, true] {
            assert_eq!(at("aaa", "active").verdict(&before, restart), StartVerdict::Waiting); // restart job not run yet
            assert_eq!(at("bbb", "activating").verdict(&before, restart), StartVerdict::Waiting);
            assert_eq!(at("bbb", "active").verdict(&before, restart), StartVerdict::Active);
            assert_eq!(at("bbb", "failed").verdict(&before, restart), StartVerdict::Failed);
            assert_eq!(at("", "inactive").verdict(&at("", "inactive"), restart), StartVerdict::Waiting);
        }
        // Exited and waiting to be started again: a failed restart; a first start may still wait.
        let retrying = Invocation { id: "ccc".into(), active_state: "activating".into(), sub_state: "auto-restart".into() };
        assert_eq!(retrying.verdict(&before, true), StartVerdict::Failed);
        assert_eq!(retrying.verdict(&before, false), StartVerdict::Waiting);
    }

    /// `systemctl show -p START_END_PROPERTIES` of a service whose main process ended as given,
    /// exited at `main_exited` (monotonic µs; 0: never), the unit having left inactive at 5000000.
    fn ended(result: &str, code: u32, status: u32, main_exited: u64) -> String {
        format!(
            "Result={result}\nExecMainCode={code}\nExecMainStatus={status}\nExecMainExitTimestampMonotonic={main_exited}\n\
             InactiveExitTimestampMonotonic=5000000\n"
        )
    }

    #[test]
    fn main_process_exiting_219_in_this_activation_is_a_transient_cgroup_failure() {
        assert_eq!(transient_start_failure(&ended("exit-code", 1, 219, 5000100)), Some(TransientStartFailure::Cgroup));
        // Exited in the same microsecond the unit left inactive.
        assert_eq!(transient_start_failure(&ended("exit-code", 1, 219, 5000000)), Some(TransientStartFailure::Cgroup));
        // Without ExecStartPre= the main process is forked a moment before the unit is recorded
        // as leaving inactive: its start time is earlier, its exit later (the faults lab test).
        let forked_first = "Result=exit-code\nExecMainCode=1\nExecMainStatus=219\nExecMainStartTimestampMonotonic=4999990\n\
                            ExecMainExitTimestampMonotonic=5000300\nInactiveExitTimestampMonotonic=5000000\n";
        assert_eq!(transient_start_failure(forked_first), Some(TransientStartFailure::Cgroup));
    }

    #[test]
    fn the_service_failing_by_itself_is_not_transient() {
        // The service ran and exited 1; 203/EXEC (no such binary) and 217/USER are spec errors.
        for status in [1, 3, 203, 217, 226] {
            assert_eq!(transient_start_failure(&ended("exit-code", 1, status, 5000100)), None, "status {status}");
        }
        // Killed by signal 9 (ExecMainCode=2 is CLD_KILLED, the status the signal).
        assert_eq!(transient_start_failure(&ended("signal", 2, 9, 5000100)), None);
        // A start that hit the rate limit or timed out.
        assert_eq!(transient_start_failure(&ended("start-limit-hit", 1, 219, 5000100)), None);
        assert_eq!(transient_start_failure(&ended("timeout", 1, 219, 5000100)), None);
    }

    #[test]
    fn a_219_of_an_earlier_run_is_not_this_starts_cause() {
        // This start failed before forking the main process (in ExecStartPre=, say): the main
        // process's status is the old run's.
        assert_eq!(transient_start_failure(&ended("exit-code", 1, 219, 4000000)), None);
        // Never forked.
        assert_eq!(transient_start_failure(&ended("exit-code", 1, 219, 0)), None);
    }

    #[test]
    fn unreadable_show_output_is_not_transient() {
        assert_eq!(transient_start_failure(""), None);
        assert_eq!(transient_start_failure("Result=exit-code\nExecMainCode=1\nExecMainStatus=\n"), None);
        // Without InactiveExitTimestampMonotonic the main process's own exit time decides.
        assert_eq!(
            transient_start_failure("Result=exit-code\nExecMainCode=1\nExecMainStatus=219\nExecMainExitTimestampMonotonic=7\n"),
            Some(TransientStartFailure::Cgroup)
        );
    }

    /// A host whose systemd answers from a script: each `systemctl start` takes the next ending
    /// (`Some(status)`: the main process exited so; `None`: it runs), the rest follows from it.
    struct Scripted {
        endings: std::sync::Mutex<Vec<Option<u32>>>,
        last: std::sync::Mutex<Option<u32>>,
        commands: std::sync::Mutex<Vec<String>>,
        stats: crate::transport::TransportStats,
    }

    impl Scripted {
        fn new(endings: &[Option<u32>]) -> Self {
            Self {
                endings: std::sync::Mutex::new(endings.iter().rev().copied().collect()),
                last: std::sync::Mutex::new(None),
                commands: std::sync::Mutex::new(Vec::new()),
                stats: crate::transport::TransportStats::default(),
            }
        }

        fn commands(&self) -> Vec<String> {
            self.commands.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Transport for Scripted {
        fn host(&self) -> &str {
            "h1"
        }
        async fn run(&self, argv: &[String], _: Stdin<'_>) -> Result<crate::transport::CommandOutput, crate::transport::TransportError> {
            let line = argv.join(" ");
            self.commands.lock().unwrap().push(line.clone());
            let ok =
                |stdout: &str| crate::transport::CommandOutput { status: Some(0), stdout: stdout.as_bytes().to_vec(), stderr: Vec::new() };
            let mut last = self.last.lock().unwrap();
            Ok(match argv.get(1).map(String::as_str) {
                Some("start") => {
                    *last = self.endings.lock().unwrap().pop().flatten();
                    ok("")
                }
                Some("is-active") => {
                    let state = if last.is_some() { "failed\n" } else { "active\n" };
                    crate::transport::CommandOutput { status: Some(if last.is_some() { 3 } else { 0 }), ..ok(state) }
                }
                Some("show") => ok(&last.map_or_else(|| ended("success", 0, 0, 0), |status| ended("exit-code", 1, status, 5000100))),
                _ => ok(""),
            })
        }
        fn stats(&self) -> &crate::transport::TransportStats {
            &self.stats
        }
        async fn close(&self) {}
    }

    fn run_start(t: &Scripted) -> Result<Option<StartRetried>, StartFailed> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(start_unit(t, "faults.service", "start", StartHow::Blocking)).unwrap()
    }

    #[test]
    fn start_failing_219_once_is_retried_and_says_so() {
        let t = Scripted::new(&[Some(219), None]);
        let retried = run_start(&t).unwrap();
        assert_eq!(retried, Some(StartRetried { verb: "start".into(), retries: 1, cause: TransientStartFailure::Cgroup }));
        let starts: Vec<String> =
            t.commands().into_iter().filter(|c| c.starts_with("systemctl start") || c.contains("reset-failed")).collect();
        assert_eq!(
            starts,
            ["systemctl start -- faults.service", "systemctl reset-failed -- faults.service", "systemctl start -- faults.service"]
        );
    }

    #[test]
    fn start_failing_219_every_time_is_retried_twice_then_reported() {
        let t = Scripted::new(&[Some(219), Some(219), Some(219), None]);
        let failed = run_start(&t).unwrap_err();
        assert_eq!(
            failed.what,
            "is failed after `systemctl start`: systemd could not set up the unit's cgroup, status 219/CGROUP, in each of 3 tries, \
             so the service never ran; the host needs a look (`systemctl status faults.service`, `dmesg`) before cairn applies again"
        );
        assert_eq!(t.commands().iter().filter(|c| c.starts_with("systemctl start")).count(), 3);
    }

    #[test]
    fn start_failing_otherwise_is_reported_at_once() {
        let t = Scripted::new(&[Some(1), None]);
        let failed = run_start(&t).unwrap_err();
        assert_eq!(failed.what, "is failed after `systemctl start`");
        assert_eq!(t.commands().iter().filter(|c| c.starts_with("systemctl start")).count(), 1);
        assert!(!t.commands().iter().any(|c| c.contains("reset-failed")));
    }

    #[test]
    fn a_retry_failing_otherwise_tells_what_came_before() {
        let t = Scripted::new(&[Some(219), Some(1)]);
        let failed = run_start(&t).unwrap_err();
        assert_eq!(
            failed.what,
            "is failed after `systemctl start` (this was a retry: the try before failed because systemd could not set up the \
             unit's cgroup, status 219/CGROUP)"
        );
    }
}
