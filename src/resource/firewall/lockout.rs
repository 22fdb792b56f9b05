//! Refusing rule sets that would cut cairn's own SSH session: the host's rules are evaluated in
//! order, as nftables would, against a TCP packet from the address cairn connects from to the
//! SSH port it connects to (both read on the host from `$SSH_CONNECTION`).

use std::net::IpAddr;

use crate::spec::firewall::{FirewallAction, FirewallRule, Proto};

/// cairn's own SSH session as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshSession {
    /// The address cairn connects from.
    pub client: IpAddr,
    /// The port sshd accepted the connection on.
    pub port: u16,
}

impl SshSession {
    /// Parses `$SSH_CONNECTION` (`client_ip client_port server_ip server_port`). An IPv4 client
    /// seen through an IPv6 socket (`::ffff:10.0.0.1`) is the IPv4 address the firewall sees.
    pub fn parse(s: &str) -> Option<SshSession> {
        let f: Vec<&str> = s.split_whitespace().collect();
        let [client, _, _, port] = f.as_slice() else { return None };
        let client: IpAddr = client.parse().ok()?;
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        Some(SshSession { client, port: port.parse().ok()? })
    }
}

/// The rule that stops cairn's SSH connection, and why, as a plan reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// The resource the rule belongs to.
    pub resource: String,
    /// The explanation.
    pub reason: String,
}

/// Evaluates the rules in order against (client, port, tcp). `client` is `None` when the host did
/// not say where cairn connects from: then a drop that applies to some sources is enough to refuse,
/// since cairn cannot tell it does not apply to its own.
pub fn check(sections: &[(String, Vec<FirewallRule>)], client: Option<IpAddr>, port: u16) -> Option<Lockout> {
    for (resource, rules) in sections {
        for (n, rule) in rules.iter().enumerate() {
            let proto_matches = matches!(rule.proto, None | Some(Proto::Tcp));
            let port_matches = rule.ports.is_empty() || rule.ports.iter().any(|r| r.contains(port));
            if !proto_matches || !port_matches {
                continue;
            }
            let source = match client {
                _ if rule.from.is_empty() => Some(true),
                Some(ip) => Some(rule.from.iter().any(|c| c.contains(ip))),
                None => None, // may or may not match
            };
            match (source, rule.action) {
                (Some(false), _) | (None, FirewallAction::Accept) => continue,
                (Some(true), FirewallAction::Accept) => return None,
                (_, action) => {
                    let verb = if action == FirewallAction::Reject { "reject" } else { "drop" };
                    let which = format!("{resource} rule {} ({})", n + 1, describe(rule));
                    let reason = match client {
                        Some(ip) => format!(
                            "these rules would {verb} cairn's own SSH connection from {ip} to port {port}: {which}; \
                             accept tcp port {port} from {ip} in an earlier rule"
                        ),
                        None => format!(
                            "these rules could {verb} cairn's own SSH connection to port {port} (the host did not say which \
                             address cairn connects from): {which}; accept tcp port {port} from every source in an earlier rule"
                        ),
                    };
                    return Some(Lockout { resource: resource.clone(), reason });
                }
            }
        }
    }
    None
}

/// "drop tcp 22 from 10.0.0.0/24", for messages.
pub fn describe(rule: &FirewallRule) -> String {
    let mut s = format!("{} {}", rule.action.as_str(), rule.proto.map_or("every protocol", Proto::as_str));
    if !rule.ports.is_empty() {
        s.push(' ');
        s.push_str(&rule.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    }
    if !rule.from.is_empty() {
        s.push_str(" from ");
        s.push_str(&rule.from.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    }
    s
}
