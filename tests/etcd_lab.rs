//! The flagship: `examples/etcd-lab` (the `etcd-cluster` module) applied to three fresh lab hosts
//! from a local mirror built by `make-mirror.sh` (Debian's etcd 3.4 repacked as a release), then
//! checked over mutual TLS: three members, one leader, one raft term, put/get with the admin
//! certificate and refused without one, an empty plan afterwards; then repair of a stopped
//! leader, a backup run by hand, a rolling restart under writes, a restore from a snapshot, a
//! member replaced, and an even host count refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/lab.rs"]
mod lab;

use etcd::{etcdctl, etcdctl_ok};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    secs: f64,
}

impl Run {
    fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// The two tests run one after the other: the rolling-restart step measures write latency, and a
/// five-node cluster booting beside it on a two-core machine would measure the machine instead.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cairn(dir: &Path, args: &[&str]) -> Run {
    cairn_env(dir, args, &[])
}

/// [`cairn`] with more environment (e.g. `CAIRN_LOG`).
fn cairn_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("CAIRN_MODULE_PATH", repo().join("modules"))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!("cairn {} took {secs:.1}s", args.join(" "));
    for stream in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains("PRIVATE KEY"), "a private key reached cairn's output");
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        secs,
    }
}

/// Writes `bytes` to `path` on `node` (through ssh's stdin).
fn write_file(lab: &lab::Lab, node: &str, path: &str, bytes: &[u8]) {
    use std::io::Write;
    let argv = lab.info.ssh_argv(node, &["sh", "-c", &format!("cat > {path}")]).unwrap();
    let mut child = Command::new(&argv[0]).args(&argv[1..]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    assert!(child.wait().unwrap().success(), "writing {path} on {node}");
}

/// `etcdctl endpoint status -w simple` lines: (endpoint, is leader, raft term).
fn status(lab: &lab::Lab, node: &str) -> Vec<(String, bool, String)> {
    let out = etcdctl_ok(lab, node, "etcdctl endpoint status --command-timeout=5s -w simple");
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            assert!(f.len() >= 7, "unexpected status line {l:?}");
            (f[0].to_string(), f[4] == "true", f[6].to_string())
        })
        .collect()
}

fn leader(lab: &lab::Lab) -> String {
    let st = status(lab, "node1");
    let (endpoint, _, _) = st.iter().find(|s| s.1).expect("a leader");
    let addr = endpoint.trim_start_matches("https://").split(':').next().unwrap().to_string();
    let hosts = std::fs::read_to_string(lab.hosts_file()).unwrap();
    let spec: toml::Table = hosts.parse().unwrap();
    let hosts = spec["hosts"].as_table().unwrap();
    hosts.iter().find(|(_, h)| h["address"].as_str() == Some(addr.as_str())).map(|(n, _)| n.clone()).expect("leader is a lab host")
}

/// The article's topology, rendered without hosts: per-node config and certificates follow the
/// host list, the firewall's sources are the members, and an even member count is refused.
#[test]
fn etcd_ha_example_renders_from_the_host_list() {
    let path = repo().join("examples/etcd-ha/cairn.toml");
    let spec = cairn::spec::load(&path).unwrap_or_else(|e| panic!("{}", e.render()));
    let graph = cairn::graph::Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)));
    let find = |id: &str, host: &str| {
        graph.instances.iter().find(|i| i.id.resource.to_string() == id && i.id.host == host).unwrap_or_else(|| panic!("{id} on {host}"))
    };
    let config = String::from_utf8(find("etcd.file.config", "k8s-cluster242").desired.new_text().unwrap().to_vec()).unwrap();
    for want in [
        "name: k8s-cluster242\n",
        "data-dir: /var/lib/etcd\nwal-dir: /var/lib/etcd/wal\n",
        "listen-client-urls: https://10.0.0.242:2379,https://127.0.0.1:2379\n",
        "initial-cluster-token: etcd-k8s-cluster\n",
        "heartbeat-interval: 150\n",
        "  cert-file: /etc/etcd/pki/peer.pem\n",
        "  auto-tls: false\n",
    ] {
        assert!(config.contains(want), "{want:?} missing in:\n{config}");
    }
    assert!(!config.contains("http://"), "no unauthenticated listener:\n{config}");
    // The members a new cluster forms with live beside the config, never in it: a membership
    // change restarts no formed member.
    assert!(!config.contains("initial-cluster:"), "{config}");
    let initial = String::from_utf8(find("etcd.file.initial-cluster", "k8s-cluster243").desired.new_text().unwrap().to_vec()).unwrap();
    assert_eq!(
        initial,
        "k8s-cluster241=https://10.0.0.241:2380,k8s-cluster242=https://10.0.0.242:2380,k8s-cluster243=https://10.0.0.243:2380\n"
    );
    let unit = String::from_utf8(find("etcd.file.unit", "k8s-cluster241").desired.new_text().unwrap().to_vec()).unwrap();
    assert!(unit.contains("ReadWritePaths=/var/lib/etcd\n") && unit.contains("ProtectSystem=strict\n"), "{unit}");
    let cairn::resource::Desired::Firewall(fw) = &find("etcd.firewall.etcd", "k8s-cluster243").desired else { panic!("not a firewall") };
    assert!(
        fw.text.contains("ip saddr { 10.0.0.241, 10.0.0.242/31 } tcp dport 2380 accept") && !fw.text.contains("dport 22"),
        "{}",
        fw.text
    );
    let cairn::resource::Desired::Cert(peer) = &find("etcd.cert.peer", "k8s-cluster241").desired else { panic!("not a cert") };
    let sans: Vec<String> = peer.leaf.sans.iter().map(ToString::to_string).collect();
    assert_eq!(sans.len(), 4, "{sans:?}");

    // The same with a fourth member: refused at load.
    let text =
        std::fs::read_to_string(&path).unwrap() + "\n[hosts.k8s-cluster244]\naddress = \"10.0.0.244\"\nlabels = { role = \"etcd\" }\n";
    let err = cairn::spec::load_str(&path, &text).map(|_| ()).unwrap_err().render();
    assert!(err.contains("an etcd cluster needs an odd number of members (1, 3, 5 or 7) to keep a quorum; 4 hosts are selected"), "{err}");
}

#[test]
fn etcd_cluster_on_three_lab_hosts() {
    let _serial = one_cluster_at_a_time();
    // The local mirror (Debian's etcd-server/etcd-client repacked; reproducible).
    let mirror = Command::new("bash").arg(repo().join("examples/etcd-lab/make-mirror.sh")).output().unwrap();
    assert!(mirror.status.success(), "make-mirror.sh failed: {}", String::from_utf8_lossy(&mirror.stderr));

    let lab = lab::Lab::up("etcd-lab", 3);
    let dir = lab.dir();
    std::fs::copy(repo().join("examples/etcd-lab/cairn.toml"), dir.join("cairn.toml")).unwrap();
    std::fs::copy(repo().join("examples/etcd-lab/mirror.toml"), dir.join("mirror.toml")).unwrap();
    let nodes = ["node1", "node2", "node3"];

    // 1. Apply on fresh hosts, through a saved plan, with debug logs: no key material in the
    //    plan text, its JSON, the plan file or the logs (every run's output is checked).
    let plan = cairn(dir, &["plan", "-f", "cairn.toml", "-o", "fresh.cairn"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(cairn(dir, &["show", "fresh.cairn", "--json"]).code, 0);
    let run = cairn_env(dir, &["--verbose", "apply", "fresh.cairn"], &[("CAIRN_LOG", "cairn=debug")]);
    assert!(run.stderr.contains("DEBUG"), "debug logs are on: {}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.all());
    let plan_file = std::fs::read_to_string(dir.join("fresh.cairn")).unwrap();
    assert!(plan_file.contains("etcd.cert.server") && !plan_file.contains("PRIVATE KEY"));
    eprintln!("APPLY (fresh, 3 hosts): {:.1}s", run.secs);

    // 2. Three members, exactly one leader, one raft term, over TLS with the admin certificate.
    for node in nodes {
        assert_eq!(lab.ssh_ok(node, &["systemctl", "is-active", "etcd.service"]), "active");
        assert_eq!(lab.ssh_ok(node, &["stat", "-c", "%U:%G %a", "/var/lib/etcd"]), "etcd:etcd 700");
    }
    let st = status(&lab, "node2");
    assert_eq!(st.len(), 3, "{st:?}");
    assert_eq!(st.iter().filter(|s| s.1).count(), 1, "exactly one leader: {st:?}");
    assert!(st.iter().all(|s| s.2 == st[0].2), "one raft term: {st:?}");
    let members = etcdctl_ok(&lab, "node3", "etcdctl member list -w simple");
    assert_eq!(members.lines().count(), 3, "{members}");
    // initial-cluster-state: "new" while forming, decided at start, never in the managed file.
    for node in nodes {
        assert_eq!(lab.ssh_ok(node, &["grep", "^initial-cluster-state", "/run/etcd/etcd.config.yml"]), "initial-cluster-state: new");
        assert!(!lab.ssh(node, &["grep", "-q", "^initial-cluster-state", "/etc/etcd/etcd.config.yml"]).status.success());
    }

    // 3. put/get with the admin certificate; refused without a client certificate.
    etcdctl_ok(&lab, "node1", "etcdctl put /cairn/hello world");
    assert_eq!(etcdctl_ok(&lab, "node3", "etcdctl get --print-value-only /cairn/hello"), "world");
    let anon = etcdctl(&lab, "node2", "env -u ETCDCTL_CERT -u ETCDCTL_KEY etcdctl --command-timeout=5s --dial-timeout=3s get /cairn/hello");
    assert!(!anon.status.success(), "a client without a certificate was served: {}", String::from_utf8_lossy(&anon.stdout));
    // No plain-HTTP listener either.
    let plain = lab.ssh("node1", &["grep", "-c", "http://", "/etc/etcd/etcd.config.yml"]);
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "0", "the config has a plain-HTTP url");

    // 4. Hardening in force inside the containers; the firewall keeps SSH open.
    let props = lab.ssh_ok(
        "node1",
        &["systemctl", "show", "etcd.service", "-p", "ProtectSystem,PrivateTmp,NoNewPrivileges,ReadWritePaths,LimitNOFILE"],
    );
    for want in ["ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes", "ReadWritePaths=/var/lib/etcd", "LimitNOFILE=65536"] {
        assert!(props.contains(want), "{want} missing in:\n{props}");
    }
    let rules = lab.ssh_ok("node1", &["nft", "list", "table", "inet", "cairn"]);
    assert!(rules.contains("2380") && !rules.contains("dport 22"), "{rules}");

    // 5. The plan after apply is empty.
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    eprintln!("PLAN (no changes, 3 hosts): {:.1}s", plan.secs);

    // 6. The leader stopped by hand: the plan shows it, apply starts it again.
    let old_leader = leader(&lab);
    lab.ssh_ok(&old_leader, &["systemctl", "stop", "etcd.service"]);
    // The two others elect a new leader within seconds.
    let other = nodes.iter().find(|n| **n != old_leader).unwrap();
    let elected = (0..20).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let out = etcdctl(&lab, other, "etcdctl endpoint status --command-timeout=2s -w simple 2>/dev/null");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().filter(|l| l.split(", ").nth(4) == Some("true")).count() == 1
    });
    assert!(elected, "no new leader was elected after {old_leader} stopped");
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("stopped, wanted running"), "{}", plan.all());
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(lab.ssh_ok(&old_leader, &["systemctl", "is-active", "etcd.service"]), "active");
    let st = status(&lab, "node1");
    assert_eq!((st.len(), st.iter().filter(|s| s.1).count()), (3, 1), "{st:?}");

    // 7. The backup service run by hand writes a snapshot that etcdctl accepts.
    // A snapshot older than the retention (3 days in the example) is removed by the run.
    lab.ssh_ok("node2", &["touch", "-d", "10 days ago", "/var/backups/etcd/etcd-snapshot-old.db"]);
    lab.ssh_ok("node2", &["systemctl", "start", "etcd-backup.service"]);
    assert!(!lab.ssh("node2", &["test", "-e", "/var/backups/etcd/etcd-snapshot-old.db"]).status.success(), "the old snapshot was kept");
    let snap = lab.ssh_ok("node2", &["sh", "-c", "ls /var/backups/etcd/etcd-snapshot-*.db"]);
    assert_eq!(snap.lines().count(), 1, "{snap}");
    etcdctl_ok(&lab, "node2", &format!("ETCDCTL_API=3 etcdctl snapshot status {snap} -w simple"));
    assert_eq!(lab.ssh_ok("node2", &["systemctl", "is-enabled", "etcd-backup.timer"]), "enabled");

    // 8. A tuning change on a running cluster: the plan shows the config diff on every member
    //    and a restart; apply restarts one member at a time, gated on the health check, while a
    //    client writes a key every 50 ms to all endpoints (5 s timeout) without a single failure.
    let spec = std::fs::read_to_string(dir.join("cairn.toml")).unwrap();
    std::fs::write(dir.join("cairn.toml"), format!("{spec}heartbeat_interval = 150\nelection_timeout = 1500\n")).unwrap();
    let plan = cairn(dir, &["plan", "-f", "cairn.toml"]);
    for node in nodes {
        let section = plan.stdout.split(&format!("{node} (")).nth(1).unwrap_or_default();
        assert!(section.contains("-heartbeat-interval: 100") && section.contains("+heartbeat-interval: 150"), "{}", plan.all());
    }
    assert_eq!(plan.stdout.matches("restart: etcd.file.config changes").count(), 3, "{}", plan.all());
    let writer_line = ". /etc/profile.d/etcdctl.sh; n=0; fail=0; rm -f /tmp/stop-writer; \
         while [ ! -e /tmp/stop-writer ]; do n=$((n+1)); \
         etcdctl put /cairn/writer $n --command-timeout=5s >/dev/null 2>/tmp/writer.err || { fail=$((fail+1)); date -u +%T.%3N; cat /tmp/writer.err; }; \
         sleep 0.05; done; echo writes=$n failures=$fail";
    let since = etcd::unix_now();
    let writer = std::process::Command::new(&lab.info.ssh_argv("node1", &["sh", "-c", writer_line]).unwrap()[0])
        .args(&lab.info.ssh_argv("node1", &["sh", "-c", writer_line]).unwrap()[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before: Vec<String> =
        nodes.iter().map(|n| lab.ssh_ok(n, &["systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", "etcd.service"])).collect();
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    lab.ssh_ok("node1", &["touch", "/tmp/stop-writer"]);
    let written = writer.wait_with_output().unwrap();
    let written = String::from_utf8_lossy(&written.stdout).to_string();
    eprintln!("APPLY (rolling restart, 3 hosts): {:.1}s; writer: {}", run.secs, written.lines().last().unwrap_or_default());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        written.trim_end().ends_with("failures=0"),
        "writes failed during the rolling restart:\n{written}\n{}",
        etcd::journals(&lab, &nodes, since)
    );
    let writes: u32 = written.trim_end().rsplit("writes=").next().and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(writes >= 20, "the writer ran during the whole apply: {written}");
    for (node, was) in nodes.iter().zip(&before) {
        let now = lab.ssh_ok(node, &["systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", "etcd.service"]);
        assert_ne!(&now, was, "{node} was not restarted");
        assert!(lab.ssh_ok(node, &["grep", "heartbeat-interval", "/etc/etcd/etcd.config.yml"]).contains("150"));
    }
    // One at a time: the health check ran between the restarts.
    let done: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("done") || l.contains("check")).collect();
    eprintln!("apply order:\n{}", done.join("\n"));
    let st = status(&lab, "node3");
    assert_eq!((st.len(), st.iter().filter(|s| s.1).count()), (3, 1), "{st:?}");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]).code, 0);
    // A formed member restarted says "existing" (which it ignores: it has data), and the managed
    // file did not change for it.
    for node in nodes {
        assert_eq!(lab.ssh_ok(node, &["grep", "^initial-cluster-state", "/run/etcd/etcd.config.yml"]), "initial-cluster-state: existing");
    }

    // 9. Restore from a snapshot: one snapshot on every member, etcd-restore on each, then apply
    //    starts the stopped members together and the data is the snapshot's.
    etcdctl_ok(&lab, "node1", "etcdctl put /cairn/restore before-snapshot");
    lab.ssh_ok("node1", &["sh", "-c", "rm -f /var/backups/etcd/etcd-snapshot-*.db && systemctl start etcd-backup.service"]);
    let snap = lab.ssh_ok("node1", &["sh", "-c", "ls /var/backups/etcd/etcd-snapshot-*.db"]);
    etcdctl_ok(&lab, "node1", "etcdctl put /cairn/restore after-snapshot");
    let bytes = lab.ssh("node1", &["cat", &snap]).stdout;
    assert!(bytes.len() > 4096, "snapshot of {} bytes", bytes.len());
    for node in ["node2", "node3"] {
        write_file(&lab, node, "/root/restore.db", &bytes);
    }
    lab.ssh_ok("node1", &["cp", &snap, "/root/restore.db"]);
    for node in nodes {
        let out = lab.ssh(node, &["/usr/local/sbin/etcd-restore", "/root/restore.db"]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "etcd-restore on {node}: {text}");
        assert!(text.contains("the previous data is kept in /var/lib/etcd.before-restore-"), "{text}");
        assert_eq!(lab.ssh_ok(node, &["stat", "-c", "%U:%G %a", "/var/lib/etcd"]), "etcd:etcd 700");
    }
    let plan = cairn(dir, &["plan", "-f", "cairn.toml"]);
    assert_eq!(plan.stdout.matches("stopped, wanted running").count(), 3, "{}", plan.all());
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    eprintln!("APPLY (start after restore, 3 hosts): {:.1}s", run.secs);
    assert_eq!(etcdctl_ok(&lab, "node2", "etcdctl get --print-value-only /cairn/restore"), "before-snapshot");
    let st = status(&lab, "node3");
    assert_eq!((st.len(), st.iter().filter(|s| s.1).count()), (3, 1), "{st:?}");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]).code, 0);

    // 10. Replacing a member whose disk was lost: removed and added back with etcdctl, data dir
    //     emptied; apply starts it, and the start script makes it join ("existing").
    let members = etcdctl_ok(&lab, "node1", "etcdctl member list -w simple");
    let node3_id = members.lines().find(|l| l.split(", ").nth(2) == Some("node3")).and_then(|l| l.split(", ").next()).unwrap();
    lab.ssh_ok("node3", &["sh", "-c", "systemctl stop etcd.service && rm -rf /var/lib/etcd/member /var/lib/etcd/wal"]);
    etcdctl_ok(&lab, "node1", &format!("ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl member remove {node3_id}"));
    let node3_address = lab.ssh_ok("node3", &["sh", "-c", "grep ^initial-advertise-peer-urls /etc/etcd/etcd.config.yml | cut -d' ' -f2"]);
    // etcd refuses a reconfiguration until the leader has seen a quorum for a few seconds after
    // the previous one ("unhealthy cluster"); an operator retries, and so does the test.
    let add = format!("ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl member add node3 --peer-urls={node3_address}");
    let added = (0..30).any(|_| {
        std::thread::sleep(std::time::Duration::from_secs(1));
        etcdctl(&lab, "node1", &add).status.success()
    });
    assert!(added, "etcdctl member add node3 kept failing");
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(lab.ssh_ok("node3", &["grep", "^initial-cluster-state", "/run/etcd/etcd.config.yml"]), "initial-cluster-state: existing");
    assert_eq!(
        etcdctl_ok(&lab, "node3", "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl get --print-value-only /cairn/restore"),
        "before-snapshot"
    );
    let st = status(&lab, "node1");
    assert_eq!((st.len(), st.iter().filter(|s| s.1).count()), (3, 1), "{st:?}");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]).code, 0);

    // 11. Four hosts selected: refused before anything is touched.
    let lab_toml = std::fs::read_to_string(lab.hosts_file()).unwrap();
    let four = format!("{lab_toml}\n[hosts.node4]\naddress = \"192.0.2.44\"\n");
    std::fs::write(dir.join("lab.toml"), four).unwrap();
    let v = cairn(dir, &["validate", "-f", "cairn.toml"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.stderr.contains("an etcd cluster needs an odd number of members") && v.stderr.contains("4 hosts are selected"),
        "{}",
        v.all()
    );
    std::fs::write(dir.join("lab.toml"), lab_toml).unwrap();
}

#[test]
fn etcd_cluster_on_five_lab_hosts() {
    let _serial = one_cluster_at_a_time();
    let mirror = Command::new("bash").arg(repo().join("examples/etcd-lab/make-mirror.sh")).output().unwrap();
    assert!(mirror.status.success(), "make-mirror.sh failed: {}", String::from_utf8_lossy(&mirror.stderr));
    let lab = lab::Lab::up("etcd-five", 5);
    let dir = lab.dir();
    std::fs::copy(repo().join("examples/etcd-lab/cairn.toml"), dir.join("cairn.toml")).unwrap();
    std::fs::copy(repo().join("examples/etcd-lab/mirror.toml"), dir.join("mirror.toml")).unwrap();
    let run = cairn(dir, &["apply", "--auto-approve", "-f", "cairn.toml"]);
    assert_eq!(run.code, 0, "{}", run.all());
    eprintln!("APPLY (fresh, 5 hosts): {:.1}s", run.secs);
    let st = status(&lab, "node4");
    assert_eq!(st.len(), 5, "{st:?}");
    assert_eq!(st.iter().filter(|s| s.1).count(), 1, "exactly one leader: {st:?}");
    assert!(st.iter().all(|s| s.2 == st[0].2), "one raft term: {st:?}");
    etcdctl_ok(&lab, "node5", "etcdctl put /cairn/five yes");
    assert_eq!(etcdctl_ok(&lab, "node1", "etcdctl get --print-value-only /cairn/five"), "yes");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode", "-f", "cairn.toml"]).code, 0);
}
