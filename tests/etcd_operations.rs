//! Runbook operations of an etcd cluster on three lab hosts (`cairn run etcd …`), after a
//! kill -9 of cairn in the middle of a rolling restart (the cluster stays healthy; unlock, and the
//! next apply finishes the rollout): the operation
//! list, a snapshot now (kept on the host and copied locally), a saved compaction plan refused
//! once the data moved, a defrag under a writer (a key every 50 ms, 5 s timeout: 0 failed
//! writes; sizes before and after; the leader last), and a member filled to NOSPACE: the plan
//! shows the alarm and holds a rolling restart, `disarm` is refused until compaction and defrag
//! have freed the space, and writes work again after it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/run.rs"]
mod run;

use etcd::{Writer, etcdctl, etcdctl_ok, leader};
use run::cairn_env;

/// 16 MiB: small enough to fill in seconds.
const QUOTA: u64 = 16 * 1024 * 1024;

fn spec(heartbeat: u32) -> String {
    let inputs = format!("quota_backend_bytes = {QUOTA}\nheartbeat_interval = {heartbeat}\nelection_timeout = {}\n", heartbeat * 10);
    etcd::lab_spec("etcd-operations", &inputs)
}

fn cairn(dir: &std::path::Path, args: &[&str]) -> run::Run {
    cairn_env(dir, args, &[("CAIRN_MODULE_PATH", &etcd::module_path())])
}

fn endpoints(lab: &lab::Lab) -> String {
    etcd::client_urls(lab, &["node1", "node2", "node3"])
}

#[test]
fn etcd_runbook_operations_snapshot_compact_defrag_and_nospace() {
    etcd::mirror();
    let lab = lab::Lab::up("etcd-operations", 3);
    let dir = lab.dir();
    etcd::copy_mirror_toml(dir);
    std::fs::write(dir.join("cairn.toml"), spec(100)).unwrap();
    let run = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());

    // kill -9 in the middle of a rolling restart (issue 15): once one member has restarted,
    // cairn is killed; the cluster stays healthy, and after `cairn unlock` the next apply
    // finishes the rollout and the plan after it is empty.
    std::fs::write(dir.join("cairn.toml"), spec(110)).unwrap();
    let nodes = ["node1", "node2", "node3"];
    let before: Vec<u64> = nodes.iter().map(|n| etcd::active_since(&lab, n)).collect();
    let mut child = run::spawn_env(dir, &["apply", "--auto-approve"], &[("CAIRN_MODULE_PATH", &etcd::module_path())], false);
    let started = std::time::Instant::now();
    while nodes.iter().zip(&before).all(|(n, b)| etcd::active_since(&lab, n) == *b) {
        assert!(child.try_wait().unwrap().is_none(), "the apply ended before any member restarted");
        assert!(started.elapsed() < std::time::Duration::from_secs(180), "no member restarted within 3 minutes");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let restarted = nodes.iter().zip(&before).filter(|(n, b)| etcd::active_since(&lab, n) != **b).count();
    eprintln!("KILLED cairn after {restarted} of 3 members restarted");
    let healthy_started = std::time::Instant::now();
    while !etcdctl(&lab, "node1", "etcdctl endpoint health --cluster").status.success() {
        assert!(healthy_started.elapsed() < std::time::Duration::from_secs(60), "the cluster is not healthy after the kill");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let refused = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(refused.code, 1, "the killed run's locks are stale:\n{}", refused.all());
    let unlock = cairn(dir, &["unlock"]);
    assert_eq!(unlock.code, 0, "{}", unlock.all());
    let finish = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(finish.code, 0, "{}", finish.all());
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0, "the rollout finished");
    std::fs::write(dir.join("cairn.toml"), spec(100)).unwrap();
    let back = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(back.code, 0, "{}", back.all());

    // The list, from the driver.
    let list = cairn(dir, &["run", "etcd", "--list"]);
    assert_eq!(list.code, 0, "{}", list.all());
    for op in ["snapshot", "compact", "defrag", "disarm", "revision=<int> (optional)"] {
        assert!(list.stdout.contains(op), "{op}:\n{}", list.all());
    }
    let typo = cairn(dir, &["run", "etcd", "compact", "revison=3"]);
    assert_eq!(typo.code, 1);
    assert!(typo.stderr.contains("`compact` has no input `revison`; its inputs: revision"), "{}", typo.all());

    // A snapshot now: on the host and, sha256 checked, under the state dir.
    let snap = cairn(dir, &["run", "etcd", "snapshot", "--auto-approve"]);
    assert_eq!(snap.code, 0, "{}", snap.all());
    assert!(snap.stdout.contains("+ snapshot") || snap.stdout.contains("~ snapshot"), "{}", snap.all());
    let line = snap.stderr.lines().find(|l| l.contains("snapshot /var/backups/etcd/")).unwrap_or_else(|| panic!("{}", snap.all()));
    let path = line.split("snapshot ").nth(1).unwrap().split_whitespace().next().unwrap();
    let host = line.split(" on ").nth(1).unwrap().split_whitespace().next().unwrap().trim_end_matches(':');
    assert!(path.ends_with("-on-demand.db"), "{line}");
    etcdctl_ok(&lab, host, &format!("etcdctl snapshot status {path}"));
    assert!(dir.join(".cairn/snapshots/etcd.cluster.members").join(path.rsplit('/').next().unwrap()).is_file(), "{line}");

    // History to compact and space to free: 300 versions of 20 KB.
    etcdctl_ok(
        &lab,
        "node1",
        "v=$(head -c 20000 /dev/zero | tr '\\0' x); for i in $(seq 300); do etcdctl put /churn \"$v$i\" >/dev/null || exit 1; done",
    );
    // A saved compaction plan names the revision; once more writes land, it is stale.
    assert_eq!(cairn(dir, &["run", "etcd", "compact", "-o", "compact.cairn"]).code, 0);
    etcdctl_ok(&lab, "node1", "etcdctl put /moved 1");
    let stale = cairn(dir, &["apply", "compact.cairn"]);
    assert_eq!(stale.code, 1, "{}", stale.all());
    assert!(stale.stderr.contains("the hosts changed since"), "{}", stale.all());
    let compact = cairn(dir, &["run", "etcd", "compact", "--auto-approve"]);
    assert_eq!(compact.code, 0, "{}", compact.all());

    // Defrag under the writer, through a saved plan: followers first, the leader last.
    let leads = leader(&lab, "node1");
    let plan = cairn(dir, &["run", "etcd", "defrag", "-o", "defrag.cairn"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains(&format!("defragment member {leads} (leader, last)")), "{}", plan.all());
    let writer = Writer::start(&lab, "node1", &endpoints(&lab));
    let defrag = cairn(dir, &["apply", "defrag.cairn"]);
    let written = writer.stop(&lab);
    assert_eq!(defrag.code, 0, "{}", defrag.all());
    eprintln!("WRITER (defrag): {} writes, {} failed", written.writes, written.failures);
    assert_eq!(written.failures, 0, "writes failed during the defrag:\n{}", written.output);
    assert!(written.writes >= 20 && written.writes != u32::MAX, "{}", written.output);
    let done: Vec<&str> = defrag.stderr.lines().filter(|l| l.contains(" defragmented: database ")).collect();
    assert_eq!(done.len(), 3, "{}", defrag.all());
    assert!(done[2].contains(&format!("member {leads} defragmented")), "the leader last:\n{}", defrag.all());
    assert!(defrag.stdout.contains("Run complete: 3 done"), "{}", defrag.all());

    // Fill to NOSPACE: 100 KB values until etcd refuses.
    let fill = etcdctl(
        &lab,
        "node1",
        "v=$(head -c 100000 /dev/zero | tr '\\0' y); for i in $(seq 400); do etcdctl put /fill/$i \"$v\" >/dev/null 2>/tmp/fill.err || { cat /tmp/fill.err; exit 0; }; done; echo never-full",
    );
    let said = String::from_utf8_lossy(&fill.stdout).to_string();
    assert!(said.contains("NOSPACE") || said.contains("database space exceeded"), "{said}");
    let plan = cairn(dir, &["plan"]);
    assert!(plan.stdout.contains("DEGRADED") && plan.stdout.contains("alarm NOSPACE on"), "the plan shows the alarm:\n{}", plan.all());
    // A rolling restart is held while the alarm is raised.
    std::fs::write(dir.join("cairn.toml"), spec(120)).unwrap();
    let held = cairn(dir, &["plan"]);
    assert_eq!(held.code, 1, "{}", held.all());
    assert!(held.stdout.contains("held by the quorum guard") || held.stdout.contains("is degraded"), "{}", held.all());
    std::fs::write(dir.join("cairn.toml"), spec(100)).unwrap();
    // The space is not there yet.
    let early = cairn(dir, &["run", "etcd", "disarm", "--auto-approve"]);
    assert_eq!(early.code, 1, "{}", early.all());
    assert!(early.stdout.contains("the space is not there"), "{}", early.all());
    // Free it: delete, compact, defrag; then disarm clears the alarm and writes work again.
    etcdctl_ok(&lab, "node1", "etcdctl del --prefix /fill/ >/dev/null");
    for op in ["compact", "defrag", "disarm"] {
        let r = cairn(dir, &["run", "etcd", op, "--auto-approve"]);
        assert_eq!(r.code, 0, "{op}:\n{}", r.all());
    }
    etcdctl_ok(&lab, "node1", "etcdctl put /after-disarm ok");
    assert!(etcdctl_ok(&lab, "node1", "etcdctl alarm list").is_empty());
    let clean = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "the plan after the operations is empty:\n{}", clean.all());

    // Restore: 1,000 keys, a snapshot, every key deleted by hand, the snapshot restored.
    for batch in 0..8 {
        let puts: String = (batch * 125..(batch + 1) * 125).map(|i| format!("put /restore/k{i} v{i}\n")).collect();
        etcdctl_ok(&lab, "node1", &format!("printf '\\n{puts}\\n\\n' | etcdctl txn >/dev/null"));
    }
    let count = |node: &str| etcdctl_ok(&lab, node, "etcdctl get --prefix /restore/ --keys-only | grep -c . || true");
    assert_eq!(count("node1"), "1000");
    let snap = cairn(dir, &["run", "etcd", "snapshot", "--auto-approve"]);
    assert_eq!(snap.code, 0, "{}", snap.all());
    let line = snap.stderr.lines().find(|l| l.contains("; copied to ")).unwrap_or_else(|| panic!("{}", snap.all()));
    let local = dir.join(line.split("; copied to ").nth(1).unwrap().split(" (sha256").next().unwrap());
    let on_host = line.split("snapshot ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let snap_host = line.split(" on ").nth(1).unwrap().split_whitespace().next().unwrap().trim_end_matches(':').to_string();
    assert!(local.is_file(), "{}", local.display());
    etcdctl_ok(&lab, "node1", "etcdctl del --prefix /restore/ >/dev/null");
    assert_eq!(count("node1"), "0");
    let arg = format!("snapshot={}", local.display());
    // A saved restore plan is refused once the data moved.
    let saved = cairn(dir, &["run", "etcd", "restore", &arg, "-o", "restore.cairn"]);
    assert_eq!(saved.code, 0, "{}", saved.all());
    for step in ["upload", "snapshot", "stop node1", "restore node1", "start all"] {
        assert!(saved.stdout.contains(&format!("~ {step}")) || saved.stdout.contains(&format!("+ {step}")), "{step}:\n{}", saved.all());
    }
    etcdctl_ok(&lab, "node1", "etcdctl put /moved-again 1");
    let stale = cairn(dir, &["apply", "restore.cairn"]);
    assert_eq!(stale.code, 1, "{}", stale.all());
    assert!(stale.stderr.contains("the hosts changed since"), "{}", stale.all());
    let restore = |arg: &str| {
        let r = cairn(dir, &["run", "etcd", "restore", arg, "--auto-approve"]);
        assert_eq!(r.code, 0, "{}", r.all());
        for node in ["node1", "node2", "node3"] {
            assert_eq!(count(node), "1000", "{node} after restoring {arg}:\n{}", r.all());
        }
        let leaders: std::collections::BTreeSet<String> = ["node1", "node2", "node3"].iter().map(|n| leader(&lab, n)).collect();
        assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
        r
    };
    let r = restore(&arg);
    assert_eq!(r.stderr.matches("; the old data is kept in /var/lib/etcd.before-restore-").count(), 3, "{}", r.all());
    lab.ssh_ok("node2", &["sh", "-c", "ls -d /var/lib/etcd.before-restore-*/member"]);
    let clean = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "the plan after a restore is empty:\n{}", clean.all());
    // From HOST:PATH: the copy the snapshot kept on its member's host.
    etcdctl_ok(&lab, "node1", "etcdctl del --prefix /restore/ >/dev/null");
    restore(&format!("snapshot={snap_host}:{on_host}"));

    // The backup timer's snapshots, copied off their hosts to node3 (and only once).
    for node in ["node1", "node2"] {
        lab.ssh_ok(node, &["systemctl", "start", "etcd-backup.service"]);
    }
    let copy = cairn(dir, &["run", "etcd", "copy-backups", "to=node3:/var/backups/etcd-copies", "--auto-approve"]);
    assert_eq!(copy.code, 0, "{}", copy.all());
    for node in ["node1", "node2"] {
        let newest = lab.ssh_ok(node, &["sh", "-c", "ls -t /var/backups/etcd/etcd-snapshot-*.db | head -1"]);
        let name = newest.rsplit('/').next().unwrap();
        let here = lab.ssh_ok(node, &["sha256sum", &newest]);
        let there = lab.ssh_ok("node3", &["sha256sum", &format!("/var/backups/etcd-copies/{node}/{name}")]);
        assert_eq!(here.split_whitespace().next(), there.split_whitespace().next(), "{node}:\n{}", copy.all());
    }
    let again = cairn(dir, &["run", "etcd", "copy-backups", "to=node3:/var/backups/etcd-copies", "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.stderr.matches("snapshots are on node3:/var/backups/etcd-copies/").count(), 2, "{}", again.all());

    // A migration: the same snapshot restored into another member set (node1 alone), which
    // becomes a cluster of its own with every key.
    let one = spec(100).replace("hosts = [\"*\"]", "hosts = [\"node1\"]");
    std::fs::write(dir.join("cairn.toml"), one).unwrap();
    let moved = cairn(dir, &["run", "etcd", "restore", &arg, "--auto-approve"]);
    assert_eq!(moved.code, 0, "{}", moved.all());
    assert!(moved.stdout.contains("start every member at once (node1)"), "{}", moved.all());
    let listed = etcdctl_ok(&lab, "node1", "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl member list -w simple");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(
        etcdctl_ok(&lab, "node1", "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl get --prefix /restore/ --keys-only | grep -c ."),
        "1000"
    );
}
