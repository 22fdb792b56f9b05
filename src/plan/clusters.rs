//! The planner's cluster pass: once every host is read, each cluster's members' views are merged
//! and its membership decided as a whole ([`membership::plan_members`]); the members' changes
//! take those decisions, members the spec no longer has become removals, and — the quorum guard
//! — a disruptive change of the cluster's service is held while the cluster is degraded.

use std::collections::BTreeMap;

use super::{Action, Change, ClusterPlan, Plan, Subject};
use crate::graph::{Graph, InstanceId};
use crate::resource::cluster::membership::{self, ClusterHealth, PlanContext, Wanted};
use crate::resource::cluster::operations::{self, OperationContext, OperationRequest, OperationStep};
use crate::resource::cluster::{DesiredMember, MemberObservation};
use crate::resource::{Decision, HostFacts, Reason};
use crate::spec::ResourceId;

/// Decides every cluster of `graph` from what the hosts' probes found and rewrites the plan's
/// member changes; adds member removals and the quorum guard's holds.
pub fn plan_clusters(graph: &Graph, facts: &BTreeMap<String, HostFacts>, plan: &mut Plan) {
    let mut clusters: BTreeMap<&ResourceId, Vec<(usize, &DesiredMember)>> = BTreeMap::new();
    for (i, inst) in graph.instances.iter().enumerate() {
        if let Some(m) = inst.desired.member() {
            clusters.entry(&inst.id.resource).or_default().push((i, m));
        }
    }
    for (id, members) in clusters {
        let wanted: Vec<Wanted<'_>> = members.iter().map(|(i, m)| Wanted { host: &graph.instances[*i].id.host, member: m }).collect();
        let observed: BTreeMap<String, MemberObservation> =
            wanted.iter().filter_map(|w| facts.get(w.host).map(|f| (w.host.to_string(), w.member.driver.get().observe(f)))).collect();
        let ctx = PlanContext {
            replace: graph.replace.iter().filter(|r| &r.resource == id).map(|r| r.host.clone()).collect(),
            allow_degraded: graph.allow_degraded,
            planned_hosts: plan.hosts.keys().map(|h| (h.clone(), plan.addresses.get(h).cloned().unwrap_or_default())).collect(),
            cluster: id.to_string(),
            version: members[0].1.driver.get().wanted_version().map(str::to_string),
        };
        let decided = membership::plan_members(&wanted, &observed, &ctx);
        let first = members[0].1;
        let mut cluster = ClusterPlan {
            id: id.clone(),
            driver: first.driver.get().name().to_string(),
            unit: first.unit.clone(),
            summary: decided.summary,
            upgrade: decided.upgrade,
        };
        let membership_changes = decided.members.values().chain(decided.removals.iter().map(|(_, d)| d)).any(|d| d.action.is_change());
        let quiet_hosts: Vec<String> = decided.members.iter().filter(|(_, d)| !d.action.is_change()).map(|(h, _)| h.clone()).collect();

        // The members' own changes.
        for (host, decision) in decided.members {
            let Some(change) = plan.hosts.get_mut(&host).and_then(|cs| cs.iter_mut().find(|c| &c.id.resource == id)) else { continue };
            change.action = decision.action;
            change.reason = decision.reason;
            change.disruptive = change.action.is_change();
            change.observed = observed_lines(&cluster, &host, observed.get(&host));
        }
        // Members that leave, shown on (and run from) their host when cairn plans it.
        for (host, decision) in decided.removals {
            let (target, observed) = match &decision.reason {
                Reason::Member(membership::MemberStep::Remove { name, .. }) => {
                    (format!("{} member {name}", cluster.driver), observed_lines(&cluster, &host, None))
                }
                _ => ("member removal".to_string(), Vec::new()),
            };
            let change = cluster_change(Subject::MemberRemoval, id, &host, decision, target, observed);
            plan.hosts.entry(host).or_default().insert(0, change);
        }
        // The upgrade path (checked against the versions the members run), then the quorum
        // guard: nothing disrupts the service of a degraded cluster.
        let refused = first.driver.get().upgrade(&cluster.summary.versions).err();
        let degraded = cluster.summary.health == ClusterHealth::Degraded && !graph.allow_degraded;
        let held = match refused {
            Some(why) => Some(Reason::UpgradeRefused { cluster: id.to_string(), why }),
            None if degraded => Some(Reason::ClusterDegraded { cluster: id.to_string(), problems: cluster.summary.problems.clone() }),
            None => None,
        };
        if held.is_some() {
            cluster.upgrade = None;
        }
        // A refused path is the cluster's own conflict, whatever the members' files show (the
        // new release may not even be fetchable).
        if let Some(reason @ Reason::UpgradeRefused { .. }) = &held {
            let host = cluster.summary.read_through.clone().unwrap_or_else(|| wanted[0].host.to_string());
            let target = format!("upgrade to {}", ctx.version.as_deref().unwrap_or_default());
            let change = cluster_change(Subject::Upgrade, id, &host, Decision::new(Action::Conflict, reason.clone()), target, Vec::new());
            plan.hosts.entry(host).or_default().insert(0, change);
        }
        // A snapshot first, before anything risky: an upgrade or a membership change of a
        // cluster that has data. Taken through a member that answers and changes nothing itself.
        // A CA rotation starting (its first apply) whose certificates restart the members.
        let rotation = starting_rotation(graph, &cluster.unit, &wanted.iter().map(|w| w.host.to_string()).collect::<Vec<_>>());
        let risky = cluster.upgrade.is_some() || membership_changes || rotation.is_some();
        let answering: Vec<&str> =
            quiet_hosts.iter().map(String::as_str).filter(|h| observed.get(*h).is_some_and(|o| o.answered)).collect();
        let via = answering
            .iter()
            .find(|h| cluster.summary.leader_host.as_deref() != Some(**h))
            .or_else(|| answering.first())
            .map(|h| (*h).to_string())
            .or_else(|| cluster.summary.read_through.clone());
        let snapshot_member = via.as_deref().and_then(|v| members.iter().find(|(i, _)| graph.instances[*i].id.host == v));
        if let (true, Some(via), Some((_, m))) = (risky, via.as_deref(), snapshot_member)
            && let Some(snap) = &m.snapshots
            && !matches!(cluster.summary.health, ClusterHealth::Forming | ClusterHealth::Down)
        {
            let reason = Reason::SnapshotFirst {
                cluster: id.to_string(),
                upgrade: cluster.upgrade.as_ref().map(|u| u.to.clone()),
                membership: membership_changes,
                rotation,
                dir: snap.dir.clone(),
                copied: snap.local_dir.is_some(),
            };
            let decision = Decision::new(Action::Create, reason);
            let change = cluster_change(Subject::Snapshot, id, via, decision, format!("snapshot through {via}"), Vec::new());
            plan.hosts.entry(via.to_string()).or_default().insert(0, change);
        }
        if let Some(held) = held {
            for changes in plan.hosts.values_mut() {
                // A held restart holds what would restart it too: the member keeps its old files
                // rather than carry a change it has not restarted into ("restart pending").
                let mut triggers: Vec<ResourceId> = Vec::new();
                for c in changes.iter_mut().filter(|c| c.id.resource == cluster.unit && c.disruptive && c.action.is_change()) {
                    c.action = Action::Conflict;
                    c.reason = held.clone();
                    if let Some(i) = c.instance() {
                        triggers.extend(graph.instances[i].desired.restart_triggers().iter().cloned());
                    }
                }
                for c in changes.iter_mut().filter(|c| triggers.contains(&c.id.resource) && c.action.is_change()) {
                    c.action = Action::Conflict;
                    c.reason = held.clone();
                }
            }
        }
        if let Some(request) = graph.operation.as_ref().filter(|r| r.cluster == id.to_string()) {
            operation_steps(plan, &cluster, request, &wanted, &observed, first);
        }
        plan.clusters.push(cluster);
    }
    if let Some(request) = &graph.operation
        && !plan.clusters.iter().any(|k| k.id.to_string() == request.cluster)
    {
        plan.errors.push(super::HostError { host: String::new(), error: format!("the spec has no cluster {}", request.cluster) });
    }
}

/// An operation's plan (`cairn run`): only its steps, in the order they run — the resources'
/// own changes are `cairn apply`'s — or one refusal saying why it cannot run now.
fn operation_steps(
    plan: &mut Plan,
    cluster: &ClusterPlan,
    request: &OperationRequest,
    wanted: &[Wanted<'_>],
    observed: &BTreeMap<String, MemberObservation>,
    first: &DesiredMember,
) {
    for changes in plan.hosts.values_mut() {
        changes.clear();
    }
    let view = membership::view(observed);
    let ctx = OperationContext {
        wanted,
        answering: wanted.iter().filter(|w| observed.get(w.host).is_some_and(|o| o.answered)).map(|w| w.host).collect(),
        view: view.as_ref(),
        quota_bytes: first.driver.get().quota_bytes(),
        snapshot_dir: first.snapshots.as_ref().map(|s| s.dir.as_str()),
    };
    let id = &cluster.id;
    let snapshot_dir = first.snapshots.as_ref().map(|s| (s.dir.clone(), s.local_dir.is_some()));
    let planned = operations::plan_operation(request, &ctx).and_then(|steps| match (&steps[..], &snapshot_dir) {
        ([(_, OperationStep::Snapshot)], None) => Err(format!("{id} has no snapshot dir (`settings.snapshot_dir`)")),
        _ => Ok(steps),
    });
    let revision = view.as_ref().and_then(|v| v.statuses.values().map(|s| s.revision).max()).unwrap_or(0);
    match planned {
        Ok(steps) => {
            let restores = steps.iter().any(|(_, s)| matches!(s, OperationStep::Restore { .. }));
            for (seq, (host, step)) in (1..).zip(steps) {
                let subject: fn(ResourceId) -> Subject = match step {
                    OperationStep::Snapshot | OperationStep::SafetySnapshot => Subject::Snapshot,
                    _ => Subject::Operation,
                };
                let target = format!("{} {}", request.name, host);
                let reason = Reason::Operation { cluster: id.to_string(), step, kept_in: snapshot_dir.clone().map(|(d, _)| d), seq };
                let mut seen = observed_lines(cluster, &host, observed.get(&host));
                // A restore replaces the data: a saved restore plan is stale once the data moved.
                if restores {
                    seen.push(format!("cluster revision {revision}"));
                }
                let change = cluster_change(subject, id, &host, Decision::new(Action::Update, reason), target, seen);
                plan.hosts.entry(host).or_default().push(change);
            }
        }
        Err(why) => {
            let host = cluster.summary.read_through.clone().or_else(|| wanted.first().map(|w| w.host.to_string())).unwrap_or_default();
            let reason = Reason::OperationRefused { operation: request.name.clone(), cluster: id.to_string(), why };
            let change =
                cluster_change(Subject::Operation, id, &host, Decision::new(Action::Conflict, reason), request.name.clone(), Vec::new());
            plan.hosts.entry(host).or_default().push(change);
        }
    }
}

/// The CA whose rotation starts with this plan (phase 1, the new CA not made yet) when its
/// certificates restart the cluster's `unit` on the members' `hosts`.
fn starting_rotation(graph: &Graph, unit: &ResourceId, hosts: &[String]) -> Option<String> {
    graph.instances.iter().filter(|u| &u.id.resource == unit && hosts.contains(&u.id.host)).find_map(|u| {
        let triggers = u.desired.restart_triggers();
        graph
            .instances
            .iter()
            .filter(|c| c.id.host == u.id.host && triggers.contains(&c.id.resource))
            .find_map(|c| c.desired.ca_rotation().filter(|r| r.phase == crate::state::pki::RotationPhase::Trust && !r.started))
            .map(|r| r.ca)
    })
}

/// A change of the cluster as a whole (a member's removal, a snapshot), shown on and run from
/// `host`.
fn cluster_change(
    subject: fn(ResourceId) -> Subject,
    id: &ResourceId,
    host: &str,
    decision: Decision,
    target: String,
    observed: Vec<String>,
) -> Change {
    Change {
        id: InstanceId { resource: id.clone(), host: host.to_string() },
        subject: subject(id.clone()),
        action: decision.action,
        reason: decision.reason,
        target,
        attrs: Vec::new(),
        diff: None,
        sensitive: false,
        disruptive: true,
        waits_for: Vec::new(),
        observed,
    }
}

/// What a saved plan must still find of the cluster: the member list (ids, names, learners) and
/// which members answer. Raft indexes and sizes move all the time and are left out.
fn observed_lines(cluster: &ClusterPlan, host: &str, obs: Option<&MemberObservation>) -> Vec<String> {
    let health = match cluster.summary.health {
        ClusterHealth::Forming => "forming",
        ClusterHealth::Down => "down",
        ClusterHealth::Healthy => "healthy",
        ClusterHealth::Degraded => "degraded",
    };
    let mut lines = vec![format!("cluster {}: {health}", cluster.id)];
    for m in &cluster.summary.members {
        let role = if m.learner { "learner" } else { "voter" };
        let name = if m.name.is_empty() { "(unstarted)" } else { &m.name };
        lines.push(format!("member {:x} {name} {role} {}", m.id, m.peer_urls.join(",")));
    }
    if let Some(o) = obs {
        lines.push(format!(
            "member on {host}: {}, {}",
            if o.answered { "answers" } else { "does not answer" },
            if o.has_data { "has data" } else { "no data" }
        ));
    }
    lines
}
