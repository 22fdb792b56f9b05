//! The `unit`, `user` and `check` kinds: loading and its errors, the graph edges they imply,
//! plans rendered from made-up host facts, and (further down) end to end on lab hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use cairn::graph::Graph;
use cairn::plan::planner::plan_from_facts;
use cairn::plan::render::{self, TextOptions};
use cairn::plan::{Action, Plan};
use cairn::resource::unit::UnitFact;
use cairn::resource::user::{GroupFact, UserFact};
use cairn::resource::{Desired, HostFacts, PathFact, PathKind};
use cairn::spec::load_str;

const HOSTS: &str = r#"
[hosts.node1]
address = "192.0.2.11"
labels = { role = "etcd" }

[hosts.node2]
address = "192.0.2.12"
labels = { role = "etcd" }
"#;

const SPEC: &str = r#"
[user.etcd]
system = true
home = "/var/lib/etcd"
shell = "/usr/sbin/nologin"

[dir.data]
path = "/var/lib/etcd"
mode = "0700"
owner = "etcd"
group = "etcd"

[file.etcd-config]
path = "/etc/etcd/etcd.config.yml"
content = "name: {{ host.name }}\n"

[unit.etcd]
hosts = ["role=etcd"]
name = "etcd.service"
content = "[Service]\nType=notify\nExecStart=/usr/local/bin/etcd --config-file /etc/etcd/etcd.config.yml\n"
restart_on = ["file.etcd-config"]
start = "together"

[check.etcd-health]
command = ["etcdctl", "endpoint", "health"]
retries = 5
interval = 2
after = ["unit.etcd"]
"#;

fn graph(text: &str) -> Graph {
    let spec = load_str(Path::new("cairn.toml"), text).unwrap_or_else(|e| panic!("{}", e.render()));
    Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
}

fn errors(text: &str) -> String {
    match load_str(Path::new("cairn.toml"), text) {
        Ok(_) => panic!("expected the spec to be rejected:\n{text}"),
        Err(e) => e.render(),
    }
}

fn index(g: &Graph, id: &str, host: &str) -> usize {
    g.instances.iter().position(|i| i.id.resource.to_string() == id && i.id.host == host).unwrap()
}

#[test]
fn spec_loads_and_implies_edges() {
    let g = graph(&format!("{HOSTS}{SPEC}"));
    let dir = index(&g, "dir.data", "node1");
    let user = index(&g, "user.etcd", "node1");
    let unit = index(&g, "unit.etcd", "node1");
    let config = index(&g, "file.etcd-config", "node1");
    let check = index(&g, "check.etcd-health", "node1");
    // owner = "etcd" orders the dir after the user, on the same host only.
    assert_eq!(g.instances[dir].dep_reasons.get(&user).map(String::as_str), Some("`etcd` is created by user.etcd"));
    assert!(!g.deps[dir].contains(&index(&g, "user.etcd", "node2")));
    // restart_on is a dependency.
    assert!(g.deps[unit].contains(&config));
    assert!(g.deps[check].contains(&unit));
    // ... and the unit watches the config's path on its own host.
    let Desired::Unit(u) = &g.instances[unit].desired else { panic!() };
    assert_eq!(u.watched.iter().map(|w| w.path.as_str()).collect::<Vec<_>>(), ["/etc/etcd/etcd.config.yml"]);
    assert_eq!(u.path, "/etc/systemd/system/etcd.service");
    assert!(g.instances[unit].desired.start_together());
    let Desired::Check(c) = &g.instances[check].desired else { panic!() };
    assert_eq!((c.argv.len(), c.retries, c.description.as_str()), (3, 5, "etcd health"));
}

#[test]
fn a_unit_file_and_a_file_on_the_same_path_clash() {
    let spec = load_str(
        Path::new("cairn.toml"),
        &format!(
            "{HOSTS}[unit.a]\nname = \"a.service\"\ncontent = \"x\"\n[file.a]\npath = \"/etc/systemd/system/a.service\"\ncontent = \"y\"\n"
        ),
    )
    .unwrap();
    let err = Graph::build(&spec).unwrap_err().render(&spec.sources);
    assert!(err.contains("file.a and unit.a both manage /etc/systemd/system/a.service"), "{err}");
}

#[test]
fn bad_tables_are_reported_at_once() {
    insta::assert_snapshot!(errors(&format!(
        r#"{HOSTS}
[unit.bad]
name = "etcd"
state = "runing"
start = "all"
restart_on = ["file.nope", "cert"]

[user.Bad]
home = "relative"
groups = ["ok", "No"]

[check.a]
command = 3

[check.b]
command = []
retries = -1
"#
    )));
}

fn running(enter: i64) -> UnitFact {
    UnitFact {
        load_state: "loaded".into(),
        active_state: "active".into(),
        sub_state: "running".into(),
        unit_file_state: "enabled".into(),
        active_enter: Some(enter),
        fragment_path: "/etc/systemd/system/etcd.service".into(),
        need_daemon_reload: false,
    }
}

fn file(content: &str, mtime: i64) -> PathFact {
    PathFact {
        kind: PathKind::File,
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        size: content.len() as u64,
        mtime,
        sha256: Some(cairn::resource::file::sha256_hex(content.as_bytes())),
    }
}

/// Facts of a host where everything of [`SPEC`] is in place and etcd started at 1000.
fn settled(g: &Graph, host: &str) -> HostFacts {
    let mut f = HostFacts::default();
    f.users.insert("etcd".into(), UserFact { uid: 998, gid: 997, home: "/var/lib/etcd".into(), shell: "/usr/sbin/nologin".into() });
    f.groups.insert("etcd".into(), GroupFact { gid: 997, members: vec![] });
    let mut data = file("", 900);
    data.kind = PathKind::Dir;
    data.mode = 0o700;
    data.owner = "etcd".into();
    data.group = "etcd".into();
    f.paths.insert("/var/lib/etcd".into(), data);
    f.paths.insert("/etc/etcd/etcd.config.yml".into(), file(&format!("name: {host}\n"), 900));
    let unit = g.instances.iter().find_map(|i| if let Desired::Unit(u) = &i.desired { Some(u.clone()) } else { None }).unwrap();
    f.paths.insert(unit.path.clone(), file(std::str::from_utf8(unit.content.as_deref().unwrap()).unwrap(), 900));
    f.units.insert("etcd.service".into(), running(1000));
    f
}

fn plan_of(g: &Graph, facts: &[(&str, HostFacts)]) -> Plan {
    let mut plan = Plan::default();
    for (host, f) in facts {
        plan.hosts.insert((*host).to_string(), plan_from_facts(g, host, f, &BTreeMap::new()));
    }
    plan
}

#[test]
fn only_checks_is_no_changes() {
    let g = graph(&format!("{HOSTS}{SPEC}"));
    let plan = plan_of(&g, &[("node1", settled(&g, "node1")), ("node2", settled(&g, "node2"))]);
    assert!(!plan.has_changes());
    assert_eq!(plan.summary().check, 2);
    assert!(plan.changes().any(|c| c.action == Action::Check && c.reason == "will check: etcd health"));
    assert_eq!(render::text(&plan, &g, TextOptions::default()), "No changes. 8 resource instances on 2 hosts match the spec.\n");
}

#[test]
fn plan_shows_restarts_stopped_units_and_checks() {
    let g = graph(&format!("{HOSTS}{SPEC}"));
    // node1: the config changes, so etcd will restart; node2: etcd is stopped and its config
    // was written after it last started (a lost restart) — starting covers it.
    let mut n1 = settled(&g, "node1");
    n1.paths.insert("/etc/etcd/etcd.config.yml".into(), file("name: old\n", 900));
    let mut n2 = settled(&g, "node2");
    n2.units.get_mut("etcd.service").unwrap().active_state = "inactive".into();
    n2.units.get_mut("etcd.service").unwrap().unit_file_state = "disabled".into();
    let plan = plan_of(&g, &[("node1", n1), ("node2", n2)]);
    let text = render::text(&plan, &g, TextOptions::default());
    insta::assert_snapshot!(text);
    assert!(text.contains("restart: file.etcd-config changes"), "{text}");
}

#[test]
fn plan_shows_a_pending_restart() {
    let g = graph(&format!("{HOSTS}{SPEC}"));
    let mut n1 = settled(&g, "node1");
    n1.paths.get_mut("/etc/etcd/etcd.config.yml").unwrap().mtime = 1001;
    let plan = plan_of(&g, &[("node1", n1)]);
    let c = plan.changes().find(|c| c.id.resource.to_string() == "unit.etcd").unwrap();
    assert_eq!((c.action, c.reason.as_str()), (Action::Restart, "restart pending: etcd.config.yml changed after the service started"));
    assert!(render::text(&plan, &g, TextOptions::default()).contains("1 to restart; 1 check will run."));
}

#[test]
fn new_host_plan() {
    let g = graph(&format!("{HOSTS}{SPEC}"));
    let mut fresh = HostFacts::default();
    fresh.units.insert(
        "etcd.service".into(),
        UnitFact { load_state: "not-found".into(), active_state: "inactive".into(), sub_state: "dead".into(), ..Default::default() },
    );
    let plan = plan_of(&g, &[("node1", fresh)]);
    insta::assert_snapshot!(render::text(&plan, &g, TextOptions::default()));
}
