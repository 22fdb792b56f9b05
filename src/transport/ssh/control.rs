//! Where control sockets live ([`ControlDir`]) and the process-wide registry of live ssh masters
//! and control dirs, so that they can all be closed when cairn is interrupted
//! ([`install_ctrl_c_cleanup`], [`close_all_masters`]).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

/// Live masters (control socket paths) and control dirs, by registration id.
#[derive(Debug, Default)]
struct Registry {
    next: u64,
    masters: BTreeMap<u64, PathBuf>,
    dirs: BTreeMap<u64, PathBuf>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// The registry, even if a thread panicked while holding it (its maps stay consistent).
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn register(pick: impl FnOnce(&mut Registry) -> &mut BTreeMap<u64, PathBuf>, path: PathBuf) -> u64 {
    let mut reg = registry();
    reg.next += 1;
    let id = reg.next;
    pick(&mut reg).insert(id, path);
    id
}

/// A private directory for ssh control sockets: `/tmp/cairn-<pid>-<random>`, mode 0700, removed
/// (with whatever is left inside) on drop. Kept short on purpose: a unix socket path must fit in
/// 108 bytes and the openssh crate and ssh append about 50 characters to it.
///
/// A cairn killed with SIGKILL never drops its directory; the next one to create a directory in
/// the same place removes those whose process is gone (see [`sweep_abandoned`]).
///
/// Create one per run and pass it to every [`super::SshTransport::connect`]; keep it alive until
/// the transports are closed.
#[derive(Debug)]
pub struct ControlDir {
    path: PathBuf,
    id: u64,
}

impl ControlDir {
    /// Creates a fresh control directory under `/tmp`.
    pub fn new() -> std::io::Result<ControlDir> {
        ControlDir::new_in(Path::new("/tmp"))
    }

    /// Creates a fresh control directory under `parent` (which should be short).
    pub fn new_in(parent: &Path) -> std::io::Result<ControlDir> {
        let mut last = None;
        for _ in 0..16 {
            // RandomState is seeded randomly per process and per instance: enough for a name
            // nobody can predict; `create_dir` (not `create_dir_all`) refuses an existing path.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            let name = format!("cairn-{}-{:012x}", std::process::id(), h.finish() & 0xffff_ffff_ffff);
            let path = parent.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    sweep_abandoned(parent, &path);
                    let id = register(|r| &mut r.dirs, path.clone());
                    return Ok(ControlDir { path, id });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free control directory name")))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the control directories in `parent` that killed runs left: named
/// `cairn-<pid>-<random>` for a process that no longer exists, and owned by the same user as
/// `ours` (just created). Their masters, if still idling, exit on their own
/// ([`super::MASTER_IDLE_SECS`]). A pid reused by another process keeps its directory a while
/// longer, which is harmless.
fn sweep_abandoned(parent: &Path, ours: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::metadata(ours).map(|m| m.uid()) else { return };
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("cairn-")).and_then(|rest| rest.split_once('-')).map(|(pid, _)| pid)
        else {
            continue;
        };
        let gone = pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        let mine = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == me);
        if gone && mine {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        registry().dirs.remove(&self.id);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A live master in the registry; unregisters on drop.
#[derive(Debug)]
pub(super) struct MasterRegistration(u64);

impl MasterRegistration {
    /// Registers the master listening on control socket `ctl`.
    pub(super) fn new(ctl: PathBuf) -> MasterRegistration {
        MasterRegistration(register(|r| &mut r.masters, ctl))
    }
}

impl Drop for MasterRegistration {
    fn drop(&mut self) {
        registry().masters.remove(&self.0);
    }
}

/// How long one `ssh -O exit` may take before we give up on that master.
const EXIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Tells every live ssh master of this process to exit now (`ssh -O exit`, which also ends
/// commands still running over it) and removes every control directory. Returns how many
/// masters acknowledged. Transports whose master was closed this way fail further commands.
///
/// Meant for interruption (see [`install_ctrl_c_cleanup`]); a normal run closes each transport
/// with [`crate::transport::Transport::close`] instead.
pub async fn close_all_masters() -> usize {
    let (masters, dirs): (Vec<PathBuf>, Vec<PathBuf>) = {
        let reg = registry();
        (reg.masters.values().cloned().collect(), reg.dirs.values().cloned().collect())
    };
    // All at once: an interrupted run should not take a round trip per host to stop.
    let mut exiting = tokio::task::JoinSet::new();
    for ctl in masters {
        exiting.spawn(ask_master_to_exit(ctl));
    }
    let mut closed = 0;
    while let Some(done) = exiting.join_next().await {
        closed += usize::from(done.unwrap_or(false));
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(&dir);
    }
    closed
}

/// `ssh -O exit` to the master at `ctl`; `true` when it acknowledged.
async fn ask_master_to_exit(ctl: PathBuf) -> bool {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-F")
        .arg("/dev/null")
        .arg("-S")
        .arg(&ctl)
        .args(["-O", "exit", "cairn-master"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(EXIT_REQUEST_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => return true,
        Ok(Ok(out)) => tracing::warn!(
            socket = %ctl.display(),
            "closing ssh master failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(Err(e)) => tracing::warn!(socket = %ctl.display(), "closing ssh master failed: {e}"),
        Err(_) => tracing::warn!(socket = %ctl.display(), "closing ssh master timed out"),
    }
    false
}

/// Installs a Ctrl-C (SIGINT) handler that closes every ssh master ([`close_all_masters`]) and
/// then calls `then` — typically `|| std::process::exit(130)`, since once this handler is
/// installed Ctrl-C no longer ends the process by itself.
///
/// Call it once, from inside the tokio runtime, before connecting (the CLI does this at start).
/// Abort the returned handle to uninstall the cleanup (the signal stays caught by tokio).
///
/// ```no_run
/// # async fn cli() {
/// let _cleanup = cairn::transport::ssh::install_ctrl_c_cleanup(|| std::process::exit(130));
/// // ... connect, plan, apply, close ...
/// # }
/// ```
///
/// Masters are also bounded without this: they exit on their own after
/// [`super::MASTER_IDLE_SECS`] seconds without cairn, even if cairn was killed with SIGKILL.
pub fn install_ctrl_c_cleanup<F>(then: F) -> tokio::task::JoinHandle<()>
where
    F: FnOnce() + Send + 'static,
{
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let closed = close_all_masters().await;
            tracing::debug!(closed, "interrupted: ssh masters closed");
            then();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_control_dir_sweeps_those_of_processes_that_are_gone() {
        let parent = tempfile::tempdir().unwrap();
        // Above the kernel's largest pid (2^22): no such process.
        let dead = parent.path().join("cairn-4999999-0123456789ab");
        std::fs::create_dir_all(dead.join(".ssh-connection0sKF2v")).unwrap();
        let alive = parent.path().join(format!("cairn-{}-ba9876543210", std::process::id()));
        std::fs::create_dir(&alive).unwrap();
        let other = parent.path().join("cairn-flaky");
        std::fs::write(&other, "2").unwrap();
        let dir = ControlDir::new_in(parent.path()).unwrap();
        assert!(!dead.exists(), "the dead run's directory is removed");
        assert!(alive.exists() && other.exists(), "a live run's directory and other files stay");
        let name = dir.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("cairn-{}-", std::process::id())), "{name}");
        drop(dir);
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 2);
    }
}
