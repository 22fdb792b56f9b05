//! One lab node: its root filesystem (a copy of the cached one with its hostname, static address,
//! SSH host key and the lab's authorised key written in), booting it as a detached
//! `systemd-nspawn --boot` container on the lab's bridge, waiting for its sshd, and stopping it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cmd;
use super::error::LabError;
use super::process;
use super::state::{NodeState, write_atomic};

/// How long an orderly container shutdown may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Paths of one node inside the lab's state directory.
#[derive(Debug, Clone)]
pub(crate) struct NodePaths {
    /// `<lab dir>/<node>`.
    pub dir: PathBuf,
    /// `<lab dir>/<node>/rootfs`, the container's root.
    pub rootfs: PathBuf,
    /// `<lab dir>/<node>/nspawn.log`, nspawn's and the container console's output.
    pub log: PathBuf,
}

impl NodePaths {
    pub(crate) fn new(lab_dir: &Path, node: &str) -> NodePaths {
        let dir = lab_dir.join(node);
        NodePaths { rootfs: dir.join("rootfs"), log: dir.join("nspawn.log"), dir }
    }
}

/// Makes the node's root filesystem from the cached one and writes its identity into it. Returns
/// the public host key line (`ssh-ed25519 AAAA… root@node`).
pub(crate) fn prepare(
    cache: &Path,
    paths: &NodePaths,
    node: &NodeState,
    all: &[NodeState],
    prefix_len: u8,
    authorized_key: &str,
) -> Result<String, LabError> {
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir).map_err(LabError::io("remove", &paths.dir))?;
    }
    fs::create_dir_all(&paths.dir).map_err(LabError::io("create", &paths.dir))?;
    let src = cache.to_string_lossy().into_owned();
    let dst = paths.rootfs.to_string_lossy().into_owned();
    cmd::run(&["cp", "-a", "--reflink=auto", src.as_str(), dst.as_str()])?;
    let root = &paths.rootfs;
    write(root, "etc/hostname", &format!("{}\n", node.name), 0o644)?;
    let mut hosts = String::from("# Written by cairn lab.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for other in all {
        hosts.push_str(&format!("{}\t{}\n", other.address, other.name));
    }
    write(root, "etc/hosts", &hosts, 0o644)?;
    let network = format!(
        "# Written by cairn lab: the node's static address on the lab bridge; no gateway, so traffic stays on the lab network.\n[Match]\nName=host0\n\n[Network]\nAddress={}/{prefix_len}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        node.address
    );
    fs::create_dir_all(root.join("etc/systemd/network")).map_err(LabError::io("create", root.join("etc/systemd/network")))?;
    write(root, "etc/systemd/network/10-cairn-lab-host0.network", &network, 0o644)?;
    let host_key = new_host_key(root, &node.name)?;
    let ssh_dir = root.join("root/.ssh");
    fs::create_dir_all(&ssh_dir).map_err(LabError::io("create", &ssh_dir))?;
    set_mode(&ssh_dir, 0o700)?;
    write(root, "root/.ssh/authorized_keys", &format!("{}\n", authorized_key.trim()), 0o600)?;
    Ok(host_key)
}

/// Replaces the node's SSH host key with a fresh ed25519 key and returns the public line.
pub(crate) fn new_host_key(root: &Path, node: &str) -> Result<String, LabError> {
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    let public = root.join("etc/ssh/ssh_host_ed25519_key.pub");
    super::rootfs::remove_if_exists(&key)?;
    super::rootfs::remove_if_exists(&public)?;
    let key_arg = key.to_string_lossy().into_owned();
    let comment = format!("root@{node}");
    cmd::run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment.as_str(), "-f", key_arg.as_str()])?;
    let line = fs::read_to_string(&public).map_err(LabError::io("read", &public))?;
    Ok(line.trim().to_string())
}

fn write(root: &Path, rel: &str, content: &str, mode: u32) -> Result<(), LabError> {
    let path = root.join(rel);
    // Never follow a symlink the image may have at this path.
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&path).map_err(LabError::io("remove", &path))?;
    }
    write_atomic(&path, content.as_bytes(), mode)?;
    set_mode(&path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(LabError::io("chmod", path))
}

/// The systemd-nspawn argv for the node (without the `setsid` in front).
pub(crate) fn nspawn_argv(paths: &NodePaths, node: &NodeState, bridge: &str) -> Vec<String> {
    vec![
        "systemd-nspawn".to_string(),
        "--boot".to_string(),
        format!("--directory={}", paths.rootfs.display()),
        format!("--machine={}", node.machine),
        format!("--hostname={}", node.name),
        format!("--uuid={}", node.uuid),
        // The host's PID 1 need not be systemd: no machined registration, no scope unit.
        "--register=no".to_string(),
        "--keep-unit".to_string(),
        format!("--network-bridge={bridge}"),
        "--resolv-conf=off".to_string(),
        "--timezone=off".to_string(),
        "--link-journal=no".to_string(),
        "--console=read-only".to_string(),
    ]
}

/// Boots the node's container, detached (own session, stdio to its log), and returns the PID of
/// its systemd-nspawn.
pub(crate) fn start(paths: &NodePaths, node: &NodeState, bridge: &str) -> Result<u32, LabError> {
    if let Some(&pid) = process::nspawn_pids(&paths.rootfs).first() {
        return Ok(pid);
    }
    let mut log = fs::OpenOptions::new().create(true).append(true).open(&paths.log).map_err(LabError::io("open", &paths.log))?;
    let argv = nspawn_argv(paths, node, bridge);
    writeln!(log, "==> {}", cmd::display(&argv)).map_err(LabError::io("write", &paths.log))?;
    let log_err = log.try_clone().map_err(LabError::io("open", &paths.log))?;
    // `setsid --fork`: nspawn runs in its own session, is not our child (no zombie, survives us).
    let status = Command::new("setsid")
        .arg("--fork")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .status()
        .map_err(|e| LabError::Command { command: cmd::display(&argv), detail: format!("cannot start: {e}") })?;
    if !status.success() {
        return Err(LabError::NodeStart {
            node: node.name.clone(),
            detail: format!("setsid exited with {status}"),
            log: paths.log.clone(),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(&pid) = process::nspawn_pids(&paths.rootfs).first() {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            return Err(LabError::NodeStart {
                node: node.name.clone(),
                detail: format!("systemd-nspawn exited at once: {}", log_tail(&paths.log)),
                log: paths.log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    fs::read(path).map(|raw| cmd::last_lines(&String::from_utf8_lossy(&raw), 8)).unwrap_or_default()
}

/// Stops these nodes: SIGTERM to each one's nspawn (it powers the container off), a wait, then
/// SIGKILL to whatever is left, including containers whose nspawn already died; then removes
/// their host-side veths if still there.
pub(crate) fn stop_all(nodes: &[(NodePaths, NodeState)]) -> Result<(), LabError> {
    let mut nspawns = Vec::new();
    for (paths, node) in nodes {
        let mut pids = process::nspawn_pids(&paths.rootfs);
        if let Some(pid) = node.pid.filter(|&p| process::is_our_nspawn(p, &paths.rootfs) && !pids.contains(&p)) {
            pids.push(pid);
        }
        for pid in pids {
            process::signal(pid, "TERM")?;
            nspawns.push(pid);
        }
    }
    let left = process::wait_gone(&nspawns, STOP_TIMEOUT);
    let mut killed = Vec::new();
    for pid in left {
        process::signal(pid, "KILL")?;
        killed.push(pid);
    }
    for (_, node) in nodes {
        for pid in process::container_inits(&node.uuid) {
            process::signal(pid, "KILL")?;
            killed.push(pid);
        }
    }
    process::wait_gone(&killed, Duration::from_secs(10));
    for (_, node) in nodes {
        super::net::delete_veth(&node.veth)?;
        // nspawn leaves its per-machine propagation directory behind when /run is not a tmpfs.
        let propagate = Path::new("/run/systemd/nspawn/propagate").join(&node.machine);
        if propagate.is_dir() {
            fs::remove_dir_all(&propagate).map_err(LabError::io("remove", &propagate))?;
        }
    }
    Ok(())
}

/// The ssh argv the lab uses to reach a node with its own key and known_hosts, strictly.
pub(crate) fn ssh_argv(key: &Path, known_hosts: &Path, address: &str, connect_timeout: u32) -> Vec<String> {
    vec![
        "ssh".to_string(),
        "-F".to_string(),
        "/dev/null".to_string(),
        "-i".to_string(),
        key.display().to_string(),
        "-o".to_string(),
        "IdentitiesOnly=yes".to_string(),
        "-o".to_string(),
        "BatchMode=yes".to_string(),
        "-o".to_string(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".to_string(),
        "StrictHostKeyChecking=yes".to_string(),
        "-o".to_string(),
        format!("ConnectTimeout={connect_timeout}"),
        "-o".to_string(),
        "LogLevel=ERROR".to_string(),
        format!("root@{address}"),
    ]
}

/// Waits until every node answers `ssh … true`, or the timeout passes.
pub(crate) fn wait_ssh(
    nodes: &[(NodePaths, NodeState)],
    key: &Path,
    known_hosts: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pending: Vec<&(NodePaths, NodeState)> = nodes.iter().collect();
    let mut last_error = String::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for entry in pending {
            let (paths, node) = entry;
            if !node.pid.is_some_and(|p| process::is_our_nspawn(p, &paths.rootfs)) {
                return Err(LabError::NodeStart {
                    node: node.name.clone(),
                    detail: format!("its container stopped while booting: {}", log_tail(&paths.log)),
                    log: paths.log.clone(),
                });
            }
            let mut argv = ssh_argv(key, known_hosts, &node.address, 2);
            argv.push("true".to_string());
            let out = cmd::output(&argv)?;
            if out.status.success() {
                progress(&format!("{} answers over SSH at {} ({:.1} s)", node.name, node.address, start.elapsed().as_secs_f64()));
            } else {
                last_error = String::from_utf8_lossy(&out.stderr).trim().to_string();
                still.push(entry);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let (paths, node) = pending[0];
            let detail = if last_error.is_empty() { "no answer".to_string() } else { last_error };
            return Err(LabError::SshTimeout {
                node: node.name.clone(),
                address: node.address.clone(),
                secs: timeout.as_secs(),
                detail,
                log: paths.log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}
