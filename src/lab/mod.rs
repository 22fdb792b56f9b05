//! `cairn lab`: local Debian test hosts for trying specs and for the end-to-end test suite, like
//! Molecule or kind for cairn.
//!
//! A lab owns, and only ever touches: its state directory (`/var/lib/cairn/lab/<name>/`: SSH key,
//! known_hosts, `lab.json` recording what it made, one directory per node with the container's
//! root filesystem and nspawn log), one bridge (`cl-…`) with a private /24 that overlapped
//! nothing on the machine when it was picked, and per node a `systemd-nspawn --boot` container
//! (Debian bookworm with systemd, sshd and nftables) whose host-side veth hangs off that bridge.
//! The root filesystem is built once with debootstrap and cached (`/var/cache/cairn/lab/`).
//!
//! Everything here is synchronous and never prints: progress goes to a callback, failures are
//! [`LabError`]s that say what to do. Needs root, `systemd-nspawn` and `debootstrap`.
//! `CAIRN_LAB_STATE_DIR` and `CAIRN_LAB_CACHE_DIR` move the state and cache directories.

mod cmd;
mod error;
mod limits;
mod lock;
mod net;
mod node;
mod process;
mod rootfs;
mod state;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use error::LabError;
pub use rootfs::{PACKAGES, SUITE};

use node::NodePaths;
use state::{LabState, NodeState};

/// The most hosts one lab may have.
pub const MAX_HOSTS: u32 = 50;

/// The longest lab name.
pub const MAX_NAME_LEN: usize = 32;

/// How many node root filesystems are copied at once.
const PARALLEL_COPIES: usize = 2;

/// The lab name used when none is given.
pub const DEFAULT_NAME: &str = "default";

/// What `cairn lab up` makes.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The lab's name: lowercase letters, digits and `-`, at most [`MAX_NAME_LEN`] characters.
    pub name: String,
    /// How many hosts (1..=[`MAX_HOSTS`]).
    pub hosts: u32,
    /// Where to write the hosts file (a cairn spec fragment with `[ssh]` and `[hosts.*]`).
    pub hosts_file: PathBuf,
}

/// A running lab, as `up` left it.
#[derive(Debug, Clone)]
pub struct LabInfo {
    /// The lab's name.
    pub name: String,
    /// The lab's state directory.
    pub state_dir: PathBuf,
    /// The bridge the nodes hang off.
    pub bridge: String,
    /// The lab's subnet, e.g. `10.231.7.0/24`.
    pub subnet: String,
    /// The host's own address on the bridge.
    pub host_address: Ipv4Addr,
    /// The nodes, in order (`node1`, `node2`, …).
    pub nodes: Vec<NodeInfo>,
    /// The private SSH key authorised for root on every node.
    pub key_path: PathBuf,
    /// The known_hosts file with every node's host key.
    pub known_hosts_path: PathBuf,
    /// The hosts file written for cairn (absolute).
    pub hosts_file: PathBuf,
}

/// One node of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name, which is also its hostname.
    pub name: String,
    /// Its address on the lab bridge.
    pub address: Ipv4Addr,
}

impl LabInfo {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// An argv that runs `remote` (quoted for the remote shell) as root on `node` with the lab's
    /// key and strict host key checking against the lab's known_hosts; `None` for an unknown node.
    pub fn ssh_argv(&self, node: &str, remote: &[&str]) -> Option<Vec<String>> {
        let address = self.node(node)?.address.to_string();
        let mut argv = node::ssh_argv(&self.key_path, &self.known_hosts_path, &address, 5);
        if !remote.is_empty() {
            argv.push("--".to_string());
            argv.push(crate::transport::quote_argv(remote));
        }
        Some(argv)
    }
}

/// What `cairn lab status` reports.
#[derive(Debug, Clone)]
pub struct LabStatus {
    /// The lab's name.
    pub name: String,
    /// The lab's state directory.
    pub state_dir: PathBuf,
    /// The lab's bridge.
    pub bridge: String,
    /// Whether the bridge exists.
    pub bridge_present: bool,
    /// The lab's subnet.
    pub subnet: String,
    /// The hosts file `up` wrote, if it got that far.
    pub hosts_file: Option<PathBuf>,
    /// The nodes, in order.
    pub nodes: Vec<NodeStatus>,
}

/// One node's state.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// The PID of its systemd-nspawn, when running.
    pub pid: Option<u32>,
    /// Whether its container is running.
    pub running: bool,
}

/// The directory holding every lab's state (`/var/lib/cairn/lab`, or `$CAIRN_LAB_STATE_DIR`).
pub fn state_root() -> PathBuf {
    std::env::var_os("CAIRN_LAB_STATE_DIR").map_or_else(|| PathBuf::from("/var/lib/cairn/lab"), PathBuf::from)
}

/// The directory holding the cached root filesystem (`/var/cache/cairn/lab`, or `$CAIRN_LAB_CACHE_DIR`).
pub fn cache_root() -> PathBuf {
    std::env::var_os("CAIRN_LAB_CACHE_DIR").map_or_else(|| PathBuf::from("/var/cache/cairn/lab"), PathBuf::from)
}

/// The state directory of the lab called `name`.
pub fn lab_dir(name: &str) -> PathBuf {
    state_root().join(name)
}

/// Checks a lab name: 1 to [`MAX_NAME_LEN`] characters of `a-z`, `0-9` and `-`, starting with a
/// letter or digit.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let reason = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("it is longer than {MAX_NAME_LEN} characters"))
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Some("use only lowercase letters, digits and `-`".to_string())
    } else if name.starts_with('-') {
        Some("it must start with a letter or digit".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LabError::InvalidName { name: name.to_string(), reason }),
        None => Ok(()),
    }
}

/// Checks that this process can make labs: root, `systemd-nspawn`, the `ip`/`ssh`/`setsid`
/// tools, and `debootstrap` when the root filesystem still has to be built.
pub fn check_prerequisites() -> Result<(), LabError> {
    if !process::is_root() {
        return Err(LabError::NotRoot);
    }
    let need_debootstrap = !rootfs::cached_rootfs(&cache_root()).join(".cairn-lab-complete").is_file();
    let mut needed = vec![
        ("systemd-nspawn", "systemd-container"),
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("setsid", "util-linux"),
        ("nsenter", "util-linux"),
    ];
    if need_debootstrap {
        needed.push(("debootstrap", "debootstrap"));
    }
    let missing: Vec<&(&str, &str)> = needed.iter().filter(|(program, _)| !cmd::have_program(program)).collect();
    if let Some((program, _)) = missing.first() {
        let mut packages: Vec<&str> = vec!["systemd-container"];
        if need_debootstrap {
            packages.push("debootstrap");
        }
        for (_, package) in &missing {
            if !packages.contains(package) {
                packages.push(package);
            }
        }
        return Err(LabError::MissingProgram { program: (*program).to_string(), package: packages.join(" ") });
    }
    Ok(())
}

fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A short token for the lab, used in interface and machine names (kernel names are ≤ 15 bytes).
fn short_id(name: &str) -> String {
    if name.len() <= 8 { name.to_string() } else { format!("x{}", &hex::encode(hash(name))[..7]) }
}

/// The lab's bridge name, e.g. `cl-web` (at most 11 characters).
pub fn bridge_name(name: &str) -> String {
    format!("cl-{}", short_id(name))
}

/// A node's record, derived from the lab's name, the node's name and its address.
fn node_state(lab: &str, node: &str, index: u32, address: String) -> NodeState {
    let machine = format!("{}-n{index}", short_id(lab));
    let mut id = hash(&format!("cairn-lab/{lab}/{node}"));
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let h = hex::encode(&id[..16]);
    let uuid = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
    NodeState { name: node.to_string(), veth: format!("vb-{machine}"), machine, address, uuid, pid: None }
}

fn node_index(node: &str) -> Option<u32> {
    node.strip_prefix("node")?.parse().ok()
}

/// Boots a lab: builds or reuses the cached root filesystem, makes the bridge, copies and boots
/// one container per host, waits until each answers over SSH with a strictly checked host key,
/// and writes the hosts file. An earlier lab of the same name (running or left over from a crash)
/// is removed first. On failure everything started is stopped again; files stay for inspection.
pub fn up(opts: &UpOptions, progress: &mut dyn FnMut(&str)) -> Result<LabInfo, LabError> {
    validate_name(&opts.name)?;
    if opts.hosts == 0 || opts.hosts > MAX_HOSTS {
        return Err(LabError::InvalidHostCount { hosts: opts.hosts, max: MAX_HOSTS });
    }
    check_prerequisites()?;
    for raised in limits::ensure(opts.hosts)? {
        progress(&raised);
    }
    let name = opts.name.as_str();
    let dir = lab_dir(name);
    let _lock = lab_lock(name, progress)?;
    let started = Instant::now();
    if dir.exists() {
        progress(&format!("removing what is left of an earlier lab `{name}`"));
        teardown(name, &dir)?;
        remove_node_dirs(&dir)?;
        rootfs::remove_if_exists(&dir.join(state::STATE_FILE))?;
    }
    fs::create_dir_all(&dir).map_err(LabError::io("create", &dir))?;
    set_private(&dir)?;
    let cache = rootfs::ensure(&cache_root(), progress)?;

    let key_path = dir.join("id_ed25519");
    if !key_path.is_file() {
        let key_arg = key_path.to_string_lossy().into_owned();
        let comment = format!("cairn-lab-{name}");
        cmd::run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment.as_str(), "-f", key_arg.as_str()])?;
    }
    set_mode(&key_path, 0o600)?;
    let public_path = dir.join("id_ed25519.pub");
    let public_key = fs::read_to_string(&public_path).map_err(LabError::io("read", &public_path))?;

    let mut lab = allocate_network(name, opts.hosts, &opts.hosts_file, progress)?;
    let result = boot(&mut lab, &dir, &cache, &public_key, &key_path, progress);
    match result {
        Ok(known_hosts_path) => {
            write_hosts_file(&lab, &opts.hosts_file, &key_path, &known_hosts_path)?;
            let info = info_from_state(&lab, &dir, &opts.hosts_file)?;
            progress(&format!(
                "lab `{name}` is up with {} hosts in {:.1} s; hosts file {}",
                lab.nodes.len(),
                started.elapsed().as_secs_f64(),
                info.hosts_file.display()
            ));
            Ok(info)
        }
        Err(err) => {
            progress(&format!("lab `{name}` failed to start; stopping what was started"));
            // The original error matters more than a failure to clean up after it.
            let _ = teardown(name, &dir);
            Err(err)
        }
    }
}

/// Picks the subnet, records the lab's state and makes the bridge, under a machine-wide lock so
/// two labs starting together do not pick the same subnet.
fn allocate_network(name: &str, hosts: u32, hosts_file: &Path, progress: &mut dyn FnMut(&str)) -> Result<LabState, LabError> {
    let _net_lock = lock::Lock::exclusive(&state_root().join(".network.lock"), || progress("waiting for another lab to pick its subnet"))?;
    let mut used = net::used_prefixes()?;
    used.extend(other_labs_subnets(name));
    let h = hash(name);
    let subnet = net::pick_subnet(u32::from_be_bytes([h[0], h[1], h[2], h[3]]), &used)?;
    let nodes = (1..=hosts)
        .map(|k| {
            let node = format!("node{k}");
            let address = net::host_address(subnet, u8::try_from(k + 1).unwrap_or(u8::MAX)).to_string();
            node_state(name, &node, k, address)
        })
        .collect();
    let hosts_file = absolute(hosts_file)?;
    let lab = LabState {
        name: name.to_string(),
        bridge: bridge_name(name),
        subnet: format!("{}/{}", subnet.addr, subnet.len),
        hosts_file: Some(hosts_file),
        nodes,
    };
    let dir = lab_dir(name);
    lab.save(&dir)?;
    progress(&format!("bridge {} with {} (host {})", lab.bridge, lab.subnet, net::host_address(subnet, 1)));
    net::create_bridge(&lab.bridge, subnet)?;
    Ok(lab)
}

fn other_labs_subnets(name: &str) -> Vec<net::Prefix> {
    let Ok(entries) = fs::read_dir(state_root()) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str() != Some(name))
        .filter_map(|e| {
            let other = e.file_name().to_string_lossy().into_owned();
            LabState::load(&e.path(), &other).ok().flatten()
        })
        .filter_map(|s| net::Prefix::parse(&s.subnet))
        .collect()
}

/// Copies, boots and waits for every node; returns the known_hosts path.
fn boot(
    lab: &mut LabState,
    dir: &Path,
    cache: &Path,
    public_key: &str,
    key_path: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, LabError> {
    let prefix_len = net::Prefix::parse(&lab.subnet).map_or(24, |p| p.len);
    let mut known_hosts = String::new();
    // Copying root filesystems is most of `up`'s time: a few nodes at a time.
    for chunk in lab.nodes.chunks(PARALLEL_COPIES) {
        let names: Vec<&str> = chunk.iter().map(|n| n.name.as_str()).collect();
        progress(&format!("preparing {}", names.join(", ")));
        let all = &lab.nodes;
        let keys: Vec<Result<String, LabError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|node| scope.spawn(move || node::prepare(cache, &NodePaths::new(dir, &node.name), node, all, prefix_len, public_key)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(LabError::Command { command: "prepare node".to_string(), detail: "thread panicked".to_string() })
                    })
                })
                .collect()
        });
        for (node, host_key) in chunk.iter().zip(keys) {
            known_hosts.push_str(&format!("{} {}\n", node.address, host_key?));
        }
    }
    let known_hosts_path = dir.join("known_hosts");
    state::write_atomic(&known_hosts_path, known_hosts.as_bytes(), 0o644)?;
    for i in 0..lab.nodes.len() {
        let paths = NodePaths::new(dir, &lab.nodes[i].name);
        progress(&format!("booting {}", lab.nodes[i].name));
        let pid = node::start(&paths, &lab.nodes[i], &lab.bridge)?;
        lab.nodes[i].pid = Some(pid);
        lab.save(dir)?;
    }
    let pairs: Vec<(NodePaths, NodeState)> = lab.nodes.iter().map(|n| (NodePaths::new(dir, &n.name), n.clone())).collect();
    let timeout = Duration::from_secs(90 + 15 * pairs.len() as u64);
    node::wait_ssh(&pairs, key_path, &known_hosts_path, timeout, progress)?;
    Ok(known_hosts_path)
}

/// Renders the hosts file: a cairn spec fragment with `[ssh]` and one `[hosts.NODE]` per node.
fn render_hosts_file(lab: &LabState, key_path: &Path, known_hosts_path: &Path) -> String {
    let s = |text: &str| toml::Value::String(text.to_string()).to_string();
    let mut out = format!(
        "# Written by `cairn lab up --name {name}`: the hosts of lab `{name}`.\n# Remove the lab with `cairn lab down --name {name}`.\n\n[ssh]\nuser = \"root\"\nidentity_file = {}\nknown_hosts_file = {}\nhost_key_checking = \"strict\"\n",
        s(&key_path.to_string_lossy()),
        s(&known_hosts_path.to_string_lossy()),
        name = lab.name,
    );
    for node in &lab.nodes {
        out.push_str(&format!("\n[hosts.{}]\naddress = {}\nlabels = {{ lab = {} }}\n", node.name, s(&node.address), s(&lab.name)));
    }
    out
}

fn write_hosts_file(lab: &LabState, hosts_file: &Path, key_path: &Path, known_hosts_path: &Path) -> Result<(), LabError> {
    let text = render_hosts_file(lab, key_path, known_hosts_path);
    let path = absolute(hosts_file)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(LabError::io("create", parent))?;
    }
    state::write_atomic(&path, text.as_bytes(), 0o644)
}

fn absolute(path: &Path) -> Result<PathBuf, LabError> {
    std::path::absolute(path).map_err(LabError::io("resolve", path))
}

fn info_from_state(lab: &LabState, dir: &Path, hosts_file: &Path) -> Result<LabInfo, LabError> {
    let subnet = net::Prefix::parse(&lab.subnet).ok_or_else(|| bad_state(lab, dir, "bad subnet"))?;
    let nodes = lab
        .nodes
        .iter()
        .map(|n| Ok(NodeInfo { name: n.name.clone(), address: n.address.parse().map_err(|_| bad_state(lab, dir, "bad address"))? }))
        .collect::<Result<Vec<_>, LabError>>()?;
    Ok(LabInfo {
        name: lab.name.clone(),
        state_dir: dir.to_path_buf(),
        bridge: lab.bridge.clone(),
        subnet: lab.subnet.clone(),
        host_address: net::host_address(subnet, 1),
        nodes,
        key_path: dir.join("id_ed25519"),
        known_hosts_path: dir.join("known_hosts"),
        hosts_file: absolute(hosts_file)?,
    })
}

fn bad_state(lab: &LabState, dir: &Path, detail: &str) -> LabError {
    LabError::BadState { name: lab.name.clone(), path: dir.join(state::STATE_FILE), detail: detail.to_string() }
}

/// The information about a lab that is up (as `up` returned it).
pub fn info(name: &str) -> Result<LabInfo, LabError> {
    let (dir, lab) = load(name)?;
    let hosts_file = lab.hosts_file.clone().unwrap_or_else(|| PathBuf::from("lab.toml"));
    info_from_state(&lab, &dir, &hosts_file)
}

/// Reports which of the lab's nodes run, with addresses and nspawn PIDs.
pub fn status(name: &str) -> Result<LabStatus, LabError> {
    validate_name(name)?;
    let (dir, lab) = load(name)?;
    let nodes = lab
        .nodes
        .iter()
        .map(|n| {
            let paths = NodePaths::new(&dir, &n.name);
            let pid = n
                .pid
                .filter(|&p| process::is_our_nspawn(p, &paths.rootfs))
                .or_else(|| process::nspawn_pids(&paths.rootfs).first().copied());
            NodeStatus { name: n.name.clone(), address: n.address.clone(), pid, running: pid.is_some() }
        })
        .collect();
    Ok(LabStatus {
        name: lab.name.clone(),
        state_dir: dir,
        bridge_present: net::link_exists(&lab.bridge),
        bridge: lab.bridge,
        subnet: lab.subnet,
        hosts_file: lab.hosts_file,
        nodes,
    })
}

/// Stops every container of the lab, removes its veths and bridge, and deletes its state
/// directory. Touches nothing the lab did not make. Succeeds when there is no such lab.
pub fn down(name: &str, progress: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    validate_name(name)?;
    let dir = lab_dir(name);
    if !dir.exists() {
        progress(&format!("no lab `{name}`: nothing to do"));
        return Ok(());
    }
    if !process::is_root() {
        return Err(LabError::NotRoot);
    }
    let _lock = lab_lock(name, progress)?;
    let started = Instant::now();
    progress(&format!("stopping lab `{name}`"));
    teardown(name, &dir)?;
    progress(&format!("removing {}", dir.display()));
    fs::remove_dir_all(&dir).map_err(LabError::io("remove", &dir))?;
    rootfs::remove_if_exists(&state_root().join(format!(".{name}.lock")))?;
    progress(&format!("lab `{name}` is down ({:.1} s)", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Stops one node's container (an orderly poweroff, killed after a timeout), as if the host died.
pub fn stop_node(name: &str, node: &str) -> Result<(), LabError> {
    let (dir, mut lab) = load(name)?;
    let n = lab.node_mut(node)?;
    node::stop_all(&[(NodePaths::new(&dir, node), n.clone())])?;
    n.pid = None;
    lab.save(&dir)
}

/// Boots one stopped node again and waits until it answers over SSH.
pub fn start_node(name: &str, node: &str) -> Result<(), LabError> {
    let (dir, mut lab) = load(name)?;
    if !net::link_exists(&lab.bridge) {
        return Err(LabError::NodeStart {
            node: node.to_string(),
            detail: format!("the lab's bridge {} is gone; run `cairn lab up --name {name}` again", lab.bridge),
            log: NodePaths::new(&dir, node).log,
        });
    }
    let bridge = lab.bridge.clone();
    let n = lab.node_mut(node)?;
    let paths = NodePaths::new(&dir, node);
    let pid = node::start(&paths, n, &bridge)?;
    n.pid = Some(pid);
    let pair = (paths, n.clone());
    lab.save(&dir)?;
    node::wait_ssh(&[pair], &dir.join("id_ed25519"), &dir.join("known_hosts"), Duration::from_secs(90), &mut |_| {})
}

/// Gives a running node a new SSH host key and restarts its sshd, WITHOUT updating the lab's
/// known_hosts: strict connections to it fail from then on (to test host key mismatch handling).
/// Returns the new public key line.
pub fn regenerate_host_key(name: &str, node: &str) -> Result<String, LabError> {
    let (dir, mut lab) = load(name)?;
    let n = lab.node_mut(node)?.clone();
    let paths = NodePaths::new(&dir, node);
    let Some(&init) = process::container_inits(&n.uuid).first() else {
        return Err(LabError::NodeStart { node: node.to_string(), detail: "it is not running".to_string(), log: paths.log });
    };
    let key = node::new_host_key(&paths.rootfs, node)?;
    let target = init.to_string();
    cmd::run(&[
        "nsenter",
        "--target",
        target.as_str(),
        "--mount",
        "--uts",
        "--ipc",
        "--net",
        "--pid",
        "--",
        "systemctl",
        "restart",
        "ssh.service",
    ])?;
    Ok(key)
}

fn load(name: &str) -> Result<(PathBuf, LabState), LabError> {
    let dir = lab_dir(name);
    match LabState::load(&dir, name)? {
        Some(lab) => Ok((dir, lab)),
        None => Err(LabError::NoSuchLab { name: name.to_string(), state_dir: dir }),
    }
}

/// A per-lab lock so `up` and `down` of one lab never run at once.
fn lab_lock(name: &str, progress: &mut dyn FnMut(&str)) -> Result<lock::Lock, LabError> {
    lock::Lock::exclusive(&state_root().join(format!(".{name}.lock")), || {
        progress(&format!("waiting for another `cairn lab` command on lab `{name}`"))
    })
}

/// Stops every container of the lab and removes its network. Works from `lab.json` and, for
/// nodes it does not list, from the node directories present (everything else is derived from
/// the names).
fn teardown(name: &str, dir: &Path) -> Result<(), LabError> {
    let recorded = LabState::load(dir, name).ok().flatten();
    let mut nodes: Vec<NodeState> = recorded.as_ref().map(|l| l.nodes.clone()).unwrap_or_default();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            let node = entry.file_name().to_string_lossy().into_owned();
            if let Some(index) = node_index(&node)
                && entry.path().is_dir()
                && !nodes.iter().any(|n| n.name == node)
            {
                nodes.push(node_state(name, &node, index, String::new()));
            }
        }
    }
    let pairs: Vec<(NodePaths, NodeState)> = nodes.into_iter().map(|n| (NodePaths::new(dir, &n.name), n)).collect();
    node::stop_all(&pairs)?;
    let bridge = recorded.map_or_else(|| bridge_name(name), |l| l.bridge);
    net::delete_bridge(&bridge)
}

fn remove_node_dirs(dir: &Path) -> Result<(), LabError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.filter_map(|e| e.ok()) {
        if node_index(&entry.file_name().to_string_lossy()).is_some() && entry.path().is_dir() {
            fs::remove_dir_all(entry.path()).map_err(LabError::io("remove", entry.path()))?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(LabError::io("chmod", path))
}

fn set_private(dir: &Path) -> Result<(), LabError> {
    set_mode(dir, 0o700)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("web-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("Web").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(33)).is_err());
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        for name in ["a", "default", "a-much-longer-lab-name-for-tests"] {
            assert!(bridge_name(name).len() <= 15);
            let node = node_state(name, "node50", 50, String::new());
            assert!(node.veth.len() <= 15, "{}", node.veth);
            assert_eq!(node.uuid.len(), 36);
        }
        assert_eq!(bridge_name("web"), "cl-web");
        assert_ne!(node_state("a", "node1", 1, String::new()).uuid, node_state("b", "node1", 1, String::new()).uuid);
    }

    #[test]
    fn hosts_file_is_a_spec_fragment() {
        let lab = LabState {
            name: "t".to_string(),
            bridge: "cl-t".to_string(),
            subnet: "10.231.7.0/24".to_string(),
            hosts_file: None,
            nodes: vec![node_state("t", "node1", 1, "10.231.7.2".to_string())],
        };
        let text = render_hosts_file(&lab, Path::new("/var/lib/cairn/lab/t/id_ed25519"), Path::new("/var/lib/cairn/lab/t/known_hosts"));
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(value["ssh"]["host_key_checking"].as_str(), Some("strict"));
        assert_eq!(value["hosts"]["node1"]["address"].as_str(), Some("10.231.7.2"));
        assert_eq!(value["hosts"]["node1"]["labels"]["lab"].as_str(), Some("t"));
    }
}
