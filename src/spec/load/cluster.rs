//! Reading `[cluster.NAME]` tables: which driver, the member service (`unit`, which must name a
//! `[unit.*]` of the spec), the member's name and peer URL on each host, and the driver's
//! settings (templates, checked by the driver when rendered for a host).

use super::reader::{TableReader, quote_list};
use super::{Loader, undefined_reference, valid_name};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, Located};
use crate::spec::model::{ClusterDriverKind, ClusterSpec, Kind, ResourceId, TemplateText};

/// `[cluster.NAME]`. `unit` is completed with the module prefix by the caller.
pub(super) fn read(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<ClusterSpec> {
    let names: Vec<&'static str> = ClusterDriverKind::ALL.iter().map(|(n, _)| *n).collect();
    let driver = match r.get("driver") {
        None => {
            d.push(r.missing("driver", "\"etcd\""));
            None
        }
        Some(_) => {
            r.optional_choice("driver", &names, d).and_then(|c| ClusterDriverKind::ALL.iter().find(|(n, _)| *n == c.value).map(|(_, k)| *k))
        }
    };
    let unit = r.required_string("unit", "\"unit.etcd\"", d).and_then(|u| match ResourceId::parse(&u.value) {
        Some(target) if target.kind == Kind::Unit && valid_name(&target.name) => Some(Located::new(target, u.span)),
        _ => {
            d.push(
                Diagnostic::at(&u.span, format!("`unit` of [{id}] must name a unit, found `{}`", u.value))
                    .with_label("expected unit.NAME")
                    .with_help("name the [unit.*] that runs the member's service, e.g. unit = \"unit.etcd\""),
            );
            None
        }
    });
    let template = |s: Located<String>, key: &str| TemplateText { text: s.value, span: s.span, name: format!("{id}.{key}") };
    let member = r.optional_string("member", d).map_or_else(
        || TemplateText { text: "{{ host.name }}".to_string(), span: r.span().clone(), name: format!("{id}.member") },
        |s| template(s, "member"),
    );
    let peer_url = r.required_string("peer_url", "\"https://{{ host.address }}:2380\"", d).map(|s| template(s, "peer_url"));
    let mut settings = Vec::new();
    if let Some(mut t) = r.table("settings", format!("`settings` of [{id}]"), d) {
        for (key, value) in t.rest() {
            match value.get_ref() {
                toml::de::DeValue::String(s) => {
                    let text = TemplateText { text: s.to_string(), span: t.at(value.span()), name: format!("{id}.settings.{}", key.value) };
                    settings.push((key, text));
                }
                _ => d.push(
                    Diagnostic::at(&t.at(value.span()), format!("`settings.{}` of [{id}] must be a string", key.value))
                        .with_label("expected a string")
                        .with_help("put the value in double quotes (it may use templates, e.g. \"{{ inputs.bin_dir }}/etcdctl\")"),
                ),
            }
        }
        t.finish(d);
    }
    let join_timeout_secs = r.optional_seconds("join_timeout", 10, 86_400, "\"5m\"", d).map_or(300, |t| t.value);
    let mut after_on_peers = Vec::new();
    for a in r.string_list("after_on_peers", d).map(|l| l.value).unwrap_or_default() {
        match ResourceId::parse(&a.value) {
            Some(target) if valid_name(&target.name) => after_on_peers.push(Located::new(target, a.span)),
            _ => d.push(super::bad_after_id(&a)),
        }
    }
    Some(ClusterSpec {
        driver: driver?,
        unit: unit?,
        member,
        peer_url: peer_url?,
        settings,
        join_timeout_secs,
        after_on_peers,
        snapshot_local_dir: std::path::PathBuf::new(),
    })
}

impl Loader {
    /// Every cluster's `unit` must name a unit of the spec.
    pub(super) fn check_cluster_units(&mut self) {
        let units: Vec<String> = self.resource_keys.keys().filter(|k| k.kind == Kind::Unit).map(ToString::to_string).collect();
        for u in &self.pending_cluster_units {
            if self.resource_keys.contains_key(&u.value) {
                continue;
            }
            let help = format!(
                "`unit` names the [unit.*] running the member's service; units defined: {}",
                if units.is_empty() { "none".to_string() } else { quote_list(&units.iter().map(String::as_str).collect::<Vec<_>>()) }
            );
            self.diags.push(undefined_reference(&u.span, "unit", &u.value.to_string(), &units, "no such unit", help));
        }
    }
}
