use super::*;
use crate::resource::cluster::{Driver, etcd::Etcd};
use crate::spec::{Kind, ResourceId};

/// A member named `name` on a host of that name (shared with the operations' tests).
pub(crate) fn member(name: &str) -> DesiredMember {
    DesiredMember {
        name: name.to_string(),
        peer_url: format!("https://{name}:2380"),
        unit: ResourceId::new(Kind::Unit, "etcd"),
        service: Some("etcd.service".into()),
        join_timeout_secs: 60,
        after_on_peers: Vec::new(),
        driver: Driver::Etcd(Etcd {
            etcdctl: "etcdctl".into(),
            cacert: "ca".into(),
            cert: "c".into(),
            key: "k".into(),
            data_dir: "/d".into(),
            wal_dir: "/d/wal".into(),
            endpoint: "https://127.0.0.1:2379".into(),
            version: None,
            etcdutl: "etcdutl".into(),
            snapshot_dir: None,
            snapshot_copy: true,
            quota_bytes: None,
        }),
        snapshots: None,
    }
}

/// The made-up member id of `name`.
pub(crate) fn id(name: &str) -> u64 {
    name.bytes().map(u64::from).sum::<u64>() * 1000
}

fn listed(name: &str, learner: bool) -> ListedMember {
    ListedMember {
        id: id(name),
        name: name.to_string(),
        peer_urls: vec![format!("https://{name}:2380")],
        client_urls: vec![format!("https://{name}:2379")],
        learner,
    }
}

fn status(name: &str, leader: &str) -> MemberStatus {
    MemberStatus {
        id: id(name),
        leader: id(leader),
        raft_index: 100,
        raft_term: 2,
        learner: false,
        version: "3.4.23".into(),
        db_size: 1,
        db_size_in_use: 1,
        revision: 1,
        alarms: Vec::new(),
    }
}

/// A cluster of `members` (all voters) where those in `up` answer, led by `leader`, seen from
/// each host in `hosts`.
fn observed(hosts: &[&str], members: &[&str], up: &[&str], leader: &str) -> BTreeMap<String, MemberObservation> {
    let list: Vec<ListedMember> = members.iter().map(|m| listed(m, false)).collect();
    let statuses: Vec<MemberStatus> = up.iter().map(|m| status(m, leader)).collect();
    hosts
        .iter()
        .map(|h| {
            let answers = up.contains(h);
            let obs = MemberObservation {
                answered: answers,
                has_data: members.contains(h),
                members: answers.then(|| list.clone()),
                statuses: if answers { statuses.clone() } else { Vec::new() },
                error: None,
                cluster_version: None,
            };
            ((*h).to_string(), obs)
        })
        .collect()
}

fn plan(hosts: &[&str], observed: &BTreeMap<String, MemberObservation>, ctx: &PlanContext) -> MembershipPlan {
    let members: Vec<DesiredMember> = hosts.iter().map(|h| member(h)).collect();
    let wanted: Vec<Wanted<'_>> = hosts.iter().zip(&members).map(|(h, m)| Wanted { host: h, member: m }).collect();
    plan_members(&wanted, observed, ctx)
}

fn ctx(planned: &[&str]) -> PlanContext {
    PlanContext {
        planned_hosts: planned.iter().map(|h| ((*h).to_string(), String::new())).collect(),
        cluster: "cluster.members".into(),
        ..PlanContext::default()
    }
}

fn steps(p: &MembershipPlan) -> Vec<(String, Action, String)> {
    p.members.iter().map(|(h, d)| (h.clone(), d.action, format!("{:?}", d.reason))).collect()
}

#[test]
fn a_fresh_cluster_is_formed_with_every_member_starting_together() {
    let hosts = ["a", "b", "c"];
    let obs: BTreeMap<String, MemberObservation> = hosts.iter().map(|h| ((*h).to_string(), MemberObservation::default())).collect();
    let p = plan(&hosts, &obs, &ctx(&hosts));
    assert_eq!(p.summary.health, ClusterHealth::Forming);
    assert!(p.members.values().all(|d| d.action == Action::NoOp && d.reason == Reason::Member(MemberStep::Forming)));
    assert!(p.removals.is_empty());
}

#[test]
fn growing_three_to_five_adds_two_learners_and_leaves_the_others_alone() {
    let all = ["a", "b", "c", "d", "e"];
    let obs = observed(&all, &["a", "b", "c"], &["a", "b", "c"], "b");
    let p = plan(&all, &obs, &ctx(&all));
    assert_eq!(p.summary.health, ClusterHealth::Healthy);
    assert_eq!((p.summary.voters, p.summary.leader.as_deref(), p.summary.leader_host.as_deref()), (3, Some("b"), Some("b")));
    let actions: Vec<(String, Action)> = p.members.iter().map(|(h, d)| (h.clone(), d.action)).collect();
    assert_eq!(
        actions,
        [("a", Action::NoOp), ("b", Action::NoOp), ("c", Action::NoOp), ("d", Action::Create), ("e", Action::Create)]
            .map(|(h, a)| (h.to_string(), a))
    );
    assert_eq!(p.members["d"].reason, Reason::Member(MemberStep::Join { stale_data: false }));
    assert_eq!(p.members["b"].reason, Reason::Member(MemberStep::Voter { leader: true }));
}

#[test]
fn shrinking_five_to_three_removes_two_members_leader_noted() {
    let obs = observed(&["a", "b", "c", "d", "e"], &["a", "b", "c", "d", "e"], &["a", "b", "c", "d", "e"], "e");
    let staying: BTreeMap<String, MemberObservation> = obs.into_iter().filter(|(h, _)| ["a", "b", "c"].contains(&h.as_str())).collect();
    let p = plan(&["a", "b", "c"], &staying, &ctx(&["a", "b", "c", "d", "e"]));
    assert_eq!(p.removals.len(), 2);
    assert_eq!(p.removals[0].0, "d");
    assert_eq!(
        p.removals[1].1.reason,
        Reason::Member(MemberStep::Remove { id: id("e"), name: "e".into(), leader: true, host_in_spec: true })
    );
    assert!(p.removals.iter().all(|(_, d)| d.action == Action::Delete));
}

#[test]
fn a_member_without_data_that_does_not_answer_is_replaced() {
    let hosts = ["a", "b", "c"];
    let mut obs = observed(&hosts, &hosts, &["a", "b"], "a");
    obs.get_mut("c").unwrap().has_data = false;
    let mut c = ctx(&hosts);
    let p = plan(&hosts, &obs, &c);
    assert_eq!(p.summary.health, ClusterHealth::Degraded);
    assert_eq!(p.summary.problems, vec![ClusterProblem::MemberDown { member: "c".into() }]);
    assert_eq!(p.members["c"].action, Action::Replace, "replacing the sick member heals: allowed");
    assert_eq!(p.members["c"].reason, Reason::Member(MemberStep::Replace { id: id("c"), why: ReplaceWhy::EmptyDataDir }));
    // A healthy member asked to be replaced while another is sick: held by the guard.
    c.replace.insert("a".into());
    let p = plan(&hosts, &obs, &c);
    assert_eq!(p.members["a"].action, Action::Conflict);
}

#[test]
fn a_stopped_member_with_data_is_healed_by_its_service_and_a_degraded_cluster_grows_not() {
    let hosts = ["a", "b", "c", "d"];
    let obs = observed(&hosts, &["a", "b", "c"], &["a", "c"], "a");
    let p = plan(&hosts, &obs, &ctx(&hosts));
    assert_eq!(p.members["b"].reason, Reason::Member(MemberStep::Down));
    assert_eq!(p.members["d"].action, Action::Conflict, "no join while degraded");
    assert!(
        matches!(&p.members["d"].reason, Reason::ClusterDegraded { problems, .. } if problems == &vec![ClusterProblem::MemberDown { member: "b".into() }])
    );
    let allowed = plan(&hosts, &obs, &PlanContext { allow_degraded: true, ..ctx(&hosts) });
    assert_eq!(allowed.members["d"].action, Action::Create);
}

#[test]
fn a_removal_that_would_lose_quorum_is_refused() {
    // Three voters, one down; removing a healthy one would leave 1 healthy of 2.
    let obs = observed(&["a"], &["a", "b", "c"], &["a", "b"], "a");
    let p = plan(&["a"], &obs, &PlanContext { allow_degraded: true, ..ctx(&["a", "b", "c"]) });
    let refused: Vec<&Decision> = p.removals.iter().map(|(_, d)| d).filter(|d| d.action == Action::Conflict).collect();
    assert!(!refused.is_empty(), "{:?}", p.removals);
    assert!(matches!(refused[0].reason, Reason::WouldLoseQuorum { .. }));
}

#[test]
fn learners_and_alarms_make_a_cluster_degraded() {
    let hosts = ["a", "b", "c"];
    let mut obs = observed(&hosts, &hosts, &hosts, "a");
    for o in obs.values_mut() {
        if let Some(ms) = o.members.as_mut() {
            ms[2].learner = true;
        }
        o.statuses[0].alarms.push("NOSPACE".into());
        o.statuses[2].raft_index = 1;
        o.statuses[0].raft_index = 5000;
    }
    let p = plan(&hosts, &obs, &ctx(&hosts));
    assert_eq!(
        p.summary.problems,
        vec![ClusterProblem::LearnerBehind { member: "c".into() }, ClusterProblem::Alarm { member: "a".into(), alarm: "NOSPACE".into() }]
    );
    assert_eq!(p.members["c"].reason, Reason::Member(MemberStep::Resume { id: id("c"), started: true }));
    assert_eq!(steps(&p).len(), 3);
}

#[test]
fn an_upgrade_goes_follower_by_follower_and_the_leader_last() {
    let hosts = ["a", "b", "c"];
    let mut seen = observed(&hosts, &hosts, &hosts, "a");
    // b runs the new version already (an upgrade resumed): only a and c are left, a last.
    for obs in seen.values_mut() {
        for s in &mut obs.statuses {
            if s.id == id("b") {
                s.version = "3.5.16".into();
            }
        }
    }
    let with = |version: Option<&str>| PlanContext { version: version.map(str::to_string), ..ctx(&hosts) };
    let up = plan(&hosts, &seen, &with(Some("3.5.16"))).upgrade.unwrap();
    assert_eq!(up.to, "3.5.16");
    let order: Vec<(&str, &str, bool)> = up.steps.iter().map(|s| (s.host.as_str(), s.from.as_str(), s.leader)).collect();
    assert_eq!(order, vec![("c", "3.4.23", false), ("a", "3.4.23", true)]);
    assert_eq!(plan(&hosts, &seen, &with(None)).upgrade, None, "no version in the settings: nothing to plan");
    let same = observed(&hosts, &hosts, &hosts, "a");
    assert_eq!(plan(&hosts, &same, &with(Some("v3.4.23"))).upgrade, None, "every member runs it");
}

#[test]
fn a_member_cut_off_from_its_peers_makes_the_cluster_degraded() {
    // c still answers its clients (its status is read), but a partition cut its peer traffic:
    // it follows no leader while a and b follow a. Every disruptive step is held but healing ones.
    let hosts = ["a", "b", "c", "d"];
    let mut obs = observed(&hosts, &["a", "b", "c"], &["a", "b", "c"], "a");
    for s in obs.values_mut().filter_map(|o| o.statuses.get_mut(2)) {
        s.leader = 0;
        s.raft_term = 7;
    }
    let p = plan(&hosts, &obs, &ctx(&hosts));
    assert_eq!(p.summary.health, ClusterHealth::Degraded);
    assert_eq!(p.summary.problems, vec![ClusterProblem::CutOff { member: "c".into() }]);
    assert_eq!(p.summary.leader.as_deref(), Some("a"));
    assert_eq!(p.members["d"].action, Action::Conflict, "no join while c is cut off");
    assert_eq!(p.members["c"].reason, Reason::Member(MemberStep::Voter { leader: false }));
    // A member that follows no leader in a cluster with no leader at all is the cluster's
    // problem (no leader), not a partition of one member.
    for o in obs.values_mut() {
        o.statuses.iter_mut().for_each(|s| s.leader = 0);
    }
    assert_eq!(plan(&hosts, &obs, &ctx(&hosts)).summary.problems, vec![ClusterProblem::NoLeader]);
}
