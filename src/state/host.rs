//! What cairn keeps on each host, under `/var/lib/cairn/` (0700, root only): the apply lock
//! (`lock`; the plan's probe can take it too, see `src/resource/probe.sh`) and, per spec, the manifest of what that spec manages there
//! (`manifests/<spec>.json`, format in [`super::manifest`]). The scripts are fixed (`unlock.sh`
//! and `manifest.sh` beside this file, compiled in with `include_str!`); values travel
//! as arguments or on stdin.

use serde::{Deserialize, Serialize};

use crate::transport::{Stdin, Transport, TransportError, argv, run_ok};

/// The lock file.
pub const LOCK_PATH: &str = "/var/lib/cairn/lock";

/// Who holds a host's apply lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Random id of this lock (release removes only its own lock).
    pub id: String,
    /// `user@machine` that runs cairn.
    pub holder: String,
    /// The machine's name (for the stale check).
    pub machine: String,
    /// cairn's process id on that machine.
    pub pid: u32,
    /// That process's start time (clock ticks after boot, `/proc/PID/stat` field 22): a pid
    /// reused by another process does not look alive.
    pub pid_start: u64,
    /// When the lock was taken, seconds since the epoch.
    pub since: u64,
    /// The spec being applied.
    pub spec: String,
}

impl LockHolder {
    /// A holder record for this process applying `spec`.
    pub fn for_this_process(spec: &str) -> Self {
        let machine = machine_name();
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".into());
        let pid = std::process::id();
        let since = now();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{machine}/{pid}/{nanos}"));
        let id = hex::encode(&digest[..8]);
        Self {
            id,
            holder: format!("{user}@{machine}"),
            machine,
            pid,
            pid_start: process_start(pid).unwrap_or(0),
            since,
            spec: spec.to_string(),
        }
    }

    /// Whether the run that took the lock is known to be gone: it ran on this machine and its
    /// process no longer exists (or the pid now belongs to another process). A lock taken on
    /// another machine is never assumed stale.
    pub fn is_stale(&self) -> bool {
        self.machine == machine_name() && process_start(self.pid) != Some(self.pid_start)
    }

    /// "root@ci (pid 4242, applying cairn.toml, for 35 s)".
    pub fn describe(&self) -> String {
        let age = now().saturating_sub(self.since);
        format!("{} (pid {}, applying {}, for {age} s)", self.holder, self.pid, self.spec)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// This machine's host name (as lock records name it).
pub fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// Field 22 of `/proc/PID/stat` (start time), or `None` when there is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Removes the lock if it is the one with id `$1` (or any lock when `$1` is empty: `unlock`).
/// Prints what was removed, `NONE` or `OTHER` (`unlock.sh`).
const UNLOCK_SCRIPT: &str = include_str!("unlock.sh");

/// Replaces the manifest `$1` with stdin atomically (0600 in a 0700 directory) once exactly `$2`
/// bytes arrived, or deletes it when `$2` is 0 (`manifest.sh`).
const MANIFEST_SCRIPT: &str = include_str!("manifest.sh");

/// Writes `manifest` to its host (deletes the file when it lists nothing). With `release`, the
/// run's last command there, it also releases the apply lock of that id, and says whether it
/// did (`false`: the lock is another run's, left in place; nothing released without `release`).
pub async fn write_manifest(
    transport: &dyn Transport,
    manifest: &super::manifest::Manifest,
    release: Option<&str>,
) -> Result<bool, TransportError> {
    let path = super::manifest::Manifest::path_for(&manifest.spec);
    let text = if manifest.resources.is_empty() { String::new() } else { manifest.to_text() };
    let mut args = argv(&["sh", "-c", MANIFEST_SCRIPT, "cairn-manifest", &path, &text.len().to_string()]);
    args.extend(release.map(str::to_string));
    let out = run_ok(transport, &args, Stdin::Bytes(text.as_bytes()), &format!("write {path}")).await?;
    Ok(release.is_some() && String::from_utf8_lossy(&out.stdout).trim() == "released")
}

/// The record a probe takes the lock with ([`crate::resource::ProbeRequest::lock`]): one line
/// of JSON.
pub fn lock_record(me: &LockHolder) -> String {
    serde_json::to_string(me).unwrap_or_default()
}

/// The outcome of one attempt to lock a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAttempt {
    /// The lock is ours.
    Acquired,
    /// Someone holds it (`None`: unreadable holder record).
    Held(Option<LockHolder>),
}

/// Releases `transport`'s host lock if it is `id`'s; with `id = None` removes whatever lock is
/// there (`cairn unlock`) and returns the holder it removed.
pub async fn unlock(transport: &dyn Transport, id: Option<&str>) -> Result<Option<LockHolder>, TransportError> {
    let args = argv(&["sh", "-c", UNLOCK_SCRIPT, "cairn-unlock", id.unwrap_or("")]);
    let out = run_ok(transport, &args, Stdin::Null, "release the apply lock").await?;
    Ok(serde_json::from_slice(&out.stdout).ok())
}

/// Reads the current lock holder without taking the lock.
pub async fn read_lock(transport: &dyn Transport) -> Result<Option<LockHolder>, TransportError> {
    let contents = crate::transport::read_files(transport, &[LOCK_PATH.to_string()]).await?;
    Ok(contents.into_iter().next().flatten().and_then(|b| serde_json::from_slice(&b).ok()))
}

/// What a host's lock file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No lock.
    Free,
    /// A lock and its holder.
    Held(LockHolder),
    /// A lock whose holder record cannot be read.
    Unreadable,
}

/// Reads the host's lock, telling a missing lock from one whose record is unreadable.
pub async fn lock_state(transport: &dyn Transport) -> Result<LockState, TransportError> {
    let contents = crate::transport::read_files(transport, &[LOCK_PATH.to_string()]).await?;
    Ok(match contents.into_iter().next().flatten() {
        None => LockState::Free,
        Some(bytes) => serde_json::from_slice(&bytes).map_or(LockState::Unreadable, LockState::Held),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_stale() {
        let me = LockHolder::for_this_process("cairn.toml");
        assert!(!me.is_stale(), "{me:?}");
        assert_eq!(me.id.len(), 16);
        let gone = LockHolder { pid: u32::MAX - 1, ..me.clone() };
        assert!(gone.is_stale());
        let reused = LockHolder { pid_start: me.pid_start + 1, ..me.clone() };
        assert!(reused.is_stale(), "a pid now used by another process");
        let elsewhere = LockHolder { machine: "another-machine".into(), pid: u32::MAX - 1, ..me };
        assert!(!elsewhere.is_stale(), "a lock from another machine is never assumed stale");
    }
}
