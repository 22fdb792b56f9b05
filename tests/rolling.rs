//! Rolling restarts on lab hosts: a unit with `rolling = { batch = 1, wait_for = "check.up" }`
//! starts together on first bring-up, but a config change restarts it one host at a time, each
//! next host only after the check passed on the previous one (each host's file written in its
//! turn); a failing check stops the rollout and leaves the later hosts' files as they were.
#![allow(clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/lab.rs"]
mod lab;
#[path = "common/run.rs"]
mod run;

use lab::Lab;
use run::cairn;

fn spec(generation: u32) -> String {
    format!(
        r#"include = ["lab.toml"]

[file.cfg]
path = "/etc/demo.conf"
content = "generation {generation}\n"

[unit.demo]
name = "demo.service"
content = """
[Unit]
Description=demo service
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
start = "together"
restart_on = ["file.cfg"]
rolling = {{ batch = 1, wait_for = "check.up" }}

[check.up]
command = "sleep 2; test ! -e /run/fail-check && systemctl is-active --quiet demo.service"
after = ["unit.demo"]
"#
    )
}

fn started_at(lab: &Lab, node: &str) -> u64 {
    lab.ssh_ok(node, &["systemctl", "show", "--timestamp=unix", "-P", "ActiveEnterTimestamp", "demo.service"])
        .trim_start_matches('@')
        .parse()
        .unwrap()
}

#[test]
fn config_change_restarts_one_host_at_a_time_gated_on_the_check() {
    let lab = Lab::up("rolling", 3);
    let dir = lab.dir();
    std::fs::write(dir.join("cairn.toml"), spec(1)).unwrap();
    let first = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
    let nodes = ["node1", "node2", "node3"];
    let before: Vec<u64> = nodes.iter().map(|n| started_at(&lab, n)).collect();
    // First bring-up was together: all three started within a second or two of each other.
    assert!(before.iter().max().unwrap() - before.iter().min().unwrap() <= 2, "{before:?}");

    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::write(dir.join("cairn.toml"), spec(2)).unwrap();
    let plan = cairn(dir, &["plan"]);
    assert!(plan.stdout.contains("restart: file.cfg changes"), "{}", plan.all());
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let after: Vec<u64> = nodes.iter().map(|n| started_at(&lab, n)).collect();
    for (b, a) in before.iter().zip(&after) {
        assert!(a > b, "every member restarted: {before:?} → {after:?}");
    }
    // One at a time: each restart comes after the previous host's 2 s check.
    assert!(after[1] >= after[0] + 2 && after[2] >= after[1] + 2, "restarts were not spaced by the check: {after:?}");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);

    // A failing check on node1 stops the rollout: node2 and node3 keep running untouched.
    lab.ssh_ok("node1", &["touch", "/run/fail-check"]);
    std::fs::write(dir.join("cairn.toml"), spec(3)).unwrap();
    let stopped = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(stopped.code, 1, "{}", stopped.all());
    // The change rolls as a whole: node2's and node3's files wait for their turn too, so the
    // stopped rollout leaves them exactly as they were.
    assert!(
        stopped.stdout.contains("skipped: file.cfg on node2: rolling restart stopped: check.up on node1 did not complete"),
        "{}",
        stopped.all()
    );
    let last: Vec<u64> = nodes.iter().map(|n| started_at(&lab, n)).collect();
    assert!(last[0] > after[0], "node1 was restarted");
    assert_eq!(&last[1..], &after[1..], "node2 and node3 were not restarted");
    for node in ["node2", "node3"] {
        assert_eq!(lab.ssh_ok(node, &["cat", "/etc/demo.conf"]), "generation 2", "{node} kept its old file");
    }
}
