use super::*;
use crate::resource::cluster::membership::ClusterView;
use crate::resource::cluster::{DesiredMember, Driver, ListedMember, MemberStatus, etcd::Etcd};
use crate::spec::{Kind, ResourceId};

fn member(name: &str) -> DesiredMember {
    DesiredMember {
        name: name.to_string(),
        peer_url: format!("https://{name}:2380"),
        unit: ResourceId::new(Kind::Unit, "etcd"),
        service: Some("etcd.service".into()),
        join_timeout_secs: 60,
        after_on_peers: Vec::new(),
        driver: Driver::Etcd(
            Etcd::from_settings(
                ["etcdctl", "cacert", "cert", "key", "data_dir"]
                    .iter()
                    .map(|k| ((*k).to_string(), (format!("/{k}"), Default::default())))
                    .collect(),
                &Default::default(),
            )
            .unwrap(),
        ),
        snapshots: None,
    }
}

fn id(name: &str) -> u64 {
    name.bytes().map(u64::from).sum::<u64>() * 1000
}

/// Members a, b, c, all answering, led by `leader`; `alarm` on a; every database `db` bytes.
fn view(leader: &str, alarm: bool, db: u64) -> ClusterView {
    let names = ["a", "b", "c"];
    let members = names
        .iter()
        .map(|n| ListedMember {
            id: id(n),
            name: (*n).into(),
            peer_urls: vec![format!("https://{n}:2380")],
            client_urls: vec![format!("https://{n}:2379")],
            learner: false,
        })
        .collect();
    let statuses = names
        .iter()
        .map(|n| {
            let s = MemberStatus {
                id: id(n),
                leader: id(leader),
                raft_index: 10,
                raft_term: 2,
                learner: false,
                version: "3.5.16".into(),
                db_size: db,
                db_size_in_use: db / 4,
                revision: 1234,
                alarms: if alarm && *n == "a" { vec!["NOSPACE".into()] } else { Vec::new() },
            };
            (id(n), s)
        })
        .collect();
    ClusterView { members, statuses, read_through: "a".into(), cluster_version: None }
}

fn run(name: &str, inputs: &[(&str, &str)], view: &ClusterView, quota: Option<u64>) -> Result<Vec<(String, OperationStep)>, String> {
    let members: Vec<DesiredMember> = ["a", "b", "c"].iter().map(|h| member(h)).collect();
    let wanted: Vec<Wanted<'_>> = ["a", "b", "c"].iter().zip(&members).map(|(h, m)| Wanted { host: h, member: m }).collect();
    let request = OperationRequest {
        cluster: "etcd.cluster.members".into(),
        name: name.into(),
        inputs: inputs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(),
        local_sha256: inputs.iter().any(|(k, v)| *k == "snapshot" && v.starts_with("/local")).then(|| "ab".repeat(32)),
    };
    let ctx = OperationContext {
        wanted: &wanted,
        answering: vec!["a", "b", "c"],
        view: Some(view),
        quota_bytes: quota,
        snapshot_dir: Some("/var/backups/etcd"),
    };
    plan_operation(&request, &ctx)
}

#[test]
fn defrag_goes_member_by_member_with_the_leader_last() {
    let steps = run("defrag", &[], &view("a", false, 4096), None).unwrap();
    let order: Vec<(&str, bool)> = steps
        .iter()
        .map(|(h, s)| match s {
            OperationStep::Defrag { leader, db_size, in_use, .. } => {
                assert_eq!((*db_size, *in_use), (4096, 1024));
                (h.as_str(), *leader)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, vec![("b", false), ("c", false), ("a", true)]);
}

#[test]
fn cluster_wide_steps_go_through_a_follower() {
    assert_eq!(run("snapshot", &[], &view("a", false, 1), None).unwrap(), vec![("b".to_string(), OperationStep::Snapshot)]);
    assert_eq!(
        run("compact", &[], &view("b", false, 1), None).unwrap(),
        vec![("a".to_string(), OperationStep::Compact { revision: 1234 })]
    );
    assert_eq!(
        run("compact", &[("revision", "1000")], &view("a", false, 1), None).unwrap()[0].1,
        OperationStep::Compact { revision: 1000 }
    );
    assert!(run("compact", &[("revision", "2000")], &view("a", false, 1), None).unwrap_err().contains("ahead of"));
}

#[test]
fn disarm_needs_an_alarm_and_the_space_to_clear_it() {
    let quota = Some(10_000);
    assert!(run("disarm", &[], &view("a", false, 1000), quota).unwrap_err().contains("no active alarm"));
    let full = run("disarm", &[], &view("a", true, 9_500), quota).unwrap_err();
    assert!(full.starts_with("the space is not there: a (9500 of 10000 bytes)"), "{full}");
    let steps = run("disarm", &[], &view("a", true, 2_000), quota).unwrap();
    assert_eq!(steps, vec![("b".to_string(), OperationStep::Disarm { alarms: vec!["NOSPACE on a".into()] })]);
    // An alarm does not stop the operations that clear it.
    assert!(run("defrag", &[], &view("a", true, 9_500), quota).is_ok());
}

#[test]
fn inputs_are_checked_by_name_and_type() {
    let compact = ETCD_OPERATIONS.iter().find(|o| o.name == "compact").unwrap();
    let given = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
    assert_eq!(check_inputs(compact, &given(&[("revision", "12")])), Ok(()));
    assert_eq!(
        check_inputs(compact, &given(&[("revison", "12"), ("revision", "x")])).unwrap_err(),
        vec!["input `revision` of `compact` is an int, got `x`", "`compact` has no input `revison`; its inputs: revision"]
    );
    let defrag = ETCD_OPERATIONS.iter().find(|o| o.name == "defrag").unwrap();
    assert_eq!(check_inputs(defrag, &given(&[("x", "1")])).unwrap_err(), vec!["`defrag` takes no inputs, got `x=1`"]);
}

#[test]
fn restore_copies_checks_stops_restores_and_starts_together() {
    let steps = run("restore", &[("snapshot", "/local/snap.db")], &view("a", false, 1), None).unwrap();
    let names: Vec<String> = steps
        .iter()
        .map(|(h, s)| match s {
            OperationStep::Upload { path, .. } => format!("upload {h} {path}"),
            OperationStep::SafetySnapshot => format!("safety {h}"),
            OperationStep::Stop { member } => format!("stop {member}"),
            OperationStep::Restore { member, token, initial_cluster, .. } => format!("restore {member} {token} {initial_cluster}"),
            OperationStep::StartAll { hosts } => format!("start {}", hosts.join(",")),
            other => panic!("{other:?}"),
        })
        .collect();
    let file = format!("/var/backups/etcd/cairn-restore-{}.db", "ab".repeat(6));
    let token = format!("restored-{}", "ab".repeat(6));
    let all = "a=https://a:2380,b=https://b:2380,c=https://c:2380";
    assert_eq!(
        names,
        vec![
            format!("upload a {file}"),
            format!("upload b {file}"),
            format!("upload c {file}"),
            "safety a".to_string(),
            "stop a".into(),
            "stop b".into(),
            "stop c".into(),
            format!("restore a {token} {all}"),
            format!("restore b {token} {all}"),
            format!("restore c {token} {all}"),
            "start a,b,c".into(),
        ]
    );
    // From a member's host: that host checks its own file, the others get a copy.
    let steps = run("restore", &[("snapshot", "b:/var/backups/etcd/x.db")], &view("a", false, 1), None).unwrap();
    assert_eq!(
        steps[1].1,
        OperationStep::Upload {
            source: SnapshotSource::Host { host: "b".into(), path: "/var/backups/etcd/x.db".into() },
            path: "/var/backups/etcd/x.db".into()
        }
    );
    assert_eq!(
        steps[0].1,
        OperationStep::Upload {
            source: SnapshotSource::Host { host: "b".into(), path: "/var/backups/etcd/x.db".into() },
            path: "/var/backups/etcd/cairn-restore-x.db".into()
        }
    );
    let missing = run("restore", &[("snapshot", "/nowhere.db")], &view("a", false, 1), None).unwrap_err();
    assert_eq!(missing, "snapshot=/nowhere.db: no such file here, and `/nowhere.db` is not a host of the cluster");
}

#[test]
fn copy_backups_goes_from_every_other_member_to_the_named_host() {
    let steps = run("copy-backups", &[("to", "c:/srv/etcd-copies/")], &view("a", false, 1), None).unwrap();
    let plan: Vec<(&str, &str)> = steps
        .iter()
        .map(|(h, s)| match s {
            OperationStep::CopyBackups { to_host, to_dir, .. } => {
                assert_eq!(to_host, "c");
                (h.as_str(), to_dir.as_str())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(plan, vec![("a", "/srv/etcd-copies/a"), ("b", "/srv/etcd-copies/b")]);
    let bad = run("copy-backups", &[("to", "elsewhere:/x")], &view("a", false, 1), None).unwrap_err();
    assert_eq!(bad, "to=elsewhere:/x: write HOST:DIR with HOST one of a, b, c and DIR absolute");
}
