//! End-to-end over real SSH on `cairn lab` hosts (systemd-nspawn Debian containers): the real
//! binary applies files and dirs to three hosts in a few remote commands per host (batched per
//! wave, however many files); the next plan is empty and costs one connection and one remote
//! command per host; hand edits on one host show as a diff for that host only and
//! are repaired; bytes arrive exactly; a host that is down fails alone; a changed host key is
//! refused; a non-root user works through sudo (`become`).
//!
//! Needs root, systemd-nspawn and debootstrap (`.ci/run` installs them). With `CI` set a lab that
//! cannot start fails these tests; they never skip there.
#![allow(clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/run.rs"]
mod run;
use run::cairn;

#[path = "common/lab.rs"]
mod lab;

use std::process::Command;

use lab::Lab;

/// Bytes that break naive quoting: quotes, command substitution, newlines, invalid UTF-8, NUL.
const NASTY: &[u8] = b"it's \"quoted\" $(touch /tmp/pwned) `id` $HOME \\ back\nnew line\r\n\xff\xfe\x00\x01 end";

/// Five dirs and twenty files per host (25 resources), plus one binary `source` file.
fn spec(extra: &str) -> String {
    let mut s = String::from("include = [\"lab.toml\"]\n\n[vars]\ncluster = \"e2e\"\n\n");
    for d in 1..=5 {
        s.push_str(&format!("[dir.d{d}]\npath = \"/srv/e2e/d{d}\"\nmode = \"0750\"\n\n"));
    }
    for f in 1..=19 {
        let d = (f - 1) % 5 + 1;
        s.push_str(&format!(
            "[file.f{f}]\npath = \"/srv/e2e/d{d}/f{f}.conf\"\ncontent = \"\"\"\nfile {f} of {{{{ vars.cluster }}}} on {{{{ host.name }}}} ({{{{ host.address }}}})\npeers = [{{% for h in hosts %}}\"{{{{ h.address }}}}\", {{% endfor %}}]\n\"\"\"\n\n"
        ));
    }
    s.push_str("[file.nasty]\npath = \"/srv/e2e/d1/nasty.bin\"\nsource = \"nasty.bin\"\nmode = \"0600\"\n\n");
    s.push_str(extra);
    s
}

fn write_spec(lab: &Lab, text: &str) {
    std::fs::write(lab.dir().join("nasty.bin"), NASTY).unwrap();
    std::fs::write(lab.dir().join("cairn.toml"), text).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    cairn::hash::sha256_hex(bytes)
}

#[test]
fn apply_plan_drift_repair_on_three_hosts() {
    let lab = Lab::up("e2e-files", 3);
    let dir = lab.dir();
    write_spec(&lab, &spec(""));

    let apply = cairn(dir, &["apply", "--auto-approve", "--verbose"]);
    assert_eq!(apply.code, 0);
    assert!(apply.stdout.contains("Plan: 75 to create, 0 to change, 0 to delete."), "{}", apply.stdout);
    assert!(apply.stdout.contains("Apply complete: 75 changed, 0 unchanged, 0 failed, 0 skipped."));
    // The plan's probe (which takes the lock); two waves per host (the dirs, acting on the
    // plan's read, then the files in them: a re-probe and a write); the manifest (which releases
    // the lock): not one command per file.
    for node in ["node1", "node2", "node3"] {
        assert_eq!(apply.commands(node), 5, "{node}: remote commands for 25 creations\n{}", apply.stderr);
    }

    // Byte for byte, and nothing was executed from the content.
    for node in ["node1", "node2", "node3"] {
        let remote = lab.ssh_ok(node, &["sha256sum", "/srv/e2e/d1/nasty.bin"]);
        assert_eq!(remote.split_whitespace().next(), Some(sha256(NASTY).as_str()), "{node}");
        assert_eq!(lab.ssh_ok(node, &["stat", "-c", "%a %U", "/srv/e2e/d1/nasty.bin", "/srv/e2e/d3"]), "600 root\n750 root");
        assert!(!lab.ssh(node, &["test", "-e", "/tmp/pwned"]).status.success());
        let f7 = lab.ssh_ok(node, &["cat", "/srv/e2e/d2/f7.conf"]);
        assert!(f7.starts_with(&format!("file 7 of e2e on {node} (")), "{f7}");
    }

    // The plan right after apply is empty, and costs one connection and one command per host.
    let plan = cairn(dir, &["plan", "--detailed-exitcode", "--verbose"]);
    assert_eq!(plan.code, 0);
    assert!(plan.stdout.contains("No changes. 75 resource instances on 3 hosts match the spec."), "{}", plan.stdout);
    for node in ["node1", "node2", "node3"] {
        assert!(plan.stderr.contains(&format!("{node}: 1 connection(s), 1 remote command(s)")), "{}", plan.stderr);
    }

    // A hand edit on node2: the plan shows the diff for node2 only and exits 2.
    lab.ssh_ok("node2", &["sh", "-c", "echo 'edited by hand' > /srv/e2e/d2/f2.conf && chmod 0777 /srv/e2e/d4"]);
    let drift = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(drift.code, 2);
    assert!(drift.stdout.starts_with("node2 ("), "only node2 is listed:\n{}", drift.stdout);
    assert!(!drift.stdout.contains("node1 (") && !drift.stdout.contains("node3 ("));
    assert!(drift.stdout.contains("-edited by hand\n"), "{}", drift.stdout);
    assert!(drift.stdout.contains("+file 2 of e2e on node2"), "{}", drift.stdout);
    assert!(drift.stdout.contains("mode: 0777 → 0750"), "{}", drift.stdout);
    assert!(drift.stdout.contains("Plan: 0 to create, 2 to change, 0 to delete."), "{}", drift.stdout);

    let repair = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(repair.code, 0);
    assert!(repair.stdout.contains("Apply complete: 2 changed, 73 unchanged, 0 failed, 0 skipped."), "{}", repair.stdout);
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);

    // A converge of 20 file changes per host (a new variable in 19 templates, new bytes for the
    // 20th) costs a constant number of remote commands per host, not a few per file: the probe
    // (the lock, and the old contents for the diffs), the write, the manifest (the unlock).
    std::fs::write(dir.join("cairn.toml"), spec("").replace("cluster = \"e2e\"", "cluster = \"e2e-two\"")).unwrap();
    std::fs::write(dir.join("nasty.bin"), [NASTY, b" two"].concat()).unwrap();
    let converge = cairn(dir, &["apply", "--auto-approve", "--verbose"]);
    assert_eq!(converge.code, 0);
    assert!(converge.stdout.contains("Apply complete: 60 changed, 15 unchanged, 0 failed, 0 skipped."), "{}", converge.stdout);
    for node in ["node1", "node2", "node3"] {
        assert_eq!(converge.commands(node), 3, "{node}: remote commands for 20 file changes\n{}", converge.stderr);
        assert!(lab.ssh_ok(node, &["cat", "/srv/e2e/d2/f7.conf"]).starts_with(&format!("file 7 of e2e-two on {node} (")));
        let left = lab.ssh_ok(node, &["find", "/srv/e2e", "-name", ".cairn-tmp.*"]);
        assert!(left.is_empty(), "temp files left on {node}: {left}");
    }
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);

    // No ssh process of this run outlives it.
    let leftovers = Command::new("pgrep").args(["-f", "ssh.*cairn-"]).output().unwrap();
    let pids = String::from_utf8_lossy(&leftovers.stdout).trim().to_string();
    assert!(
        pids.is_empty()
            || !pids.lines().any(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default().contains(&lab.info.name)),
        "{pids}"
    );
}

#[test]
fn a_down_host_fails_alone_and_a_changed_host_key_is_refused() {
    let lab = Lab::up("e2e-failures", 3);
    let dir = lab.dir();
    write_spec(&lab, &spec(""));
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);

    // node3 is down: it fails with a clear error, the others complete.
    lab.stop_node("node3");
    write_spec(&lab, &spec("[file.added]\npath = \"/srv/e2e/added\"\ncontent = \"new\\n\"\n"));
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1);
    assert!(apply.stdout.contains("error: node3: cannot connect: "), "{}", apply.stdout);
    assert!(
        apply.stdout.contains("failed:  node3 (none of its 26 resources applied): host could not be read: node3: cannot connect"),
        "{}",
        apply.stdout
    );
    assert!(apply.stdout.contains("Apply failed: 2 changed, 50 unchanged, 6 failed, 20 skipped."), "{}", apply.stdout);
    for node in ["node1", "node2"] {
        assert_eq!(lab.ssh_ok(node, &["cat", "/srv/e2e/added"]), "new");
    }
    lab.start_node("node3");
    let catch_up = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(catch_up.code, 0);
    assert!(catch_up.stdout.contains("Apply complete: 1 changed, 77 unchanged"), "{}", catch_up.stdout);

    // node1 gets a new host key: strict checking refuses it, naming the host; nothing is applied there.
    lab.regenerate_host_key("node1");
    lab.ssh_ok("node2", &["rm", "/srv/e2e/added"]);
    let plan = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 1);
    assert!(plan.stdout.contains("node1: cannot connect: host key"), "{}", plan.stdout);
    assert!(plan.stdout.contains("node2 ("), "the other hosts are still planned:\n{}", plan.stdout);
}

#[test]
fn become_runs_through_sudo_for_a_non_root_user() {
    let lab = Lab::up("e2e-become", 1);
    let dir = lab.dir();
    // A deploy user with the lab key and passwordless sudo.
    lab.ssh_ok(
        "node1",
        &[
            "sh",
            "-c",
            "useradd -m -s /bin/bash deploy && mkdir -p ~deploy/.ssh && cp /root/.ssh/authorized_keys ~deploy/.ssh/ \
             && chown -R deploy: ~deploy/.ssh && echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy && chmod 0440 /etc/sudoers.d/deploy",
        ],
    );
    let lab_toml = std::fs::read_to_string(lab.hosts_file()).unwrap().replace("user = \"root\"", "user = \"deploy\"\nbecome = true");
    std::fs::write(dir.join("lab.toml"), lab_toml).unwrap();
    std::fs::write(
        dir.join("cairn.toml"),
        "include = [\"lab.toml\"]\n[dir.opt]\npath = \"/opt/demo\"\nmode = \"0700\"\n[file.conf]\npath = \"/opt/demo/app.conf\"\ncontent = \"x = 1\\n\"\nowner = \"root\"\ngroup = \"root\"\nmode = \"0640\"\n",
    )
    .unwrap();
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0);
    assert_eq!(lab.ssh_ok("node1", &["stat", "-c", "%a %U:%G", "/opt/demo", "/opt/demo/app.conf"]), "700 root:root\n640 root:root");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
}
