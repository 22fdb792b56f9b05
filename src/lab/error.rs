//! [`LabError`]: everything that can go wrong making, inspecting or removing a lab, each variant
//! with a message that says what to do about it.

use std::path::PathBuf;

/// A failure of a lab operation.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root (network namespaces, bridges, nspawn).
    #[error("cairn lab must run as root (it creates bridges and systemd-nspawn containers); run it with sudo")]
    NotRoot,
    /// A program the lab needs is not installed.
    #[error("`{program}` is not installed; install it with: apt-get install {package}")]
    MissingProgram {
        /// The program looked for on PATH.
        program: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// The lab name is not usable.
    #[error("invalid lab name `{name}`: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The number of hosts is out of range.
    #[error("a lab has between 1 and {max} hosts, not {hosts}")]
    InvalidHostCount {
        /// The number asked for.
        hosts: u32,
        /// The largest number allowed.
        max: u32,
    },
    /// No lab of that name exists.
    #[error("there is no lab named `{name}` (no state in {state_dir}); start one with `cairn lab up --name {name}`")]
    NoSuchLab {
        /// The lab's name.
        name: String,
        /// Where its state would be.
        state_dir: PathBuf,
    },
    /// The lab has no node of that name.
    #[error("lab `{lab}` has no node `{node}` (it has: {known})")]
    NoSuchNode {
        /// The lab's name.
        lab: String,
        /// The node asked for.
        node: String,
        /// The nodes it has, comma-separated.
        known: String,
    },
    /// Every candidate private subnet is already used on this machine.
    #[error("no free private /24 subnet for the lab bridge: every candidate overlaps an existing route or address (see `ip -4 route`)")]
    NoFreeSubnet,
    /// A program the lab ran failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, for the reader (not for a shell).
        command: String,
        /// Its exit status and stderr.
        detail: String,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The lab's state file could not be read.
    #[error("lab state {} is unreadable ({detail}); remove the lab with `cairn lab down --name {name}`", path.display())]
    BadState {
        /// The lab's name.
        name: String,
        /// The state file.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },
    /// A container did not start.
    #[error("node `{node}` did not start: {detail}; see its log {}", log.display())]
    NodeStart {
        /// The node's name.
        node: String,
        /// What was seen.
        detail: String,
        /// The nspawn log file.
        log: PathBuf,
    },
    /// A node did not answer over SSH in time.
    #[error("node `{node}` ({address}) did not answer over SSH within {secs} s: {detail}; see its log {}", log.display())]
    SshTimeout {
        /// The node's name.
        node: String,
        /// Its address.
        address: String,
        /// How long we waited.
        secs: u64,
        /// The last ssh error.
        detail: String,
        /// The nspawn log file.
        log: PathBuf,
    },
    /// A kernel limit is too low for the lab and could not be raised.
    #[error(
        "{hosts} lab hosts need {name} = {needed} (it is {current}) and cairn could not raise it ({error}); \
         run `sysctl -w {name}={needed}` as root, or boot fewer hosts"
    )]
    KernelLimit {
        /// The sysctl.
        name: String,
        /// Its value now.
        current: u64,
        /// The value needed.
        needed: u64,
        /// Hosts asked for.
        hosts: u32,
        /// Why writing it failed.
        error: String,
    },
}

impl LabError {
    /// An [`LabError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { action, path, source }
    }
}
