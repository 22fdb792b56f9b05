//! Change review and drift on lab hosts: a saved plan applied exactly, or refused with what
//! changed since it was made (on the hosts, or in the spec); the per-host apply lock (a second
//! apply fails naming the first, `--lock-timeout` waits, a killed run's lock is stale and
//! `cairn unlock` breaks it); and `cairn drift` exit codes on a clean and a drifted lab.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_docs)]

#[path = "common/run.rs"]
mod run;
use run::cairn;

#[path = "common/lab.rs"]
mod lab;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SPEC: &str = r#"include = ["lab.toml"]

[dir.app]
path = "/etc/review"
mode = "0755"

[file.motd]
path = "/etc/review/motd"
content = "hello from {{ host.name }}\n"
mode = "0644"

[file.limits]
path = "/etc/review/limits.conf"
content = "max = 10\n"
mode = "0640"
"#;

#[test]
fn saved_plans_locks_and_drift_on_two_lab_hosts() {
    let lab = lab::Lab::up("review", 2);
    let dir = lab.dir();
    std::fs::write(dir.join("cairn.toml"), SPEC).unwrap();
    let first = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());

    // ---- drift: clean, then drifted (exit 2, only what differs), then error (exit 1).
    let clean = cairn(dir, &["drift"]);
    assert_eq!((clean.code, clean.stdout.as_str()), (0, "No drift: every host matches the spec.\n"), "{}", clean.all());
    lab.ssh_ok("node2", &["sh", "-c", "echo 'max = 99' > /etc/review/limits.conf && chmod 0666 /etc/review/motd"]);
    let drifted = cairn(dir, &["drift"]);
    assert_eq!(drifted.code, 2, "{}", drifted.all());
    assert!(!drifted.stdout.contains("node1"), "node1 has no drift:\n{}", drifted.stdout);
    assert!(drifted.stdout.contains("~ file.limits") && drifted.stdout.contains("-max = 99") && drifted.stdout.contains("+max = 10"));
    assert!(drifted.stdout.contains("mode: 0666 → 0644"), "{}", drifted.stdout);
    assert!(!drifted.stdout.contains("dir.app"), "unchanged instances are not listed:\n{}", drifted.stdout);
    assert!(drifted.stdout.ends_with("Drift: 2 resource instances on 1 host differ from the spec.\n"), "{}", drifted.stdout);
    let json: serde_json::Value = serde_json::from_str(&cairn(dir, &["drift", "--json"]).stdout).unwrap();
    let ids: Vec<String> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["host"].as_str().unwrap(), c["resource"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, ["node2 file.motd", "node2 file.limits"]);

    // ---- a saved plan: 0600, shown without hosts, as text and JSON (the plan --json schema).
    let plan = cairn(dir, &["plan", "-o", "repair.cairn"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let file = dir.join("repair.cairn");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let shown = cairn(dir, &["show", "repair.cairn"]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    assert!(shown.stdout.contains(&plan.stdout), "show prints the same plan:\n{}\n---\n{}", shown.stdout, plan.stdout);
    let shown_json: serde_json::Value = serde_json::from_str(&cairn(dir, &["show", "repair.cairn", "--json"]).stdout).unwrap();
    let plan_json: serde_json::Value = serde_json::from_str(&cairn(dir, &["plan", "--json"]).stdout).unwrap();
    assert_eq!(shown_json, plan_json);

    // The hosts move after the plan: the saved plan is refused, showing before → now.
    lab.ssh_ok("node2", &["sh", "-c", "echo 'max = 7' > /etc/review/limits.conf"]);
    let refused = cairn(dir, &["apply", "repair.cairn"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("Changed since the plan was made:\n  node2  file.limits\n"), "{}", refused.all());
    assert!(
        refused.stderr.contains("      before: path /etc/review/limits.conf: a regular file 0640 root:root 9 bytes sha256 "),
        "{}",
        refused.all()
    );
    assert!(
        refused.stderr.contains("      now:    path /etc/review/limits.conf: a regular file 0640 root:root 8 bytes sha256 "),
        "{}",
        refused.all()
    );
    assert!(refused.stderr.contains("nothing was applied"), "{}", refused.all());
    assert_eq!(lab.ssh_ok("node2", &["cat", "/etc/review/limits.conf"]), "max = 7");

    // Re-plan and apply the new plan exactly (no prompt): converged.
    assert_eq!(cairn(dir, &["plan", "-o", "repair.cairn"]).code, 0);
    let applied = cairn(dir, &["apply", "repair.cairn"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert!(applied.stdout.contains("Apply complete: 2 changed"), "{}", applied.all());
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(cairn(dir, &["drift"]).code, 0);

    // A plan made from another version of the spec is refused.
    lab.ssh_ok("node1", &["sh", "-c", "echo 'max = 1' > /etc/review/limits.conf"]);
    assert_eq!(cairn(dir, &["plan", "-o", "old.cairn"]).code, 0);
    std::fs::write(dir.join("cairn.toml"), SPEC.replace("max = 10", "max = 20")).unwrap();
    let stale = cairn(dir, &["apply", "old.cairn"]);
    assert_eq!(stale.code, 1, "{}", stale.all());
    assert!(stale.stderr.contains("old.cairn was made from another version of the spec"), "{}", stale.all());
    assert_eq!(lab.ssh_ok("node1", &["cat", "/etc/review/limits.conf"]), "max = 1", "nothing was applied");
    std::fs::write(dir.join("cairn.toml"), SPEC).unwrap();
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);

    // ---- locks: a slow apply holds both hosts; a second apply fails naming it.
    let slow = format!("{SPEC}\n[check.slow]\ncommand = [\"sleep\", \"6\"]\ntimeout = 20\n");
    std::fs::write(dir.join("slow.toml"), slow).unwrap();
    lab.ssh_ok("node1", &["sh", "-c", "echo drift > /etc/review/motd"]);
    let holder = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["apply", "--auto-approve", "-f", "slow.toml"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let locked = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        lab.ssh("node2", &["test", "-e", "/var/lib/cairn/lock"]).status.success()
    });
    assert!(locked, "the first apply never took node2's lock");
    let second = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(second.code, 1, "{}", second.all());
    let holder_pid = holder.id();
    assert!(second.stderr.contains("is locked by another apply: "), "{}", second.all());
    assert!(second.stderr.contains(&format!("(pid {holder_pid}, applying slow.toml, for ")), "{}", second.all());
    assert!(second.stderr.contains("nothing was applied"), "{}", second.all());
    // With --lock-timeout it waits for the first to finish, then applies.
    let started = Instant::now();
    let waited = cairn(dir, &["apply", "--auto-approve", "--lock-timeout", "1m"]);
    assert_eq!(waited.code, 0, "{}", waited.all());
    eprintln!("second apply waited {:.1}s for the lock", started.elapsed().as_secs_f64());
    let first_out = holder.wait_with_output().unwrap();
    assert!(first_out.status.success(), "{}", String::from_utf8_lossy(&first_out.stdout));
    for node in ["node1", "node2"] {
        assert!(!lab.ssh(node, &["test", "-e", "/var/lib/cairn/lock"]).status.success(), "{node}'s lock was left behind");
        assert_eq!(lab.ssh_ok(node, &["stat", "-c", "%a", "/var/lib/cairn"]), "700");
    }

    // A killed run leaves its lock: detected as stale, broken with `cairn unlock`.
    let mut killed = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["apply", "--auto-approve", "-f", "slow.toml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.ssh_ok("node1", &["sh", "-c", "echo drift-again > /etc/review/motd"]);
    let locked = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        lab.ssh("node1", &["test", "-e", "/var/lib/cairn/lock"]).status.success()
    });
    assert!(locked);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let blocked = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(blocked.code, 1, "{}", blocked.all());
    assert!(blocked.stderr.contains("but that run is gone (stale lock)"), "{}", blocked.all());
    assert!(blocked.stderr.contains("break it with `cairn unlock node1`"), "{}", blocked.all());
    for node in ["node1", "node2"] {
        let unlocked = cairn(dir, &["unlock", node]);
        assert_eq!(unlocked.code, 0, "{}", unlocked.all());
    }
    let unlocked = cairn(dir, &["unlock", "node1"]);
    assert_eq!(unlocked.stdout, "node1 was not locked.\n");
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);
    assert_eq!(cairn(dir, &["drift"]).code, 0);

    // No plan file, plan text or JSON holds key material (there is none in this spec, and the
    // runner checks every output; the files are checked here).
    for f in ["repair.cairn", "old.cairn"] {
        assert!(!std::fs::read_to_string(dir.join(f)).unwrap().contains("PRIVATE KEY"));
    }
}
