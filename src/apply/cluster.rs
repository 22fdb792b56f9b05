//! Carrying out cluster membership steps, each re-checked live through a healthy member first:
//! a join (add as learner → start the member's service → promote once caught up → the cluster
//! healthy again), a replace (stop, set the old data aside, remove the old member, then join),
//! a removal (move leadership away if it leads → remove → stop and disable the service → set
//! its data aside), and the guard before a disruptive change of a member's service (the cluster
//! healthy right now). Steps go through
//! a member's host (`via`), never from the machine running cairn.

use std::time::{Duration, Instant};

use super::Outcome;
use crate::graph::Graph;
use crate::plan::planner::Connections;
use crate::plan::{Action, Change, ClusterPlan, Plan};
use crate::resource::cluster::operations::{OperationStep, SnapshotSource};
use crate::resource::cluster::{ClusterDriver, DesiredMember, ListedMember, MemberObservation, MemberStep};
use crate::resource::unit::{StartHow, start_unit};
use crate::resource::{ApplyError, Reason, run_checked};
use crate::spec::ResourceId;
use crate::transport::{SharedTransport, Transport, argv};

/// How long the cluster may take to be healthy again after a step.
const HEALTHY_AGAIN: Duration = Duration::from_secs(90);

/// A member of the spec, reached: its host, its member and its transport.
struct Reached<'g> {
    host: &'g str,
    member: &'g DesiredMember,
    transport: SharedTransport,
}

/// The members of cluster `id` in the graph, with their hosts.
fn members<'g>(graph: &'g Graph, id: &ResourceId) -> Vec<(&'g str, &'g DesiredMember)> {
    graph.instances.iter().filter(|i| &i.id.resource == id).filter_map(|i| i.desired.member().map(|m| (i.id.host.as_str(), m))).collect()
}

fn listed<'v>(members: &'v [ListedMember], m: &DesiredMember) -> Option<&'v ListedMember> {
    members.iter().find(|l| m.is(l))
}

/// A voting member that answers now, other than on `not_on`, with the cluster as it sees it.
async fn healthy_via<'g>(
    graph: &'g Graph,
    id: &ResourceId,
    not_on: Option<&str>,
    connections: &Connections,
) -> Result<(Reached<'g>, MemberObservation), String> {
    let mut why = Vec::new();
    for (host, member) in members(graph, id) {
        if Some(host) == not_on {
            continue;
        }
        let Some(Ok(transport)) = connections.get(host).cloned() else { continue };
        match member.driver.get().read(transport.as_ref()).await {
            Ok(obs) => {
                let voter = obs.members.as_deref().and_then(|ms| listed(ms, member)).is_some_and(|l| !l.learner);
                if obs.answered && voter {
                    return Ok((Reached { host, member, transport }, obs));
                }
                why.push(format!("{host}: {}", obs.error.unwrap_or_else(|| "not a voting member".into())));
            }
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(format!("no voting member of {id} answers ({})", if why.is_empty() { "none reached".to_string() } else { why.join("; ") }))
}

fn service(member: &DesiredMember) -> Result<&str, ApplyError> {
    member.service.as_deref().ok_or_else(|| ApplyError::Failed(format!("member {}: its service has no unit on this host", member.name)))
}

/// Waits until the cluster is healthy through `via`.
async fn wait_healthy(driver: &dyn ClusterDriver, via: &dyn Transport) -> Result<(), ApplyError> {
    let started = Instant::now();
    loop {
        match driver.healthy(via).await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() > HEALTHY_AGAIN => {
                return Err(ApplyError::Failed(format!("the cluster did not become healthy within {} s: {e}", HEALTHY_AGAIN.as_secs())));
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Waits until the members that answer follow one leader (after a member stopped).
async fn wait_for_a_leader(driver: &dyn ClusterDriver, via: &dyn Transport) -> Result<(), ApplyError> {
    let started = Instant::now();
    loop {
        let seen = driver.read(via).await?;
        if seen.statuses.iter().any(|s| s.leader != 0) {
            return Ok(());
        }
        if started.elapsed() > HEALTHY_AGAIN {
            return Err(ApplyError::Failed("no leader was elected after the member stopped".into()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every voting member answers and they follow one leader (an alarm may stay: the
/// operations that clear it run while it is raised).
async fn wait_all_answer(driver: &dyn ClusterDriver, via: &dyn Transport) -> Result<(), ApplyError> {
    let started = Instant::now();
    loop {
        let seen = driver.read(via).await?;
        let voters: Vec<u64> = seen.members.iter().flatten().filter(|m| !m.learner).map(|m| m.id).collect();
        let leaders: std::collections::BTreeSet<u64> = seen.statuses.iter().map(|s| s.leader).filter(|&l| l != 0).collect();
        if !voters.is_empty() && voters.iter().all(|v| seen.statuses.iter().any(|s| s.id == *v)) && leaders.len() == 1 {
            return Ok(());
        }
        if started.elapsed() > HEALTHY_AGAIN {
            return Err(ApplyError::Failed("the members did not all answer with one leader again".into()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts a member added as `id` and promotes it once it has caught up.
async fn finish_join(member: &DesiredMember, host: &dyn Transport, via: &Reached<'_>, id: u64) -> Result<String, ApplyError> {
    let driver = member.driver.get();
    let unit = service(member)?;
    // Its unit file may have been written in this apply (by a file resource): load it first.
    run_checked(host, &argv(&["systemctl", "daemon-reload"])).await?;
    let retried = start_member(host, unit).await?;
    let started = Instant::now();
    while !driver.promote(via.transport.as_ref(), id).await? {
        if started.elapsed() > Duration::from_secs(member.join_timeout_secs) {
            return Err(ApplyError::Failed(format!(
                "learner {id:x} did not catch up within {}s; it stays a learner (the next plan finishes the join)",
                member.join_timeout_secs
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_healthy(driver, via.transport.as_ref()).await?;
    let retried = retried.map(|words| format!(" ({words})")).unwrap_or_default();
    Ok(format!("member {} joined as {id:x}: added as learner, started{retried}, caught up, promoted; cluster healthy", member.name))
}

/// Starts a member's `unit` on `host` and waits for it to be active; a start that systemd failed
/// for a cause of its own (219/CGROUP) is tried again, as a unit resource's is. `Some` says how
/// the start was retried; a failed start's error carries what the service said.
async fn start_member(host: &dyn Transport, unit: &str) -> Result<Option<String>, ApplyError> {
    match start_unit(host, unit, "start", StartHow::Blocking).await? {
        Ok(retried) => Ok(retried.map(|r| format!("{unit} on {}: {}", host.host(), super::retried_words(&r)))),
        // What the service said is what the operator needs next.
        Err(failed) => {
            let journal =
                host.run(&argv(&["journalctl", "-u", unit, "-n", "12", "--no-pager", "-o", "cat"]), crate::transport::Stdin::Null).await;
            let said = journal.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
            Err(ApplyError::Failed(format!("{unit} {}\n{unit} on {} said:\n{said}", failed.what, host.host())))
        }
    }
}

/// Carries out the planned step of member instance `i` (its change in the plan is `change`).
pub(super) async fn apply_member(graph: &Graph, i: usize, change: &Change, connections: &Connections) -> Outcome {
    let inst = &graph.instances[i];
    let Some(member) = inst.desired.member() else { return Outcome::Failed("not a cluster member".into()) };
    let Reason::Member(step) = &change.reason else { return Outcome::Failed(change.reason.to_string()) };
    let Some(Ok(host)) = connections.get(&inst.id.host).cloned() else {
        return Outcome::Failed(format!("{}: not connected", inst.id.host));
    };
    match member_step(graph, &inst.id.resource, &inst.id.host, member, step, host.as_ref(), connections).await {
        Ok(Some(done)) => Outcome::Done(done),
        Ok(None) => Outcome::Unchanged(format!("member {}: already a voting member when re-checked", member.name)),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn member_step(
    graph: &Graph,
    id: &ResourceId,
    host_name: &str,
    member: &DesiredMember,
    step: &MemberStep,
    host: &dyn Transport,
    connections: &Connections,
) -> Result<Option<String>, ApplyError> {
    let driver = member.driver.get();
    let (via, seen) = healthy_via(graph, id, Some(host_name), connections).await.map_err(ApplyError::Failed)?;
    let now = seen.members.as_deref().and_then(|ms| listed(ms, member)).cloned();
    let answers = |l: &ListedMember| seen.statuses.iter().any(|s| s.id == l.id);
    match step {
        MemberStep::Join { .. } | MemberStep::Resume { .. } => {
            if let Some(l) = &now {
                if !l.learner && answers(l) {
                    return Ok(None);
                }
                if l.learner && answers(l) {
                    return finish_promote(member, &via, l.id).await.map(Some);
                }
                if !l.learner {
                    // Added as a voter by hand (`member add` without --learner): only started.
                    let unit = service(member)?;
                    run_checked(host, &argv(&["systemctl", "daemon-reload"])).await?;
                    let retried = start_member(host, unit).await?.map(|words| format!(" ({words})")).unwrap_or_default();
                    wait_healthy(driver, via.transport.as_ref()).await?;
                    return Ok(Some(format!("member {} ({:x}) started{retried}; cluster healthy", member.name, l.id)));
                }
                return finish_join(member, host, &via, l.id).await.map(Some);
            }
            let aside = driver.set_data_aside(host, "stale").await?;
            let new = driver.add_learner(via.transport.as_ref(), &member.name, &member.peer_url).await?;
            let mut done = finish_join(member, host, &via, new).await?;
            if let Some(kept) = aside {
                done.push_str(&format!("; its old data is kept in {kept}"));
            }
            Ok(Some(done))
        }
        MemberStep::Replace { id: old, .. } => {
            let unit = service(member)?;
            // A leading member hands its leadership over itself as it stops gracefully.
            run_checked(host, &argv(&["systemctl", "stop", unit])).await?;
            wait_for_a_leader(driver, via.transport.as_ref()).await?;
            let aside = driver.set_data_aside(host, "replaced").await?;
            if now.as_ref().is_some_and(|l| l.id == *old) {
                driver.remove(via.transport.as_ref(), *old).await?;
            }
            let new = driver.add_learner(via.transport.as_ref(), &member.name, &member.peer_url).await?;
            let mut done = finish_join(member, host, &via, new).await?;
            done = format!("replaced {old:x}: {done}");
            if let Some(kept) = aside {
                done.push_str(&format!("; the old data is kept in {kept}"));
            }
            Ok(Some(done))
        }
        MemberStep::Decided | MemberStep::Voter { .. } | MemberStep::Forming | MemberStep::Down | MemberStep::Remove { .. } => Ok(None),
    }
}

async fn finish_promote(member: &DesiredMember, via: &Reached<'_>, id: u64) -> Result<String, ApplyError> {
    let driver = member.driver.get();
    let started = Instant::now();
    while !driver.promote(via.transport.as_ref(), id).await? {
        if started.elapsed() > Duration::from_secs(member.join_timeout_secs) {
            return Err(ApplyError::Failed(format!("learner {id:x} did not catch up within {}s", member.join_timeout_secs)));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_healthy(driver, via.transport.as_ref()).await?;
    Ok(format!("learner {} promoted; cluster healthy", member.name))
}

/// Removes the members the spec no longer has, one at a time per cluster, before anything else.
pub(super) async fn remove_members(
    graph: &Graph,
    plan: &Plan,
    connections: &Connections,
    reporter: &dyn super::Reporter,
) -> Vec<super::InstanceResult> {
    let mut results = Vec::new();
    for cluster in &plan.clusters {
        let leaving: Vec<&Change> =
            plan.changes().filter(|c| matches!(&c.subject, crate::plan::Subject::MemberRemoval(id) if *id == cluster.id)).collect();
        for c in leaving {
            let outcome = match (c.action, &c.reason) {
                (Action::Delete, Reason::Member(MemberStep::Remove { id, name, .. })) => {
                    reporter.started(&c.id, c.action);
                    match remove_member(graph, cluster, *id, name, &c.id.host, connections).await {
                        Ok(done) => Outcome::Done(done),
                        Err(e) => Outcome::Failed(e.to_string()),
                    }
                }
                (Action::NoOp, _) => Outcome::Unchanged(c.reason.to_string()),
                _ => Outcome::Failed(c.reason.to_string()),
            };
            reporter.finished(&c.id, &outcome);
            let failed = !outcome.is_ok();
            results.push(super::InstanceResult { id: c.id.clone(), action: c.action, outcome });
            if failed {
                break;
            }
        }
    }
    results
}

async fn remove_member(
    graph: &Graph,
    cluster: &ClusterPlan,
    id: u64,
    name: &str,
    host: &str,
    connections: &Connections,
) -> Result<String, ApplyError> {
    let (via, seen) = healthy_via(graph, &cluster.id, None, connections).await.map_err(ApplyError::Failed)?;
    let driver = via.member.driver.get();
    let members = seen.members.clone().unwrap_or_default();
    if !members.iter().any(|m| m.id == id) {
        return Ok(format!("member {name} was already removed"));
    }
    let mut done = Vec::new();
    let leader = seen.statuses.iter().map(|s| s.leader).find(|&l| l != 0);
    if leader == Some(id) {
        let to = listed(&members, via.member).map(|l| l.id).ok_or_else(|| ApplyError::Failed("no member to lead instead".into()))?;
        driver.move_leader(via.transport.as_ref(), to).await?;
        done.push(format!("leadership moved to {}", via.member.name));
    }
    driver.remove(via.transport.as_ref(), id).await?;
    done.push(format!("member {name} ({id:x}) removed"));
    let leaving = (host != via.host).then(|| connections.get(host).cloned()).flatten();
    if let (Some(Ok(t)), Some(unit)) = (leaving, via.member.service.as_deref()) {
        // Stopped and disabled now: removed, it must not start again and look for its old peers.
        run_checked(t.as_ref(), &argv(&["systemctl", "disable", "--now", unit])).await?;
        done.push(format!("{unit} stopped and disabled on {host}"));
        if let Some(kept) = driver.set_data_aside(t.as_ref(), "removed").await? {
            done.push(format!("its data kept in {kept}"));
        }
    }
    wait_healthy(driver, via.transport.as_ref()).await?;
    Ok(done.join("; "))
}

/// Before a disruptive change of a cluster's service on `host`: the cluster must be healthy
/// right now (unless the operator allowed a degraded one). Leadership is not moved here: etcd
/// hands it to the most up-to-date voting member itself when a leader stops gracefully, after it
/// has closed its client listeners, so no client request reaches a leader in transfer (moving it
/// beforehand while the leader still served clients dropped writes in flight in the lab).
/// The rolling order puts the leader last, so every member it can hand over to is done.
pub(super) async fn before_disruption(
    graph: &Graph,
    cluster: &ClusterPlan,
    host: &str,
    connections: &Connections,
) -> Result<Option<String>, ApplyError> {
    let Some((_, member)) = members(graph, &cluster.id).into_iter().find(|(h, _)| *h == host) else { return Ok(None) };
    let Some(Ok(t)) = connections.get(host).cloned() else { return Ok(None) };
    let driver = member.driver.get();
    let seen = driver.read(t.as_ref()).await?;
    if !seen.answered {
        // Not running: restarting it disrupts nothing.
        return Ok(None);
    }
    if let Err(e) = driver.healthy(t.as_ref()).await
        && !graph.allow_degraded
    {
        return Err(ApplyError::Failed(format!(
            "held by the quorum guard: {} is not healthy right before restarting {host}'s member ({e}); pass --allow-degraded to risk it",
            cluster.id
        )));
    }
    let leads = seen.members.as_deref().and_then(|ms| listed(ms, member)).is_some_and(|me| seen.statuses.iter().any(|s| s.leader == me.id));
    Ok(leads.then(|| format!("{} led: it hands leadership to a restarted member as it stops", member.name)))
}

/// Takes the snapshots the plan asks for (its `Subject::Snapshot` changes), before anything
/// else runs: through the planned member, verified there, kept in its snapshot dir and, unless
/// turned off, copied to the machine running cairn with its sha256 checked.
pub(super) async fn take_snapshots(
    graph: &Graph,
    plan: &Plan,
    connections: &Connections,
    reporter: &dyn super::Reporter,
) -> Vec<super::InstanceResult> {
    let mut results = Vec::new();
    for c in plan.changes().filter(|c| matches!(c.subject, crate::plan::Subject::Snapshot(_))) {
        reporter.started(&c.id, c.action);
        let outcome = match snapshot(graph, c, connections).await {
            Ok(done) => Outcome::Done(done),
            Err(e) => Outcome::Failed(format!("{e}; nothing else was started (a risky step runs only after its snapshot)")),
        };
        reporter.finished(&c.id, &outcome);
        results.push(super::InstanceResult { id: c.id.clone(), action: c.action, outcome });
    }
    results
}

async fn snapshot(graph: &Graph, c: &Change, connections: &Connections) -> Result<String, ApplyError> {
    let host = c.id.host.as_str();
    let (member, t) = member_on(graph, c, connections)?;
    let settings = member.snapshots.as_ref().ok_or_else(|| ApplyError::Failed("no snapshot dir in the cluster's settings".into()))?;
    let why = match &c.reason {
        Reason::SnapshotFirst { upgrade: Some(to), .. } => format!("before-upgrade-to-{to}"),
        Reason::SnapshotFirst { membership: false, rotation: Some(ca), .. } => format!("before-rotation-of-{ca}"),
        Reason::Operation { step: OperationStep::SafetySnapshot, .. } => "before-restore".to_string(),
        Reason::Operation { .. } => "on-demand".to_string(),
        _ => "before-membership-change".to_string(),
    };
    let name = format!("cairn-{}-{}-{why}.db", c.id.resource, utc_stamp());
    let taken = member.driver.get().snapshot(t.as_ref(), &settings.dir, &name).await?;
    let mut done = format!(
        "snapshot {} on {host} ({} bytes, sha256 {}), verified",
        taken.path,
        taken.bytes,
        taken.sha256.get(..12).unwrap_or(&taken.sha256)
    );
    if let Some(local_dir) = &settings.local_dir {
        let read = crate::transport::read_files(t.as_ref(), std::slice::from_ref(&taken.path)).await?;
        let Some(Some(bytes)) = read.into_iter().next() else {
            return Err(ApplyError::Failed(format!("{} vanished on {host} before it was copied", taken.path)));
        };
        let local = crate::state::snapshot::store(local_dir, &name, &bytes, &taken.sha256).map_err(ApplyError::Failed)?;
        done.push_str(&format!("; copied to {} (sha256 checked)", local.display()));
    }
    Ok(done)
}

/// The member of a cluster step's cluster on the step's host, and its connection.
fn member_on<'g>(graph: &'g Graph, c: &Change, connections: &Connections) -> Result<(&'g DesiredMember, SharedTransport), ApplyError> {
    let host = c.id.host.as_str();
    let (_, member) = members(graph, &c.id.resource)
        .into_iter()
        .find(|(h, _)| *h == host)
        .ok_or_else(|| ApplyError::Failed(format!("{host} has no member of {}", c.id.resource)))?;
    match connections.get(host) {
        Some(Ok(t)) => Ok((member, t.clone())),
        _ => Err(ApplyError::Failed(format!("{host}: not connected"))),
    }
}

/// `20261201T160000Z`, for snapshot names.
fn utc_stamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// After a disruptive change of a cluster's service on `host` (a restart): when the spec says
/// which version the members run, the member must report it (an upgrade's gate), and the
/// cluster must be healthy again before the next member's turn.
pub(super) async fn after_disruption(
    graph: &Graph,
    cluster: &ClusterPlan,
    host: &str,
    connections: &Connections,
) -> Result<Option<String>, ApplyError> {
    let Some((_, member)) = members(graph, &cluster.id).into_iter().find(|(h, _)| *h == host) else { return Ok(None) };
    let Some(Ok(t)) = connections.get(host).cloned() else { return Ok(None) };
    let driver = member.driver.get();
    let Some(wanted) = driver.wanted_version() else { return Ok(None) };
    let upgraded = cluster.upgrade.as_ref().is_some_and(|u| u.steps.iter().any(|s| s.host == host));
    let started = Instant::now();
    loop {
        let seen = driver.read(t.as_ref()).await?;
        let me = seen.members.as_deref().and_then(|ms| listed(ms, member)).map(|l| l.id);
        let reports = me.and_then(|id| seen.statuses.iter().find(|s| s.id == id)).map(|s| s.version.clone());
        match reports {
            Some(v) if v.trim_start_matches('v') == wanted.trim_start_matches('v') => break,
            _ if started.elapsed() > HEALTHY_AGAIN => {
                return Err(ApplyError::Failed(format!(
                    "member {} does not report version {wanted} after its restart (it reports {}); the upgrade stops here",
                    member.name,
                    reports.as_deref().unwrap_or("nothing")
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    wait_healthy(driver, t.as_ref()).await?;
    Ok(upgraded.then(|| format!("member {} reports {wanted}; cluster healthy", member.name)))
}

/// Runs the steps of a runbook operation (`cairn run`), one at a time in the plan's order: the
/// snapshot step as any snapshot, the others by the driver, each followed by the cluster
/// answering again with one leader (an alarm the operation clears may stay until `disarm`). The
/// first failure stops the operation; the steps after it are reported as not started.
pub(super) async fn run_operation(
    graph: &Graph,
    plan: &Plan,
    connections: &Connections,
    reporter: &dyn super::Reporter,
) -> Vec<super::InstanceResult> {
    let mut results = Vec::new();
    let mut stopped: Option<String> = None;
    let steps = plan.clusters.iter().flat_map(|k| plan.cluster_steps(k));
    for c in steps.filter(|c| matches!(c.subject, crate::plan::Subject::Operation(_) | crate::plan::Subject::Snapshot(_))) {
        let outcome = match (&stopped, c.action, &c.reason) {
            (Some(failed), _, _) => Outcome::Skipped(format!("not started: {failed} did not complete")),
            (None, Action::Conflict, reason) => Outcome::Failed(reason.to_string()),
            (None, _, Reason::Operation { step, .. }) => {
                reporter.started(&c.id, c.action);
                let done = match step {
                    OperationStep::Snapshot | OperationStep::SafetySnapshot => snapshot(graph, c, connections).await,
                    step => operation_step(graph, c, step, connections).await,
                };
                let o = match done {
                    Ok(done) => Outcome::Done(done),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                reporter.finished(&c.id, &o);
                o
            }
            (None, _, reason) => Outcome::Failed(format!("not an operation step: {reason}")),
        };
        if !outcome.is_ok() && stopped.is_none() {
            stopped = Some(format!("{} on {}", c.target, c.id.host));
        }
        results.push(super::InstanceResult { id: c.id.clone(), action: c.action, outcome });
    }
    results
}

async fn operation_step(graph: &Graph, c: &Change, step: &OperationStep, connections: &Connections) -> Result<String, ApplyError> {
    let (member, t) = member_on(graph, c, connections)?;
    let driver = member.driver.get();
    match step {
        OperationStep::Upload { source, path } => upload(driver, source, path, t.as_ref(), connections).await,
        OperationStep::Stop { member: name } => {
            run_checked(t.as_ref(), &argv(&["systemctl", "stop", service(member)?])).await?;
            Ok(format!("member {name} stopped"))
        }
        OperationStep::StartAll { hosts } => start_all(graph, &c.id.resource, hosts, connections).await,
        OperationStep::CopyBackups { member: name, from_dir, to_host, to_dir } => {
            copy_backups(name, t.as_ref(), from_dir, to_host, to_dir, connections).await
        }
        // The cluster is stopped while it is restored: no gate until it starts again.
        OperationStep::Restore { .. } => driver.run_step(t.as_ref(), step).await,
        _ => {
            let done = driver.run_step(t.as_ref(), step).await?;
            wait_all_answer(driver, t.as_ref()).await?;
            Ok(done)
        }
    }
}

/// Puts the snapshot to restore at `path` on `host` (from this machine, or from the member's
/// host that has it) and checks it there: the same sha256, and the service reads it.
async fn upload(
    driver: &dyn ClusterDriver,
    source: &SnapshotSource,
    path: &str,
    host: &dyn Transport,
    connections: &Connections,
) -> Result<String, ApplyError> {
    let (bytes, sha256, from) = match source {
        SnapshotSource::Host { host: from, path: from_path } if from == host.host() && from_path == path => {
            driver.verify_snapshot(host, path).await?;
            return Ok(format!("{path} on {from} is a snapshot etcd reads"));
        }
        SnapshotSource::Local { path: local, sha256 } => {
            let bytes = std::fs::read(local).map_err(|e| ApplyError::Failed(format!("reading {local}: {e}")))?;
            let now = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if &now != sha256 {
                return Err(ApplyError::Failed(format!("{local} changed since the plan (sha256 {now}, the plan has {sha256})")));
            }
            (bytes, now, local.clone())
        }
        SnapshotSource::Host { host: from, path: from_path } => {
            let Some(Ok(t)) = connections.get(from).cloned() else { return Err(ApplyError::Failed(format!("{from}: not connected"))) };
            let read = crate::transport::read_files(t.as_ref(), std::slice::from_ref(from_path)).await?;
            let Some(Some(bytes)) = read.into_iter().next() else {
                return Err(ApplyError::Failed(format!("{from_path} is not on {from}")));
            };
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            (bytes, sha, format!("{from}:{from_path}"))
        }
    };
    let attrs = crate::transport::FileAttrs { mode: Some(0o600), owner: None, group: None };
    crate::transport::write_file_atomic(host, path, crate::transport::Content::Bytes(&bytes), &attrs).await?;
    let out = host.run(&argv(&["sha256sum", path]), crate::transport::Stdin::Null).await?;
    let there = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string();
    if there != sha256 {
        return Err(ApplyError::Failed(format!("{path} on {} has sha256 {there} after the copy, {from} has {sha256}", host.host())));
    }
    driver.verify_snapshot(host, path).await?;
    Ok(format!("{from} copied to {path} on {} (sha256 {} checked; etcd reads it)", host.host(), sha256.get(..12).unwrap_or(&sha256)))
}

/// The snapshot files (`*.db`, not hidden) in `dir` on `host`, by name.
async fn snapshot_files(host: &dyn Transport, dir: &str) -> Result<Vec<String>, ApplyError> {
    let line = r#"cd "$1" 2>/dev/null || exit 0; for f in *.db; do [ -f "$f" ] && printf '%s\n' "$f"; done; exit 0"#;
    let out = host.run(&argv(&["sh", "-c", line, "cairn-list", dir]), crate::transport::Stdin::Null).await?;
    if !out.success() {
        return Err(ApplyError::Failed(format!("listing {dir} on {}: {}", host.host(), out.error_text())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|n| !n.is_empty()).collect())
}

/// Copies the snapshots of `from_dir` on `host` that `to_dir` on `to_host` lacks, each checked
/// there by sha256.
async fn copy_backups(
    member: &str,
    host: &dyn Transport,
    from_dir: &str,
    to_host: &str,
    to_dir: &str,
    connections: &Connections,
) -> Result<String, ApplyError> {
    let Some(Ok(dest)) = connections.get(to_host).cloned() else { return Err(ApplyError::Failed(format!("{to_host}: not connected"))) };
    let have = snapshot_files(host, from_dir).await?;
    let there = snapshot_files(dest.as_ref(), to_dir).await?;
    let missing: Vec<&String> = have.iter().filter(|n| !there.contains(n)).collect();
    if missing.is_empty() {
        return Ok(format!("member {member}: all {} snapshots are on {to_host}:{to_dir} already", have.len()));
    }
    run_checked(dest.as_ref(), &argv(&["mkdir", "-p", "-m", "0700", to_dir])).await?;
    let attrs = crate::transport::FileAttrs { mode: Some(0o600), owner: None, group: None };
    for name in &missing {
        let from = format!("{from_dir}/{name}");
        let read = crate::transport::read_files(host, std::slice::from_ref(&from)).await?;
        let Some(Some(bytes)) = read.into_iter().next() else {
            return Err(ApplyError::Failed(format!("{from} vanished on {}", host.host())));
        };
        let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let to = format!("{to_dir}/{name}");
        crate::transport::write_file_atomic(dest.as_ref(), &to, crate::transport::Content::Bytes(&bytes), &attrs).await?;
        let out = dest.run(&argv(&["sha256sum", &to]), crate::transport::Stdin::Null).await?;
        let got = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string();
        if got != sum {
            return Err(ApplyError::Failed(format!("{to} on {to_host} has sha256 {got}, {from} has {sum}")));
        }
    }
    Ok(format!(
        "member {member}: {} snapshot{} copied to {to_host}:{to_dir} (sha256 checked), {} there already",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        have.len() - missing.len()
    ))
}

/// Starts every member of `hosts` at once (a cluster restored from a snapshot needs its quorum to
/// start), then waits for it to be healthy.
async fn start_all(graph: &Graph, id: &ResourceId, hosts: &[String], connections: &Connections) -> Result<String, ApplyError> {
    let mut tasks = tokio::task::JoinSet::new();
    let all = members(graph, id);
    for (host, member) in all.iter().filter(|(h, _)| hosts.iter().any(|x| x == h)) {
        let Some(Ok(t)) = connections.get(*host).cloned() else { return Err(ApplyError::Failed(format!("{host}: not connected"))) };
        let unit = service(member)?.to_string();
        tasks.spawn(async move { start_member(t.as_ref(), &unit).await });
    }
    // A member whose first start failed is restarted by systemd (Restart=on-failure) while its
    // peers come up: the cluster becoming healthy is what counts; the failure is reported.
    let mut first_failures = Vec::new();
    let mut retried = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| ApplyError::Failed(format!("start task: {e}")))? {
            Ok(None) => {}
            Ok(Some(words)) => retried.push(words),
            Err(e) => first_failures.push(e.to_string()),
        }
    }
    let retried = if retried.is_empty() { String::new() } else { format!(" ({})", retried.join("; ")) };
    let healthy = async {
        let started = Instant::now();
        loop {
            match healthy_via(graph, id, None, connections).await {
                Ok((via, _)) => return wait_healthy(via.member.driver.get(), via.transport.as_ref()).await,
                Err(e) if started.elapsed() > HEALTHY_AGAIN => return Err(ApplyError::Failed(e)),
                Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    };
    match (healthy.await, first_failures.is_empty()) {
        (Ok(()), true) => Ok(format!("every member started ({}){retried}; cluster healthy", hosts.join(", "))),
        (Ok(()), false) => Ok(format!(
            "every member started ({}){retried}; cluster healthy (a first start failed and the service manager restarted it: {})",
            hosts.join(", "),
            first_failures.join("; ")
        )),
        (Err(e), _) => Err(ApplyError::Failed(format!("{e}; {}", first_failures.join("; ")))),
    }
}
