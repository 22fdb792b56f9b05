//! Planning a cluster from made-up probe facts (no hosts): the members' etcdctl answers as the
//! probe returns them, the cluster section of the text, markdown and JSON views, a grow with no
//! restart of the formed members, and the quorum guard holding a degraded cluster's restarts
//! with the files that would trigger them while the stopped member is started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use cairn::graph::Graph;
use cairn::plan::planner::plan_from_all_facts;
use cairn::plan::render::{self, TextOptions};
use cairn::plan::{Action, Plan};
use cairn::resource::unit::UnitFact;
use cairn::resource::{HostFacts, PathFact, PathKind, ProbeRequest, QueryOutput};

const SPEC: &str = r#"
[hosts.h1]
address = "192.0.2.1"
[hosts.h2]
address = "192.0.2.2"
[hosts.h3]
address = "192.0.2.3"
[hosts.h4]
address = "192.0.2.4"

[file.config]
path = "/etc/etcd.conf"
content = "heartbeat 150\n"

[unit.etcd]
name = "etcd.service"
restart_on = ["file.config"]
rolling = { batch = 1, wait_for = "check.health" }

[check.health]
command = "true"
after = ["unit.etcd"]

[cluster.members]
driver = "etcd"
unit = "unit.etcd"
peer_url = "https://{{ host.address }}:2380"
settings = { etcdctl = "/usr/bin/etcdctl", cacert = "/etc/ca.pem", cert = "/etc/admin.pem", key = "/etc/admin-key.pem", data_dir = "/var/lib/etcd" }
after = ["file.config"]
"#;

fn graph() -> Graph {
    let spec = cairn::spec::load_str(Path::new("cairn.toml"), SPEC).unwrap_or_else(|e| panic!("{}", e.render()));
    Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
}

fn id(host: &str) -> u64 {
    0x1000 + u64::from(host.as_bytes()[1])
}

fn member_list(members: &[&str]) -> String {
    let items: Vec<String> = members
        .iter()
        .map(|m| {
            let n = &m[1..];
            format!(r#"{{"ID":{},"name":"{m}","peerURLs":["https://192.0.2.{n}:2380"],"clientURLs":["https://192.0.2.{n}:2379"]}}"#, id(m))
        })
        .collect();
    format!(r#"{{"header":{{"cluster_id":1}},"members":[{}]}}"#, items.join(","))
}

fn statuses(up: &[&str], leader: &str) -> String {
    let items: Vec<String> = up
        .iter()
        .map(|m| {
            format!(
                r#"{{"Endpoint":"x","Status":{{"header":{{"member_id":{}}},"version":"3.4.23","dbSize":20480,"leader":{},"raftIndex":42,"raftTerm":2}}}}"#,
                id(m),
                id(leader)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// What `host`'s probe found: the config file (old content), etcd running or not, its data,
/// and its etcdctl answers.
fn facts(g: &Graph, host: &str, members: &[&str], up: &[&str], leader: &str) -> HostFacts {
    let mut request = ProbeRequest::default();
    for inst in g.instances.iter().filter(|i| i.id.host == host) {
        inst.desired.add_to_probe(&mut request);
    }
    let mut f = HostFacts::default();
    let member = members.contains(&host);
    let answers = up.contains(&host);
    let file = |kind, size| PathFact {
        kind,
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        size,
        mtime: 1_700_000_000,
        sha256: (kind == PathKind::File).then(|| "0".repeat(64)),
    };
    if member {
        f.paths.insert("/etc/etcd.conf".into(), file(PathKind::File, 14));
        f.paths.insert("/var/lib/etcd/member".into(), file(PathKind::Dir, 0));
    }
    let unit = UnitFact {
        load_state: "loaded".into(),
        active_state: if answers { "active" } else { "inactive" }.into(),
        sub_state: if answers { "running" } else { "dead" }.into(),
        unit_file_state: "enabled".into(),
        active_enter: answers.then_some(1_700_000_100),
        fragment_path: "/etc/systemd/system/etcd.service".into(),
        need_daemon_reload: false,
    };
    f.units.insert("etcd.service".into(), unit);
    for q in &request.queries {
        let (status, stdout) = match (answers, q.iter().any(|a| a == "member")) {
            (false, _) => (1, String::new()),
            (true, true) => (0, member_list(members)),
            (true, false) => (0, statuses(up, leader)),
        };
        f.queries.insert(q.clone(), QueryOutput { status, stdout });
    }
    f
}

fn plan(members: &[&str], up: &[&str], leader: &str) -> Plan {
    let g = graph();
    let all: BTreeMap<String, HostFacts> =
        ["h1", "h2", "h3", "h4"].iter().map(|h| ((*h).to_string(), facts(&g, h, members, up, leader))).collect();
    plan_from_all_facts(&g, &all)
}

#[test]
fn a_grow_is_two_steps_in_a_cluster_section_and_no_restart() {
    // h1..h3 formed, h4 selected: it joins (the cluster's section); the formed members' config
    // differs too, so they roll, leader last.
    let p = plan(&["h1", "h2", "h3"], &["h1", "h2", "h3"], "h2");
    let text = render::text(&p, TextOptions::default());
    insta::assert_snapshot!("grow_text", text);
    insta::assert_snapshot!("grow_markdown", render::markdown(&p));
    let json: serde_json::Value = serde_json::from_str(&render::json(&p)).unwrap();
    assert_eq!(json["clusters"][0]["health"], "healthy");
    assert_eq!(json["clusters"][0]["leader_host"], "h2");
    let join = json["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "cluster" && c["host"] == "h4").unwrap();
    assert_eq!(join["action"], "create");
    assert_eq!(p.clusters[0].summary.voters, 3);
}

#[test]
fn a_refused_upgrade_path_holds_every_restart_and_says_which_step_to_take() {
    let g = {
        let text = SPEC.replace("data_dir = \"/var/lib/etcd\" }", "data_dir = \"/var/lib/etcd\", version = \"3.6.4\" }");
        let spec = cairn::spec::load_str(Path::new("cairn.toml"), &text).unwrap_or_else(|e| panic!("{}", e.render()));
        Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
    };
    let all: BTreeMap<String, HostFacts> =
        ["h1", "h2", "h3"].iter().map(|h| ((*h).to_string(), facts(&g, h, &["h1", "h2", "h3"], &["h1", "h2", "h3"], "h1"))).collect();
    let p = plan_from_all_facts(&g, &all);
    for host in ["h1", "h2", "h3"] {
        let unit = p.hosts[host].iter().find(|c| c.id.resource.to_string() == "unit.etcd").unwrap();
        assert_eq!(unit.action, Action::Conflict);
        assert_eq!(
            unit.reason.to_string(),
            "refused upgrade path for cluster.members: etcd upgrades one minor release at a time: members run 3.4.23; go to 3.5.x first, then to 3.6.4"
        );
    }
    assert!(p.has_errors());
}

#[test]
fn a_degraded_cluster_holds_its_restarts_and_their_files_but_starts_the_stopped_member() {
    let p = plan(&["h1", "h2", "h3"], &["h1", "h3"], "h1");
    insta::assert_snapshot!("degraded_text", render::text(&p, TextOptions::default()));
    let action =
        |host: &str, resource: &str| p.hosts[host].iter().find(|c| c.id.resource.to_string() == resource).map(|c| c.action).unwrap();
    for host in ["h1", "h3"] {
        assert_eq!(action(host, "unit.etcd"), Action::Conflict, "{host}'s restart is held");
        assert_eq!(action(host, "file.config"), Action::Conflict, "{host} keeps its old config");
    }
    assert_eq!(action("h2", "unit.etcd"), Action::Update, "the stopped member is started");
    assert_eq!(action("h2", "file.config"), Action::Update);
    assert_eq!(action("h4", "cluster.members"), Action::Conflict, "no join while degraded");
    assert!(p.has_errors());
}

#[test]
fn an_upgrade_is_shown_member_by_member_leader_last_after_a_snapshot() {
    let g = {
        let text = SPEC.replace(
            "data_dir = \"/var/lib/etcd\" }",
            "data_dir = \"/var/lib/etcd\", version = \"3.5.16\", snapshot_dir = \"/var/backups/etcd\" }",
        );
        let spec = cairn::spec::load_str(Path::new("cairn.toml"), &text).unwrap_or_else(|e| panic!("{}", e.render()));
        Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
    };
    let all: BTreeMap<String, HostFacts> =
        ["h1", "h2", "h3"].iter().map(|h| ((*h).to_string(), facts(&g, h, &["h1", "h2", "h3"], &["h1", "h2", "h3"], "h2"))).collect();
    let p = plan_from_all_facts(&g, &all);
    insta::assert_snapshot!("upgrade_text", render::text(&p, TextOptions::default()));
    let up = p.clusters[0].upgrade.as_ref().unwrap();
    let order: Vec<&str> = up.steps.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(order, vec!["h1", "h3", "h2"], "followers first, the leader last");
    // The snapshot is taken first, through a follower, and JSON names it.
    assert_eq!(p.hosts["h1"][0].subject, cairn::plan::Subject::Snapshot(p.clusters[0].id.clone()));
    let json: serde_json::Value = serde_json::from_str(&render::json(&p)).unwrap();
    assert_eq!(json["clusters"][0]["upgrade"]["to"], "3.5.16");
    assert_eq!(json["clusters"][0]["upgrade"]["steps"][2]["leader"], true);
    let snapshot = json["changes"].as_array().unwrap().iter().find(|c| c["cluster_step"] == "snapshot").unwrap();
    assert_eq!(snapshot["host"], "h1");
    assert!(render::markdown(&p).contains("- upgrade 3.4.23 → 3.5.16: one member at a time"), "{}", render::markdown(&p));
}
