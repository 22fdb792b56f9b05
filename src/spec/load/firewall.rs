//! Reading `[firewall.NAME]`: `rules` is a list of inline tables, each read with its own
//! [`TableReader`] so unknown keys get a "did you mean" and every bad port, CIDR, protocol or
//! action is reported at the value, all in one pass.

use toml::de::DeValue;

use super::reader::{TableReader, Value, type_phrase};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, Located, Span};
use crate::spec::firewall::{Cidr, FirewallAction, FirewallRule, FirewallSpec, PortRange, Proto, parse_cidr, parse_port_range};
use crate::spec::model::{ResourceId, TemplateText};

/// The values of a rule's `proto`.
pub(super) const PROTOS: &[&str] = &["tcp", "udp", "icmp"];

/// The values of a rule's `action`.
pub(super) const ACTIONS: &[&str] = &["accept", "drop", "reject"];

const EXAMPLE_RULES: &str = "[{ port = 22, proto = \"tcp\", action = \"accept\" }]";
const CIDR_HELP: &str = "write an IPv4 or IPv6 address, optionally with a prefix length: \"10.0.0.0/24\", \"10.0.0.5\", \"fd00::/64\"";

/// Reads the kind-specific keys of a `[firewall.NAME]` table.
pub(super) fn read_firewall(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<FirewallSpec> {
    let file = r.span().file;
    let Some((_, v)) = r.get("rules") else {
        if !r.near_miss(&["rules"]) {
            d.push(r.missing("rules", EXAMPLE_RULES));
        }
        return None;
    };
    let DeValue::Array(items) = v.get_ref() else {
        d.push(
            Diagnostic::at(
                &Span::new(file, v.span()),
                format!("`rules` in [{id}] must be an array of tables, found {}", type_phrase(v.get_ref())),
            )
            .with_label("expected an array of tables")
            .with_help(format!("write the rules as a list of inline tables: rules = {EXAMPLE_RULES}")),
        );
        return None;
    };
    let mut rules = Vec::new();
    let mut ok = true;
    for (n, item) in items.iter().enumerate() {
        let span = Span::new(file, item.span());
        let DeValue::Table(t) = item.get_ref() else {
            d.push(
                Diagnostic::at(&span, format!("rule {} of [{id}] must be a table, found {}", n + 1, type_phrase(item.get_ref())))
                    .with_label("expected a table")
                    .with_help("write each rule as an inline table, e.g. { port = 22, proto = \"tcp\", action = \"accept\" }"),
            );
            ok = false;
            continue;
        };
        let reader = TableReader::new(file, t, span.clone(), format!("rule {} of [{id}]", n + 1));
        match read_rule(reader, span, d) {
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(FirewallSpec { rules })
}

fn read_rule(mut r: TableReader<'_, '_>, span: Span, d: &mut Diagnostics) -> Option<FirewallRule> {
    let before = d.0.len();
    let proto_written = r.get("proto").is_some();
    let proto = r.optional_choice("proto", PROTOS, d).map(|p| {
        let proto = match p.value {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => Proto::Icmp,
        };
        Located::new(proto, p.span)
    });
    let ports = read_ports(&mut r, d);
    let (from, from_templates) = read_from(&mut r, d).unzip();
    let action = r.optional_choice("action", ACTIONS, d).map(|a| match a.value {
        "accept" => FirewallAction::Accept,
        "drop" => FirewallAction::Drop,
        _ => FirewallAction::Reject,
    });
    if r.get("action").is_none() && !r.near_miss(&["action"]) {
        d.push(r.missing("action", "\"accept\" (or \"drop\", \"reject\")"));
    }
    if let Some(ports) = &ports {
        match &proto {
            None if !proto_written => d.push(
                Diagnostic::at(&ports.span, format!("{} has `port` but no `proto`", r.what()))
                    .with_label("ports need a protocol")
                    .with_help("add proto = \"tcp\" or proto = \"udp\""),
            ),
            Some(Located { value: Proto::Icmp, span }) => d.push(
                Diagnostic::at(span, format!("{} gives ports for icmp", r.what()))
                    .with_label("icmp has no ports")
                    .with_related(&ports.span, "ports given here")
                    .with_help("remove `port`, or use proto = \"tcp\" or \"udp\""),
            ),
            _ => {}
        }
    }
    r.finish(d);
    if d.0.len() > before {
        return None;
    }
    Some(FirewallRule {
        span,
        proto: proto.map(|p| p.value),
        ports: ports.map(|p| p.value).unwrap_or_default(),
        from: from.unwrap_or_default(),
        from_templates: from_templates.unwrap_or_default(),
        action: action?,
    })
}

/// `port = 2379`, `port = "8000-8080"` or `port = [2379, "8000-8080"]`; no port listed twice.
fn read_ports(r: &mut TableReader<'_, '_>, d: &mut Diagnostics) -> Option<Located<Vec<PortRange>>> {
    let (_, v) = r.get("port")?;
    let span = r.at(v.span());
    let one = |v: &Value<'_>, d: &mut Diagnostics| -> Option<Located<PortRange>> {
        let at = r.at(v.span());
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()).ok().and_then(|n| u16::try_from(n).ok()) {
                Some(n) if n >= 1 => Ok(PortRange { first: n, last: n }),
                _ => Err(format!("`{}` is not a port (ports are 1 to 65535)", i.as_str())),
            },
            DeValue::String(s) => parse_port_range(s),
            other => Err(format!("expected a port number or a range such as \"8000-8080\", found {}", type_phrase(other))),
        };
        match parsed {
            Ok(p) => Some(Located::new(p, at)),
            Err(why) => {
                d.push(Diagnostic::at(&at, format!("invalid port in {}", r.what())).with_label(why).with_help(
                    "write a port from 1 to 65535 (port = 2379), a range (port = \"8000-8080\") or a list (port = [2379, 2380])",
                ));
                None
            }
        }
    };
    let items: Vec<Located<PortRange>> = match v.get_ref() {
        DeValue::Array(list) => {
            if list.is_empty() {
                d.push(
                    Diagnostic::at(&span, format!("`port` in {} is empty", r.what()))
                        .with_label("matches no port")
                        .with_help("list at least one port, or remove `port` to match every port"),
                );
                return None;
            }
            let parsed: Vec<Option<Located<PortRange>>> = list.iter().map(|item| one(item, d)).collect();
            parsed.into_iter().collect::<Option<Vec<_>>>()?
        }
        _ => vec![one(v, d)?],
    };
    let mut bad = false;
    for (i, p) in items.iter().enumerate() {
        if let Some(earlier) = items[..i].iter().find(|e| e.value.overlaps(&p.value)) {
            let message = if earlier.value == p.value {
                format!("port {} is listed twice in {}", p.value, r.what())
            } else {
                format!("ports {} and {} overlap in {}", earlier.value, p.value, r.what())
            };
            d.push(
                Diagnostic::at(&p.span, message)
                    .with_label(format!("overlaps {}", earlier.value))
                    .with_related(&earlier.span, "listed here first")
                    .with_help("list each port once"),
            );
            bad = true;
        }
    }
    if bad {
        return None;
    }
    Some(Located::new(items.into_iter().map(|p| p.value).collect(), span))
}

/// `from = ["10.0.0.0/24", "fd00::/64"]`: valid networks, none inside another. Entries with
/// template syntax (`"{{ vars.cluster_cidr }}"`) are kept as templates, rendered and checked per
/// host.
fn read_from(r: &mut TableReader<'_, '_>, d: &mut Diagnostics) -> Option<(Vec<Cidr>, Vec<TemplateText>)> {
    let list = r.string_list("from", d)?;
    if list.value.is_empty() {
        d.push(
            Diagnostic::at(&list.span, format!("`from` in {} is empty", r.what()))
                .with_label("matches no source")
                .with_help("list at least one address or network, or remove `from` to match every source"),
        );
        return None;
    }
    let mut out: Vec<Located<Cidr>> = Vec::new();
    let mut templates = Vec::new();
    let mut bad = false;
    for item in list.value {
        if item.value.contains("{{") || item.value.contains("{%") {
            templates.push(TemplateText { name: format!("{}.from", r.what()), text: item.value, span: item.span });
            continue;
        }
        match parse_cidr(&item.value) {
            Ok(cidr) => {
                let (lo, hi) = cidr.bounds();
                let overlap = out.iter().find(|o| {
                    let (olo, ohi) = o.value.bounds();
                    o.value.is_ipv4() == cidr.is_ipv4() && lo <= ohi && olo <= hi
                });
                if let Some(earlier) = overlap {
                    d.push(
                        Diagnostic::at(&item.span, format!("`{}` overlaps `{}` in {}", item.value, earlier.value, r.what()))
                            .with_label("overlaps an earlier entry")
                            .with_related(&earlier.span, "listed here first")
                            .with_help("list each network once; keep the wider one"),
                    );
                    bad = true;
                } else {
                    out.push(Located::new(cidr, item.span));
                }
            }
            Err(e) => {
                let diag = Diagnostic::at(&item.span, format!("`{}` is not a valid address or network", item.value)).with_label(e.problem);
                d.push(match e.suggestion {
                    Some(s) => diag.with_help(format!("did you mean \"{s}\"? ({CIDR_HELP})")),
                    None => diag.with_help(CIDR_HELP),
                });
                bad = true;
            }
        }
    }
    if bad { None } else { Some((out.into_iter().map(|c| c.value).collect(), templates)) }
}
