//! The kernel limits a lab needs on the machine running it. Every container's systemd (and its
//! services) holds inotify instances of the same user as the host's root (the containers have no
//! user namespace), so the stock `fs.inotify.max_user_instances` of 128 runs out at a few dozen
//! hosts: systemd in the containers then fails part-way through boot. `lab up` raises the
//! limits it needs (never lowers them), says so, and refuses with the exact `sysctl` to run when
//! it cannot.

use std::path::Path;

use super::LabError;

/// inotify instances one lab host needs (systemd, journald, logind, sshd, …), with room.
const INSTANCES_PER_HOST: u64 = 40;
/// inotify watches one lab host needs, with room.
const WATCHES_PER_HOST: u64 = 16_384;
/// What the machine itself and other labs keep using.
const INSTANCES_BASE: u64 = 256;
const WATCHES_BASE: u64 = 65_536;

/// One sysctl a lab needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Its name (`fs.inotify.max_user_instances`).
    pub name: &'static str,
    /// The value now.
    pub current: u64,
    /// The value the lab needs.
    pub needed: u64,
}

/// The limits `hosts` lab hosts need, given the current values (`read` returns them by name).
pub fn needed(hosts: u32, read: impl Fn(&str) -> Option<u64>) -> Vec<Limit> {
    let hosts = u64::from(hosts);
    [
        ("fs.inotify.max_user_instances", INSTANCES_BASE + INSTANCES_PER_HOST * hosts),
        ("fs.inotify.max_user_watches", WATCHES_BASE + WATCHES_PER_HOST * hosts),
    ]
    .into_iter()
    .filter_map(|(name, needed)| {
        let current = read(name)?;
        (current < needed).then_some(Limit { name, current, needed })
    })
    .collect()
}

fn proc_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

fn read_sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(proc_path(name)).ok()?.trim().parse().ok()
}

/// Raises what `hosts` lab hosts need; returns what it raised, one line each.
pub fn ensure(hosts: u32) -> Result<Vec<String>, LabError> {
    let mut raised = Vec::new();
    for limit in needed(hosts, read_sysctl) {
        let path = proc_path(limit.name);
        std::fs::write(Path::new(&path), format!("{}\n", limit.needed)).map_err(|e| LabError::KernelLimit {
            name: limit.name.to_string(),
            current: limit.current,
            needed: limit.needed,
            hosts,
            error: e.to_string(),
        })?;
        raised.push(format!(
            "raised {} from {} to {} for {hosts} hosts (until reboot; `sysctl -w {}={}` does the same)",
            limit.name, limit.current, limit.needed, limit.name, limit.needed
        ));
    }
    Ok(raised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_limits_are_raised_for_fifty_hosts_and_never_lowered() {
        let stock = |name: &str| Some(if name.ends_with("instances") { 128 } else { 65_536 });
        let fifty = needed(50, stock);
        assert_eq!(
            fifty,
            vec![
                Limit { name: "fs.inotify.max_user_instances", current: 128, needed: 2256 },
                Limit { name: "fs.inotify.max_user_watches", current: 65_536, needed: 884_736 },
            ]
        );
        let generous = |_: &str| Some(10_000_000);
        assert!(needed(50, generous).is_empty(), "a higher limit is left alone");
        assert!(needed(3, |_| None).is_empty(), "an unreadable limit is not touched");
    }
}
