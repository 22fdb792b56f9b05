//! The `unit`, `user` and `check` kinds: loading and its errors, the graph edges they imply,
//! plans rendered from made-up host facts, and (further down) end to end on lab hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/run.rs"]
mod run;
use run::cairn;

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

[unit.ok]
name = "ok.service"
restart_on = ["file.etcd-conf"]

[file.etcd-config]
path = "/etc/etcd.yml"
content = "x"

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
        sha256: Some(cairn::hash::sha256_hex(content.as_bytes())),
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
    let mut plan = Plan::for_graph(g);
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
    assert!(plan.changes().any(|c| c.action == Action::Check && c.reason.to_string() == "will check: etcd health"));
    assert_eq!(render::text(&plan, TextOptions::default()), "No changes. 8 resource instances on 2 hosts match the spec.\n");
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
    let text = render::text(&plan, TextOptions::default());
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
    assert_eq!(
        (c.action, c.reason.to_string().as_str()),
        (Action::Restart, "restart pending: etcd.config.yml changed after the service started")
    );
    assert!(render::text(&plan, TextOptions::default()).contains("1 to restart; 1 check will run."));
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
    insta::assert_snapshot!(render::text(&plan, TextOptions::default()));
}

#[test]
fn a_unit_whose_file_another_resource_writes_is_loaded_on_a_new_host() {
    let g = graph(&format!(
        r#"{HOSTS}
[file.unit]
path = "/etc/systemd/system/bench.service"
content = "[Service]\nExecStart=/bin/sleep infinity\n"

[unit.bench]
name = "bench.service"
restart_on = ["file.unit"]
"#
    ));
    let mut fresh = HostFacts::default();
    fresh.units.insert(
        "bench.service".into(),
        UnitFact { load_state: "not-found".into(), active_state: "inactive".into(), sub_state: "dead".into(), ..Default::default() },
    );
    let plan = plan_of(&g, &[("node1", fresh.clone())]);
    let c = plan.changes().find(|c| c.id.resource.to_string() == "unit.bench").unwrap();
    assert_eq!(
        (c.action, c.reason.to_string().as_str()),
        (Action::Update, "not loaded; file.unit writes its unit file (daemon-reload), not enabled, stopped, wanted running")
    );
    // The file is there (a package put it there, say) but systemd has not loaded it.
    fresh.paths.insert("/etc/systemd/system/bench.service".into(), file("[Service]\nExecStart=/bin/sleep infinity\n", 900));
    let plan = plan_of(&g, &[("node1", fresh)]);
    let c = plan.changes().find(|c| c.id.resource.to_string() == "unit.bench").unwrap();
    assert_eq!(c.action, Action::Update);
    assert!(c.reason.to_string().starts_with("not loaded; its unit file /etc/systemd/system/bench.service is on the host"), "{}", c.reason);
}

// ---- end to end on lab hosts ----

#[path = "common/lab.rs"]
mod lab;

/// The service spec: a system user, a data dir it owns, a config file, and a unit running as the
/// user that restarts when the config changes.
fn service_spec(version: u32, data_mode: &str) -> String {
    format!(
        r#"include = ["lab.toml"]

[vars]
version = {version}

[user.svc]
system = true
home = "/var/lib/cairn-demo"
shell = "/usr/sbin/nologin"

[dir.data]
path = "/var/lib/cairn-demo"
mode = "{data_mode}"
owner = "svc"
group = "svc"

[file.config]
path = "/etc/cairn-demo.conf"
content = "version = {{{{ vars.version }}}}\n"

[unit.demo]
name = "cairn-demo.service"
content = """
[Unit]
Description=cairn demo service

[Service]
User=svc
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""
restart_on = ["file.config", "dir.data"]
"#
    )
}

fn active_enter(lab: &lab::Lab, node: &str, unit: &str) -> i64 {
    let out = lab.ssh_ok(node, &["systemctl", "show", "--timestamp=unix", "-p", "ActiveEnterTimestamp", "--value", unit]);
    out.trim_start_matches('@').parse().unwrap_or_else(|_| panic!("ActiveEnterTimestamp of {unit} on {node}: {out:?}"))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn lab_users_units_restarts_together_starts_and_checks() {
    let Some(lab) = lab::Lab::up_or_skip("kinds-systemd", 3) else { return };
    let dir = lab.dir();
    let nodes = ["node1", "node2", "node3"];

    // 1. User, owned dir, config and unit on 3 hosts.
    write(dir, "cairn.toml", &service_spec(1, "0750"));
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for node in nodes {
        assert_eq!(lab.ssh_ok(node, &["systemctl", "is-active", "cairn-demo.service"]), "active");
        assert_eq!(lab.ssh_ok(node, &["systemctl", "is-enabled", "cairn-demo.service"]), "enabled");
        assert_eq!(lab.ssh_ok(node, &["stat", "-c", "%U:%G %a", "/var/lib/cairn-demo"]), "svc:svc 750");
        let passwd = lab.ssh_ok(node, &["getent", "passwd", "svc"]);
        assert!(passwd.ends_with(":/var/lib/cairn-demo:/usr/sbin/nologin"), "{passwd}");
        assert_eq!(lab.ssh_ok(node, &["ps", "-o", "user=", "-C", "sleep"]), "svc");
    }
    // ... and the plan after apply is empty.
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.starts_with("No changes."), "{}", plan.all());

    // 2. Stopped by hand, and the user's shell changed by hand: the plan says so, apply repairs.
    lab.ssh_ok("node2", &["systemctl", "stop", "cairn-demo.service"]);
    lab.ssh_ok("node2", &["usermod", "--shell", "/bin/sh", "svc"]);
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("~ unit.demo") && plan.stdout.contains("stopped, wanted running"), "{}", plan.all());
    assert!(plan.stdout.contains("~ user.svc") && plan.stdout.contains("shell: /bin/sh → /usr/sbin/nologin"), "{}", plan.all());
    assert!(!plan.stdout.contains("node1 ("), "only node2 changes:\n{}", plan.all());
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(lab.ssh_ok("node2", &["systemctl", "is-active", "cairn-demo.service"]), "active");
    assert!(lab.ssh_ok("node2", &["getent", "passwd", "svc"]).ends_with(":/usr/sbin/nologin"));

    // 3. A change in restart_on restarts the unit (ActiveEnterTimestamp moves).
    let before: Vec<i64> = nodes.iter().map(|n| active_enter(&lab, n, "cairn-demo.service")).collect();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(dir, "cairn.toml", &service_spec(2, "0750"));
    let plan = cairn(dir, &["plan", "-f", "cairn.toml"]);
    assert!(plan.stdout.contains("↻ unit.demo") && plan.stdout.contains("restart: file.config changes"), "{}", plan.all());
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for (node, before) in nodes.iter().zip(&before) {
        let after = active_enter(&lab, node, "cairn-demo.service");
        assert!(after > *before, "{node}: ActiveEnterTimestamp {before} → {after}");
    }
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // 3b. A dependency that changes without touching any file's mtime (a chmod of the data
    // dir) restarts the unit through `restart_on` alone.
    let before = active_enter(&lab, "node1", "cairn-demo.service");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(dir, "cairn.toml", &service_spec(2, "0755"));
    let plan = cairn(dir, &["plan", "-f", "cairn.toml"]);
    assert!(plan.stdout.contains("restart: dir.data changes"), "{}", plan.all());
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(active_enter(&lab, "node1", "cairn-demo.service") > before, "restarted for dir.data");
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // 4. A restart lost by an earlier run: the config is newer than the running service.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lab.ssh_ok("node3", &["touch", "/etc/cairn-demo.conf"]);
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("restart pending: cairn-demo.conf changed after the service started"), "{}", plan.all());
    let before = active_enter(&lab, "node3", "cairn-demo.service");
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(active_enter(&lab, "node3", "cairn-demo.service") > before);
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // 5. start = "together": with --parallelism 1 the three hosts still start at once. Each
    // start takes 3 s (ExecStartPre), so a host-by-host start would spread them 3 s apart.
    write(
        dir,
        "together.toml",
        r#"include = ["lab.toml"]
[unit.peer]
name = "cairn-peer.service"
start = "together"
start_timeout = 60
content = """
[Service]
ExecStartPre=/bin/sleep 3
ExecStart=/bin/sleep infinity
"""
"#,
    );
    let run = cairn(dir, &["apply", "--auto-approve", "--parallelism", "1", "-f", "together.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let started: Vec<i64> = nodes.iter().map(|n| active_enter(&lab, n, "cairn-peer.service")).collect();
    let spread = started.iter().max().unwrap() - started.iter().min().unwrap();
    assert!(spread <= 2, "started together, yet ActiveEnterTimestamps are {started:?}");
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "together.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // 5b. A unit without content whose unit file another resource writes (issue 17): on a host
    // where systemd never saw it, the plan loads it (daemon-reload) after the file is written,
    // apply starts it, and the plan after is empty.
    unit_file_written_by_another_resource(&lab, &nodes);
    start_retried_only_for_219_cgroup(&lab);

    // 6. A unit that fails reports its journal; a failing check fails the apply with its output
    // and skips its dependents; a check passing after retries passes.
    write(
        dir,
        "failing.toml",
        r#"include = ["lab.toml"]
[unit.broken]
hosts = ["node1"]
name = "cairn-broken.service"
content = """
[Service]
Type=notify
ExecStart=/bin/sh -c 'echo cairn-broken-says-goodbye; exit 3'
"""

[check.flaky]
hosts = ["node2"]
command = "n=$(cat /tmp/cairn-flaky 2>/dev/null || echo 0); echo $((n + 1)) > /tmp/cairn-flaky; [ $n -ge 2 ]"
retries = 4
interval = 1

[check.failing]
hosts = ["node3"]
command = ["sh", "-c", "echo cairn-check-output; exit 7"]
retries = 1
interval = 1

[file.after-check]
hosts = ["node3"]
path = "/etc/cairn-after-check"
content = "x"
after = ["check.failing"]
"#,
    );
    let plan = cairn(dir, &["plan", "-f", "failing.toml"]);
    assert!(plan.stdout.contains("? check.flaky") && plan.stdout.contains("will check: flaky"), "{}", plan.all());
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "failing.toml"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let out = run.all();
    assert!(out.contains("cairn-broken.service") && out.contains("journalctl -u cairn-broken.service"), "{out}");
    assert!(out.contains("cairn-broken-says-goodbye"), "the journal lines are in the error:\n{out}");
    assert!(
        out.contains("check failed: failing")
            && out.contains("2 attempts")
            && out.contains("exit status 7, output:\n    cairn-check-output"),
        "{out}"
    );
    assert!(out.contains("skipped: file.after-check on node3: check.failing on node3 did not complete"), "{out}");
    assert!(out.contains("check passed: flaky (attempt 3 of 5)"), "{out}");
    assert!(lab.ssh(node3(), &["test", "-e", "/etc/cairn-after-check"]).status.code() == Some(1), "the dependent was not applied");

    // A plan whose only entries are checks has no changes, and --detailed-exitcode says 0.
    write(dir, "checks.toml", "include = [\"lab.toml\"]\n[check.ok]\ncommand = [\"true\"]\n");
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "checks.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.starts_with("No changes."), "{}", plan.all());

    // `cairn check` runs them now over ssh, on every host (or those of --host), changing nothing.
    let checked = cairn(dir, &["check", "-f", "checks.toml"]);
    assert_eq!(checked.code, 0, "{}", checked.all());
    for node in ["node1", "node2", "node3"] {
        assert!(checked.stdout.contains(&format!("passed  check.ok on {node}: ")), "{}", checked.all());
    }
    assert!(checked.stdout.ends_with("Checks: 3 passed, 0 failed.\n"), "{}", checked.all());
    let failing = cairn(dir, &["check", "-f", "failing.toml", "--host", "node3"]);
    assert_eq!(failing.code, 1, "{}", failing.all());
    assert!(
        failing.stdout.contains("FAILED  check.failing on node3: ") && failing.stdout.contains("cairn-check-output"),
        "{}",
        failing.all()
    );
    assert!(!failing.stdout.contains("node2"), "--host limits the checks: {}", failing.all());
    assert!(lab.ssh(node3(), &["test", "-e", "/etc/cairn-after-check"]).status.code() == Some(1), "check applies nothing");
}

/// `[file.unit]` writes the unit file of `[unit.bench]`, which has no content of its own.
const WRITTEN_BY_A_FILE: &str = r#"include = ["lab.toml"]
[file.unit]
path = "/etc/systemd/system/cairn-bench.service"
content = """
[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""

[unit.bench]
name = "cairn-bench.service"
restart_on = ["file.unit"]
"#;

fn unit_file_written_by_another_resource(lab: &lab::Lab, nodes: &[&str]) {
    let dir = lab.dir();
    write(dir, "bench.toml", WRITTEN_BY_A_FILE);
    let plan = cairn(dir, &["plan", "-f", "bench.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(!plan.stdout.contains("! unit.bench"), "{}", plan.all());
    assert!(
        plan.stdout.contains("~ unit.bench") && plan.stdout.contains("not loaded; file.unit writes its unit file (daemon-reload)"),
        "{}",
        plan.all()
    );
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "bench.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for node in nodes {
        assert_eq!(lab.ssh_ok(node, &["systemctl", "is-active", "cairn-bench.service"]), "active");
        assert_eq!(lab.ssh_ok(node, &["systemctl", "is-enabled", "cairn-bench.service"]), "enabled");
    }
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "bench.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.starts_with("No changes."), "{}", plan.all());

    // A unit file that a package put on the host after systemd last looked for the unit: no
    // resource writes it and the unit has no content; apply loads and starts it. systemd looks
    // again by itself when a unit directory's mtime moved, so the mtime is put back: systemd
    // keeps the unit not-found until a daemon-reload, as older versions do.
    let unit_file = "[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n";
    let script = "d=/usr/lib/systemd/system; systemctl show -p LoadState cairn-pkg.service >/dev/null; \
                  touch -r $d /tmp/cairn-ref; printf %s \"$1\" > $d/cairn-pkg.service; touch -r /tmp/cairn-ref $d; \
                  systemctl show -p LoadState --value cairn-pkg.service";
    for node in nodes {
        assert_eq!(lab.ssh_ok(node, &["sh", "-c", script, "sh", unit_file]), "not-found", "{node}");
    }
    write(dir, "pkg.toml", "include = [\"lab.toml\"]\n[unit.pkg]\nname = \"cairn-pkg.service\"\n");
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "pkg.toml"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout.contains("not loaded; its unit file /usr/lib/systemd/system/cairn-pkg.service is on the host (daemon-reload)"),
        "{}",
        plan.all()
    );
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "pkg.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for node in nodes {
        assert_eq!(lab.ssh_ok(node, &["systemctl", "is-active", "cairn-pkg.service"]), "active");
    }
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "pkg.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // A unit that has no file anywhere is still refused.
    write(dir, "ghost.toml", "include = [\"lab.toml\"]\n[unit.ghost]\nhosts = [\"node1\"]\nname = \"cairn-ghost.service\"\n");
    let plan = cairn(dir, &["plan", "-f", "ghost.toml"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.stdout.contains("cairn-ghost.service does not exist on the host and the spec gives no content to write its unit file"),
        "{}",
        plan.all()
    );
}

/// A script for `ExecStartPre=` that makes the next start of its unit fail the way systemd in a
/// container on a cgroup v1 host sometimes does: the service's process cannot join the unit's
/// cgroup, so systemd's child exits 219/CGROUP before exec'ing the service. It makes the
/// hierarchy systemd tracks processes in read-only for half a second: the lab's containers run
/// systemd in hybrid mode, where that is the cgroup2 one at `unified` (a failure to join the
/// `name=systemd` one is only a warning). The process that makes it writable again moves out
/// of the unit's cgroup first, so the failed unit's clean-up does not kill it. Only once per
/// marker file: the start tried again succeeds.
const CGROUP_FAILS_ONCE: &str = r#"#!/bin/sh
[ -e /run/cairn-cgfail.done ] && exit 0
touch /run/cairn-cgfail.done
cg=/sys/fs/cgroup/unified
[ -d $cg ] || cg=/sys/fs/cgroup
(sleep 0.5; mount -o remount,bind,rw $cg) &
echo $! > $cg/cgroup.procs
mount -o remount,bind,ro $cg
"#;

fn retry_spec(service: &str) -> String {
    format!(
        r#"include = ["lab.toml"]
[file.cgfail]
hosts = ["node1"]
path = "/usr/local/sbin/cairn-cgfail"
mode = "0755"
content = """
{CGROUP_FAILS_ONCE}"""

[unit.retry]
hosts = ["node1"]
name = "cairn-retry.service"
after = ["file.cgfail"]
content = "[Service]\n{service}\n"
"#
    )
}

/// A start systemd fails with 219/CGROUP (the service never ran) is tried again and the outcome
/// says so; a start that fails for the service's own reason is reported at once.
fn start_retried_only_for_219_cgroup(lab: &lab::Lab) {
    let dir = lab.dir();
    let service = r"Type=exec\nExecStartPre=/usr/local/sbin/cairn-cgfail\nExecStart=/bin/sleep infinity";
    write(dir, "retry.toml", &retry_spec(service));
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "retry.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.all().contains(
            "done     unit.retry on node1: unit file missing, not enabled, stopped, wanted running (start retried once: \
                            systemd could not set up the unit's cgroup, status 219/CGROUP)"
        ),
        "{}",
        run.all()
    );
    assert_eq!(lab.ssh_ok("node1", &["systemctl", "is-active", "cairn-retry.service"]), "active");
    let journal = lab.ssh_ok("node1", &["journalctl", "-u", "cairn-retry.service", "--no-pager", "-o", "cat"]);
    assert!(journal.contains("status=219/CGROUP"), "the first start really failed so: {journal}");
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "retry.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // The service itself fails (exit 3, counted on each start): one start, reported at once.
    let fails = r"Type=oneshot\nExecStart=/bin/sh -c 'echo start >> /run/cairn-retry.starts; exit 3'";
    write(dir, "retry.toml", &retry_spec(fails));
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "retry.toml"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.all().contains("FAILED   unit.retry on node1: cairn-retry.service `systemctl restart` failed"), "{}", run.all());
    assert!(!run.all().contains("retried"), "{}", run.all());
    assert_eq!(lab.ssh_ok("node1", &["cat", "/run/cairn-retry.starts"]), "start", "started once, not retried");
    lab.ssh_ok("node1", &["systemctl", "reset-failed", "cairn-retry.service"]);
    write(dir, "retry.toml", "include = [\"lab.toml\"]\n");
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "retry.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

fn node3() -> &'static str {
    "node3"
}

#[test]
fn cert_files_owned_by_a_user_wait_for_it() {
    let g = graph(&format!(
        r#"{HOSTS}
[user.etcd]
system = true

[ca.etcd]
common_name = "etcd"

[cert.server]
hosts = ["role=etcd"]
ca = "ca.etcd"
common_name = "{{{{ host.name }}}}"
cert_path = "/etc/etcd/pki/server.pem"
key_path = "/etc/etcd/pki/server-key.pem"
owner = "etcd"
"#
    ));
    let cert = index(&g, "cert.server", "node1");
    let user = index(&g, "user.etcd", "node1");
    assert_eq!(g.instances[cert].dep_reasons.get(&user).map(String::as_str), Some("`etcd` is created by user.etcd"));
}
