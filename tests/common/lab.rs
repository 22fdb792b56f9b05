//! Test harness for end-to-end tests on real hosts: [`Lab::up`] boots a lab with a name unique to
//! the test, writes its `lab.toml` into a temp dir, and `Drop` takes it down again (also when the
//! test panics). At most [`BOOT_SLOTS`] labs boot at the same time across all test threads and
//! processes (a file lock per slot), so a parallel test run does not boot 20 containers at once.
//!
//! A lab that cannot start (not root, no systemd-nspawn, no debootstrap) makes [`Lab::up`] panic
//! with the reason: tests never skip silently. [`Lab::up_or_skip`] skips loudly instead, but only
//! when `CI` is unset.
#![allow(dead_code, clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, clippy::incompatible_msrv)]

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cairn::lab::{LabError, LabInfo, UpOptions};

/// How many labs may boot at once (override with `CAIRN_LAB_BOOT_SLOTS`).
pub const BOOT_SLOTS: u32 = 2;

/// A running lab owned by one test.
pub struct Lab {
    /// What `up` returned.
    pub info: LabInfo,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Boots a lab of `hosts` hosts for the test `test_name`; panics with the reason if it cannot.
    pub fn up(test_name: &str, hosts: u32) -> Lab {
        match Lab::try_up(test_name, hosts) {
            Ok(lab) => lab,
            Err(err) => panic!("cannot start a lab for test `{test_name}`: {err}"),
        }
    }

    /// Like [`Lab::up`], but when `CI` is unset and the machine cannot run labs at all (not
    /// root, programs missing) it prints why and returns `None`.
    pub fn up_or_skip(test_name: &str, hosts: u32) -> Option<Lab> {
        match Lab::try_up(test_name, hosts) {
            Ok(lab) => Some(lab),
            Err(err @ (LabError::NotRoot | LabError::MissingProgram { .. })) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED {test_name}: cannot start a lab: {err}");
                None
            }
            Err(err) => panic!("cannot start a lab for test `{test_name}`: {err}"),
        }
    }

    fn try_up(test_name: &str, hosts: u32) -> Result<Lab, LabError> {
        cairn::lab::check_prerequisites()?;
        let name = unique_name(test_name);
        let dir = tempfile::Builder::new().prefix("cairn-lab-test-").tempdir().expect("temp dir");
        let opts = UpOptions { name: name.clone(), hosts, hosts_file: dir.path().join("lab.toml") };
        let slot = BootSlot::take();
        let mut log = |m: &str| eprintln!("[lab {name}] {m}");
        let result = cairn::lab::up(&opts, &mut log);
        drop(slot);
        match result {
            Ok(info) => Ok(Lab { info, dir }),
            Err(err) => {
                let _ = cairn::lab::down(&name, &mut |_| {});
                Err(err)
            }
        }
    }

    /// The hosts file (`lab.toml`) in the test's temp dir.
    pub fn hosts_file(&self) -> &Path {
        &self.info.hosts_file
    }

    /// The test's temp dir (holds `lab.toml`; put specs here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `argv` on `node` as root over SSH (lab key, strict host keys) and returns the output.
    pub fn ssh(&self, node: &str, argv: &[&str]) -> Output {
        let ssh = self.info.ssh_argv(node, argv).unwrap_or_else(|| panic!("lab {} has no node {node}", self.info.name));
        Command::new(&ssh[0]).args(&ssh[1..]).output().expect("run ssh")
    }

    /// Runs `argv` on `node` and returns its stdout, trimmed; panics with stderr if it fails.
    pub fn ssh_ok(&self, node: &str, argv: &[&str]) -> String {
        let out = self.ssh(node, argv);
        assert!(out.status.success(), "`{}` on {node} failed ({}): {}", argv.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops a node (simulates a dead host).
    pub fn stop_node(&self, node: &str) {
        cairn::lab::stop_node(&self.info.name, node).unwrap_or_else(|e| panic!("stop {node}: {e}"));
    }

    /// Boots a stopped node again and waits for its sshd.
    pub fn start_node(&self, node: &str) {
        cairn::lab::start_node(&self.info.name, node).unwrap_or_else(|e| panic!("start {node}: {e}"));
    }

    /// Gives a node a new SSH host key that the lab's known_hosts does not know.
    pub fn regenerate_host_key(&self, node: &str) -> String {
        cairn::lab::regenerate_host_key(&self.info.name, node).unwrap_or_else(|e| panic!("new host key for {node}: {e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(err) = cairn::lab::down(&self.info.name, &mut |_| {}) {
            eprintln!("taking lab {} down failed: {err}", self.info.name);
        }
    }
}

/// A lab name unique to this test run: the test's name (shortened) plus a counter and the PID.
pub fn unique_name(test_name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut base: String =
        test_name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(16).collect();
    base = base.trim_matches('-').to_string();
    if base.is_empty() {
        base.push('t');
    }
    format!("{base}-{}-{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// One of the machine-wide boot slots, held while a lab boots.
struct BootSlot {
    _file: File,
}

impl BootSlot {
    fn take() -> BootSlot {
        let slots = std::env::var("CAIRN_LAB_BOOT_SLOTS").ok().and_then(|s| s.parse().ok()).filter(|&n: &u32| n > 0).unwrap_or(BOOT_SLOTS);
        let dir = std::env::temp_dir().join("cairn-lab-test-slots");
        std::fs::create_dir_all(&dir).expect("slot dir");
        let files: Vec<File> = (0..slots)
            .map(|i| {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(dir.join(format!("slot-{i}.lock")))
                    .expect("open slot lock")
            })
            .collect();
        loop {
            for file in &files {
                match file.try_lock() {
                    Ok(()) => return BootSlot { _file: file.try_clone().expect("clone slot lock") },
                    Err(TryLockError::WouldBlock) => {}
                    Err(TryLockError::Error(e)) => panic!("locking a lab boot slot: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
