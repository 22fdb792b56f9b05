//! Deciding a cluster's membership, purely: every member's view (from its host's probe) is
//! merged into one [`ClusterView`], its health is judged ([`ClusterHealth`], with every
//! [`ClusterProblem`] named), and each member the spec wants gets its [`MemberStep`]: nothing,
//! join as a learner, finish a join, replace, or — for members the spec no longer has — remove.
//! The quorum guard lives here too: on a degraded cluster only steps that heal it are allowed.
//! Generic over raft-style services (voters, learners, one leader); the driver only reads.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{DesiredMember, ListedMember, MemberObservation, MemberStatus};
use crate::resource::{Action, Decision, Reason};

/// A learner this many raft entries behind the leader is not caught up.
pub const CAUGHT_UP_ENTRIES: u64 = 1000;

/// The cluster as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    /// The member list of the member read through.
    pub members: Vec<ListedMember>,
    /// Every member that answered any host, by id.
    pub statuses: BTreeMap<u64, MemberStatus>,
    /// The host whose member list is used.
    pub read_through: String,
    /// The cluster version (the lowest every member supports), when a member told it.
    pub cluster_version: Option<String>,
}

/// How the cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterHealth {
    /// No member has data and none answers: it is being formed by this apply.
    Forming,
    /// No member answers, but some have data: the members are started together.
    Down,
    /// Every member answers, one leader, no alarm, learners caught up.
    Healthy,
    /// Something of [`ClusterProblem`] is wrong.
    Degraded,
}

/// One thing that makes a cluster degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum ClusterProblem {
    /// A voting member does not answer.
    MemberDown {
        /// Its name (or id, when it never started).
        member: String,
    },
    /// A learner does not answer or lags behind the leader.
    LearnerBehind {
        /// Its name.
        member: String,
    },
    /// A voting member answers but follows no leader while the others follow one: it is cut
    /// off from its peers (a network partition, a peer port closed) and serves no request that
    /// needs the quorum. The rest of the cluster has one member fewer to lose.
    CutOff {
        /// Its name.
        member: String,
    },
    /// No member follows a leader.
    NoLeader,
    /// Members follow different leaders.
    SplitLeaders {
        /// How many leaders are followed.
        leaders: usize,
    },
    /// A member reports an alarm.
    Alarm {
        /// The member.
        member: String,
        /// The alarm (`NOSPACE`, `CORRUPT`).
        alarm: String,
    },
}

impl ClusterProblem {
    /// The member this problem is about, if one.
    pub fn member(&self) -> Option<&str> {
        match self {
            ClusterProblem::MemberDown { member } | ClusterProblem::LearnerBehind { member } | ClusterProblem::CutOff { member } => {
                Some(member)
            }
            ClusterProblem::Alarm { .. } | ClusterProblem::NoLeader | ClusterProblem::SplitLeaders { .. } => None,
        }
    }
}

/// Why a member is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplaceWhy {
    /// It does not answer and its data dir is empty (the disk was lost or wiped).
    EmptyDataDir,
    /// `--replace` asked for it.
    Asked,
}

/// A member's step in the plan (the reason of its change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum MemberStep {
    /// Not yet decided (a member's own diff; the planner decides the cluster as a whole).
    Decided,
    /// A voting member that answers.
    Voter {
        /// It leads.
        leader: bool,
    },
    /// The cluster is being formed: the members start together.
    Forming,
    /// It does not answer but has its data: starting its service heals it.
    Down,
    /// Not a member: add as learner → start → caught up → promote.
    Join {
        /// Its host has data of an earlier membership, set aside first.
        stale_data: bool,
    },
    /// A join that did not finish: (start →) caught up → promote.
    Resume {
        /// The member id.
        id: u64,
        /// It runs already (a learner); otherwise it is started first.
        started: bool,
    },
    /// Remove the old member, then join anew.
    Replace {
        /// The old member id.
        id: u64,
        /// Why.
        why: ReplaceWhy,
    },
    /// A member the spec no longer has: leadership moved away if it leads → removed → its
    /// service stopped and disabled → its data kept aside.
    Remove {
        /// The member id.
        id: u64,
        /// Its name.
        name: String,
        /// It leads now.
        leader: bool,
        /// Its host is one cairn reaches (its service is stopped there).
        host_in_spec: bool,
    },
}

/// The cluster-wide part of a plan: health, counts, leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// How it is.
    pub health: ClusterHealth,
    /// What is wrong, when degraded.
    pub problems: Vec<ClusterProblem>,
    /// Voting members.
    pub voters: usize,
    /// Learners.
    pub learners: usize,
    /// The leader's member name.
    pub leader: Option<String>,
    /// The host of the leader, when the spec has it.
    pub leader_host: Option<String>,
    /// The versions the members run (one entry when they agree).
    pub versions: Vec<String>,
    /// The host the member list was read through.
    pub read_through: Option<String>,
    /// The member list as read.
    pub members: Vec<ListedMember>,
    /// The cluster version (etcd: the lowest version every member supports), when known.
    #[serde(default)]
    pub cluster_version: Option<String>,
}

/// A version change of the cluster's members, in the order it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradePlan {
    /// The version the spec installs.
    pub to: String,
    /// The members to change, one at a time: followers first, the leader last.
    pub steps: Vec<UpgradeStep>,
}

/// One member's turn in an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStep {
    /// The member's host.
    pub host: String,
    /// Its name.
    pub member: String,
    /// The version it reports now.
    pub from: String,
    /// It leads now (so it goes last).
    pub leader: bool,
}

/// The upgrade (or patch downgrade) of the voting members that report another version than
/// `to`, in the rolling order: the spec's order of hosts, the leader last. `None` when every
/// member runs `to`, or none told its version.
pub fn plan_upgrade(wanted: &[Wanted<'_>], view: &ClusterView, to: &str, leader: Option<u64>) -> Option<UpgradePlan> {
    let same = |a: &str, b: &str| a.trim_start_matches('v') == b.trim_start_matches('v');
    let mut steps: Vec<UpgradeStep> = wanted
        .iter()
        .filter_map(|w| {
            let m = view.members.iter().find(|m| w.member.is(m) && !m.learner)?;
            let from = &view.statuses.get(&m.id)?.version;
            (!from.is_empty() && !same(from, to)).then(|| UpgradeStep {
                host: w.host.to_string(),
                member: display_name(m),
                from: from.clone(),
                leader: leader == Some(m.id),
            })
        })
        .collect();
    steps.sort_by_key(|s| s.leader);
    (!steps.is_empty()).then(|| UpgradePlan { to: to.to_string(), steps })
}

/// Everything decided for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipPlan {
    /// Health and counts.
    pub summary: ClusterSummary,
    /// Per host of the spec's members, its decision.
    pub members: BTreeMap<String, Decision>,
    /// Removals of members the spec no longer has: (the host the change is shown and run on,
    /// its decision).
    pub removals: Vec<(String, Decision)>,
    /// The members' version change, when the spec's version differs from what they run.
    pub upgrade: Option<UpgradePlan>,
}

/// A member of the spec, on its host.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The host.
    pub host: &'a str,
    /// The member.
    pub member: &'a DesiredMember,
}

/// What the planner knows besides the members' views.
#[derive(Debug, Clone, Default)]
pub struct PlanContext {
    /// Hosts whose member `--replace` asks to replace.
    pub replace: BTreeSet<String>,
    /// `--allow-degraded`: the guard lets disruptive steps through.
    pub allow_degraded: bool,
    /// Hosts of the spec that cairn plans, with their addresses (a leaving member's service is
    /// stopped on its host when it is one of them).
    pub planned_hosts: BTreeMap<String, String>,
    /// The cluster's name, for reasons.
    pub cluster: String,
    /// The version the spec installs on the members, when it says.
    pub version: Option<String>,
}

/// Merges the members' views: the member list of the first member that answered (a voter that
/// follows a leader, if any does), and every status any host saw.
pub fn view(observed: &BTreeMap<String, MemberObservation>) -> Option<ClusterView> {
    let mut statuses = BTreeMap::new();
    for obs in observed.values() {
        for s in &obs.statuses {
            statuses.entry(s.id).or_insert_with(|| s.clone());
        }
    }
    let cluster_version = observed.values().find_map(|o| o.cluster_version.clone());
    let answering = || observed.iter().filter_map(|(h, o)| o.members.as_ref().map(|m| (h, m)));
    let leads = |members: &Vec<ListedMember>| members.iter().any(|m| statuses.get(&m.id).is_some_and(|s| s.leader != 0 && !m.learner));
    let (host, members) = answering().find(|(_, m)| leads(m)).or_else(|| answering().next())?;
    Some(ClusterView { members: members.clone(), statuses, read_through: host.clone(), cluster_version })
}

/// The quorum of `voters` members.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn display_name(m: &ListedMember) -> String {
    if m.name.is_empty() { format!("{:x}", m.id) } else { m.name.clone() }
}

/// Judges the cluster's health from its view.
pub fn judge(view: &ClusterView) -> (ClusterHealth, Vec<ClusterProblem>, Option<u64>) {
    let mut problems = Vec::new();
    let leaders: BTreeSet<u64> = view.statuses.values().map(|s| s.leader).filter(|&l| l != 0).collect();
    let leader = if leaders.len() == 1 { leaders.iter().next().copied() } else { None };
    let leader_index = leader.and_then(|l| view.statuses.get(&l)).map(|s| s.raft_index);
    for m in &view.members {
        match (view.statuses.get(&m.id), m.learner) {
            (None, false) => problems.push(ClusterProblem::MemberDown { member: display_name(m) }),
            (None, true) => problems.push(ClusterProblem::LearnerBehind { member: display_name(m) }),
            (Some(s), true) if leader_index.is_some_and(|li| s.raft_index.saturating_add(CAUGHT_UP_ENTRIES) < li) => {
                problems.push(ClusterProblem::LearnerBehind { member: display_name(m) });
            }
            (Some(s), false) if s.leader == 0 && leader.is_some() => problems.push(ClusterProblem::CutOff { member: display_name(m) }),
            _ => {}
        }
    }
    match leaders.len() {
        0 => problems.push(ClusterProblem::NoLeader),
        1 => {}
        n => problems.push(ClusterProblem::SplitLeaders { leaders: n }),
    }
    for m in &view.members {
        for alarm in view.statuses.get(&m.id).map(|s| s.alarms.as_slice()).unwrap_or_default() {
            problems.push(ClusterProblem::Alarm { member: display_name(m), alarm: alarm.clone() });
        }
    }
    let health = if problems.is_empty() { ClusterHealth::Healthy } else { ClusterHealth::Degraded };
    (health, problems, leader)
}

/// Decides every member's step (see the module doc).
pub fn plan_members(wanted: &[Wanted<'_>], observed: &BTreeMap<String, MemberObservation>, ctx: &PlanContext) -> MembershipPlan {
    let Some(view) = view(observed) else {
        let has_data = observed.values().any(|o| o.has_data);
        let (health, step) = if has_data { (ClusterHealth::Down, MemberStep::Down) } else { (ClusterHealth::Forming, MemberStep::Forming) };
        let members = wanted.iter().map(|w| (w.host.to_string(), Decision::noop(Reason::Member(step.clone())))).collect();
        let summary = ClusterSummary {
            health,
            problems: Vec::new(),
            voters: 0,
            learners: 0,
            leader: None,
            leader_host: None,
            versions: Vec::new(),
            read_through: None,
            members: Vec::new(),
            cluster_version: None,
        };
        return MembershipPlan { summary, members, removals: Vec::new(), upgrade: None };
    };
    let (health, problems, leader) = judge(&view);
    let sick: BTreeSet<&str> = problems.iter().filter_map(ClusterProblem::member).collect();
    let degraded = health == ClusterHealth::Degraded && !ctx.allow_degraded;
    let refuse = || Decision::new(Action::Conflict, Reason::ClusterDegraded { cluster: ctx.cluster.clone(), problems: problems.clone() });
    let matches = |m: &ListedMember, w: &Wanted<'_>| w.member.is(m);

    let mut members = BTreeMap::new();
    for w in wanted {
        let obs = observed.get(w.host);
        let listed = view.members.iter().find(|m| matches(m, w));
        let decision = match listed {
            None => {
                let step = MemberStep::Join { stale_data: obs.is_some_and(|o| o.has_data) };
                if degraded { refuse() } else { Decision::new(Action::Create, Reason::Member(step)) }
            }
            Some(m) => {
                let answers = view.statuses.contains_key(&m.id);
                let is_sick = sick.contains(display_name(m).as_str());
                if ctx.replace.contains(w.host) {
                    let step = MemberStep::Replace { id: m.id, why: ReplaceWhy::Asked };
                    if degraded && !is_sick { refuse() } else { Decision::new(Action::Replace, Reason::Member(step)) }
                } else if answers && m.learner {
                    Decision::new(Action::Update, Reason::Member(MemberStep::Resume { id: m.id, started: true }))
                } else if answers {
                    Decision::noop(Reason::Member(MemberStep::Voter { leader: leader == Some(m.id) }))
                } else if obs.is_some_and(|o| !o.has_data) && m.name.is_empty() {
                    Decision::new(Action::Update, Reason::Member(MemberStep::Resume { id: m.id, started: false }))
                } else if obs.is_some_and(|o| !o.has_data) {
                    Decision::new(Action::Replace, Reason::Member(MemberStep::Replace { id: m.id, why: ReplaceWhy::EmptyDataDir }))
                } else {
                    Decision::noop(Reason::Member(MemberStep::Down))
                }
            }
        };
        members.insert(w.host.to_string(), decision);
    }

    // Members the spec no longer has, leaving one at a time; never below quorum.
    let mut removals = Vec::new();
    let voters = view.members.iter().filter(|m| !m.learner).count();
    let mut healthy_voters = view.members.iter().filter(|m| !m.learner && view.statuses.contains_key(&m.id)).count();
    let mut remaining = voters;
    for m in view.members.iter().filter(|m| !wanted.iter().any(|w| matches(m, w))) {
        let on_host = ctx.planned_hosts.iter().find(|(name, address)| {
            **name == m.name || (!address.is_empty() && m.peer_urls.iter().any(|u| u.contains(&format!("//{address}:"))))
        });
        let host_in_spec = on_host.is_some();
        let host = on_host.map_or_else(|| view.read_through.clone(), |(name, _)| name.clone());
        let step = MemberStep::Remove { id: m.id, name: display_name(m), leader: leader == Some(m.id), host_in_spec };
        let answers = view.statuses.contains_key(&m.id);
        let is_sick = sick.contains(display_name(m).as_str());
        let (after, healthy_after) =
            if m.learner { (remaining, healthy_voters) } else { (remaining - 1, healthy_voters - usize::from(answers)) };
        let decision = if degraded && !is_sick {
            refuse()
        } else if after == 0 || healthy_after < quorum(after) {
            Decision::new(Action::Conflict, Reason::WouldLoseQuorum { member: display_name(m), voters: after, healthy: healthy_after })
        } else {
            remaining = after;
            healthy_voters = healthy_after;
            Decision::new(Action::Delete, Reason::Member(step))
        };
        removals.push((host, decision));
    }

    let leader_member = leader.and_then(|l| view.members.iter().find(|m| m.id == l));
    let leader_host = leader_member.and_then(|lm| wanted.iter().find(|w| matches(lm, w)).map(|w| w.host.to_string()));
    let versions: BTreeSet<String> = view.statuses.values().map(|s| s.version.clone()).collect();
    let summary = ClusterSummary {
        health,
        problems,
        voters,
        learners: view.members.len() - voters,
        leader: leader_member.map(display_name),
        leader_host,
        versions: versions.into_iter().collect(),
        read_through: Some(view.read_through.clone()),
        members: view.members.clone(),
        cluster_version: view.cluster_version.clone(),
    };
    let upgrade = ctx.version.as_deref().and_then(|to| plan_upgrade(wanted, &view, to, leader));
    MembershipPlan { summary, members, removals, upgrade }
}

#[cfg(test)]
pub(crate) mod tests;
