//! cairn's canonical nftables text. Desired rules and the rules observed on a host (from
//! `nft -j list table inet cairn`) are both turned into the same [`NftRule`] model and printed by
//! the same function, so equal rule sets give byte-equal text whatever order or grouping nft
//! chose when listing them (nft sorts and merges set elements). The desired text is also exactly
//! what is written with `nft -f`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use crate::spec::firewall::{Cidr, FirewallAction, FirewallRule, Proto};

/// The table cairn owns, as `family name`.
pub const TABLE: &str = "inet cairn";

/// An inclusive interval of addresses or ports, as integers.
type Interval = (u128, u128);

/// What a rule matches at layer 4.
#[derive(Debug, Clone, PartialEq, Eq)]
enum L4 {
    /// Every protocol.
    Any,
    /// One protocol, any port (`meta l4proto tcp`; icmp means ICMP and ICMPv6).
    Proto(Proto),
    /// Destination ports of tcp or udp.
    Ports(Proto, Vec<Interval>),
}

/// One nftables rule in the shapes cairn writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NftRule {
    /// Source addresses: IPv6 or not, and intervals.
    saddr: Option<(bool, Vec<Interval>)>,
    l4: L4,
    verdict: &'static str,
    comment: Option<String>,
}

/// The comment cairn puts on the rules of rule `n` (1-based) of a resource.
pub fn rule_comment(resource: &str, n: usize) -> String {
    format!("{resource} rule {n}")
}

/// The nftables rules (one, or two when `from` mixes IPv4 and IPv6) for a spec rule.
fn from_spec(rule: &FirewallRule, comment: String) -> Vec<NftRule> {
    let l4 = match rule.proto {
        None => L4::Any,
        Some(p) if rule.ports.is_empty() => L4::Proto(p),
        Some(p) => L4::Ports(p, rule.ports.iter().map(|r| (u128::from(r.first), u128::from(r.last))).collect()),
    };
    let make = |saddr| NftRule { saddr, l4: l4.clone(), verdict: rule.action.as_str(), comment: Some(comment.clone()) };
    if rule.from.is_empty() {
        return vec![make(None)];
    }
    let v4: Vec<Interval> = rule.from.iter().filter(|c| c.is_ipv4()).map(Cidr::bounds).collect();
    let v6: Vec<Interval> = rule.from.iter().filter(|c| !c.is_ipv4()).map(Cidr::bounds).collect();
    [(false, v4), (true, v6)].into_iter().filter(|(_, s)| !s.is_empty()).map(|(is6, s)| make(Some((is6, s)))).collect()
}

/// The lines inside `chain input { ... }` after its header, for every resource's rules in order.
pub fn rule_lines(sections: &[(String, Vec<FirewallRule>)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (resource, rules) in sections {
        for (n, rule) in rules.iter().enumerate() {
            lines.extend(from_spec(rule, rule_comment(resource, n + 1)).iter().map(NftRule::text));
        }
    }
    lines
}

/// The header line of cairn's input chain.
pub const INPUT_HEADER: &str = "type filter hook input priority 0; policy accept;";

/// The whole table in cairn's canonical text, for the given rule lines of chain `input`.
pub fn table_text(chains: &[(String, Option<String>, Vec<String>)], others: &[String]) -> String {
    let mut out = format!("table {TABLE} {{\n");
    for (name, header, rules) in chains {
        out.push_str(&format!("  chain {name} {{\n"));
        if let Some(h) = header {
            out.push_str(&format!("    {h}\n"));
        }
        for r in rules {
            out.push_str(&format!("    {r}\n"));
        }
        out.push_str("  }\n");
    }
    for o in others {
        out.push_str(&format!("  {o}\n"));
    }
    out.push_str("}\n");
    out
}

/// The desired table: chain `input` (filter hook, priority 0, policy accept) with every rule.
pub fn desired_text(sections: &[(String, Vec<FirewallRule>)]) -> String {
    table_text(&[("input".to_string(), Some(INPUT_HEADER.to_string()), rule_lines(sections))], &[])
}

/// The file fed to `nft -f -`: create the table if missing (so the delete cannot fail), delete
/// it, and make it again with the wanted content. nft runs a file as one transaction: the old
/// rules stay in force until the new ones replace them, and a failure changes nothing.
pub fn ruleset(text: &str) -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n{text}")
}

impl NftRule {
    fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some((is6, set)) = &self.saddr {
            let elems: Vec<String> = cidrs(set, *is6).iter().map(ToString::to_string).collect();
            parts.push(format!("{} saddr {}", if *is6 { "ip6" } else { "ip" }, braces(&elems)));
        }
        match &self.l4 {
            L4::Any => {}
            L4::Proto(Proto::Icmp) => parts.push("meta l4proto { icmp, ipv6-icmp }".to_string()),
            L4::Proto(p) => parts.push(format!("meta l4proto {}", p.as_str())),
            L4::Ports(p, set) => parts.push(format!("{} dport {}", p.as_str(), braces(&port_elems(set)))),
        }
        parts.push(self.verdict.to_string());
        if let Some(c) = &self.comment {
            parts.push(format!("comment \"{}\"", c.replace('"', "'")));
        }
        parts.join(" ")
    }
}

fn braces(elems: &[String]) -> String {
    match elems {
        [one] => one.clone(),
        _ => format!("{{ {} }}", elems.join(", ")),
    }
}

/// Sorts intervals and merges overlapping or adjacent ones: one canonical form per set.
fn merge(set: &[Interval]) -> Vec<Interval> {
    let mut sorted = set.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<Interval> = Vec::new();
    for (lo, hi) in sorted {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Port elements: a single port, two neighbours as two ports, longer runs as `a-b`.
fn port_elems(set: &[Interval]) -> Vec<String> {
    let mut out = Vec::new();
    for (lo, hi) in merge(set) {
        match hi - lo {
            0 => out.push(lo.to_string()),
            1 => out.extend([lo.to_string(), hi.to_string()]),
            _ => out.push(format!("{lo}-{hi}")),
        }
    }
    out
}

/// The fewest networks covering exactly the set's addresses.
fn cidrs(set: &[Interval], is6: bool) -> Vec<Cidr> {
    let bits: u32 = if is6 { 128 } else { 32 };
    let mut out = Vec::new();
    for (mut lo, hi) in merge(set) {
        loop {
            let mut k = if lo == 0 { bits } else { lo.trailing_zeros().min(bits) };
            let end = |k: u32| if k >= 128 { u128::MAX } else { lo + ((1u128 << k) - 1) };
            while k > 0 && end(k) > hi {
                k -= 1;
            }
            let addr = if is6 { IpAddr::V6(Ipv6Addr::from(lo)) } else { IpAddr::V4(Ipv4Addr::from(u32::try_from(lo).unwrap_or(u32::MAX))) };
            // k <= bits <= 128, so the length fits in a u8.
            out.push(Cidr { addr, len: u8::try_from(bits - k).unwrap_or(0) });
            let e = end(k);
            if e >= hi {
                break;
            }
            lo = e + 1;
        }
    }
    out
}

/// Why `nft -j` output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NftParseError {
    /// The output is not JSON.
    #[error("not JSON: {source}")]
    NotJson {
        /// serde's error.
        source: serde_json::Error,
    },
    /// The JSON has no `nftables` list.
    #[error("no `nftables` list")]
    NoNftablesList,
}

/// What a host's `nft -j list table inet cairn` says, in cairn's canonical text. Rules cairn
/// did not write (added by hand) are printed as faithfully as the JSON allows.
pub fn observed_text(json: &str) -> Result<String, NftParseError> {
    let doc: Value = serde_json::from_str(json).map_err(|source| NftParseError::NotJson { source })?;
    let items = doc.get("nftables").and_then(Value::as_array).ok_or(NftParseError::NoNftablesList)?;
    let mut chains: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    let mut others = Vec::new();
    for item in items {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else { continue };
        match kind.as_str() {
            "metainfo" | "table" => {}
            "chain" => {
                let name = str_of(body, "name");
                let header = body.get("hook").map(|_| {
                    format!(
                        "type {} hook {} priority {}; policy {};",
                        str_of(body, "type"),
                        str_of(body, "hook"),
                        body.get("prio").map_or_else(|| "?".to_string(), scalar),
                        body.get("policy").map_or_else(|| "accept".to_string(), scalar),
                    )
                });
                chains.push((name, header, Vec::new()));
            }
            "rule" => {
                let chain = str_of(body, "chain");
                let exprs = body.get("expr").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let comment = body.get("comment").and_then(Value::as_str).map(str::to_string);
                let line = match parse_rule(exprs) {
                    Some((saddr, l4, verdict)) => NftRule { saddr, l4, verdict, comment }.text(),
                    None => generic_rule(exprs, comment.as_deref()),
                };
                match chains.iter_mut().find(|c| c.0 == chain) {
                    Some(c) => c.2.push(line),
                    None => chains.push((chain, None, vec![line])),
                }
            }
            other => others.push(format!("{other} {}", str_of(body, "name"))),
        }
    }
    Ok(table_text(&chains, &others))
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).map_or_else(|| "?".to_string(), scalar)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

type Parsed = (Option<(bool, Vec<Interval>)>, L4, &'static str);

/// Recognises the rule shapes cairn writes; `None` for anything else.
fn parse_rule(exprs: &[Value]) -> Option<Parsed> {
    let mut saddr = None;
    let mut meta_proto: Option<Proto> = None;
    let mut ports: Option<(Proto, Vec<Interval>)> = None;
    let mut verdict = None;
    for e in exprs {
        if verdict.is_some() {
            return None; // nothing may follow the verdict
        }
        let obj = e.as_object()?;
        if let Some(m) = obj.get("match") {
            let op = m.get("op").and_then(Value::as_str)?;
            if op != "==" && op != "in" {
                return None;
            }
            let (left, right) = (m.get("left")?, m.get("right")?);
            if let Some(p) = left.get("payload") {
                let proto = p.get("protocol").and_then(Value::as_str)?;
                let field = p.get("field").and_then(Value::as_str)?;
                match (proto, field) {
                    ("ip" | "ip6", "saddr") if saddr.is_none() => {
                        let is6 = proto == "ip6";
                        saddr = Some((is6, addr_set(right, is6)?));
                    }
                    ("tcp" | "udp", "dport") if ports.is_none() => {
                        let p = if proto == "tcp" { Proto::Tcp } else { Proto::Udp };
                        ports = Some((p, port_set(right)?));
                    }
                    _ => return None,
                }
            } else if left.get("meta").and_then(|m| m.get("key")).and_then(Value::as_str) == Some("l4proto") && meta_proto.is_none() {
                meta_proto = Some(l4proto(right)?);
            } else {
                return None;
            }
        } else if obj.len() == 1 {
            verdict = Some(match obj.keys().next().map(String::as_str) {
                Some("accept") => FirewallAction::Accept.as_str(),
                Some("drop") => FirewallAction::Drop.as_str(),
                Some("reject") => FirewallAction::Reject.as_str(),
                _ => return None,
            });
        } else {
            return None;
        }
    }
    let l4 = match (meta_proto, ports) {
        (None, None) => L4::Any,
        (Some(p), None) => L4::Proto(p),
        (None, Some((p, set))) => L4::Ports(p, set),
        (Some(m), Some((p, set))) if m == p => L4::Ports(p, set),
        _ => return None,
    };
    Some((saddr, l4, verdict?))
}

fn l4proto(v: &Value) -> Option<Proto> {
    match v {
        Value::String(s) if s == "tcp" => Some(Proto::Tcp),
        Value::String(s) if s == "udp" => Some(Proto::Udp),
        _ => {
            let mut names: Vec<&str> = v.get("set")?.as_array()?.iter().map(Value::as_str).collect::<Option<_>>()?;
            names.sort_unstable();
            (names == ["icmp", "ipv6-icmp"]).then_some(Proto::Icmp)
        }
    }
}

/// Elements of a set, or the value itself.
fn elements(v: &Value) -> Vec<&Value> {
    match v.get("set").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![v],
    }
}

fn addr_set(v: &Value, is6: bool) -> Option<Vec<Interval>> {
    let ip = |v: &Value| -> Option<u128> {
        match v.as_str()?.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) if !is6 => Some(u128::from(u32::from(a))),
            IpAddr::V6(a) if is6 => Some(u128::from(a)),
            _ => None,
        }
    };
    elements(v)
        .into_iter()
        .map(|e| {
            if let Some(p) = e.get("prefix") {
                let addr: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
                let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
                (addr.is_ipv6() == is6 && len <= Cidr::max_len(addr)).then(|| Cidr { addr, len }.bounds())
            } else if let Some(r) = e.get("range").and_then(Value::as_array) {
                // A reversed range is no set nft makes: not understood, kept as a foreign rule.
                Some((ip(r.first()?)?, ip(r.get(1)?)?)).filter(|(lo, hi)| lo <= hi)
            } else {
                ip(e).map(|a| (a, a))
            }
        })
        .collect()
}

fn port_set(v: &Value) -> Option<Vec<Interval>> {
    let port = |v: &Value| v.as_u64().filter(|p| *p <= 65535).map(u128::from);
    elements(v)
        .into_iter()
        .map(|e| match e.get("range").and_then(Value::as_array) {
            Some(r) => Some((port(r.first()?)?, port(r.get(1)?)?)).filter(|(lo, hi)| lo <= hi),
            None => port(e).map(|p| (p, p)),
        })
        .collect()
}

/// A rule cairn did not write, in nft-like words.
fn generic_rule(exprs: &[Value], comment: Option<&str>) -> String {
    let mut parts: Vec<String> = exprs.iter().map(generic_stmt).collect();
    if let Some(c) = comment {
        parts.push(format!("comment \"{c}\""));
    }
    parts.join(" ")
}

fn generic_stmt(v: &Value) -> String {
    let Some((key, body)) = v.as_object().and_then(|o| o.iter().next()) else { return v.to_string() };
    match key.as_str() {
        "match" => {
            let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
            let left = body.get("left").map(generic_value).unwrap_or_default();
            let right = body.get("right").map(generic_value).unwrap_or_default();
            if op == "==" || op == "in" { format!("{left} {right}") } else { format!("{left} {op} {right}") }
        }
        "jump" | "goto" => format!("{key} {}", body.get("target").map_or_else(|| "?".to_string(), scalar)),
        "accept" | "drop" | "reject" | "return" | "continue" | "counter" | "log" | "queue" => key.clone(),
        _ => v.to_string(),
    }
}

fn generic_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(generic_value).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            if let Some(p) = o.get("payload") {
                format!("{} {}", str_of(p, "protocol"), str_of(p, "field"))
            } else if let Some(m) = o.get("meta") {
                format!("meta {}", str_of(m, "key"))
            } else if let Some(c) = o.get("ct") {
                format!("ct {}", str_of(c, "key"))
            } else if let Some(p) = o.get("prefix") {
                format!("{}/{}", str_of(p, "addr"), str_of(p, "len"))
            } else if let Some(r) = o.get("range").and_then(Value::as_array) {
                r.iter().map(generic_value).collect::<Vec<_>>().join("-")
            } else if let Some(s) = o.get("set").and_then(Value::as_array) {
                format!("{{ {} }}", s.iter().map(generic_value).collect::<Vec<_>>().join(", "))
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}
