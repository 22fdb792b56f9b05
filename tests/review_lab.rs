//! Change review and drift on lab hosts: a saved plan applied exactly, or refused with what
//! changed since it was made (on the hosts, or in the spec); the per-host apply lock (a second
//! apply fails naming the first, `--lock-timeout` waits, a killed run's lock is stale and
//! `cairn unlock` breaks it); `cairn drift` exit codes on a clean and a drifted lab; and what
//! the hosts' manifests make possible: removing what left the spec, `prevent_destroy`, `ignore`,
//! refusing a path another spec manages, and `cairn destroy`.

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
name = "review"   # slow.toml below is the same spec with one more check

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
    let slow = format!("{SPEC}\n[check.slow]\ncommand = [\"sleep\", \"10\"]\ntimeout = 20\n");
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
    lab.ssh_ok("node1", &["sh", "-c", "echo drift-again > /etc/review/motd"]);
    let mut killed = run::spawn(dir, &["apply", "--auto-approve", "-f", "slow.toml"], true);
    let has_lock = |node: &str| lab.ssh(node, &["test", "-e", "/var/lib/cairn/lock"]).status.success();
    // Both locks are held while the check sleeps on both hosts; under a loaded suite each ssh
    // of this loop can take a second or more, so it looks for a while.
    let locked = (0..80).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        has_lock("node1") && has_lock("node2") || killed.try_wait().ok().flatten().is_some()
    }) && killed.try_wait().ok().flatten().is_none();
    if !locked {
        let _ = killed.kill();
        let out = killed.wait_with_output().unwrap();
        panic!(
            "the apply to be killed never held both locks ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    let blocked = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(blocked.code, 1, "{}", blocked.all());
    assert!(blocked.stderr.contains("but that run is gone (stale lock)"), "{}", blocked.all());
    assert!(blocked.stderr.contains("break it with `cairn unlock node1`"), "{}", blocked.all());
    // Without a host, `cairn unlock` releases every stale lock of the spec's hosts.
    let unlocked = cairn(dir, &["unlock", "-f", "cairn.toml"]);
    assert_eq!(unlocked.code, 0, "{}", unlocked.all());
    let lines: Vec<&str> = unlocked.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", unlocked.all());
    for (line, node) in lines.iter().zip(["node1", "node2"]) {
        assert!(line.starts_with(&format!("{node}: released the stale lock of ")), "{}", unlocked.all());
        assert!(line.contains("applying slow.toml"), "{}", unlocked.all());
        assert!(!has_lock(node), "{node} is still locked");
    }
    let unlocked = cairn(dir, &["unlock", "node1"]);
    assert_eq!(unlocked.stdout, "node1 was not locked.\n");
    // A live lock (this test process holds it) is refused and named, a stale one next to it is
    // released; exit 1.
    let live = cairn::state::host::LockHolder::for_this_process("live.toml");
    let stale = cairn::state::host::LockHolder { id: "0123456789abcdef".into(), pid: u32::MAX - 1, ..live.clone() };
    let put_lock = |node: &str, holder: &cairn::state::host::LockHolder| {
        let record = serde_json::to_string(holder).unwrap();
        lab.ssh_ok(node, &["sh", "-c", "mkdir -p /var/lib/cairn && printf %s \"$1\" > /var/lib/cairn/lock", "sh", &record]);
    };
    put_lock("node1", &stale);
    put_lock("node2", &live);
    let refused = cairn(dir, &["unlock", "-f", "cairn.toml"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stdout.contains("node1: released the stale lock of "), "{}", refused.all());
    assert!(
        refused.stdout.contains(&format!("node2: held by {} (pid {}, applying live.toml, for ", live.holder, live.pid))
            && refused.stdout.contains("(live, not removed)"),
        "{}",
        refused.all()
    );
    assert!(refused.stderr.contains("not removed: node2"), "{}", refused.all());
    assert!(!has_lock("node1") && has_lock("node2"));
    // With a host it behaves as before: a live lock of this machine is refused ...
    let refused = cairn(dir, &["unlock", "node2"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("node2 is locked by a run that is still going"), "{}", refused.all());
    // ... and a stale one removed.
    put_lock("node2", &stale);
    let unlocked = cairn(dir, &["unlock", "node2"]);
    assert_eq!(unlocked.code, 0, "{}", unlocked.all());
    assert!(unlocked.stdout.starts_with("Removed the lock on node2 held by "), "{}", unlocked.all());
    let clean = cairn(dir, &["unlock"]);
    assert_eq!((clean.code, clean.stdout.as_str()), (0, "node1: no lock\nnode2: no lock\n"), "{}", clean.all());
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);
    assert_eq!(cairn(dir, &["drift"]).code, 0);

    // No plan file, plan text or JSON holds key material (there is none in this spec, and the
    // runner checks every output; the files are checked here).
    for f in ["repair.cairn", "old.cairn"] {
        assert!(!std::fs::read_to_string(dir.join(f)).unwrap().contains("PRIVATE KEY"));
    }

    // `cairn unlock` with a host that cannot be reached: the others are still done; exit 1.
    lab.stop_node("node2");
    let unreached = cairn(dir, &["unlock"]);
    assert_eq!(unreached.code, 1, "{}", unreached.all());
    assert!(unreached.stdout.starts_with("node1: no lock\nnode2: cannot be reached: "), "{}", unreached.all());
    assert!(unreached.stderr.contains("could not be reached or read: node2"), "{}", unreached.all());
}

const MANAGED: &str = r#"include = ["lab.toml"]
name = "team-a"

[dir.app]
path = "/etc/manage"

[file.motd]
path = "/etc/manage/motd"
content = "managed by team a\n"

[file.extra]
path = "/etc/manage/extra.conf"
content = "extra = 1\n"

[file.protected]
path = "/etc/manage/keep.conf"
content = "keep me\n"
prevent_destroy = true

[file.tuned]
path = "/etc/manage/tuned.conf"
content = "tuned = yes\n"
mode = "0644"
ignore = ["mode"]

[user.ticker]
system = true
remove = true

[unit.ticker]
name = "ticker.service"
after = ["user.ticker"]
content = "[Service]\nUser=ticker\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"

[firewall.web]
rules = [{ port = 8080, proto = "tcp", action = "drop" }]
"#;

/// Drops the `[KIND.NAME]` table from a spec.
fn without(spec: &str, header: &str) -> String {
    let start = spec.find(header).unwrap();
    let end = spec[start + header.len()..].find("\n[").map_or(spec.len(), |i| start + header.len() + i + 1);
    format!("{}{}", &spec[..start], &spec[end..])
}

#[test]
fn manifests_removals_protection_ownership_and_destroy_on_two_lab_hosts() {
    let lab = lab::Lab::up("manage", 2);
    let dir = lab.dir();
    let both = ["node1", "node2"];
    std::fs::write(dir.join("cairn.toml"), MANAGED).unwrap();
    let first = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    for node in both {
        assert_eq!(lab.ssh_ok(node, &["stat", "-c", "%a", "/var/lib/cairn/manifests", "/var/lib/cairn/manifests/team-a.json"]), "700\n600");
        let manifest = lab.ssh_ok(node, &["cat", "/var/lib/cairn/manifests/team-a.json"]);
        for id in ["dir.app", "file.motd", "file.extra", "file.protected", "user.ticker", "unit.ticker", "firewall.web"] {
            assert!(manifest.contains(&format!("\"id\":\"{id}\"")), "{id} missing from {manifest}");
        }
        assert!(manifest.contains("\"created\":true"), "cairn made /etc/manage: {manifest}");
    }
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0, "plan right after apply is empty");

    // ---- ignore = ["mode"]: that drift is accepted, other drift of the same file is not.
    lab.ssh_ok("node1", &["chmod", "0600", "/etc/manage/tuned.conf"]);
    let quiet = cairn(dir, &["drift"]);
    assert_eq!(quiet.code, 0, "{}", quiet.all());
    lab.ssh_ok("node1", &["sh", "-c", "echo 'tuned = no' > /etc/manage/tuned.conf"]);
    let content = cairn(dir, &["drift"]);
    assert_eq!(content.code, 2, "{}", content.all());
    assert!(content.stdout.contains("~ file.tuned") && content.stdout.contains("content differs (ignoring mode)"), "{}", content.all());
    assert!(!content.stdout.contains("mode: 0600"), "ignored drift is not shown:\n{}", content.stdout);
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);

    // ---- resources leave the spec: their files, unit, account and table go; the plan says so.
    let mut smaller = without(MANAGED, "[file.extra]");
    for header in ["[unit.ticker]", "[user.ticker]", "[firewall.web]"] {
        smaller = without(&smaller, header);
    }
    std::fs::write(dir.join("cairn.toml"), &smaller).unwrap();
    let plan = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    for line in [
        "- file.extra",
        "no longer in the spec; delete /etc/manage/extra.conf",
        "no longer in the spec; stop, disable, delete its unit file ticker.service",
        "no longer in the spec; delete account ticker (its home is kept)",
        "no longer in the spec; drop table inet cairn (no firewall resource remains)",
        "      state: active → stopped\n      enabled: enabled → disabled\n      unit file: /etc/systemd/system/ticker.service → (none)\n",
    ] {
        assert!(plan.stdout.contains(line), "{line:?} not in:\n{}", plan.stdout);
    }
    let removed = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(removed.code, 0, "{}", removed.all());
    assert!(removed.stdout.contains("Apply complete: 8 changed"), "{}", removed.all());
    for node in both {
        assert!(!lab.ssh(node, &["test", "-e", "/etc/manage/extra.conf"]).status.success(), "{node} still has extra.conf");
        assert!(!lab.ssh(node, &["test", "-e", "/etc/systemd/system/ticker.service"]).status.success());
        assert_eq!(lab.ssh(node, &["systemctl", "is-active", "ticker.service"]).status.code(), Some(3), "ticker stopped on {node}");
        assert!(!lab.ssh(node, &["getent", "passwd", "ticker"]).status.success(), "account ticker removed on {node}");
        assert!(!lab.ssh(node, &["nft", "list", "table", "inet", "cairn"]).status.success(), "table dropped on {node}");
        assert_eq!(lab.ssh_ok(node, &["cat", "/etc/manage/motd"]), "managed by team a", "the rest stays");
        let manifest = lab.ssh_ok(node, &["cat", "/var/lib/cairn/manifests/team-a.json"]);
        assert!(!manifest.contains("file.extra") && !manifest.contains("unit.ticker"), "{manifest}");
    }
    let after = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(after.code, 0, "plan right after the removals is empty:\n{}", after.all());

    // ---- prevent_destroy: dropping the protected file fails the plan and applies nothing.
    std::fs::write(dir.join("cairn.toml"), without(&smaller, "[file.protected]").replace("managed by team a", "changed")).unwrap();
    let protected = cairn(dir, &["plan"]);
    assert_eq!(protected.code, 1, "{}", protected.all());
    let summary = protected.stderr.lines().find(|l| l.contains("the plan cannot be applied: ")).unwrap_or_default();
    assert!(summary.contains(" blocked resource") && summary.ends_with("the plan above says why"), "{}", protected.all());
    assert!(
        protected.stdout.contains("protected by prevent_destroy: removing it would delete /etc/manage/keep.conf"),
        "{}",
        protected.all()
    );
    let refused = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("nothing was applied: the plan would remove or replace protected resources"), "{}", refused.all());
    for node in both {
        assert_eq!(lab.ssh_ok(node, &["cat", "/etc/manage/keep.conf", "/etc/manage/motd"]), "keep me\nmanaged by team a");
    }
    std::fs::write(dir.join("cairn.toml"), &smaller).unwrap();

    // ---- a second spec wanting a path the first manages is refused.
    std::fs::write(
        dir.join("team-b.toml"),
        "include = [\"lab.toml\"]\n\n[file.motd]\npath = \"/etc/manage/motd\"\ncontent = \"team b was here\\n\"\n\n\
         [file.own]\npath = \"/etc/team-b.conf\"\ncontent = \"b\\n\"\n",
    )
    .unwrap();
    let clash = cairn(dir, &["plan", "-f", "team-b.toml"]);
    assert_eq!(clash.code, 1, "{}", clash.all());
    assert!(
        clash.stdout.contains("/etc/manage/motd is managed by spec `team-a` (file.motd there, in /var/lib/cairn/manifests/team-a.json)"),
        "{}",
        clash.all()
    );
    let clash_apply = cairn(dir, &["apply", "--auto-approve", "-f", "team-b.toml"]);
    assert_eq!(clash_apply.code, 1, "{}", clash_apply.all());
    for node in both {
        assert_eq!(lab.ssh_ok(node, &["cat", "/etc/manage/motd"]), "managed by team a");
        assert_eq!(lab.ssh_ok(node, &["cat", "/etc/team-b.conf"]), "b", "team b's own file is applied");
    }

    // ---- destroy: refused while something is protected; then removes everything team a has,
    // keeping a directory that holds a file no spec manages.
    let blocked = cairn(dir, &["destroy", "--auto-approve"]);
    assert_eq!(blocked.code, 1, "{}", blocked.all());
    assert!(blocked.stdout.contains("protected by prevent_destroy"), "{}", blocked.all());
    std::fs::write(dir.join("cairn.toml"), smaller.replace("prevent_destroy = true", "prevent_destroy = false")).unwrap();
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);
    lab.ssh_ok("node2", &["sh", "-c", "echo mine > /etc/manage/notes.txt"]);
    let destroyed = cairn(dir, &["destroy", "--auto-approve"]);
    assert_eq!(destroyed.code, 0, "{}", destroyed.all());
    assert!(
        destroyed.stdout.contains("- file.motd") && destroyed.stdout.contains("destroy; delete /etc/manage/motd"),
        "{}",
        destroyed.all()
    );
    assert!(destroyed.stdout.contains("Destroy complete: ") && destroyed.stdout.contains(" removed, "), "{}", destroyed.all());
    assert!(!lab.ssh("node1", &["test", "-e", "/etc/manage"]).status.success(), "node1's /etc/manage is gone");
    assert_eq!(lab.ssh_ok("node2", &["ls", "/etc/manage"]), "notes.txt", "node2 keeps the directory with the unmanaged file");
    for node in both {
        assert!(!lab.ssh(node, &["test", "-e", "/var/lib/cairn/manifests/team-a.json"]).status.success(), "manifest removed on {node}");
        assert!(lab.ssh(node, &["test", "-e", "/var/lib/cairn/manifests/team-b.json"]).status.success(), "team b's stays on {node}");
    }
    let again = cairn(dir, &["destroy", "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("No changes."), "{}", again.all());
}
