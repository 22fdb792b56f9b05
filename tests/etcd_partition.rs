//! A network partition during an etcd rolling restart (issue 15), on three lab hosts: a writer
//! puts a key every 50 ms (5 s timeout) through the two members that stay connected; a tuning
//! change rolls the members one at a time; the moment the first member has restarted, nftables
//! on its host drops its peer traffic (port 2380, in and out), so the cluster is left with a bare
//! quorum. The health gate must stop the rollout there: no second member restarted, the apply
//! fails naming the gate, the cluster keeps its quorum and the writer sees no failed write. Once
//! the partition heals, the next apply finishes the rollout (each member restarted once, with the
//! new setting) and the plan after it is empty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/run.rs"]
mod run;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd::{Writer, etcdctl, etcdctl_ok};

/// Cuts a member's peer traffic as soon as its service restarted (runs on its host).
const CUT_PEERS_SCRIPT: &str = include_str!("faults/cut-peers-on-restart.sh");

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// The spec: the etcd module on every host; `snapshot_count` is the tuning value the rollout
/// changes (it is in etcd's config, so a change restarts every member, one at a time).
fn spec(snapshot_count: u32) -> String {
    etcd::lab_spec("etcd-partition", &format!("snapshot_count = {snapshot_count}\n"))
}

fn cairn(dir: &std::path::Path, args: &[&str]) -> run::Run {
    run::cairn_env(dir, args, &[("CAIRN_MODULE_PATH", &etcd::module_path())])
}

/// Waits for a spawned cairn, killing it (and failing the test) after `limit`.
fn wait_at_most(mut child: Child, args: &[&str], limit: Duration) -> run::Run {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let run = run::wait(child, args);
            panic!("cairn {} still ran after {} s:\n{}", args.join(" "), limit.as_secs(), run.all());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    run::wait(child, args)
}

/// The running member's copy of its config (etcd-start writes it when the member starts).
fn running_snapshot_count(lab: &lab::Lab, node: &str) -> String {
    let config = lab.ssh_ok(node, &["cat", "/run/etcd/etcd.config.yml"]);
    config.lines().find_map(|l| l.strip_prefix("snapshot-count: ")).unwrap_or_default().trim().to_string()
}

#[test]
fn a_partition_during_an_etcd_rolling_restart_stops_it_with_the_quorum_kept() {
    let test_started = Instant::now();
    etcd::mirror();
    let lab = lab::Lab::up("etcd-partition", 3);
    let dir = lab.dir();
    etcd::copy_mirror_toml(dir);
    std::fs::write(dir.join("cairn.toml"), spec(100_000)).unwrap();
    let formed = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(formed.code, 0, "{}", formed.all());
    let converged_at = test_started.elapsed().as_secs_f64();

    // The rolling order is the spec's order of hosts with the leader last: the first follower
    // restarts first. It is the one cut off; the other two keep a bare quorum and take the writes.
    let leads = etcd::leader(&lab, "node1");
    let first = *NODES.iter().find(|n| **n != leads).unwrap();
    let healthy: Vec<&str> = NODES.iter().copied().filter(|n| *n != first).collect();
    eprintln!("PARTITION: leader {leads}; {first} restarts first and is cut off; writes go to {}", healthy.join(" and "));
    let before: Vec<u64> = NODES.iter().map(|n| etcd::active_since(&lab, n)).collect();
    let writer = Writer::start(&lab, healthy[0], &etcd::client_urls(&lab, &healthy));

    // The cut is armed on the first member's host, then the rollout starts.
    let index = |node: &str| NODES.iter().position(|n| *n == node).unwrap();
    let since = before[index(first)].to_string();
    let argv = lab.info.ssh_argv(first, &["sh", "-c", CUT_PEERS_SCRIPT, "cut-peers", &since, "300"]).unwrap();
    let cut = Command::new(&argv[0]).args(&argv[1..]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::fs::write(dir.join("cairn.toml"), spec(50_000)).unwrap();
    let args = ["apply", "--auto-approve"];
    let rollout_started = Instant::now();
    let child = run::spawn_env(dir, &args, &[("CAIRN_MODULE_PATH", &etcd::module_path())], true);
    let stopped = wait_at_most(child, &args, Duration::from_secs(200));
    let rollout_secs = rollout_started.elapsed().as_secs_f64();
    let cut = cut.wait_with_output().unwrap();
    assert!(cut.status.success(), "{first}'s member never restarted, so it was never cut off: {}", String::from_utf8_lossy(&cut.stderr));
    let cut_at: u64 = String::from_utf8_lossy(&cut.stdout).trim().parse().unwrap();

    // Stopped by the gate, naming the member it found unhealthy; no second member restarted.
    assert_eq!(stopped.code, 1, "{}", stopped.all());
    let address = etcd::client_urls(&lab, &[first]);
    // etcdctl words the timeout itself in more than one way ("context deadline exceeded", once
    // "rpc error: code = Unknown desc = context deadline exceeded"): cairn's part is exact.
    let gate = format!(
        "failed:  etcd.unit.etcd on {first}: applied (restart pending: etcd.config.yml changed after the service started), but the \
         cluster did not become healthy within 90 s: member {first} ({address}) is unhealthy: failed to commit proposal: "
    );
    let gate_line = stopped.stdout.lines().find(|l| l.starts_with(&gate)).unwrap_or_default();
    assert!(gate_line.contains("context deadline exceeded"), "the gate names the member:\n{}", stopped.all());
    for node in &healthy {
        let held = format!("skipped: etcd.file.config on {node}: rolling restart stopped: etcd.unit.etcd on {first} did not complete");
        assert!(stopped.stdout.contains(&held), "{node}'s turn is skipped:\n{}", stopped.all());
    }
    let after: Vec<u64> = NODES.iter().map(|n| etcd::active_since(&lab, n)).collect();
    assert_eq!(after[index(first)], cut_at, "{first} restarted once, then was cut off");
    for node in &healthy {
        assert_eq!(after[index(node)], before[index(node)], "{node} was restarted during the partition:\n{}", stopped.all());
    }
    // The healthy majority keeps its quorum (a write through it works); the cut member does not
    // serve (its linearizable read times out).
    let majority = etcd::client_urls(&lab, &healthy);
    etcdctl_ok(
        &lab,
        healthy[0],
        &format!("export ETCDCTL_ENDPOINTS={majority}; etcdctl endpoint health && etcdctl put /after-partition ok"),
    );
    let cut_off = etcdctl(&lab, first, "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl endpoint health --command-timeout=3s");
    assert!(!cut_off.status.success(), "{first} is cut off from its peers");
    // The plan sees the partition too, and holds the rest of the rollout.
    let plan = cairn(dir, &["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    let problem = format!("etcd.cluster.members is degraded (member {first} answers but follows no leader (cut off from its peers))");
    assert!(plan.stdout.contains(&problem), "{}", plan.all());
    assert!(plan.stdout.contains("held by the quorum guard"), "{}", plan.all());

    // Healed: the next apply finishes the rollout, the others restarted once, the plan is empty.
    lab.ssh_ok(first, &["nft", "delete table inet partition"]);
    let healed = Instant::now();
    while !etcdctl(&lab, first, "etcdctl endpoint health --cluster").status.success() {
        assert!(healed.elapsed() < Duration::from_secs(60), "the cluster is not healthy 60 s after the partition healed");
        std::thread::sleep(Duration::from_millis(500));
    }
    let healed_secs = healed.elapsed().as_secs_f64();
    // Healing may move the leadership (the cut-off member campaigned meanwhile): the finishing
    // rollout puts the leader of now last.
    let leads_now = etcd::leader(&lab, healthy[0]);
    let finishing = Instant::now();
    let finish = cairn(dir, &["apply", "--auto-approve"]);
    let finish_secs = finishing.elapsed().as_secs_f64();
    assert_eq!(finish.code, 0, "{}", finish.all());
    let done: Vec<u64> = NODES.iter().map(|n| etcd::active_since(&lab, n)).collect();
    assert_eq!(done[index(first)], cut_at, "{first} was not restarted again:\n{}", finish.all());
    for node in &healthy {
        assert_ne!(done[index(node)], before[index(node)], "{node} restarts once the partition healed:\n{}", finish.all());
    }
    if let Some(follower) = healthy.iter().find(|n| **n != leads_now).filter(|_| healthy.contains(&leads_now.as_str())) {
        assert!(done[index(&leads_now)] > done[index(follower)], "the leader {leads_now} restarts last:\n{}", finish.all());
    }
    for node in NODES {
        assert_eq!(running_snapshot_count(&lab, node), "50000", "{node} runs the new setting");
    }
    let clean = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "the plan after the healed rollout is empty:\n{}", clean.all());
    let written = writer.stop(&lab);
    let mut finished_order = healthy.clone();
    finished_order.sort_by_key(|n| done[index(n)]);
    eprintln!(
        "PARTITION FIGURES: leader {leads} before, {leads_now} after healing; {first} restarted and cut off, then {} then {} restarted \
         by the finishing apply; converged in {converged_at:.0} s; the stopped rollout took {rollout_secs:.1} s; healthy again {healed_secs:.1} s \
         after healing; the finishing apply {finish_secs:.0} s; writer: {} writes, {} failed; whole test {:.0} s",
        finished_order[0],
        finished_order[1],
        written.writes,
        written.failures,
        test_started.elapsed().as_secs_f64()
    );
    assert_eq!(written.failures, 0, "writes failed against the healthy majority:\n{}", written.output);
    assert!(written.writes >= 100 && written.writes != u32::MAX, "{}", written.output);
}
