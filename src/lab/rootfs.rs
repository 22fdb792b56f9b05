//! The cached Debian root filesystem every lab node is copied from: built once with
//! `debootstrap --variant=minbase` (debootstrap's default mirror), prepared for container use
//! (no machine id, no SSH host keys, systemd-networkd on, periodic apt jobs off), built in a
//! temporary directory and renamed into place only when complete, with a file lock so concurrent
//! labs build it once.

use std::fs;
use std::path::{Path, PathBuf};

use super::cmd;
use super::error::LabError;

/// The Debian release the lab runs.
pub const SUITE: &str = "bookworm";

/// Bumped whenever the preparation below changes, so old caches are not reused.
const CACHE_VERSION: u32 = 1;

/// Packages installed on top of minbase.
pub const PACKAGES: &[&str] =
    &["systemd", "systemd-sysv", "dbus", "openssh-server", "nftables", "iproute2", "sudo", "ca-certificates", "procps", "openssl", "curl"];

/// The sshd settings every node gets.
const SSHD_CONFIG: &str = "\
# Written by cairn lab.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
";

/// The directory the cached root filesystem lives in, e.g. `/var/cache/cairn/lab/rootfs-bookworm-v1`.
pub fn cached_rootfs(cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("rootfs-{SUITE}-v{CACHE_VERSION}"))
}

/// Returns the cached root filesystem, building it first if it is missing. Holds an exclusive lock
/// on `<cache_dir>/rootfs.lock` while checking and building.
pub(crate) fn ensure(cache_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, LabError> {
    let target = cached_rootfs(cache_dir);
    if is_complete(&target) {
        return Ok(target);
    }
    fs::create_dir_all(cache_dir).map_err(LabError::io("create", cache_dir))?;
    let lock_path = cache_dir.join("rootfs.lock");
    let lock = super::lock::Lock::exclusive(&lock_path, || progress("waiting for another lab to finish building the root filesystem"))?;
    if is_complete(&target) {
        drop(lock);
        return Ok(target);
    }
    let tmp = cache_dir.join(format!("rootfs-{SUITE}-v{CACHE_VERSION}.tmp"));
    if tmp.exists() {
        progress(&format!("removing an interrupted build in {}", tmp.display()));
        fs::remove_dir_all(&tmp).map_err(LabError::io("remove", &tmp))?;
    }
    progress(&format!("building the Debian {SUITE} root filesystem with debootstrap (once; a few minutes) in {}", target.display()));
    let include = format!("--include={}", PACKAGES.join(","));
    let tmp_arg = tmp.to_string_lossy().into_owned();
    let argv = ["debootstrap", "--variant=minbase", include.as_str(), SUITE, tmp_arg.as_str()];
    let out = cmd::output(&argv)?;
    if !out.status.success() {
        let mut err = cmd::failed(&argv, &out);
        let log = tmp.join("debootstrap/debootstrap.log");
        if let (LabError::Command { detail, .. }, Ok(text)) = (&mut err, fs::read_to_string(&log)) {
            detail.push_str(&format!("\nlast lines of {}:\n{}", log.display(), cmd::last_lines(&text, 15)));
        }
        return Err(err);
    }
    progress("preparing the root filesystem for containers");
    prepare(&tmp)?;
    fs::write(tmp.join(".cairn-lab-complete"), format!("{SUITE} v{CACHE_VERSION}\n")).map_err(LabError::io("write", &tmp))?;
    fs::rename(&tmp, &target).map_err(LabError::io("rename into place", &target))?;
    drop(lock);
    Ok(target)
}

fn is_complete(rootfs: &Path) -> bool {
    rootfs.join(".cairn-lab-complete").is_file()
}

/// One-time changes to a fresh debootstrap tree so copies of it boot as distinct lab nodes.
fn prepare(root: &Path) -> Result<(), LabError> {
    // An empty machine-id makes systemd use the container's --uuid, distinct per node.
    let machine_id = root.join("etc/machine-id");
    fs::write(&machine_id, "").map_err(LabError::io("write", &machine_id))?;
    remove_if_exists(&root.join("var/lib/dbus/machine-id"))?;
    // Host keys are made per node, so the lab can write known_hosts before booting.
    let ssh_dir = root.join("etc/ssh");
    for entry in fs::read_dir(&ssh_dir).map_err(LabError::io("read", &ssh_dir))? {
        let entry = entry.map_err(LabError::io("read", &ssh_dir))?;
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            remove_if_exists(&entry.path())?;
        }
    }
    let conf_dir = root.join("etc/ssh/sshd_config.d");
    fs::create_dir_all(&conf_dir).map_err(LabError::io("create", &conf_dir))?;
    let conf = conf_dir.join("cairn-lab.conf");
    fs::write(&conf, SSHD_CONFIG).map_err(LabError::io("write", &conf))?;
    let root_arg = format!("--root={}", root.display());
    cmd::run(&["systemctl", root_arg.as_str(), "enable", "systemd-networkd.service"])?;
    cmd::run(&["systemctl", root_arg.as_str(), "mask", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_reap.service"])?;
    Ok(())
}

/// Removes a file, ignoring one that is not there.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), LabError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LabError::io("remove", path)(e)),
        _ => Ok(()),
    }
}
