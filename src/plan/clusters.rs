//! The planner's cluster pass: once every host is read, each cluster's members' views are merged
//! and its membership decided as a whole ([`membership::plan_members`]); the members' changes
//! take those decisions, members the spec no longer has become removals, and — the quorum guard
//! — a disruptive change of the cluster's service is held while the cluster is degraded.

use std::collections::BTreeMap;

use super::{Action, Change, ClusterPlan, Plan, Subject};
use crate::graph::{Graph, InstanceId};
use crate::resource::cluster::membership::{self, ClusterHealth, PlanContext, Wanted};
use crate::resource::cluster::{DesiredMember, MemberObservation};
use crate::resource::{HostFacts, Reason};
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
        };
        let decided = membership::plan_members(&wanted, &observed, &ctx);
        let first = members[0].1;
        let cluster = ClusterPlan {
            id: id.clone(),
            driver: first.driver.get().name().to_string(),
            unit: first.unit.clone(),
            summary: decided.summary,
        };

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
            let Reason::Member(membership::MemberStep::Remove { name, .. }) = &decision.reason else {
                push_held(plan, &host, id, decision);
                continue;
            };
            let target = format!("{} member {name}", cluster.driver);
            let change = Change {
                id: InstanceId { resource: id.clone(), host: host.clone() },
                subject: Subject::MemberRemoval(id.clone()),
                action: decision.action,
                reason: decision.reason.clone(),
                target,
                attrs: Vec::new(),
                diff: None,
                sensitive: false,
                disruptive: true,
                waits_for: Vec::new(),
                observed: observed_lines(&cluster, &host, None),
            };
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
        plan.clusters.push(cluster);
    }
}

/// A refused removal (held by the guard, or it would lose quorum), shown on its host.
fn push_held(plan: &mut Plan, host: &str, id: &ResourceId, decision: crate::resource::Decision) {
    let change = Change {
        id: InstanceId { resource: id.clone(), host: host.to_string() },
        subject: Subject::MemberRemoval(id.clone()),
        action: decision.action,
        reason: decision.reason,
        target: "member removal".to_string(),
        attrs: Vec::new(),
        diff: None,
        sensitive: false,
        disruptive: true,
        waits_for: Vec::new(),
        observed: Vec::new(),
    };
    plan.hosts.entry(host.to_string()).or_default().insert(0, change);
}

/// What a saved plan must still find of the cluster: the member list (ids, names, learners) and
/// which members answer. Raft indexes and sizes move all the time and are left out.
fn observed_lines(cluster: &ClusterPlan, host: &str, obs: Option<&MemberObservation>) -> Vec<String> {
    let mut lines = vec![format!("cluster {}: {:?}", cluster.id, cluster.summary.health)];
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
