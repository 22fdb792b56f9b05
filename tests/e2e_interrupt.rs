//! Ctrl-C during `cairn apply` on a lab host: cairn stops with status 130 and leaves no ssh
//! process (master or client) behind.
#![allow(clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/lab.rs"]
mod lab;

#[path = "common/run.rs"]
mod run;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::Lab;

/// Live ssh processes whose command line mentions `needle`.
fn ssh_processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("ssh") && cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn ctrl_c_during_apply_closes_every_ssh_connection() {
    let lab = Lab::up("e2e-interrupt", 1);
    let address = lab.info.nodes[0].address.to_string();
    std::fs::write(
        lab.dir().join("cairn.toml"),
        "include = [\"lab.toml\"]\n[file.first]\npath = \"/srv/first\"\ncontent = \"x\\n\"\n\
         [check.slow]\ncommand = \"sleep 60\"\ntimeout = 120\nafter = [\"file.first\"]\n",
    )
    .unwrap();
    let child = run::spawn(lab.dir(), &["apply", "--auto-approve"], true);
    // Wait until the slow check is running on the host, then interrupt.
    let started = Instant::now();
    while lab.ssh(&lab.info.nodes[0].name, &["pgrep", "-f", "sleep 60"]).stdout.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the check never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!ssh_processes_mentioning(&address).is_empty(), "cairn should hold an ssh master to {address} now");
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap().code(), Some(0));
    let interrupted = Instant::now();
    let out = run::wait(child, &["apply", "--auto-approve"]);
    assert!(interrupted.elapsed() < Duration::from_secs(15), "cairn took {:?} to stop", interrupted.elapsed());
    assert_eq!(out.code, 130, "{}", out.all());
    assert!(out.stderr.contains("Interrupted; closing connections."));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = ssh_processes_mentioning(&address);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "ssh processes left after Ctrl-C: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
