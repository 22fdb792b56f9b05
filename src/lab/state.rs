//! What a lab made, recorded in `<state dir>/<name>/lab.json` before it is made, so `down` removes
//! exactly that: the bridge and its subnet, and per node its container directory, nspawn machine
//! name, host-side veth, machine UUID and the nspawn PID.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::LabError;

/// The state file's name inside the lab's directory.
pub(crate) const STATE_FILE: &str = "lab.json";

/// A lab as recorded on disk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct LabState {
    /// The lab's name.
    pub name: String,
    /// The bridge the lab created.
    pub bridge: String,
    /// The lab's /24, e.g. `10.231.7.0/24`.
    pub subnet: String,
    /// The hosts file `up` last wrote.
    pub hosts_file: Option<PathBuf>,
    /// The nodes, in order.
    pub nodes: Vec<NodeState>,
}

/// One node as recorded on disk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeState {
    /// The node's name (its hostname), e.g. `node1`.
    pub name: String,
    /// The nspawn machine name, unique on this machine.
    pub machine: String,
    /// The host side of the node's veth (`vb-<machine>`).
    pub veth: String,
    /// The node's IPv4 address.
    pub address: String,
    /// The container's UUID (`--uuid`), also visible in its init's environment.
    pub uuid: String,
    /// The PID of its systemd-nspawn, when running.
    pub pid: Option<u32>,
}

impl LabState {
    /// Reads `<dir>/lab.json`; `Ok(None)` when there is none.
    pub(crate) fn load(dir: &Path, name: &str) -> Result<Option<LabState>, LabError> {
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io("read", &path)(e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| LabError::BadState { name: name.to_string(), path, detail: e.to_string() })
    }

    /// Writes `<dir>/lab.json` atomically.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), LabError> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::BadState {
            name: self.name.clone(),
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes(), 0o644)
    }

    /// The node called `node`.
    pub(crate) fn node_mut(&mut self, node: &str) -> Result<&mut NodeState, LabError> {
        let known = self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ");
        let lab = self.name.clone();
        self.nodes.iter_mut().find(|n| n.name == node).ok_or_else(|| LabError::NoSuchNode { lab, node: node.to_string(), known })
    }
}

/// Writes a file atomically: temp file in the same directory with `mode`, then rename.
pub(crate) fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<(), LabError> {
    crate::state::write_atomic(path, content, mode).map_err(LabError::io("write", path))
}
