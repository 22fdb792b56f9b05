//! Executing a plan: hosts in parallel (at most `parallelism` at once), each host's instances in
//! waves of dependency order — everything ready on a host at the same moment goes together, so
//! a host's remote commands grow with its waves, not with its resources — except that a
//! `start = "together"` unit is launched on all its hosts at once and a cluster's guarded or
//! membership steps go alone (see `Scheduler`); a unit learns which of its dependencies changed
//! in this apply (for `restart_on`); a wave re-reads its instances' state in one probe right
//! before acting (a plan can be stale; a host's first wave acts on the plan's own read instead
//! when that is moments old, see `FRESH_READ`) and writes the files they stage in one remote
//! command (see `apply_wave`); a failure skips everything that depends on it while the rest of the run
//! goes on. Removals of what the spec no longer has run first on each host (units stop before
//! their files go, directories after what was in them). Progress goes to a [`Reporter`]; the
//! result is an [`ApplyReport`], partial or not.

mod cluster;
pub mod rotation;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::graph::{Graph, InstanceId};
use crate::plan::planner::{Connections, probe};
use crate::plan::{Action, Change, Plan};
use crate::resource::removal::Orphan;
use crate::resource::unit::StartRetried;
use crate::resource::{Applied, Desired};
use crate::spec::ResourceId;
use crate::state::manifest::Manifest;
use crate::transport::Transport;

/// Knobs for a run.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Hosts worked on at the same time.
    pub parallelism: usize,
    /// The id of this run's apply locks, when nothing follows the apply on the hosts: each
    /// host's manifest write then releases its lock in the same command
    /// ([`ApplyReport::released`]).
    pub release_locks: Option<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self { parallelism: 10, release_locks: None }
    }
}

/// How one instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "kebab-case")]
pub enum Outcome {
    /// Changed as planned.
    Done(String),
    /// Changed as planned, but only when a start that systemd failed for a cause of its own was
    /// tried again; the text says so, and the operator sees it (the host may need a look).
    DoneAfterRetry(String),
    /// Nothing to do (planned so, or found so when re-checked).
    Unchanged(String),
    /// Tried and failed; the message says why.
    Failed(String),
    /// Not tried: its host could not be read when the plan was made (the error).
    HostUnreadable(String),
    /// Not tried because something it depends on failed.
    Skipped(String),
    /// A check passed (it changed nothing).
    Passed(String),
}

impl Outcome {
    /// Done, unchanged or passed: dependents may go on.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Done(_) | Outcome::DoneAfterRetry(_) | Outcome::Unchanged(_) | Outcome::Passed(_))
    }

    /// Changed something (tried again or not).
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done(_) | Outcome::DoneAfterRetry(_))
    }

    /// What happened, in words.
    pub fn text(&self) -> &str {
        match self {
            Outcome::Done(t)
            | Outcome::DoneAfterRetry(t)
            | Outcome::Unchanged(t)
            | Outcome::Failed(t)
            | Outcome::HostUnreadable(t)
            | Outcome::Skipped(t)
            | Outcome::Passed(t) => t,
        }
    }
}

/// One instance's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceResult {
    /// Which resource on which host.
    pub id: InstanceId,
    /// The planned action.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
}

/// What a run did, failed and skipped, in graph order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Every instance's result.
    pub results: Vec<InstanceResult>,
    /// Hosts whose manifest could not be recorded after the run, with the error.
    pub unrecorded: Vec<(String, String)>,
    /// Hosts whose apply lock the manifest write released ([`ApplyOptions::release_locks`]).
    #[serde(skip)]
    pub released: Vec<String>,
}

impl ApplyReport {
    /// No failures and no skips (the manifests aside: see `unrecorded`).
    pub fn success(&self) -> bool {
        self.results.iter().all(|r| r.outcome.is_ok())
    }

    /// Results whose outcome matches `pick`.
    pub fn count(&self, pick: fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| pick(&r.outcome)).count()
    }
}

/// Receives progress while a plan is applied. Implemented by the CLI (progress bars, logs).
pub trait Reporter: Send + Sync {
    /// An instance's change is about to start.
    fn started(&self, id: &InstanceId, action: Action);
    /// An instance finished (any outcome).
    fn finished(&self, id: &InstanceId, outcome: &Outcome);
}

/// A reporter that ignores everything.
pub struct Silent;

impl Reporter for Silent {
    fn started(&self, _: &InstanceId, _: Action) {}
    fn finished(&self, _: &InstanceId, _: &Outcome) {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Ok,
    NotOk,
}

/// Decides which instances start next. Pure bookkeeping, so it is tested without hosts.
///
/// One wave per host at a time (every instance of the host that is ready, launched together),
/// at most `parallelism` busy hosts, an instance only once all its dependencies succeeded. A
/// `solo` instance (a cluster's guarded or membership step) is a wave of its own. A resource whose instances must start together (`start =
/// "together"` units) is launched as one group, on all its hosts at the same moment, once every
/// pending member is ready and every member's host is idle; while it waits for busy hosts,
/// nothing else is started on its hosts, and the group itself ignores the parallelism bound.
/// Rolling gates (see [`rolling_gates`]) are extra dependencies decided from the plan; an
/// instance held by them is not part of a start-together group.
struct Scheduler<'g> {
    graph: &'g Graph,
    state: Vec<State>,
    busy: BTreeSet<String>,
    parallelism: usize,
    /// Members of each start-together resource.
    groups: BTreeMap<ResourceId, Vec<usize>>,
    /// `grouped[i]`: instance `i` starts with its group.
    grouped: Vec<bool>,
    /// Extra dependencies of a rolling restart: earlier batches and their checks.
    gates: Vec<BTreeSet<usize>>,
    /// `solo[i]`: instance `i` never shares its wave.
    solo: Vec<bool>,
}

impl<'g> Scheduler<'g> {
    fn new(graph: &'g Graph, parallelism: usize, gates: Vec<BTreeSet<usize>>, rolling: &BTreeSet<usize>) -> Self {
        let mut groups: BTreeMap<ResourceId, Vec<usize>> = BTreeMap::new();
        let mut grouped = vec![false; graph.instances.len()];
        for (i, inst) in graph.instances.iter().enumerate() {
            if inst.desired.start_together() && !rolling.contains(&i) {
                groups.entry(inst.id.resource.clone()).or_default().push(i);
                grouped[i] = true;
            }
        }
        let gates = if gates.len() == graph.instances.len() { gates } else { vec![BTreeSet::new(); graph.instances.len()] };
        Self {
            graph,
            state: vec![State::Pending; graph.instances.len()],
            busy: BTreeSet::new(),
            parallelism: parallelism.max(1),
            groups,
            grouped,
            gates,
            solo: vec![false; graph.instances.len()],
        }
    }

    /// Makes each of `solo` a wave of its own.
    fn with_solo(mut self, solo: impl IntoIterator<Item = usize>) -> Self {
        for i in solo {
            if let Some(s) = self.solo.get_mut(i) {
                *s = true;
            }
        }
        self
    }

    /// Everything `i` waits for: its graph dependencies and its rolling gates.
    fn waits_for(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph.deps[i].iter().chain(self.gates[i].iter()).copied()
    }

    fn ready(&self, i: usize) -> bool {
        self.state[i] == State::Pending && self.waits_for(i).all(|d| self.state[d] == State::Ok)
    }

    fn host(&self, i: usize) -> &'g str {
        &self.graph.instances[i].id.host
    }

    fn launch(&mut self, i: usize, picked: &mut Vec<usize>) {
        self.state[i] = State::Running;
        self.busy.insert(self.host(i).to_string());
        picked.push(i);
    }

    /// [`Scheduler::waves`], flattened.
    #[cfg(test)]
    fn pick(&mut self) -> Vec<usize> {
        self.waves().into_iter().flatten().collect()
    }

    /// Marks the instances to start now as running (their hosts busy) and returns them, one
    /// wave per host (a start-together member is a wave of its own).
    fn waves(&mut self) -> Vec<Vec<usize>> {
        let mut waves = Vec::new();
        let mut reserved: BTreeSet<&str> = BTreeSet::new();
        let groups: Vec<Vec<usize>> = self.groups.values().cloned().collect();
        for members in groups {
            let pending: Vec<usize> = members.into_iter().filter(|&i| self.state[i] == State::Pending).collect();
            if pending.is_empty() || !pending.iter().all(|&i| self.ready(i)) {
                continue;
            }
            if pending.iter().any(|&i| self.busy.contains(self.host(i)) || reserved.contains(self.host(i))) {
                reserved.extend(pending.iter().map(|&i| self.host(i)));
                continue;
            }
            for i in pending {
                let mut wave = Vec::new();
                self.launch(i, &mut wave);
                waves.push(wave);
            }
        }
        for i in 0..self.graph.instances.len() {
            if self.busy.len() >= self.parallelism {
                break;
            }
            if !self.ready(i) || self.grouped[i] {
                continue;
            }
            let host = self.host(i);
            if self.busy.contains(host) || reserved.contains(host) {
                continue;
            }
            let mut wave = Vec::new();
            self.launch(i, &mut wave);
            if !self.solo[i] {
                // Everything else ready on this host now: none depends on another (each one's
                // dependencies all succeeded already), so they may go in one round trip.
                for j in i + 1..self.graph.instances.len() {
                    if self.host(j) == host && self.ready(j) && !self.grouped[j] && !self.solo[j] {
                        self.launch(j, &mut wave);
                    }
                }
            }
            waves.push(wave);
        }
        waves
    }

    /// Frees the instance's host.
    fn done(&mut self, i: usize) {
        self.busy.remove(self.host(i));
    }
}

/// Applies `plan` to the hosts of `graph`.
pub async fn apply(
    graph: &Arc<Graph>,
    plan: &Plan,
    connections: &Connections,
    options: ApplyOptions,
    reporter: Arc<dyn Reporter>,
) -> ApplyReport {
    // Members leave their clusters first, one at a time; a host whose member did not leave keeps
    // its service (its removal would take a voting member down).
    // A snapshot before the risky steps; without it, nothing runs.
    let snapshots = cluster::take_snapshots(graph, plan, connections, &*reporter).await;
    if snapshots.iter().any(|r| !r.outcome.is_ok()) {
        return not_started(graph, plan, snapshots, "the snapshot before the plan's risky steps failed");
    }
    let members_removed = cluster::remove_members(graph, plan, connections, &*reporter).await;
    let still_members: BTreeSet<String> = members_removed.iter().filter(|r| !r.outcome.is_ok()).map(|r| r.id.host.clone()).collect();
    let removed = remove_orphans(plan, connections, &reporter, &still_members).await;
    let n = graph.instances.len();
    let instance_changes = || plan.changes().filter_map(|c| c.instance().filter(|&i| i < n).map(|i| (i, c)));
    let planned: BTreeMap<usize, (Action, String)> = instance_changes().map(|(i, c)| (i, (c.action, c.reason.to_string()))).collect();
    // Changes a service that re-reads them by itself picks up without a restart.
    let live: BTreeSet<usize> =
        instance_changes().filter(|(i, c)| graph.instances[*i].desired.picked_up_live(c.action, &c.attrs)).map(|(i, _)| i).collect();
    let member_changes: BTreeMap<usize, Change> =
        instance_changes().filter(|(i, _)| graph.instances[*i].desired.member().is_some()).map(|(i, c)| (i, c.clone())).collect();
    let host_errors: BTreeMap<&str, &str> = plan.errors.iter().map(|e| (e.host.as_str(), e.error.as_str())).collect();
    let rolling: BTreeSet<usize> =
        instance_changes().filter(|(i, c)| c.disruptive && graph.instances[*i].desired.rolling().is_some()).map(|(i, _)| i).collect();
    // A disruptive change of a cluster's service is guarded (the cluster healthy right now).
    let guarded: BTreeMap<usize, crate::plan::ClusterPlan> = instance_changes()
        .filter(|(_, c)| c.disruptive && c.action.is_change())
        .filter_map(|(i, _)| plan.clusters.iter().find(|k| k.unit == graph.instances[i].id.resource).map(|k| (i, k.clone())))
        .collect();
    let mut gates = rolling_gates(graph, &rolling, &plan.clusters, &planned);
    cluster_gates(graph, &member_changes, &mut gates);
    let solo = member_changes.keys().chain(guarded.keys()).copied().collect::<Vec<_>>();
    let mut sched = Scheduler::new(graph, options.parallelism, gates, &rolling).with_solo(solo);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut tasks: tokio::task::JoinSet<Vec<(usize, Outcome)>> = tokio::task::JoinSet::new();
    let mut fresh = fresh_facts(plan);

    loop {
        // Settle everything that needs no remote work, until nothing more settles.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for i in 0..n {
                if let Some((outcome, ok)) = settled(graph, &sched, i, &planned, &host_errors) {
                    finish(&mut sched.state, &mut outcomes, &*reporter, graph, i, outcome, ok);
                    progressed = true;
                }
            }
        }

        // Start ready changes on idle hosts, a wave per host, within the parallelism bound
        // (groups together).
        for wave in sched.waves() {
            let Some(&first) = wave.first() else { continue };
            let host = graph.instances[first].id.host.clone();
            let Some(Ok(transport)) = connections.get(&host).cloned() else {
                for i in wave {
                    sched.done(i);
                    let o = Outcome::Failed(format!("{host}: not connected"));
                    finish(&mut sched.state, &mut outcomes, &*reporter, graph, i, o, false);
                }
                continue;
            };
            // Each instance with the dependencies on this host that changed something in this
            // apply.
            let wave: Vec<(usize, Vec<ResourceId>)> = wave
                .into_iter()
                .map(|i| {
                    reporter.started(&graph.instances[i].id, planned.get(&i).map_or(Action::NoOp, |p| p.0));
                    let changed = graph.deps[i]
                        .iter()
                        .filter(|&&j| graph.instances[j].id.host == host && outcomes[j].as_ref().is_some_and(Outcome::is_done))
                        .filter(|&&j| {
                            !(live.contains(&j) && graph.instances[i].desired.reloads().contains(&graph.instances[j].id.resource))
                        })
                        .map(|&j| graph.instances[j].id.resource.clone())
                        .collect();
                    (i, changed)
                })
                .collect();
            let graph = Arc::clone(graph);
            let member_change = member_changes.get(&first).cloned();
            let guard = guarded.get(&first).cloned();
            // The host's first wave, when nothing else touches it first, acts on the plan's read.
            let read = match &mut fresh {
                Some((at, _)) if at.elapsed() >= FRESH_READ => None,
                Some((_, facts)) if member_change.is_none() && guard.is_none() => facts.remove(&host),
                _ => None,
            };
            let connections = connections.clone();
            tasks.spawn(async move {
                let outcome = match (member_change, guard) {
                    (Some(change), _) => cluster::apply_member(&graph, first, &change, &connections).await,
                    (None, Some(k)) => match cluster::before_disruption(&graph, &k, &host, &connections).await {
                        Err(e) => Outcome::Failed(e.to_string()),
                        Ok(first) => match apply_wave(&graph, &wave, transport.as_ref()).await.pop() {
                            Some((_, applied)) if applied.is_done() => {
                                let done = applied.text();
                                match cluster::after_disruption(&graph, &k, &host, &connections).await {
                                    Err(e) => Outcome::Failed(format!("applied ({done}), but {e}")),
                                    Ok(after) => {
                                        let text = [first.as_deref(), Some(done), after.as_deref()]
                                            .into_iter()
                                            .flatten()
                                            .collect::<Vec<_>>()
                                            .join("; ");
                                        if matches!(applied, Outcome::DoneAfterRetry(_)) {
                                            Outcome::DoneAfterRetry(text)
                                        } else {
                                            Outcome::Done(text)
                                        }
                                    }
                                }
                            }
                            Some((_, outcome)) => outcome,
                            None => Outcome::Failed("internal error: empty wave".into()),
                        },
                    },
                    (None, None) => return apply_wave_with(&graph, &wave, transport.as_ref(), read).await,
                };
                vec![(first, outcome)]
            });
        }

        let Some(joined) = tasks.join_next().await else { break };
        match joined {
            Ok(results) => {
                for (i, outcome) in results {
                    sched.done(i);
                    let ok = outcome.is_ok();
                    finish(&mut sched.state, &mut outcomes, &*reporter, graph, i, outcome, ok);
                }
            }
            Err(e) => {
                // A panicked task cannot be attributed; report it on every running instance.
                for i in 0..n {
                    if sched.state[i] == State::Running {
                        sched.done(i);
                        let o = Outcome::Failed(format!("internal error: {e}"));
                        finish(&mut sched.state, &mut outcomes, &*reporter, graph, i, o, false);
                    }
                }
            }
        }
    }

    let results = snapshots
        .into_iter()
        .chain(members_removed)
        .chain(removed)
        .chain((0..n).map(|i| InstanceResult {
            id: graph.instances[i].id.clone(),
            action: planned.get(&i).map_or(Action::NoOp, |p| p.0),
            outcome: outcomes[i].clone().unwrap_or_else(|| Outcome::Skipped("never became ready".into())),
        }))
        .collect();
    let mut report = ApplyReport { results, unrecorded: Vec::new(), released: Vec::new() };
    let recorded = record_manifests(graph, plan, Some(&report), connections, options.release_locks.as_deref()).await;
    (report.unrecorded, report.released) = (recorded.failed, recorded.released);
    report
}

/// Runs the plan of a runbook operation (`cairn run`): its steps only, one at a time.
pub async fn run_operation(graph: &Arc<Graph>, plan: &Plan, connections: &Connections, reporter: Arc<dyn Reporter>) -> ApplyReport {
    ApplyReport { results: cluster::run_operation(graph, plan, connections, &*reporter).await, ..ApplyReport::default() }
}

/// The report of a run stopped before it began: `first` (what stopped it) and every planned
/// change not started, with why.
fn not_started(graph: &Graph, plan: &Plan, first: Vec<InstanceResult>, why: &str) -> ApplyReport {
    let mut results = first;
    let not_snapshots = plan.changes().filter(|c| !matches!(c.subject, crate::plan::Subject::Snapshot(_)));
    for c in not_snapshots.filter(|c| c.action.is_change() && c.instance().is_none_or(|i| i < graph.instances.len())) {
        results.push(InstanceResult { id: c.id.clone(), action: c.action, outcome: Outcome::Skipped(format!("not started: {why}")) });
    }
    ApplyReport { results, ..ApplyReport::default() }
}

/// `cairn check`: runs every check instance of `graph` now, hosts in parallel and each host's
/// checks in order, changing nothing and waiting for nothing (a check's `after` is for applies).
pub async fn run_checks(graph: &Graph, connections: &Connections) -> ApplyReport {
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, inst) in graph.instances.iter().enumerate() {
        if inst.desired.kind() == crate::spec::Kind::Check {
            by_host.entry(inst.id.host.as_str()).or_default().push(i);
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (host, checks) in by_host {
        let transport = connections.get(host).cloned();
        let checks: Vec<(InstanceId, Desired)> =
            checks.into_iter().map(|i| (graph.instances[i].id.clone(), graph.instances[i].desired.clone())).collect();
        tasks.spawn(async move {
            let mut results = Vec::new();
            for (id, desired) in checks {
                let outcome = match &transport {
                    Some(Ok(t)) => match desired.run_check(t.as_ref()).await {
                        Some(Ok(passed)) => Outcome::Passed(passed),
                        Some(Err(e)) => Outcome::Failed(e.to_string()),
                        None => Outcome::Skipped("not a check".into()),
                    },
                    Some(Err(e)) => Outcome::HostUnreadable(e.to_string()),
                    None => Outcome::Failed(format!("{}: not connected", id.host)),
                };
                results.push(InstanceResult { id, action: Action::Check, outcome });
            }
            results
        });
    }
    ApplyReport { results: by_host_order(tasks, "check").await, ..ApplyReport::default() }
}

/// The results of per-host tasks (`what` names them in the log of a task that panicked), hosts
/// in order, each host's results in the order its task made them (a stable sort).
async fn by_host_order(mut tasks: tokio::task::JoinSet<Vec<InstanceResult>>, what: &str) -> Vec<InstanceResult> {
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(host_results) => results.extend(host_results),
            Err(e) => tracing::error!("{what} task failed: {e}"),
        }
    }
    results.sort_by(|a, b| a.id.host.cmp(&b.id.host));
    results
}

/// Records, after a run that found nothing to change, what the spec manages on each host (a
/// manifest may still be missing or out of date). Returns the hosts where that failed.
pub async fn record_unchanged(graph: &Graph, plan: &Plan, connections: &Connections, release_locks: Option<&str>) -> Recorded {
    record_manifests(graph, plan, None, connections, release_locks).await
}

/// What recording the manifests did.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Hosts where writing failed, with the error, sorted.
    pub failed: Vec<(String, String)>,
    /// Hosts whose apply lock went with the write, sorted.
    pub released: Vec<String>,
}

/// The last step of every run: writes each host's manifest where what the spec manages there
/// changed ([`manifests_after`]), every host at once, releasing the apply lock of id
/// `release_locks` in the same command when given.
async fn record_manifests(
    graph: &Graph,
    plan: &Plan,
    report: Option<&ApplyReport>,
    connections: &Connections,
    release_locks: Option<&str>,
) -> Recorded {
    let mut writes = tokio::task::JoinSet::new();
    for (host, manifest) in manifests_after(graph, plan, report) {
        let Some(Ok(t)) = connections.get(&host) else { continue };
        let t = Arc::clone(t);
        let release = release_locks.map(str::to_string);
        writes.spawn(async move { (host, crate::state::host::write_manifest(t.as_ref(), &manifest, release.as_deref()).await) });
    }
    let mut recorded = Recorded::default();
    while let Some(joined) = writes.join_next().await {
        match joined {
            Ok((host, Err(e))) => recorded.failed.push((host, e.to_string())),
            Ok((host, Ok(true))) => recorded.released.push(host),
            Ok((_, Ok(false))) => {}
            Err(e) => recorded.failed.push(("?".to_string(), format!("manifest task failed: {e}"))),
        }
    }
    recorded.failed.sort();
    recorded.released.sort();
    recorded
}

/// Carries out the plan's removals: hosts in parallel, each host's in plan order, each re-read
/// and re-decided right before it acts. A failed removal does not stop the others (each owns
/// something different); its manifest entry stays, so the next plan tries again.
async fn remove_orphans(
    plan: &Plan,
    connections: &Connections,
    reporter: &Arc<dyn Reporter>,
    still_members: &BTreeSet<String>,
) -> Vec<InstanceResult> {
    let mut by_host: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for c in plan.changes().filter(|c| c.removal().is_some()) {
        by_host.entry(c.id.host.clone()).or_default().push(c.clone());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (host, changes) in by_host {
        let transport = connections.get(&host).cloned();
        let reporter = Arc::clone(reporter);
        let held = still_members.contains(&host);
        tasks.spawn(async move {
            let mut results = Vec::new();
            for c in changes {
                let Some(orphan) = c.removal() else { continue };
                let outcome = match (c.action, &transport) {
                    (_, _) if held && c.action.is_change() => {
                        Outcome::Skipped(format!("{host} is still a cluster member: its member removal did not complete"))
                    }
                    (Action::NoOp, _) => Outcome::Unchanged(c.reason.to_string()),
                    (Action::Conflict, _) => Outcome::Failed(c.reason.to_string()),
                    (_, Some(Ok(t))) => {
                        reporter.started(&c.id, c.action);
                        remove_one(orphan, t.as_ref()).await
                    }
                    (_, _) => Outcome::Failed(format!("{host}: not connected")),
                };
                reporter.finished(&c.id, &outcome);
                results.push(InstanceResult { id: c.id.clone(), action: c.action, outcome });
            }
            results
        });
    }
    by_host_order(tasks, "removal").await
}

/// The manifests that must change after a run, by host: each planned host's manifest of this
/// spec with what ended well put in and what was removed taken out. `report` is `None` when
/// nothing was applied (the plan had no changes): the plan's no-ops count as ended well then.
pub fn manifests_after(graph: &Graph, plan: &Plan, report: Option<&ApplyReport>) -> BTreeMap<String, Manifest> {
    let outcomes: BTreeMap<&InstanceId, &Outcome> =
        report.map(|r| r.results.iter().map(|x| (&x.id, &x.outcome)).collect()).unwrap_or_default();
    let ended_well = |c: &Change| match report {
        Some(_) => outcomes.get(&c.id).is_some_and(|o| o.is_ok()),
        None => matches!(c.action, Action::NoOp | Action::Check),
    };
    let mut changed = BTreeMap::new();
    for (host, previous) in &plan.manifests {
        let Some(changes) = plan.hosts.get(host) else { continue };
        let mut kept = Vec::new();
        let mut removed = BTreeSet::new();
        for c in changes.iter().filter(|c| ended_well(c)) {
            if c.removal().is_some() {
                removed.insert(c.id.resource.to_string());
            } else if let Some(inst) = c.instance().and_then(|i| graph.instances.get(i)) {
                let created = c.action == Action::Create && outcomes.get(&c.id).is_some_and(|o| o.is_done());
                if let Some(owned) = inst.desired.owned_after(created, &c.attrs) {
                    kept.push((c.id.resource.to_string(), inst.prevent_destroy, owned));
                }
            }
        }
        let next = Manifest::updated(&graph.spec_name, previous.as_ref(), &kept, &removed);
        let same = previous.as_ref().is_some_and(|p| p.resources == next.resources) || (previous.is_none() && next.resources.is_empty());
        if !same {
            changed.insert(host.clone(), next);
        }
    }
    changed
}

/// Re-reads one removal's state, re-decides, and removes.
async fn remove_one(orphan: &Orphan, transport: &dyn Transport) -> Outcome {
    let mut request = crate::resource::ProbeRequest::default();
    orphan.add_to_probe(&mut request);
    let facts = match request.run(transport).await {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("re-reading state: {e}")),
    };
    let decision = orphan.diff(&facts);
    match decision.action {
        Action::NoOp => Outcome::Unchanged(format!("already done when re-checked ({})", decision.reason)),
        Action::Conflict => Outcome::Failed(decision.reason.to_string()),
        _ => match orphan.apply(transport, &decision).await {
            Ok(()) => Outcome::Done(decision.reason.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        },
    }
}

/// Rolling restarts as extra dependencies. For each `rolling` unit, the instances whose planned
/// change interrupts the running service (`rolling`, in host order) go in batches of the unit's
/// size: an instance of batch k waits for every instance of the earlier batches and for the
/// `wait_for` check on each of their hosts. A check that waits for the unit on its own host
/// thus runs between the batches; units that are stopped, and so interrupt nothing, are started
/// as usual (together, when asked).
fn rolling_gates(
    graph: &Graph,
    rolling: &BTreeSet<usize>,
    clusters: &[crate::plan::ClusterPlan],
    planned: &BTreeMap<usize, (Action, String)>,
) -> Vec<BTreeSet<usize>> {
    let mut gates = vec![BTreeSet::new(); graph.instances.len()];
    let mut by_resource: BTreeMap<&ResourceId, Vec<usize>> = BTreeMap::new();
    for &i in rolling {
        by_resource.entry(&graph.instances[i].id.resource).or_default().push(i);
    }
    for (resource, members) in &mut by_resource {
        // A cluster's service: followers first, the leader last.
        let leader = clusters.iter().find(|k| k.unit == **resource).and_then(|k| k.summary.leader_host.as_deref());
        members.sort_by_key(|&i| Some(graph.instances[i].id.host.as_str()) == leader);
        let Some((batch, check)) = members.first().and_then(|&i| graph.instances[i].desired.rolling()) else { continue };
        for (rank, &i) in members.iter().enumerate() {
            for &earlier in &members[..(rank / batch) * batch] {
                gates[i].insert(earlier);
                let host = &graph.instances[earlier].id.host;
                let gate = graph.instances.iter().position(|x| Some(&x.id.resource) == check && &x.id.host == host);
                gates[i].extend(gate);
            }
        }
        // The change rolls as a whole: what restarts a member (its restart triggers on its host)
        // is written in that member's batch, so a stopped rollout leaves later members untouched.
        for &i in members.iter() {
            let host = &graph.instances[i].id.host;
            let triggers = graph.instances[i].desired.restart_triggers();
            let own: Vec<usize> = graph.deps[i]
                .iter()
                .copied()
                .filter(|&j| &graph.instances[j].id.host == host && triggers.contains(&graph.instances[j].id.resource))
                .filter(|j| planned.get(j).is_some_and(|(a, _)| a.is_change()))
                .collect();
            let held = gates[i].clone();
            for j in own {
                gates[j].extend(held.iter().copied());
            }
        }
    }
    gates
}

/// A cluster's membership steps run one at a time: healing steps (replace, finish a join)
/// first, then joins, each after the one before it.
fn cluster_gates(graph: &Graph, member_changes: &BTreeMap<usize, Change>, gates: &mut [BTreeSet<usize>]) {
    let mut by_cluster: BTreeMap<&ResourceId, Vec<(bool, usize)>> = BTreeMap::new();
    for (&i, c) in member_changes.iter().filter(|(_, c)| c.action.is_change()) {
        by_cluster.entry(&graph.instances[i].id.resource).or_default().push((c.action == Action::Create, i));
    }
    for steps in by_cluster.values_mut() {
        steps.sort();
        for pair in steps.windows(2) {
            if let Some(g) = gates.get_mut(pair[1].1) {
                g.insert(pair[0].1);
            }
        }
    }
}

/// How pending instance `i` ends without any remote work, if it does: skipped after a failed
/// dependency or rolling gate, failed for an unreadable host or a conflict, unchanged when the
/// plan has nothing to do (with whether dependents may go on). `None`: it waits, or needs work.
fn settled(
    graph: &Graph,
    sched: &Scheduler<'_>,
    i: usize,
    planned: &BTreeMap<usize, (Action, String)>,
    host_errors: &BTreeMap<&str, &str>,
) -> Option<(Outcome, bool)> {
    if sched.state[i] != State::Pending {
        return None;
    }
    if let Some(failed_dep) = graph.deps[i].iter().find(|&&d| sched.state[d] == State::NotOk) {
        return Some((Outcome::Skipped(format!("{} did not complete", graph.instances[*failed_dep].id)), false));
    }
    if let Some(failed_gate) = sched.gates[i].iter().find(|&&d| sched.state[d] == State::NotOk) {
        let failed = &graph.instances[*failed_gate].id;
        let why = if graph.instances[i].desired.member().is_some() {
            format!("membership changes stopped: {failed} did not complete (one step at a time; the next plan shows the cluster as it is)")
        } else {
            format!("rolling restart stopped: {failed} did not complete")
        };
        return Some((Outcome::Skipped(why), false));
    }
    if let Some(err) = host_errors.get(graph.instances[i].id.host.as_str()) {
        return Some((Outcome::HostUnreadable((*err).to_string()), false));
    }
    if !sched.ready(i) {
        return None;
    }
    match planned.get(&i) {
        None => Some((Outcome::Skipped("not in the plan".into()), false)),
        Some((Action::NoOp, reason)) => Some((Outcome::Unchanged(reason.clone()), true)),
        Some((Action::Conflict, reason)) => Some((Outcome::Failed(reason.clone()), false)),
        Some(_) => None,
    }
}

fn finish(
    state: &mut [State],
    outcomes: &mut [Option<Outcome>],
    reporter: &dyn Reporter,
    graph: &Graph,
    i: usize,
    outcome: Outcome,
    ok: bool,
) {
    state[i] = if ok { State::Ok } else { State::NotOk };
    reporter.finished(&graph.instances[i].id, &outcome);
    outcomes[i] = Some(outcome);
}

/// Carries out one wave of a host: its checks just run; the rest is re-read in one probe and
/// re-decided (each with the dependencies on its host that changed in this apply, see
/// `changed`), and each acts on its fresh decision. The files the changes stage are written in
/// one remote command, with one systemd reload for the unit files among them (see
/// [`crate::resource::batch`]); then each staged change finishes (a unit starts) and each change
/// that stages nothing applies itself. One outcome per instance, in wave order: a failure
/// belongs to the instance that failed only.
async fn apply_wave(graph: &Graph, wave: &[(usize, Vec<ResourceId>)], transport: &dyn Transport) -> Vec<(usize, Outcome)> {
    apply_wave_with(graph, wave, transport, None).await
}

/// How old a plan's read may be for the first wave of a host to act on it without reading the
/// host again: an apply that follows its plan at once (`--auto-approve`, the next phase of a CA
/// rotation, `apply PLAN`'s fresh plan), all under the apply locks. A plan that waited for a
/// confirmation is read again.
const FRESH_READ: std::time::Duration = std::time::Duration::from_secs(5);

/// The plan's read (when it started, the facts per host), when nothing runs on the hosts before
/// the waves (no removals, no cluster steps), so a host's first wave would decide as the plan
/// did; each host's is taken by its first wave while the read is younger than [`FRESH_READ`].
fn fresh_facts(plan: &Plan) -> Option<(std::time::Instant, BTreeMap<String, crate::resource::HostFacts>)> {
    let read = plan.read.as_ref()?;
    let before_waves = plan.changes().any(|c| c.action.is_change() && (c.removal().is_some() || c.instance().is_none()));
    (!before_waves).then(|| (read.at, read.facts.clone()))
}

/// [`apply_wave`], acting on `read` (the plan's facts of the host, fresh) instead of a new probe.
async fn apply_wave_with(
    graph: &Graph,
    wave: &[(usize, Vec<ResourceId>)],
    transport: &dyn Transport,
    read: Option<crate::resource::HostFacts>,
) -> Vec<(usize, Outcome)> {
    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut changes = Vec::new();
    for (i, changed) in wave {
        let outcome = match graph.instances[*i].desired.run_check(transport).await {
            Some(Ok(passed)) => Outcome::Passed(passed),
            Some(Err(e)) => Outcome::Failed(e.to_string()),
            None => {
                changes.push((*i, changed));
                continue;
            }
        };
        outcomes.insert(*i, outcome);
    }
    let wanted: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
    let facts = match read {
        _ if wanted.is_empty() => None,
        Some(read) => Some(Ok(read)),
        None => Some(probe(graph, &wanted, transport).await),
    };
    let mut staged = Vec::new();
    let mut direct = Vec::new();
    for (i, changed) in changes {
        let facts = match &facts {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                outcomes.insert(i, Outcome::Failed(format!("re-reading state: {e}")));
                continue;
            }
            None => continue,
        };
        let desired = &graph.instances[i].desired;
        let decision = desired.with_changed_deps(graph.instances[i].decide(facts), changed, false);
        let outcome = match decision.action {
            Action::NoOp => Outcome::Unchanged(format!("already up to date when re-checked ({})", decision.reason)),
            Action::Conflict => Outcome::Failed(decision.reason.to_string()),
            _ => match desired.stage(&decision).await {
                Ok(Some(stage)) => {
                    staged.push((i, decision, stage));
                    continue;
                }
                Ok(None) => {
                    direct.push((i, decision));
                    continue;
                }
                Err(e) => Outcome::Failed(e.to_string()),
            },
        };
        outcomes.insert(i, outcome);
    }
    let stages: Vec<&crate::resource::batch::Staged> = staged.iter().map(|(_, _, s)| s).collect();
    let written = crate::resource::batch::write_staged(transport, &stages).await;
    for ((i, decision, _), written) in staged.iter().zip(written) {
        let result = match written {
            Ok(()) => graph.instances[*i].desired.apply_staged(transport, decision).await,
            Err(e) => Err(e),
        };
        outcomes.insert(*i, done_or_failed(result, decision));
    }
    for (i, decision) in direct {
        let result = graph.instances[i].desired.apply(transport, &decision).await;
        outcomes.insert(i, done_or_failed(result, &decision));
    }
    wave.iter().map(|(i, _)| (*i, outcomes.remove(i).unwrap_or_else(|| Outcome::Failed("internal error: no outcome".into())))).collect()
}

/// The outcome of carrying out `decision`: its reason, and what the way there met.
fn done_or_failed(result: Result<Applied, crate::resource::ApplyError>, decision: &crate::resource::Decision) -> Outcome {
    match result {
        Ok(Applied { start_retried: None }) => Outcome::Done(decision.reason.to_string()),
        Ok(Applied { start_retried: Some(retried) }) => {
            Outcome::DoneAfterRetry(format!("{} ({})", decision.reason, retried_words(&retried)))
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The words for a start that succeeded when tried again: "retried once: systemd could not set
/// up the unit's cgroup, status 219/CGROUP".
fn retried_words(retried: &StartRetried) -> String {
    let times = match retried.retries {
        1 => "once".to_string(),
        2 => "twice".to_string(),
        n => format!("{n} times"),
    };
    format!("{} retried {times}: {}", retried.verb, retried.cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(resources: &str) -> Graph {
        let text = format!(
            "[hosts.h1]\naddress = \"192.0.2.1\"\n[hosts.h2]\naddress = \"192.0.2.2\"\n[hosts.h3]\naddress = \"192.0.2.3\"\n{resources}"
        );
        let spec = crate::spec::load_str(std::path::Path::new("cairn.toml"), &text).unwrap_or_else(|e| panic!("{}", e.render()));
        Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
    }

    fn names(g: &Graph, picked: &[usize]) -> Vec<String> {
        picked.iter().map(|&i| g.instances[i].id.to_string()).collect()
    }

    fn finish_all(s: &mut Scheduler<'_>, picked: &[usize]) {
        for &i in picked {
            s.done(i);
            s.state[i] = State::Ok;
        }
    }

    const TOGETHER: &str = r#"
[file.cfg]
path = "/etc/demo.conf"
content = "x"
[unit.demo]
name = "demo.service"
start = "together"
restart_on = ["file.cfg"]
"#;

    #[test]
    fn together_group_starts_on_every_host_at_once_past_the_parallelism_bound() {
        let g = graph(TOGETHER);
        let mut s = Scheduler::new(&g, 1, Vec::new(), &BTreeSet::new());
        // Parallelism 1: the files go one host at a time.
        for host in ["h1", "h2", "h3"] {
            let picked = s.pick();
            assert_eq!(names(&g, &picked), vec![format!("file.cfg on {host}")]);
            assert!(s.pick().is_empty(), "one busy host is the bound");
            finish_all(&mut s, &picked);
        }
        // Then the unit on all three hosts in one go.
        let picked = s.pick();
        assert_eq!(names(&g, &picked), vec!["unit.demo on h1", "unit.demo on h2", "unit.demo on h3"]);
        assert_eq!(s.busy.len(), 3);
    }

    #[test]
    fn together_group_waits_until_every_member_is_ready_and_reserves_busy_hosts() {
        // file.other waits for file.cfg, so it is ready just when the group is.
        let g =
            graph(&format!("{TOGETHER}\n[file.other]\nhosts = [\"h3\"]\npath = \"/etc/other\"\ncontent = \"y\"\nafter = [\"file.cfg\"]\n"));
        let mut s = Scheduler::new(&g, 10, Vec::new(), &BTreeSet::new());
        let first = s.pick();
        assert_eq!(names(&g, &first), vec!["file.cfg on h1", "file.cfg on h2", "file.cfg on h3"]);
        // h1 and h2 done, h3 still busy: no member starts alone.
        let (h3, rest): (Vec<usize>, Vec<usize>) = first.iter().partition(|&&i| g.instances[i].id.host == "h3");
        finish_all(&mut s, &rest);
        assert!(s.pick().is_empty());
        // h3's config done: every member is ready, but file.other would keep h3 busy; the group
        // goes first, and file.other waits for h3.
        finish_all(&mut s, &h3);
        let picked = s.pick();
        assert_eq!(names(&g, &picked), vec!["unit.demo on h1", "unit.demo on h2", "unit.demo on h3"]);
        finish_all(&mut s, &picked);
        assert_eq!(names(&g, &s.pick()), vec!["file.other on h3"]);
    }

    #[test]
    fn group_waiting_for_a_busy_host_keeps_its_hosts_free() {
        let g = graph(
            r#"
[file.first]
hosts = ["h1"]
path = "/etc/first"
content = "x"
[file.slow]
hosts = ["h2"]
path = "/etc/slow"
content = "x"
[unit.demo]
hosts = ["h1", "h2"]
name = "demo.service"
start = "together"
after = ["file.first"]
[file.later]
hosts = ["h1"]
path = "/etc/later"
content = "y"
after = ["file.first"]
"#,
        );
        let mut s = Scheduler::new(&g, 10, Vec::new(), &BTreeSet::new());
        let picked = s.pick();
        assert_eq!(names(&g, &picked), vec!["file.first on h1", "file.slow on h2"]);
        let (first, slow) = (picked[0], picked[1]);
        // Every member is ready once file.first is done, but h2 is busy: the group waits, and
        // h1 is kept free for it (file.later, ready too, does not start).
        finish_all(&mut s, &[first]);
        assert!(s.pick().is_empty());
        finish_all(&mut s, &[slow]);
        let picked = s.pick();
        assert_eq!(names(&g, &picked), vec!["unit.demo on h1", "unit.demo on h2"]);
        finish_all(&mut s, &picked);
        assert_eq!(names(&g, &s.pick()), vec!["file.later on h1"]);
    }

    #[test]
    fn everything_ready_on_a_host_goes_in_one_wave_and_solo_instances_alone() {
        let g = graph(
            r#"
[dir.d]
path = "/etc/d"
[file.a]
path = "/etc/d/a"
content = "a"
[file.b]
path = "/etc/d/b"
content = "b"
[file.c]
hosts = ["h1"]
path = "/etc/c"
content = "c"
"#,
        );
        let id = |s: &str| g.instances.iter().position(|x| x.id.to_string() == s).unwrap();
        let mut s = Scheduler::new(&g, 10, Vec::new(), &BTreeSet::new()).with_solo([id("file.c on h1")]);
        let first = s.waves();
        let first_names: Vec<Vec<String>> = first.iter().map(|w| names(&g, w)).collect();
        assert_eq!(first_names, vec![vec!["dir.d on h1"], vec!["dir.d on h2"], vec!["dir.d on h3"]], "file.c waits for h1's wave");
        for w in &first {
            finish_all(&mut s, w);
        }
        let second = s.waves();
        let second_names: Vec<Vec<String>> = second.iter().map(|w| names(&g, w)).collect();
        assert_eq!(
            second_names,
            vec![vec!["file.a on h1", "file.b on h1"], vec!["file.a on h2", "file.b on h2"], vec!["file.a on h3", "file.b on h3"]],
            "the files below the dir go together; the solo one is not part of that"
        );
        for w in &second {
            finish_all(&mut s, w);
        }
        assert_eq!(names(&g, &s.pick()), vec!["file.c on h1"]);
    }

    #[test]
    fn per_host_units_follow_the_parallelism_bound() {
        let g = graph("[unit.demo]\nname = \"demo.service\"\n");
        let mut s = Scheduler::new(&g, 2, Vec::new(), &BTreeSet::new());
        assert_eq!(s.pick().len(), 2);
        assert!(s.pick().is_empty());
    }

    const ROLLING: &str = r#"
[file.cfg]
path = "/etc/demo.conf"
content = "x"
[unit.demo]
name = "demo.service"
start = "together"
restart_on = ["file.cfg"]
rolling = { batch = 1, wait_for = "check.healthy" }
[check.healthy]
command = "true"
after = ["unit.demo"]
"#;

    fn unit_instances(g: &Graph) -> BTreeSet<usize> {
        (0..g.instances.len()).filter(|&i| g.instances[i].id.resource.to_string() == "unit.demo").collect()
    }

    #[test]
    fn rolling_restart_goes_one_host_at_a_time_with_the_check_in_between() {
        let g = graph(ROLLING);
        let rolling = unit_instances(&g);
        let mut s = Scheduler::new(&g, 10, rolling_gates(&g, &rolling, &[], &BTreeMap::new()), &rolling);
        let files = s.pick();
        assert_eq!(names(&g, &files), vec!["file.cfg on h1", "file.cfg on h2", "file.cfg on h3"]);
        finish_all(&mut s, &files);
        let mut order = Vec::new();
        loop {
            let picked = s.pick();
            if picked.is_empty() {
                break;
            }
            order.extend(names(&g, &picked));
            finish_all(&mut s, &picked);
        }
        assert_eq!(
            order,
            vec![
                "unit.demo on h1",
                "check.healthy on h1",
                "unit.demo on h2",
                "check.healthy on h2",
                "unit.demo on h3",
                "check.healthy on h3"
            ]
        );
    }

    #[test]
    fn rolling_batches_of_two_gate_the_third_host_on_both_checks() {
        let g = graph(&ROLLING.replace("batch = 1", "batch = 2"));
        let rolling = unit_instances(&g);
        let gates = rolling_gates(&g, &rolling, &[], &BTreeMap::new());
        let id = |s: &str| g.instances.iter().position(|x| x.id.to_string() == s).unwrap();
        assert!(gates[id("unit.demo on h1")].is_empty());
        assert!(gates[id("unit.demo on h2")].is_empty(), "h1 and h2 form the first batch");
        let third: BTreeSet<usize> =
            ["unit.demo on h1", "check.healthy on h1", "unit.demo on h2", "check.healthy on h2"].iter().map(|s| id(s)).collect();
        assert_eq!(gates[id("unit.demo on h3")], third);
    }

    #[test]
    fn stopped_units_are_not_held_back_and_still_start_together() {
        // Nothing interrupts a running service (first bring-up): no gates, the group starts as one.
        let g = graph(ROLLING);
        let gates = rolling_gates(&g, &BTreeSet::new(), &[], &BTreeMap::new());
        assert!(gates.iter().all(BTreeSet::is_empty));
        let mut s = Scheduler::new(&g, 10, gates, &BTreeSet::new());
        let files = s.pick();
        finish_all(&mut s, &files);
        assert_eq!(names(&g, &s.pick()), vec!["unit.demo on h1", "unit.demo on h2", "unit.demo on h3"]);
    }

    /// Every instance of `g` planned to change.
    fn all_changing(g: &Graph) -> BTreeMap<usize, (Action, String)> {
        (0..g.instances.len()).map(|i| (i, (Action::Update, String::new()))).collect()
    }

    fn run_order(g: &Graph, s: &mut Scheduler<'_>) -> Vec<String> {
        let mut order = Vec::new();
        loop {
            let picked = s.pick();
            if picked.is_empty() {
                break;
            }
            order.extend(names(g, &picked));
            finish_all(s, &picked);
        }
        order
    }

    #[test]
    fn a_rolling_change_writes_each_members_files_in_its_own_batch() {
        let g = graph(ROLLING);
        let rolling = unit_instances(&g);
        let mut s = Scheduler::new(&g, 10, rolling_gates(&g, &rolling, &[], &all_changing(&g)), &rolling);
        let order = run_order(&g, &mut s);
        assert_eq!(
            order,
            vec![
                "file.cfg on h1",
                "unit.demo on h1",
                "check.healthy on h1",
                "file.cfg on h2",
                "unit.demo on h2",
                "check.healthy on h2",
                "file.cfg on h3",
                "unit.demo on h3",
                "check.healthy on h3"
            ]
        );
    }

    #[test]
    fn a_failed_batch_leaves_the_later_members_files_alone() {
        let g = graph(ROLLING);
        let rolling = unit_instances(&g);
        let mut s = Scheduler::new(&g, 10, rolling_gates(&g, &rolling, &[], &all_changing(&g)), &rolling);
        let first = s.pick();
        assert_eq!(names(&g, &first), vec!["file.cfg on h1"]);
        finish_all(&mut s, &first);
        let unit = s.pick();
        assert_eq!(names(&g, &unit), vec!["unit.demo on h1"]);
        s.done(unit[0]);
        s.state[unit[0]] = State::NotOk;
        assert!(s.pick().is_empty(), "nothing of h2 or h3 starts after h1's restart failed");
    }

    #[test]
    fn a_clusters_leader_restarts_last() {
        use crate::resource::cluster::membership::{ClusterHealth, ClusterSummary};
        let g = graph(ROLLING);
        let rolling = unit_instances(&g);
        let summary = ClusterSummary {
            health: ClusterHealth::Healthy,
            problems: Vec::new(),
            voters: 3,
            learners: 0,
            leader: Some("h1".into()),
            leader_host: Some("h1".into()),
            versions: Vec::new(),
            read_through: None,
            members: Vec::new(),
            cluster_version: None,
        };
        let cluster = crate::plan::ClusterPlan {
            id: ResourceId::new(crate::spec::Kind::Cluster, "members"),
            driver: "etcd".into(),
            unit: ResourceId::new(crate::spec::Kind::Unit, "demo"),
            summary,
            upgrade: None,
        };
        let mut s = Scheduler::new(&g, 10, rolling_gates(&g, &rolling, &[cluster], &BTreeMap::new()), &rolling);
        let order: Vec<String> = run_order(&g, &mut s).into_iter().filter(|n| n.starts_with("unit")).collect();
        assert_eq!(order, vec!["unit.demo on h2", "unit.demo on h3", "unit.demo on h1"]);
    }
}
