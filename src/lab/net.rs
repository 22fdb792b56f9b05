//! The lab's private network: choosing a /24 that nothing on this machine uses, making and removing
//! the lab's bridge, and finding the veth interfaces systemd-nspawn attached to it. Only interfaces
//! whose names the lab recorded (or that hang off its own bridge) are ever touched.

use std::net::Ipv4Addr;

use super::cmd;
use super::error::LabError;

/// An IPv4 prefix, e.g. `10.231.7.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub len: u8,
}

impl Prefix {
    /// Parses `a.b.c.d` or `a.b.c.d/len`.
    pub(crate) fn parse(text: &str) -> Option<Prefix> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok()?),
            None => (text, 32),
        };
        let addr: Ipv4Addr = addr.parse().ok()?;
        (len <= 32).then_some(Prefix { addr, len })
    }

    fn mask(self) -> u32 {
        if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len)) }
    }

    /// Whether the two prefixes share any address.
    pub(crate) fn overlaps(self, other: Prefix) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.addr) & mask == u32::from(other.addr) & mask
    }
}

/// Route types `ip route show table all` may print before the prefix.
const ROUTE_TYPES: &[&str] =
    &["unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "blackhole", "prohibit", "throw", "nat"];

/// Prefixes in use on this machine: every address and every non-default route in every table.
pub(crate) fn used_prefixes() -> Result<Vec<Prefix>, LabError> {
    let addrs = cmd::run(&["ip", "-4", "-o", "addr", "show"])?;
    let routes = cmd::run(&["ip", "-4", "route", "show", "table", "all"])?;
    Ok(parse_used(&addrs, &routes))
}

/// Parses `ip -4 -o addr show` and `ip -4 route show table all` output into prefixes.
pub(crate) fn parse_used(addrs: &str, routes: &str) -> Vec<Prefix> {
    let mut used = Vec::new();
    for line in addrs.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" {
                if let Some(p) = words.next().and_then(Prefix::parse) {
                    used.push(p);
                }
                break;
            }
        }
    }
    for line in routes.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| ROUTE_TYPES.contains(w)) {
            words.next();
        }
        if let Some(p) = words.next().and_then(Prefix::parse) {
            used.push(p);
        }
    }
    used
}

/// Picks a free /24 for the lab: candidates in 10.231.0.0/16 and 10.232.0.0/16, starting at a
/// place derived from the lab's name so different labs tend to get different subnets.
pub(crate) fn pick_subnet(name_hash: u32, used: &[Prefix]) -> Result<Prefix, LabError> {
    for second in [231u8, 232] {
        for i in 0..256u32 {
            let third = ((name_hash + i) % 256) as u8;
            let candidate = Prefix { addr: Ipv4Addr::new(10, second, third, 0), len: 24 };
            if !used.iter().any(|u| u.overlaps(candidate)) {
                return Ok(candidate);
            }
        }
    }
    Err(LabError::NoFreeSubnet)
}

/// The `k`th address of a /24 (host part `k`).
pub(crate) fn host_address(subnet: Prefix, k: u8) -> Ipv4Addr {
    let o = subnet.addr.octets();
    Ipv4Addr::new(o[0], o[1], o[2], k)
}

/// Whether a network interface of that name exists.
pub(crate) fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Whether the interface is a bridge.
fn is_bridge(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).join("bridge").exists()
}

/// Creates the bridge with the host's address on it (`.1` of the subnet) and brings it up. A
/// leftover bridge of the same name from an earlier run of this lab is replaced.
pub(crate) fn create_bridge(bridge: &str, subnet: Prefix) -> Result<(), LabError> {
    if link_exists(bridge) {
        delete_bridge(bridge)?;
    }
    cmd::run(&["ip", "link", "add", "name", bridge, "type", "bridge"])?;
    // IPv4 only: no link-local IPv6 chatter from the host on the lab network. Best effort (the
    // host may have IPv6 disabled altogether).
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"), "1\n");
    let addr = format!("{}/{}", host_address(subnet, 1), subnet.len);
    cmd::run(&["ip", "addr", "add", &addr, "dev", bridge])?;
    cmd::run(&["ip", "link", "set", bridge, "up"])?;
    Ok(())
}

/// Interfaces enslaved to `bridge`.
pub(crate) fn bridge_ports(bridge: &str) -> Vec<String> {
    let dir = std::path::Path::new("/sys/class/net").join(bridge).join("brif");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut ports: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    ports.sort();
    ports
}

/// Removes the veths attached to `bridge` and then the bridge itself, if it is a bridge.
pub(crate) fn delete_bridge(bridge: &str) -> Result<(), LabError> {
    if !link_exists(bridge) {
        return Ok(());
    }
    if !is_bridge(bridge) {
        return Err(LabError::Command {
            command: format!("ip link delete {bridge}"),
            detail: format!("interface {bridge} is not a bridge, so it is not the lab's; leaving it alone"),
        });
    }
    for port in bridge_ports(bridge) {
        delete_veth(&port)?;
    }
    if link_exists(bridge) {
        cmd::run(&["ip", "link", "delete", bridge, "type", "bridge"])?;
    }
    Ok(())
}

/// Removes a veth interface if it exists (its peer goes with it).
pub(crate) fn delete_veth(name: &str) -> Result<(), LabError> {
    if !link_exists(name) {
        return Ok(());
    }
    let out = cmd::output(&["ip", "link", "delete", name, "type", "veth"])?;
    // It may vanish on its own between the check and the delete (its namespace died).
    if out.status.success() || !link_exists(name) {
        Ok(())
    } else {
        Err(cmd::failed(&["ip", "link", "delete", name, "type", "veth"], &out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_routes() {
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n";
        let routes = "default via 192.0.2.1 dev eth0\n192.0.2.0/24 dev eth0 proto kernel\nlocal 10.231.5.1 dev cl-x table local\nbroadcast 127.255.255.255 dev lo table local\n";
        let used = parse_used(addrs, routes);
        assert_eq!(used.len(), 5);
        assert!(used.contains(&Prefix::parse("10.231.5.1").unwrap()));
        assert!(!used.iter().any(|p| p.len == 0), "default is not a prefix");
    }

    #[test]
    fn picks_a_subnet_that_overlaps_nothing() {
        let used = vec![Prefix::parse("10.231.7.0/24").unwrap(), Prefix::parse("10.231.8.9/32").unwrap()];
        assert_eq!(pick_subnet(7, &used).unwrap(), Prefix::parse("10.231.9.0/24").unwrap());
        let all = vec![Prefix::parse("10.0.0.0/8").unwrap()];
        assert!(matches!(pick_subnet(0, &all), Err(LabError::NoFreeSubnet)));
    }

    #[test]
    fn overlap_is_symmetric() {
        let a = Prefix::parse("10.0.0.0/8").unwrap();
        let b = Prefix::parse("10.231.1.0/24").unwrap();
        assert!(a.overlaps(b) && b.overlaps(a));
        assert!(!b.overlaps(Prefix::parse("10.231.2.0/24").unwrap()));
    }
}
