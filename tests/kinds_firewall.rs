//! The `firewall` kind end to end: spec errors (snapshots), the plan's text for drift and for a
//! refused SSH lockout (from made-up facts), the real engine applying to real nft inside a scratch
//! network namespace of this machine, and the real binary against lab hosts over SSH (rules
//! applied on 3 hosts, hand-made drift on one host repaired, traffic really dropped, lockout
//! refused with nothing applied).
#![allow(clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/lab.rs"]
mod lab;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use cairn::graph::Graph;
use cairn::plan::planner::{self, plan_from_facts};
use cairn::plan::render::{self, TextOptions};
use cairn::plan::{Action, Plan};
use cairn::resource::HostFacts;
use cairn::resource::firewall::{FirewallFacts, NftTable};
use cairn::spec::load_str;
use cairn::transport::{CommandOutput, LocalTransport, SharedTransport, Stdin, Transport, TransportError, TransportStats};

const HOSTS: &str = r#"
[hosts.node1]
address = "10.0.0.11"
labels = { role = "etcd" }

[hosts.node2]
address = "10.0.0.12"
labels = { role = "etcd" }
"#;

const ETCD: &str = r#"
[firewall.etcd]
hosts = ["role=etcd"]
rules = [
  { port = 2379, proto = "tcp", from = ["10.0.0.0/24"], action = "accept" },
  { port = 2380, proto = "tcp", from = ["10.0.0.0/24"], action = "accept" },
  { port = [2379, 2380], proto = "tcp", action = "drop" },
]
"#;

fn errors(text: &str) -> String {
    match load_str(Path::new("cairn.toml"), text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.render(),
    }
}

fn graph(text: &str) -> Graph {
    let spec = load_str(Path::new("cairn.toml"), text).unwrap_or_else(|e| panic!("{}", e.render()));
    Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
}

// ---- spec errors ----

#[test]
fn the_issue_example_loads() {
    let g = graph(&format!("{HOSTS}{ETCD}"));
    assert_eq!(g.instances.len(), 2);
}

#[test]
fn invalid_addresses_ports_and_protocols_are_reported_at_the_value() {
    insta::assert_snapshot!(errors(&format!(
        r#"{HOSTS}
[firewall.bad]
rules = [
  {{ port = 0, proto = "tcp", from = ["10.0.0.1/24"], action = "accept" }},
  {{ port = "8080-8000", proto = "tcpp", from = ["10.0.0.0/33", "fd00::/129", "nonsense"], action = "allow" }},
  {{ port = [2379, "2370-2380"], proto = "udp", action = "drop" }},
  {{ port = 70000, proto = "tcp", from = [], action = "drop" }},
  {{ port = 22, action = "accept" }},
  {{ port = 22, proto = "icmp", action = "accept" }},
  {{ from = ["10.0.0.0/24", "10.0.0.5"], action = "reject" }},
  {{ prot = "tcp", port = [], acton = "drop" }},
  "drop everything",
]
"#
    )));
}

#[test]
fn rules_must_be_a_list_and_are_required() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[firewall.a]\nrules = \"drop\"\n[firewall.b]\nhosts = [\"node1\"]\n[firewall.c]\nrule = []\n"
    )));
}

// ---- plans from made-up facts ----

fn fw_facts(ssh: Option<&str>, table: NftTable) -> HostFacts {
    HostFacts { firewall: Some(FirewallFacts { ssh_connection: ssh.map(str::to_string), table }), ..HostFacts::default() }
}

fn plan_text(g: &Graph, facts: &BTreeMap<&str, HostFacts>, verbose: bool) -> String {
    let mut plan = Plan::for_graph(g);
    for (host, f) in facts {
        plan.hosts.insert((*host).to_string(), plan_from_facts(g, host, f, &BTreeMap::new()));
    }
    render::text(&plan, TextOptions { color: false, verbose })
}

const ETCD_JSON: &str = include_str!("../src/resource/firewall/fixtures/etcd.json");
const ETCD_HAND_RULE_JSON: &str = include_str!("../src/resource/firewall/fixtures/etcd-hand-rule.json");
const FROM_ADMIN: Option<&str> = Some("10.0.0.1 40000 10.0.0.11 22");

#[test]
fn plan_shows_a_missing_table_and_a_drifted_rule_per_host() {
    let g = graph(&format!("{HOSTS}{ETCD}"));
    let facts = BTreeMap::from([
        ("node1", fw_facts(FROM_ADMIN, NftTable::Missing)),
        ("node2", fw_facts(Some("10.0.0.1 40000 10.0.0.12 22"), NftTable::Json(ETCD_HAND_RULE_JSON.into()))),
    ]);
    insta::assert_snapshot!(plan_text(&g, &facts, false));
    let same = BTreeMap::from([("node1", fw_facts(FROM_ADMIN, NftTable::Json(ETCD_JSON.into())))]);
    insta::assert_snapshot!(plan_text(&g, &same, true), @r"
    node1 (10.0.0.11)
      = firewall.etcd  table inet cairn
          rules match

    No changes. 1 resource instance on 1 host match the spec.
    ");
}

#[test]
fn plan_refuses_rules_that_drop_cairns_ssh_session() {
    let g = graph(&format!(
        "{HOSTS}{ETCD}
[firewall.ssh]
rules = [
  {{ port = 22, proto = \"tcp\", from = [\"192.0.2.0/24\"], action = \"accept\" }},
  {{ port = 22, proto = \"tcp\", action = \"drop\" }},
]
"
    ));
    let facts = BTreeMap::from([("node1", fw_facts(FROM_ADMIN, NftTable::Json(ETCD_JSON.into())))]);
    let text = plan_text(&g, &facts, false);
    insta::assert_snapshot!(text);
    assert!(!text.contains("+++"), "a refused table shows no diff");
}

#[test]
fn several_firewall_resources_make_one_table_written_once() {
    let g = graph(&format!("{HOSTS}{ETCD}\n[firewall.icmp]\nrules = [{{ proto = \"icmp\", action = \"accept\" }}]\n"));
    let facts = BTreeMap::from([("node1", fw_facts(FROM_ADMIN, NftTable::Missing))]);
    insta::assert_snapshot!(plan_text(&g, &facts, true));
    // firewall.icmp waits for firewall.etcd, which writes the table: --target brings it along.
    let only = g.clone().restrict(&[], &["firewall.icmp".to_string()]).unwrap();
    let mut ids: Vec<String> = only.instances.iter().map(|i| i.id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["firewall.etcd on node1", "firewall.etcd on node2", "firewall.icmp on node1", "firewall.icmp on node2"]);
}

// ---- the real engine and real nft, in a scratch network namespace ----

/// Whether tests that need root (network namespaces, labs) may be skipped here.
fn may_skip(why: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        return false;
    }
    eprintln!("SKIPPED: {why}");
    true
}

/// A network namespace made for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("cairn-fw-{tag}-{}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => Some(Netns(name)),
            Ok(o) if may_skip(&format!("cannot make a network namespace: {}", String::from_utf8_lossy(&o.stderr).trim())) => None,
            Err(e) if may_skip(&format!("cannot run `ip netns add`: {e}")) => None,
            other => panic!("cannot make a network namespace: {other:?}"),
        }
    }

    fn run(&self, argv: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.0]).args(argv).output().unwrap()
    }

    fn ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).output();
    }
}

/// The local transport, with every command run inside a network namespace.
struct NetnsTransport {
    netns: String,
    local: LocalTransport,
}

#[async_trait::async_trait]
impl Transport for NetnsTransport {
    fn host(&self) -> &str {
        self.local.host()
    }

    async fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CommandOutput, TransportError> {
        let mut full: Vec<String> = ["ip", "netns", "exec", &self.netns].iter().map(ToString::to_string).collect();
        full.extend(argv.iter().cloned());
        self.local.run(&full, stdin).await
    }

    fn stats(&self) -> &TransportStats {
        self.local.stats()
    }

    async fn close(&self) {}
}

#[tokio::test]
async fn engine_applies_repairs_and_leaves_other_tables_alone_in_a_netns() {
    let Some(ns) = Netns::new("engine") else { return };
    ns.ok(&["nft", "add table inet other; add chain inet other input { type filter hook input priority 10; }; add rule inet other input tcp dport 7777 drop"]);
    let g = Arc::new(graph(&format!(
        "[hosts.box]\ntransport = \"local\"\nlabels = {{ role = \"etcd\" }}\n{ETCD}\n[firewall.icmp]\nrules = [{{ proto = \"icmp\", action = \"accept\" }}]\n"
    )));
    let transport = Arc::new(NetnsTransport { netns: ns.0.clone(), local: LocalTransport::new("box") });
    let shared: SharedTransport = transport.clone();
    let conns: planner::Connections = BTreeMap::from([("box".to_string(), Ok(shared))]);

    let plan = planner::plan(&g, &conns).await;
    let actions: Vec<(String, Action, String)> =
        plan.changes().map(|c| (c.id.resource.to_string(), c.action, c.reason.to_string())).collect();
    assert_eq!(
        actions,
        [
            ("firewall.etcd".into(), Action::Create, "table does not exist".into()),
            ("firewall.icmp".into(), Action::NoOp, "its rules are written into table inet cairn by firewall.etcd".into())
        ]
    );
    assert_eq!(transport.stats().commands(), 1, "one probe command for the host");

    let report = cairn::apply::apply(&g, &plan, &conns, Default::default(), Arc::new(cairn::apply::Silent)).await;
    assert!(report.success(), "{report:?}");
    let listed = ns.ok(&["nft", "list", "table", "inet", "cairn"]);
    assert!(listed.contains("tcp dport { 2379, 2380 } drop comment \"firewall.etcd rule 3\""), "{listed}");
    assert!(listed.contains("meta l4proto { icmp, ipv6-icmp } accept comment \"firewall.icmp rule 1\""), "{listed}");

    let plan = planner::plan(&g, &conns).await;
    assert!(!plan.has_changes() && !plan.has_errors(), "{}", render::text(&plan, TextOptions::default()));
    assert_eq!(plan.changes().next().map(|c| c.reason.to_string()), Some("rules match".to_string()));

    // A rule added by hand in cairn's table is drift, shown as a rule diff, and repaired.
    ns.ok(&["nft", "add", "rule", "inet", "cairn", "input", "tcp", "dport", "9999", "drop"]);
    let plan = planner::plan(&g, &conns).await;
    let change = plan.changes().next().unwrap();
    assert_eq!((change.action, change.reason.to_string().as_str()), (Action::Update, "rules differ (1 to remove)"));
    assert!(change.diff.as_deref().unwrap().contains("\n-    tcp dport 9999 drop\n"), "{:?}", change.diff);
    let report = cairn::apply::apply(&g, &plan, &conns, Default::default(), Arc::new(cairn::apply::Silent)).await;
    assert!(report.success(), "{report:?}");
    assert!(!planner::plan(&g, &conns).await.has_changes());
    assert!(!ns.ok(&["nft", "list", "table", "inet", "cairn"]).contains("9999"));

    // A rule removed by hand too.
    let handles = ns.ok(&["nft", "-a", "list", "chain", "inet", "cairn", "input"]);
    let handle = handles.lines().find(|l| l.contains("rule 1\"")).and_then(|l| l.rsplit("handle ").next()).unwrap().trim().to_string();
    ns.ok(&["nft", "delete", "rule", "inet", "cairn", "input", "handle", &handle]);
    let plan = planner::plan(&g, &conns).await;
    assert_eq!(plan.changes().next().map(|c| c.reason.to_string()), Some("rules differ (1 to add)".to_string()));

    // Rules outside cairn's table are untouched.
    assert!(ns.ok(&["nft", "list", "table", "inet", "other"]).contains("tcp dport 7777 drop"));
}

// ---- the real binary against lab hosts ----

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn")).current_dir(dir).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `timeout 3 bash -c '</dev/tcp/ADDR/PORT'` on `from`: 0 connected, 124 timed out (dropped),
/// 1 refused.
fn connect(lab: &lab::Lab, from: &str, addr: &str, port: u16) -> i32 {
    let probe = format!("</dev/tcp/{addr}/{port}");
    lab.ssh(from, &["timeout", "3", "bash", "-c", &probe]).status.code().unwrap_or(-1)
}

#[test]
fn lab_rules_apply_on_three_hosts_drift_is_repaired_traffic_is_dropped_and_lockout_is_refused() {
    let Some(lab) = lab::Lab::up_or_skip("kinds-firewall", 3) else { return };
    let addr: Vec<String> = lab.info.nodes.iter().map(|n| n.address.to_string()).collect();
    let dir = lab.dir();
    // Peers node1 and node2 may reach 2379/2380; everyone else is dropped. node1 also has a
    // second firewall resource, rendered into the same table.
    let spec = format!(
        r#"include = ["lab.toml"]

[firewall.etcd]
rules = [
  {{ port = [2379, 2380], proto = "tcp", from = ["{a1}", "{a2}"], action = "accept" }},
  {{ port = [2379, 2380], proto = "tcp", action = "drop" }},
]

[firewall.metrics]
hosts = ["node1"]
rules = [{{ port = 9100, proto = "tcp", action = "reject" }}]
"#,
        a1 = addr[0],
        a2 = addr[1]
    );
    std::fs::write(dir.join("cairn.toml"), &spec).unwrap();

    // Something outside cairn's table, which must survive everything below.
    lab.ssh_ok("node2", &["nft", "add table inet other; add chain inet other input { type filter hook input priority 10; }; add rule inet other input tcp dport 7777 drop"]);

    let out = cairn(dir, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches("table does not exist").count(), 3, "{}", text(&out));

    let out = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("No changes. 4 resource instances on 3 hosts match the spec."), "{}", text(&out));

    // A rule added by hand in cairn's table on node2: a rule diff for node2 only.
    lab.ssh_ok("node2", &["nft", "add", "rule", "inet", "cairn", "input", "tcp", "dport", "9999", "drop"]);
    let out = cairn(dir, &["plan", "--detailed-exitcode"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("rules differ (1 to remove)") && shown.contains("\n      -    tcp dport 9999 drop\n"), "{shown}");
    assert!(shown.contains("node2 (") && !shown.contains("node1 (") && !shown.contains("node3 ("), "{shown}");
    assert!(shown.contains("Plan: 0 to create, 1 to change, 0 to delete."), "{shown}");

    let out = cairn(dir, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!lab.ssh_ok("node2", &["nft", "list", "table", "inet", "cairn"]).contains("9999"));
    assert!(lab.ssh_ok("node2", &["nft", "list", "table", "inet", "other"]).contains("tcp dport 7777 drop"));

    // Traffic: a listener on node3:2380 (a second sshd); node1 and node2 get through, and so would
    // anyone to a port the rules do not cover; node3 itself is dropped when it dials node1.
    for node in ["node1", "node3"] {
        lab.ssh_ok(node, &["systemd-run", "--unit", "fw-listen-2380", "/usr/sbin/sshd", "-D", "-p", "2380"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(connect(&lab, "node1", &addr[2], 2380), 0, "node1 (allowed) reaches node3:2380");
    assert_eq!(connect(&lab, "node2", &addr[2], 2380), 0, "node2 (allowed) reaches node3:2380");
    assert_eq!(connect(&lab, "node3", &addr[0], 2380), 124, "node3 (not allowed) is dropped at node1:2380");
    assert_eq!(connect(&lab, "node3", &addr[0], 22), 0, "node3 still reaches node1's sshd on 22");

    // A rule set that would drop cairn's own SSH session: refused at plan time, nothing applied.
    let before: Vec<String> =
        ["node1", "node2", "node3"].iter().map(|n| lab.ssh_ok(n, &["nft", "list", "table", "inet", "cairn"])).collect();
    let lockout = spec.replace(
        "[firewall.metrics]",
        "[firewall.ssh]\nrules = [\n  { port = 22, proto = \"tcp\", from = [\"192.0.2.0/24\"], action = \"accept\" },\n  { port = 22, proto = \"tcp\", action = \"drop\" },\n]\n\n[firewall.metrics]",
    );
    std::fs::write(dir.join("cairn.toml"), &lockout).unwrap();
    let out = cairn(dir, &["plan"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let bridge = lab.info.nodes[0].address.to_string().rsplit_once('.').map(|(net, _)| format!("{net}.1")).unwrap();
    let why = format!("these rules would drop cairn's own SSH connection from {bridge} to port 22: firewall.ssh rule 2 (drop tcp 22)");
    assert_eq!(shown.matches(&why).count(), 6, "writer and firewall.ssh on each of 3 hosts: {shown}");
    // Behind `sudo` (become), which drops $SSH_CONNECTION from the environment, the probe still
    // finds the session's addresses.
    assert_eq!(lab.ssh_ok("node1", &["sudo", "-n", "--", "sh", "-c", "echo ${SSH_CONNECTION:-unset}"]), "unset");
    std::fs::write(dir.join("cairn.toml"), format!("{lockout}\n[ssh]\nbecome = true\n")).unwrap();
    let out = cairn(dir, &["plan"]);
    assert_eq!(text(&out).matches(&why).count(), 6, "{}", text(&out));
    let out = cairn(dir, &["apply", "--auto-approve"]);
    assert!(!out.status.success(), "{}", text(&out));
    let after: Vec<String> =
        ["node1", "node2", "node3"].iter().map(|n| lab.ssh_ok(n, &["nft", "list", "table", "inet", "cairn"])).collect();
    assert_eq!(before, after, "nothing was applied");
    assert_eq!(lab.ssh_ok("node1", &["hostname"]), "node1");
}
