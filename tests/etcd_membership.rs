//! etcd membership as planned, quorum-safe steps, on five lab hosts, every change under a
//! writer (a key put every 50 ms with a 5 s timeout to the voting members that stay):
//! grow 3 → 5 (two learner joins, no restart of the formed members), shrink 5 → 3 (two member
//! removals, their etcd stopped and disabled, data kept aside), a member whose data dir was wiped
//! replaced under a new id, a degraded cluster refusing a rolling restart while it heals, the
//! rolling restart then going leader last, and a config change that makes etcd fail stopping
//! the rollout with the other members' files untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/run.rs"]
mod run;

use etcd::{Writer, active_since, etcdctl_ok, leader, members};
use run::cairn_env;

/// The lab spec: the etcd-cluster module on `hosts`, with a tunable heartbeat and compaction
/// retention (an invalid retention makes etcd refuse to start).
fn spec(hosts: &[&str], heartbeat: u32, retention: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        r#"include = ["lab.toml", "mirror.toml"]
[module.etcd]
source = "etcd-cluster"
hosts = [{}]
version = "{{{{ vars.etcd_version }}}}"
sha256 = "{{{{ vars.etcd_sha256 }}}}"
mirror = "{{{{ vars.etcd_mirror }}}}"
cluster_token = "etcd-members"
heartbeat_interval = {heartbeat}
election_timeout = {}
auto_compaction_retention = "{retention}"
"#,
        hosts.join(", "),
        heartbeat * 10
    )
}

fn cairn(dir: &std::path::Path, args: &[&str]) -> run::Run {
    cairn_env(dir, args, &[("CAIRN_MODULE_PATH", etcd::repo().join("modules").to_str().unwrap())])
}

fn voters(lab: &lab::Lab, node: &str) -> Vec<String> {
    let ms = members(lab, node);
    assert!(ms.iter().all(|m| !m.learner && m.status == "started"), "{ms:?}");
    let mut names: Vec<String> = ms.into_iter().map(|m| m.name).collect();
    names.sort();
    names
}

fn endpoints(lab: &lab::Lab, nodes: &[&str]) -> String {
    let hosts: toml::Table = std::fs::read_to_string(lab.hosts_file()).unwrap().parse().unwrap();
    nodes.iter().map(|n| format!("https://{}:2379", hosts["hosts"][*n]["address"].as_str().unwrap())).collect::<Vec<_>>().join(",")
}

fn assert_no_failed_writes(w: &etcd::Written, what: &str) {
    eprintln!("WRITER ({what}): {} writes, {} failed", w.writes, w.failures);
    assert_eq!(w.failures, 0, "writes failed during {what}:\n{}", w.output);
    assert!(w.writes >= 20 && w.writes != u32::MAX, "the writer ran during {what}: {}", w.output);
}

fn sha(lab: &lab::Lab, node: &str, path: &str) -> String {
    lab.ssh_ok(node, &["sha256sum", path]).split_whitespace().next().unwrap().to_string()
}

#[test]
fn etcd_membership_grow_shrink_replace_and_the_quorum_guard() {
    etcd::mirror();
    let lab = lab::Lab::up("etcd-members", 5);
    let dir = lab.dir();
    etcd::copy_mirror_toml(dir);
    let three = ["node1", "node2", "node3"];
    let five = ["node1", "node2", "node3", "node4", "node5"];
    let write_spec = |hosts: &[&str], hb: u32, retention: &str| std::fs::write(dir.join("cairn.toml"), spec(hosts, hb, retention)).unwrap();

    // Formed on three hosts.
    write_spec(&three, 100, "1");
    let run = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(voters(&lab, "node1"), three);
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);

    // 1. Grow 3 → 5: two learner joins, no restart (nor config change) of the formed members.
    write_spec(&five, 100, "1");
    let plan = cairn(dir, &["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("etcd cluster etcd.cluster.members: 3 voting members, healthy, leader"), "{}", plan.all());
    assert_eq!(plan.stdout.matches("add as learner → start → caught up → promote (host added to the spec)").count(), 2, "{}", plan.all());
    assert!(!plan.stdout.contains("↻ etcd.unit.etcd") && !plan.stdout.contains("~ etcd.file.config"), "{}", plan.all());
    let before: Vec<u64> = three.iter().map(|n| active_since(&lab, n)).collect();
    // Through a saved plan: reviewed, then applied exactly.
    assert_eq!(cairn(dir, &["plan", "-o", "grow.cairn"]).code, 0);
    let writer = Writer::start(&lab, "node1", &endpoints(&lab, &three));
    let run = cairn(dir, &["apply", "--auto-approve", "grow.cairn"]);
    let written = writer.stop(&lab);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_failed_writes(&written, "grow 3 → 5");
    assert_eq!(run.stderr.matches("added as learner, started, caught up, promoted").count(), 2, "{}", run.all());
    assert_eq!(voters(&lab, "node4"), five);
    let after: Vec<u64> = three.iter().map(|n| active_since(&lab, n)).collect();
    assert_eq!(before, after, "a formed member was restarted");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0, "the plan after growing is empty");

    // 2. Shrink 5 → 3: two removals; the removed hosts' etcd stopped and disabled, data kept.
    write_spec(&three, 100, "1");
    let plan = cairn(dir, &["plan"]);
    assert_eq!(plan.stdout.matches("(host left the spec)").count(), 2, "{}", plan.all());
    let writer = Writer::start(&lab, "node1", &endpoints(&lab, &three));
    let run = cairn(dir, &["apply", "--auto-approve"]);
    let written = writer.stop(&lab);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_failed_writes(&written, "shrink 5 → 3");
    assert_eq!(voters(&lab, "node2"), three);
    for gone in ["node4", "node5"] {
        assert_ne!(String::from_utf8_lossy(&lab.ssh(gone, &["systemctl", "is-active", "etcd.service"]).stdout).trim(), "active");
        assert_ne!(String::from_utf8_lossy(&lab.ssh(gone, &["systemctl", "is-enabled", "etcd.service"]).stdout).trim(), "enabled");
        let kept = lab.ssh_ok(gone, &["sh", "-c", "ls -d /var/lib/etcd.removed-*/member"]);
        assert!(!kept.is_empty(), "the removed member's data is kept aside on {gone}");
    }
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0, "the plan after shrinking is empty");

    // 3. A member whose disk died: stopped, data wiped; the plan replaces it, under a new id.
    let old_id = members(&lab, "node1").into_iter().find(|m| m.name == "node3").unwrap().id;
    lab.ssh_ok("node3", &["sh", "-c", "systemctl stop etcd.service && rm -rf /var/lib/etcd/member /var/lib/etcd/wal"]);
    let plan = cairn(dir, &["plan"]);
    assert!(plan.stdout.contains("replace: unhealthy and its data dir is empty"), "{}", plan.all());
    let writer = Writer::start(&lab, "node1", &endpoints(&lab, &["node1", "node2"]));
    let run = cairn(dir, &["apply", "--auto-approve"]);
    let written = writer.stop(&lab);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_failed_writes(&written, "replacing node3");
    let new_id = members(&lab, "node1").into_iter().find(|m| m.name == "node3").unwrap().id;
    assert_ne!(old_id, new_id, "node3 came back as a new member");
    assert_eq!(voters(&lab, "node3"), three);
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0, "the plan after replacing is empty");

    // 3b. --replace forces the same for a member that looks healthy (a follower: handing over
    //     leadership can drop a write in flight, an etcd behaviour the rolling restart shares).
    let lead = leader(&lab, "node1");
    let pick = *three.iter().find(|n| **n != lead).unwrap();
    let others: Vec<&str> = three.iter().copied().filter(|n| *n != pick).collect();
    let old_id = members(&lab, "node1").into_iter().find(|m| m.name == pick).unwrap().id;
    let asked = format!("etcd.cluster.members[{pick}]");
    let plan = cairn(dir, &["plan", "--replace", &asked]);
    assert!(plan.stdout.contains("replace (--replace): stop → set its data aside"), "{}", plan.all());
    let writer = Writer::start(&lab, others[0], &endpoints(&lab, &others));
    let run = cairn(dir, &["apply", "--auto-approve", "--replace", &asked]);
    let written = writer.stop(&lab);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_failed_writes(&written, "replacing a member on request");
    assert_ne!(members(&lab, others[0]).into_iter().find(|m| m.name == pick).unwrap().id, old_id);
    assert!(!lab.ssh_ok(pick, &["sh", "-c", "ls -d /var/lib/etcd.replaced-*/member"]).is_empty(), "the old data is kept");
    assert_eq!(voters(&lab, pick), three);
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
    let unknown = cairn(dir, &["plan", "--replace", "etcd.cluster.members[node9]"]);
    assert_eq!(unknown.code, 1, "{}", unknown.all());
    assert!(unknown.stderr.contains("the spec has no etcd.cluster.members on node9"), "{}", unknown.all());

    // 4. Degraded: node2 stopped by hand, then a change that needs a rolling restart. The plan
    //    offers to start node2 and holds the restarts (exit 1); apply heals node2 only.
    lab.ssh_ok("node2", &["systemctl", "stop", "etcd.service"]);
    write_spec(&three, 150, "1");
    let plan = cairn(dir, &["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(plan.stdout.contains("DEGRADED (member node2 does not answer)"), "{}", plan.all());
    assert!(plan.stdout.contains("held by the quorum guard"), "{}", plan.all());
    assert!(plan.stdout.contains("stopped, wanted running"), "{}", plan.all());
    let run = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "the held restarts fail the apply: {}", run.all());
    assert_eq!(lab.ssh_ok("node2", &["systemctl", "is-active", "etcd.service"]), "active");
    for node in ["node1", "node3"] {
        assert!(lab.ssh_ok(node, &["grep", "heartbeat-interval", "/etc/etcd/etcd.config.yml"]).contains("100"), "{node} kept its config");
    }

    // 5. Healthy again: the rolling restart goes followers first, the leader last.
    let lead = leader(&lab, "node1");
    let writer = Writer::start(&lab, "node1", &endpoints(&lab, &three));
    let run = cairn(dir, &["apply", "--auto-approve"]);
    let written = writer.stop(&lab);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_failed_writes(&written, "the rolling restart");
    let restarted: Vec<(u64, &str)> = ["node1", "node3"].iter().map(|n| (active_since(&lab, n), *n)).collect();
    let last = restarted.iter().max().unwrap().1;
    eprintln!("leader before: {lead}; restarts: {restarted:?}");
    if lead != "node2" {
        assert_eq!(last, lead, "the leader restarts last: {restarted:?}");
    }
    // The leader handed its leadership to a member already restarted as it stopped.
    assert_ne!(leader(&lab, "node2"), lead, "the restarted leader handed its leadership over");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);

    // 6. A config that makes etcd fail: the first member fails its restart, the rollout stops,
    //    the other members keep their config (sha256 unchanged) and the cluster its quorum.
    let before: Vec<String> = three.iter().map(|n| sha(&lab, n, "/etc/etcd/etcd.config.yml")).collect();
    write_spec(&three, 150, "bogus");
    let run = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let after: Vec<String> = three.iter().map(|n| sha(&lab, n, "/etc/etcd/etcd.config.yml")).collect();
    let changed: Vec<&str> = three.iter().zip(before.iter().zip(&after)).filter(|(_, (b, a))| b != a).map(|(n, _)| *n).collect();
    assert_eq!(changed.len(), 1, "only the first member of the rollout got the bad config: {changed:?}\n{}", run.all());
    let healthy_node = three.iter().find(|n| !changed.contains(n)).unwrap();
    etcdctl_ok(&lab, healthy_node, "etcdctl put /cairn/quorum kept");
    // Fixed: the failed member is started again with the good config; nothing else changes.
    write_spec(&three, 150, "1");
    let run = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(voters(&lab, healthy_node), three);
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
}
