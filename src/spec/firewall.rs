//! The validated shape of a `[firewall.NAME]` table: an ordered list of rules, each with a
//! protocol, destination ports, source addresses and an action. Parsing of the textual pieces
//! (CIDRs, port ranges) lives here as pure functions, so the loader can report precise errors and
//! the resource layer can reuse the types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::diagnostic::Span;
use super::template::TemplateText;

/// `[firewall.NAME]`: rules evaluated in order in cairn's nftables table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSpec {
    /// The rules, in the order written.
    pub rules: Vec<FirewallRule>,
}

/// One rule: `{ port = 2379, proto = "tcp", from = ["10.0.0.0/24"], action = "accept" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    /// Where the rule was written.
    pub span: Span,
    /// Protocol; `None` matches every protocol.
    pub proto: Option<Proto>,
    /// Destination ports (only with tcp/udp); empty matches every port.
    pub ports: Vec<PortRange>,
    /// Source networks; empty (with no `from_templates`) matches every source.
    pub from: Vec<Cidr>,
    /// `from` entries written as templates, rendered per host into comma-separated addresses or
    /// networks and validated then (added to `from`).
    pub from_templates: Vec<TemplateText>,
    /// What to do with a matching packet.
    pub action: FirewallAction,
}

/// A rule's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

impl Proto {
    /// The name written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// What a rule does with a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    /// Let it through (no later rule is looked at).
    Accept,
    /// Discard it silently.
    Drop,
    /// Discard it and tell the sender (ICMP port unreachable).
    Reject,
}

impl FirewallAction {
    /// The name written in specs and in nftables.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallAction::Accept => "accept",
            FirewallAction::Drop => "drop",
            FirewallAction::Reject => "reject",
        }
    }
}

/// An inclusive range of ports (`first == last` for one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Whether two ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

/// Parses `"2379"` or `"8000-8080"`. The error says what is wrong, for a diagnostic label.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let port = |p: &str| -> Result<u16, String> {
        let p = p.trim();
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => u16::try_from(n).map_err(|_| "ports are 1 to 65535".to_string()),
            Ok(_) => Err(format!("`{p}` is not a port (ports are 1 to 65535)")),
            Err(_) => Err(format!("`{p}` is not a port number")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (first, last) = (port(a)?, port(b)?);
            if first > last {
                return Err(format!("the range starts after it ends; write \"{last}-{first}\""));
            }
            Ok(PortRange { first, last })
        }
        None => port(s).map(|p| PortRange { first: p, last: p }),
    }
}

/// A network: an address and a prefix length, host bits zero. A single address has the full
/// length (32 or 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// The full prefix length of the address family.
    pub fn max_len(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// Whether this is an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` is in the network (never across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(u32::from(ip), self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(u128::from(ip), self.len) == u128::from(net),
            _ => false,
        }
    }

    /// The first and last address as integers (IPv4 in the low 32 bits). Host bits of `addr`
    /// (possible in what a host reports) are ignored: the bounds are the network's.
    pub fn bounds(&self) -> (u128, u128) {
        let bits = u32::from(Cidr::max_len(self.addr));
        let start = match self.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let host_bits = bits - u32::from(self.len);
        let size_minus_one = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        let start = start & !size_minus_one;
        (start, start | size_minus_one)
    }
}

fn mask_v4(ip: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { ip & (u32::MAX << (32 - u32::from(len))) }
}

fn mask_v6(ip: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { ip & (u128::MAX << (128 - u32::from(len))) }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == Cidr::max_len(self.addr) { write!(f, "{}", self.addr) } else { write!(f, "{}/{}", self.addr, self.len) }
    }
}

/// Why a string is not a CIDR: what is wrong, and (when there is one) the likely intended value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError {
    /// What is wrong.
    pub problem: String,
    /// A corrected value, when the mistake is recognisable.
    pub suggestion: Option<String>,
}

/// Parses `"10.0.0.0/24"`, `"10.0.0.5"`, `"fd00::/64"` or `"2001:db8::1"`. Host bits must be zero.
pub fn parse_cidr(s: &str) -> Result<Cidr, CidrError> {
    let err = |problem: String| CidrError { problem, suggestion: None };
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| err(format!("`{addr}` is not an IPv4 or IPv6 address")))?;
    let max = Cidr::max_len(addr);
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(err(format!("`/{l}` is not a prefix length for {} (0 to {max})", family(addr)))),
        },
    };
    let network = match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(a), len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_v6(u128::from(a), len))),
    };
    let cidr = Cidr { addr: network, len };
    if network != addr {
        return Err(CidrError {
            problem: format!("`{s}` has bits set after the first {len}"),
            suggestion: Some(format!("{network}/{len}")),
        });
    }
    Ok(cidr)
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/24").unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(parse_cidr("10.0.0.5").unwrap().to_string(), "10.0.0.5");
        assert_eq!(parse_cidr("10.0.0.5/32").unwrap().to_string(), "10.0.0.5");
        assert_eq!(parse_cidr("fd00::/64").unwrap().to_string(), "fd00::/64");
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().bounds(), (0, u128::from(u32::MAX)));
        assert_eq!(parse_cidr("::/0").unwrap().bounds(), (0, u128::MAX));
        // Found by tests/fuzz.rs: a host's nft output can carry a prefix with host bits set
        // (`ffff::1/0`); its bounds overflowed (a panic in debug builds). They are the network's.
        let odd = Cidr { addr: "ffff::1".parse().unwrap(), len: 0 };
        assert_eq!(odd.bounds(), (0, u128::MAX));
        let odd = Cidr { addr: "10.0.0.5".parse().unwrap(), len: 24 };
        assert_eq!(odd.bounds(), (0x0a00_0000, 0x0a00_00ff));
        let e = parse_cidr("10.0.0.1/24").unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("10.0.0.0/24"));
        assert!(parse_cidr("10.0.0.0/33").unwrap_err().problem.contains("0 to 32"));
        assert!(parse_cidr("10.0.0").is_err());
        assert!(parse_cidr("fd00::/129").is_err());
    }

    #[test]
    fn contains() {
        let net = parse_cidr("10.0.0.0/24").unwrap();
        assert!(net.contains("10.0.0.77".parse().unwrap()));
        assert!(!net.contains("10.0.1.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(parse_cidr("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port_range("2379"), Ok(PortRange { first: 2379, last: 2379 }));
        assert_eq!(parse_port_range("8000-8080"), Ok(PortRange { first: 8000, last: 8080 }));
        assert!(parse_port_range("0").is_err());
        assert!(parse_port_range("70000").is_err());
        assert!(parse_port_range("8080-8000").unwrap_err().contains("8000-8080"));
        assert!(parse_port_range("http").is_err());
    }
}
