//! Finding and signalling the lab's own processes, by looking at `/proc`: a node's
//! `systemd-nspawn` is recognised by its `--directory=<node rootfs>` argument, and a container
//! whose nspawn died is recognised by its init's `container_uuid=` environment entry. A PID is
//! never signalled on the strength of a PID file alone.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::cmd;
use super::error::LabError;

/// Whether `pid` is a live (not zombie) process.
pub(crate) fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| raw.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default()
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Whether `pid` is a live `systemd-nspawn` running the container in `rootfs`.
pub(crate) fn is_our_nspawn(pid: u32, rootfs: &Path) -> bool {
    let argv = cmdline(pid);
    let want = format!("--directory={}", rootfs.display());
    argv.first().is_some_and(|a0| a0.rsplit('/').next() == Some("systemd-nspawn")) && argv.contains(&want) && is_alive(pid)
}

/// The live `systemd-nspawn` processes running the container in `rootfs`.
pub(crate) fn nspawn_pids(rootfs: &Path) -> Vec<u32> {
    all_pids().into_iter().filter(|&pid| is_our_nspawn(pid, rootfs)).collect()
}

/// Live processes started by nspawn with `container_uuid=<uuid>` in their environment: the init of
/// that container (killing it ends the container).
pub(crate) fn container_inits(uuid: &str) -> Vec<u32> {
    let needle = format!("container_uuid={uuid}");
    all_pids()
        .into_iter()
        .filter(|&pid| fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == needle.as_bytes())))
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// Sends `signal` (e.g. `TERM`) to `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: u32, signal: &str) -> Result<(), LabError> {
    let pid_arg = pid.to_string();
    let argv = ["kill", "-s", signal, pid_arg.as_str()];
    let out = cmd::output(&argv)?;
    if out.status.success() || !is_alive(pid) { Ok(()) } else { Err(cmd::failed(&argv, &out)) }
}

/// Waits until none of `pids` is alive; returns those still alive at the deadline.
pub(crate) fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether this process runs with effective UID 0 (read from `/proc/self/status`).
pub(crate) fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else { return false };
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1)).is_some_and(|euid| euid == "0")
}
