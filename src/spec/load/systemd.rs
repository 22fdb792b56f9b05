//! Reading `[unit.NAME]`, `[user.NAME]` and `[check.NAME]` tables into their spec structs. Every
//! problem becomes a diagnostic; the caller carries on with the rest of the spec.

use std::path::Path;

use toml::de::DeValue;

use super::reader::quote_list;
use super::reader::{TableReader, type_phrase};
use super::{Loader, bad_after_id, read_content, undefined_reference, valid_name};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, Located, SourceMap};
use crate::spec::model::{CheckCommand, CheckSpec, Kind, ResourceId, RollingSpec, StartMode, TemplateText, UnitSpec, UnitState, UserSpec};

/// Unit types whose files cairn writes and whose state it manages.
const UNIT_SUFFIXES: &[&str] = &["service", "socket", "timer", "target", "path", "mount", "automount", "swap", "slice"];

/// The values of a unit's `state`.
pub(super) const UNIT_STATES: &[&str] = &["running", "stopped"];

/// The values of a unit's `start`.
pub(super) const UNIT_STARTS: &[&str] = &["per-host", "together"];

/// Whether `s` is a unit name systemd accepts, with one of [`UNIT_SUFFIXES`].
pub(crate) fn valid_unit_name(s: &str) -> bool {
    let Some((stem, suffix)) = s.rsplit_once('.') else { return false };
    !stem.is_empty()
        && !stem.starts_with('-')
        && s.len() <= 255
        && UNIT_SUFFIXES.contains(&suffix)
        && stem.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'\\' | b'@' | b'-'))
}

/// Whether `s` is a portable user or group name (what `useradd` accepts without complaint).
pub(crate) fn valid_account_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    !body.is_empty()
        && s.len() <= 32
        && body.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `[unit.NAME]`. The caller adds `restart_on` to the resource's dependencies.
pub(super) fn unit(
    r: &mut TableReader<'_, '_>,
    sources: &mut SourceMap,
    base: &Path,
    id: &ResourceId,
    d: &mut Diagnostics,
) -> Option<UnitSpec> {
    let name = r.required_string("name", "\"etcd.service\"", d);
    if let Some(n) = &name
        && !valid_unit_name(&n.value)
    {
        d.push(
            Diagnostic::at(&n.span, format!("`{}` is not a unit name cairn can manage", n.value))
                .with_label("expected NAME.service, NAME.timer, NAME.socket, …")
                .with_help(format!(
                    "write the full unit name with its type, e.g. name = \"etcd.service\"; the types are {}",
                    UNIT_SUFFIXES.join(", ")
                )),
        );
    }
    let has_content = ["content", "template", "source"].iter().any(|k| r.get(k).is_some());
    let mut content = if has_content { read_content(r, sources, base, id, d) } else { None };
    if let Some(secret) = content.as_ref().and_then(|c| c.secret()) {
        // A unit file is shown as a diff: a secret belongs in a file the unit reads.
        d.push(
            Diagnostic::at(&secret.span, format!("[{id}] takes its unit file from a secret"))
                .with_label("secret sources are for [file.*] content")
                .with_help("write the secret to a [file.*] (always sensitive) and point the unit at it, e.g. EnvironmentFile="),
        );
        content = None;
    }
    let enabled = r.optional_bool("enabled", d).is_none_or(|b| b.value);
    let state = match r.optional_choice("state", UNIT_STATES, d).map(|s| s.value) {
        Some("stopped") => UnitState::Stopped,
        _ => UnitState::Running,
    };
    let start = match r.optional_choice("start", UNIT_STARTS, d).map(|s| s.value) {
        Some("together") => StartMode::Together,
        _ => StartMode::PerHost,
    };
    let start_timeout_secs = r.optional_seconds("start_timeout", 1, 3600, "\"90s\"", d).map_or(90, |t| t.value);
    let mut restart_on = Vec::new();
    for a in r.string_list("restart_on", d).map(|l| l.value).unwrap_or_default() {
        match ResourceId::parse(&a.value) {
            Some(target) if valid_name(&target.name) => {
                if target == *id {
                    d.push(
                        Diagnostic::at(&a.span, format!("[{id}] names itself in `restart_on`"))
                            .with_label("the unit itself")
                            .with_help("list the resources whose changes must restart the unit, e.g. \"file.config\""),
                    );
                } else {
                    restart_on.push(Located::new(target, a.span));
                }
            }
            _ => d.push(bad_after_id(&a)),
        }
    }
    let mut reloads_certificates = Vec::new();
    for a in r.string_list("reloads_certificates", d).map(|l| l.value).unwrap_or_default() {
        match ResourceId::parse(&a.value) {
            Some(target) if target.kind == Kind::Cert && valid_name(&target.name) => {
                if restart_on.iter().any(|r: &Located<ResourceId>| r.value == target) {
                    reloads_certificates.push(Located::new(target, a.span));
                } else {
                    d.push(
                        Diagnostic::at(
                            &a.span,
                            format!("`reloads_certificates` of [{id}] names {target}, which is not in its `restart_on`"),
                        )
                        .with_label("not in restart_on")
                        .with_help(format!(
                            "add \"{target}\" to `restart_on` too: a change of the certificate's CA file still restarts the unit"
                        )),
                    );
                }
            }
            _ => d.push(
                Diagnostic::at(&a.span, format!("`reloads_certificates` of [{id}] must name certificates, found `{}`", a.value))
                    .with_label("expected cert.NAME")
                    .with_help("list the [cert.*] resources of `restart_on` whose new certificate and key the service reads by itself"),
            ),
        }
    }
    let rolling = r.table("rolling", format!("`rolling` of [{id}]"), d).map(|mut t| {
        let batch = t.optional_int("batch", 1, 1000, 1, d).map_or(1, |b| u32::try_from(b.value).unwrap_or(1));
        let wait_for = t.optional_string("wait_for", d).and_then(|w| match ResourceId::parse(&w.value) {
            Some(target) if target.kind == Kind::Check && valid_name(&target.name) => Some(Located::new(target, w.span)),
            _ => {
                d.push(
                    Diagnostic::at(&w.span, format!("`wait_for` of [{id}] must name a check, found `{}`", w.value))
                        .with_label("expected check.NAME")
                        .with_help("name the [check.*] that must pass on a restarted host before the next batch, e.g. \"check.health\""),
                );
                None
            }
        });
        t.finish(d);
        RollingSpec { batch, wait_for }
    });
    if has_content && content.is_none() {
        return None;
    }
    let name = name.filter(|n| valid_unit_name(&n.value))?;
    Some(UnitSpec { name, content, enabled, state, restart_on, reloads_certificates, start, start_timeout_secs, rolling })
}

/// An absolute path without characters `/etc/passwd` cannot hold.
fn account_path(r: &mut TableReader<'_, '_>, key: &'static str, example: &str, d: &mut Diagnostics) -> Option<Located<String>> {
    let v = r.optional_string(key, d)?;
    if !v.value.starts_with('/') || v.value.contains([':', '\n', '\t', '\0']) {
        d.push(
            Diagnostic::at(&v.span, format!("`{key}` in {} must be an absolute path", r.what()))
                .with_label("not an absolute path, or contains `:` or a control character")
                .with_help(format!("write e.g. {key} = \"{example}\"")),
        );
        return None;
    }
    Some(v)
}

/// One user or group name, checked.
fn account_name(v: Located<String>, what: &str, d: &mut Diagnostics) -> Option<Located<String>> {
    if valid_account_name(&v.value) {
        return Some(v);
    }
    d.push(
        Diagnostic::at(&v.span, format!("`{}` is not a valid {what} name", v.value))
            .with_label("expected lower-case letters, digits, `_` and `-`, starting with a letter or `_`")
            .with_help(format!("{what} names are at most 32 characters, e.g. \"etcd\"")),
    );
    None
}

/// `[user.NAME]`.
pub(super) fn user(r: &mut TableReader<'_, '_>, name: &Located<String>, d: &mut Diagnostics) -> Option<UserSpec> {
    let login = r.optional_string("name", d).unwrap_or_else(|| name.clone());
    let login = account_name(login, "user", d);
    let system = r.optional_bool("system", d).is_some_and(|b| b.value);
    let group = r.optional_string("group", d).and_then(|g| account_name(g, "group", d));
    let uid = r.optional_int("uid", 0, i64::from(u32::MAX - 1), 990, d).and_then(|u| u32::try_from(u.value).ok());
    let home = account_path(r, "home", "/var/lib/etcd", d);
    let shell = account_path(r, "shell", "/usr/sbin/nologin", d);
    let groups: Vec<Located<String>> =
        r.string_list("groups", d).map(|l| l.value).unwrap_or_default().into_iter().filter_map(|g| account_name(g, "group", d)).collect();
    let remove = r.optional_bool("remove", d).is_some_and(|b| b.value);
    Some(UserSpec { name: login?, system, group, uid, home, shell, groups, remove })
}

/// `[check.NAME]`.
pub(super) fn check(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<CheckSpec> {
    let command = match r.get("command") {
        None => {
            if !r.near_miss(&["command"]) {
                d.push(r.missing("command", "[\"program\", \"arg\"]"));
            }
            None
        }
        Some((_, v)) => match v.get_ref() {
            DeValue::String(_) => r
                .optional_string("command", d)
                .map(|s| CheckCommand::Shell(TemplateText { text: s.value, span: s.span, name: format!("{id}.command") })),
            DeValue::Array(_) => r.string_list("command", d).and_then(|list| {
                if list.value.is_empty() {
                    d.push(
                        Diagnostic::at(&list.span, format!("`command` of [{id}] is empty"))
                            .with_label("no program")
                            .with_help("write the program and its arguments, e.g. command = [\"etcdctl\", \"endpoint\", \"health\"]"),
                    );
                    return None;
                }
                Some(CheckCommand::Argv(
                    list.value
                        .into_iter()
                        .enumerate()
                        .map(|(i, a)| TemplateText { text: a.value, span: a.span, name: format!("{id}.command[{i}]") })
                        .collect(),
                ))
            }),
            other => {
                d.push(
                    Diagnostic::at(&r.at(v.span()), format!("`command` in {} must be a string or an array of strings, found {}", r.what(), type_phrase(other)))
                        .with_label("expected a string (run by `sh -c`) or an array (run as is)")
                        .with_help("write command = [\"etcdctl\", \"endpoint\", \"health\"] or command = \"etcdctl endpoint health | grep -q healthy\""),
                );
                None
            }
        },
    };
    let description = r.optional_string("description", d).map_or_else(|| id.name.replace(['-', '_'], " "), |s| s.value);
    let retries = r.optional_int("retries", 0, 10_000, 5, d).map_or(0, |v| u32::try_from(v.value).unwrap_or(0));
    let interval_secs = r.optional_seconds("interval", 0, 3600, "\"2s\"", d).map_or(2, |v| v.value);
    let timeout_secs = r.optional_seconds("timeout", 1, 86_400, "\"30s\"", d).map_or(30, |v| v.value);
    Some(CheckSpec { command: command?, description, retries, interval_secs, timeout_secs })
}

impl Loader {
    /// Every `rolling.wait_for` must name a check of the spec.
    pub(super) fn check_wait_for(&mut self) {
        let checks: Vec<String> = self.resource_keys.keys().filter(|k| k.kind == Kind::Check).map(ToString::to_string).collect();
        for w in &self.pending_wait_for {
            if self.resource_keys.contains_key(&w.value) {
                continue;
            }
            let wanted = w.value.to_string();
            let help = format!(
                "define the check that gates each batch of restarts; checks defined: {}",
                if checks.is_empty() { "none".to_string() } else { quote_list(&checks.iter().map(String::as_str).collect::<Vec<_>>()) }
            );
            self.diags.push(undefined_reference(&w.span, "wait_for", &wanted, &checks, "no such check", help));
        }
    }

    /// Every `restart_on` entry must name a resource of the spec.
    pub(super) fn check_restart_on(&mut self) {
        let known: Vec<String> = self.resource_keys.keys().map(ToString::to_string).collect();
        for a in &self.pending_restart_on {
            if self.resource_keys.contains_key(&a.value) {
                continue;
            }
            let wanted = a.value.to_string();
            let help = format!(
                "`restart_on` lists resources of the spec whose changes restart the unit; defined: {}",
                quote_list(&known.iter().map(String::as_str).collect::<Vec<_>>())
            );
            self.diags.push(undefined_reference(&a.span, "restart_on", &wanted, &known, "no such resource", help));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        for ok in ["etcd.service", "etcd-backup.timer", "getty@tty1.service", "a.b.socket", "x.target"] {
            assert!(valid_unit_name(ok), "{ok}");
        }
        for bad in ["etcd", ".service", "-x.service", "etcd.conf", "a b.service", "a/b.service", "a\n.service"] {
            assert!(!valid_unit_name(bad), "{bad}");
        }
    }

    #[test]
    fn account_names() {
        for ok in ["etcd", "_apt", "systemd-network", "www-data", "host$", "u1"] {
            assert!(valid_account_name(ok), "{ok}");
        }
        for bad in ["", "Etcd", "1user", "-x", "a:b", "a b", "$", "averyveryveryverylongusernamethatgoesonandon"] {
            assert!(!valid_account_name(bad), "{bad}");
        }
    }
}
