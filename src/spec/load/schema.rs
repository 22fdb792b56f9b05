//! The shape of a spec file as data: every table the loader reads, each key with its type, a
//! description and its allowed values, rendered as a JSON Schema (draft-07, keeping to the
//! keywords of draft 4 that taplo / Even Better TOML understand) by [`json_schema`] for
//! `cairn schema` and `docs/spec.schema.json`.
//!
//! It sits beside the loader and shares its lists of allowed values (kinds, key types, usages,
//! drivers, `ignore` attributes, unit states), and a test below loads a spec made from this very
//! data while [`super::reader::TableReader`] records every key the loader asks for and how it
//! reads it: each table's keys here must be exactly the keys the loader reads there, each with
//! the type, bounds and choices the loader reads it with, so the schema cannot drift.

use serde_json::{Map, Value as J, json};

use super::firewall::{ACTIONS, PROTOS};
use super::ignorable;
use super::pki::KEY_CHOICES;
use super::systemd::{UNIT_STARTS, UNIT_STATES};
use super::{HOST_KEY_CHECKING, TRANSPORTS};
use crate::spec::model::Kind;

/// The type of a key's value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    /// A string (often a template).
    Str,
    /// A boolean.
    Bool,
    /// A whole number within the bounds.
    Int(i64, i64),
    /// Seconds within the bounds: an integer, or a string with units `s`, `m`, `h`.
    Seconds(u64, u64),
    /// A span of time with units `y`, `w`, `d`, `h` (`"10y"`, `"30d"`).
    Duration,
    /// A Unix mode: a string of 3 or 4 octal digits.
    Mode,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A list of strings.
    StrList,
    /// A list of these strings (none when empty).
    ChoiceList(&'static [&'static str]),
    /// A table with exactly these keys.
    Table(&'static [Key]),
    /// A table with these keys and any others (module inputs).
    OpenTable(&'static [Key]),
    /// A table of free names, each value of this type.
    Map(&'static Ty),
    /// A list of tables with these keys.
    Tables(&'static [Key]),
    /// Any of these types.
    AnyOf(&'static [Ty]),
    /// Any TOML value.
    Any,
    /// A port (1-65535), a range `"8000-8080"`, or a list of them.
    Ports,
}

/// One key of a table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) required: bool,
    pub(super) doc: &'static str,
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key { name, ty, required: false, doc }
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key { name, ty, required: true, doc }
}

const SSH: &[Key] = &[
    opt("user", Ty::Str, "Login user on every ssh host (a host's `user` wins)."),
    opt("port", Ty::Int(1, 65535), "SSH port on every host (a host's `port` wins); default 22."),
    opt("identity_file", Ty::Str, "Private key file to log in with."),
    opt("known_hosts_file", Ty::Str, "known_hosts file to check host keys against."),
    opt("host_key_checking", Ty::Choice(HOST_KEY_CHECKING), "How host keys are checked; default \"strict\"."),
    opt("become", Ty::Bool, "Run commands through sudo on every host (a host's `become` wins)."),
    opt("connect_timeout", Ty::Int(1, 4_294_967_295), "Seconds to wait for a connection; default 10."),
];

const HOST: &[Key] = &[
    opt("transport", Ty::Choice(TRANSPORTS), "How cairn reaches the host: \"ssh\" (default) or \"local\" (this machine)."),
    opt("address", Ty::Str, "IP address or DNS name; required for ssh hosts."),
    opt("port", Ty::Int(1, 65535), "SSH port; default [ssh] port or 22."),
    opt("user", Ty::Str, "Login user; default [ssh] user."),
    opt("become", Ty::Bool, "Run commands through sudo."),
    opt("labels", Ty::Map(&Ty::Str), "Free labels, matched by selectors such as \"role=etcd\"."),
];

const MODULE_INSTANCE: &[Key] = &[
    req("source", Ty::Str, "The module: a name looked up in modules/ (and CAIRN_MODULE_PATH), or a path to its folder."),
    opt("hosts", Ty::StrList, "Selectors of the hosts the module's resources are on; default every host."),
    opt("after", Ty::StrList, "Resource ids every resource of the module waits for."),
];

const SECRET: &[Key] = &[
    opt("env", Ty::Str, "Environment variable on the machine running cairn."),
    opt("file", Ty::Str, "Local file (`~` is $HOME; relative to the spec's folder)."),
    opt("command", Ty::StrList, "Program and arguments (no shell); its stdout is the secret."),
];

const CONTENT: Ty = Ty::AnyOf(&[Ty::Str, Ty::Table(SECRET)]);

// Keys several kinds read the same way (`read_path`, `optional_mode`, owner and group).
const PATH: Key = req("path", Ty::Str, "Absolute path on the host (a template).");
const MODE: Key = opt("mode", Ty::Mode, "Permissions as octal digits in quotes, e.g. \"0644\".");
const OWNER: Key = opt("owner", Ty::Str, "Owning user.");
const GROUP: Key = opt("group", Ty::Str, "Owning group.");

const DIR: &[Key] =
    &[PATH, MODE, OWNER, GROUP, opt("purge", Ty::Bool, "When the resource leaves the spec, delete the directory with its contents.")];

const FILE: &[Key] = &[
    PATH,
    opt("content", CONTENT, "Inline content (a template), or a secret source: { env = … }, { file = … } or { command = [ … ] }."),
    opt("template", Ty::Str, "Template file, relative to the spec file."),
    opt("source", Ty::Str, "File copied as it is, relative to the spec file."),
    MODE,
    OWNER,
    GROUP,
    opt("sensitive", Ty::Bool, "Never show the content or its hash (always on for a secret source)."),
];

const ROLLING: &[Key] = &[
    opt("batch", Ty::Int(1, 1000), "Hosts restarted at a time; default 1."),
    opt("wait_for", Ty::Str, "A check (\"check.NAME\") that must pass on a restarted host before the next batch."),
];

const UNIT: &[Key] = &[
    req("name", Ty::Str, "Full unit name with its type, e.g. \"etcd.service\"."),
    opt("content", Ty::Str, "Unit file content (a template); without content, template or source the unit file must exist."),
    opt("template", Ty::Str, "Unit file template, relative to the spec file."),
    opt("source", Ty::Str, "Unit file copied as it is, relative to the spec file."),
    opt("enabled", Ty::Bool, "Enabled at boot; default true."),
    opt("state", Ty::Choice(UNIT_STATES), "Wanted state; default \"running\"."),
    opt("start", Ty::Choice(UNIT_STARTS), "Start on each host on its own, or on every host at once; default \"per-host\"."),
    opt("start_timeout", Ty::Seconds(1, 3600), "How long a start may take: seconds, or e.g. \"90s\"; default 90."),
    opt("restart_on", Ty::StrList, "Resource ids whose changes restart the unit (they are applied first)."),
    opt(
        "reloads_certificates",
        Ty::StrList,
        "Certificates of restart_on the service re-reads by itself: one issued again restarts nothing; a change of its CA file still does.",
    ),
    opt("rolling", Ty::Table(ROLLING), "Restart the hosts in batches."),
];

const USER: &[Key] = &[
    opt("name", Ty::Str, "Login name; default the resource's name."),
    opt("system", Ty::Bool, "A system account."),
    opt("group", Ty::Str, "Primary group (made when missing)."),
    opt("uid", Ty::Int(0, 4_294_967_294), "User id."),
    opt("home", Ty::Str, "Home directory (absolute path)."),
    opt("shell", Ty::Str, "Login shell (absolute path)."),
    opt("groups", Ty::StrList, "Supplementary groups."),
    opt("remove", Ty::Bool, "When the resource leaves the spec, delete the account (userdel; the home is kept)."),
];

const CHECK: &[Key] = &[
    req("command", Ty::AnyOf(&[Ty::Str, Ty::StrList]), "A string run by `sh -c`, or a program and its arguments run as they are."),
    opt("description", Ty::Str, "What the check shows; default the resource's name."),
    opt("retries", Ty::Int(0, 10_000), "Retries after a failure; default 0."),
    opt("interval", Ty::Seconds(0, 3600), "Wait between tries: seconds, or e.g. \"2s\"; default 2."),
    opt("timeout", Ty::Seconds(1, 86_400), "Limit for one try: seconds, or e.g. \"30s\"; default 30."),
];

const BINARY: &[Key] = &[
    req("url", Ty::Str, "Where to download it: https://, http:// or file:// (a template)."),
    req("sha256", Ty::Str, "sha256 of the download: 64 hex digits."),
    opt("extract", Ty::Map(&Ty::Str), "Archive members and their absolute destinations: { \"etcd\" = \"/usr/local/bin/etcd\" }."),
    opt("path", Ty::Str, "Absolute destination of the downloaded file as it is (instead of `extract`)."),
    MODE,
    OWNER,
    GROUP,
    opt("version_command", Ty::StrList, "Program and arguments printing the installed version."),
    opt("optional", Ty::StrList, "Members of `extract` an archive may lack."),
];

const RULE: &[Key] = &[
    opt("proto", Ty::Choice(PROTOS), "Protocol; needed with `port`."),
    opt("port", Ty::Ports, "A port, a range \"8000-8080\", or a list of them; default every port."),
    opt("from", Ty::StrList, "Source addresses or networks (\"10.0.0.0/24\"); default every source."),
    req("action", Ty::Choice(ACTIONS), "What happens to matching packets."),
];

const FIREWALL: &[Key] = &[req("rules", Ty::Tables(RULE), "The rules, in order: { port = 22, proto = \"tcp\", action = \"accept\" }.")];

const SUBJECT: &[Key] = &[
    opt("C", Ty::Str, "Country."),
    opt("ST", Ty::Str, "State or province."),
    opt("L", Ty::Str, "Locality."),
    opt("O", Ty::Str, "Organization."),
    opt("OU", Ty::Str, "Organizational unit."),
];

const CA: &[Key] = &[
    req("common_name", Ty::Str, "The CA's common name."),
    opt("subject", Ty::Table(SUBJECT), "Further subject fields."),
    opt("key", Ty::Choice(&KEY_CHOICES), "Key type of a generated CA; default \"ecdsa-p256\"."),
    opt("validity", Ty::Duration, "Lifetime of a generated CA, e.g. \"10y\"; default \"10y\"."),
    opt("cert_file", Ty::Str, "Import an existing CA: its certificate (with `key_file`)."),
    opt("key_file", Ty::Str, "Import an existing CA: its private key (with `cert_file`)."),
    opt("dir", Ty::Str, "Where a generated CA is kept; default STATE_DIR/pki/NAME."),
    opt(
        "age_recipients",
        Ty::StrList,
        "age recipients (age1…) the generated CA's key is encrypted to in its store; [] keeps it plain; default the spec's `age_recipients`.",
    ),
];

/// The spellings of [`crate::spec::pki::Usage::ALL`] (a test checks they match).
const USAGES: &[&str] = &["server", "client"];

const CERT: &[Key] = &[
    req("ca", Ty::Str, "The issuing CA, \"ca.NAME\"."),
    req("common_name", Ty::Str, "Common name (a template, e.g. \"{{ host.name }}\")."),
    opt("subject", Ty::Table(SUBJECT), "Further subject fields."),
    opt("sans", Ty::StrList, "Subject alternative names: IP addresses or DNS names (templates)."),
    opt("usages", Ty::ChoiceList(USAGES), "Extended key usages; default [\"server\", \"client\"]."),
    opt("validity", Ty::Duration, "Lifetime, e.g. \"1y\"; default \"1y\"."),
    opt("renew_before", Ty::Duration, "Reissue this long before expiry; default \"30d\"."),
    opt("key", Ty::Choice(&KEY_CHOICES), "Key type; default \"ecdsa-p256\"."),
    req("cert_path", Ty::Str, "Absolute path of the certificate on the host."),
    req("key_path", Ty::Str, "Absolute path of the private key on the host."),
    opt("ca_path", Ty::Str, "Absolute path where the CA certificate is written."),
    opt("owner", Ty::Str, "Owning user of the files."),
    opt("group", Ty::Str, "Owning group of the files."),
];

/// The names of [`crate::spec::model::ClusterDriverKind::ALL`] (a test checks they match).
const DRIVERS: &[&str] = &["etcd"];

const CLUSTER: &[Key] = &[
    req("driver", Ty::Choice(DRIVERS), "Which clustered service."),
    req("unit", Ty::Str, "The [unit.*] running the member's service, \"unit.NAME\"."),
    opt("member", Ty::Str, "The member's name on each host (a template); default \"{{ host.name }}\"."),
    req("peer_url", Ty::Str, "The URL the other members reach this member at (a template)."),
    opt("settings", Ty::Map(&Ty::Str), "The driver's settings (templates)."),
    opt("join_timeout", Ty::Seconds(10, 86_400), "How long a member's join may take: seconds, or e.g. \"5m\"; default 300."),
    opt("after_on_peers", Ty::StrList, "Resource ids that must be applied on every member before one joins."),
];

/// The keys every resource kind reads before its own (a CA reads none of them).
fn common_keys(kind: Kind) -> Vec<Key> {
    if kind == Kind::Ca {
        return Vec::new();
    }
    vec![
        opt("hosts", Ty::StrList, "Selectors (\"*\", a host name or \"label=value\") of the hosts it is on; default every host."),
        opt("after", Ty::StrList, "Resource ids applied first on the same host."),
        opt("prevent_destroy", Ty::Bool, "Refuse a plan that would remove or replace it."),
        opt(
            "ignore",
            Ty::ChoiceList(ignorable(kind)),
            if ignorable(kind).is_empty() {
                "Attributes whose drift is accepted: this kind takes none yet (file, dir and user do)."
            } else {
                "Attributes whose drift is accepted: not reported, not corrected."
            },
        ),
    ]
}

/// The keys of a `[KIND.NAME]` table.
pub(super) fn kind_keys(kind: Kind) -> Vec<Key> {
    let own: &[Key] = match kind {
        Kind::Dir => DIR,
        Kind::File => FILE,
        Kind::Unit => UNIT,
        Kind::User => USER,
        Kind::Check => CHECK,
        Kind::Ca => CA,
        Kind::Cert => CERT,
        Kind::Binary => BINARY,
        Kind::Firewall => FIREWALL,
        Kind::Cluster => CLUSTER,
    };
    let mut keys = common_keys(kind);
    keys.extend_from_slice(own);
    keys
}

/// What each kind is, for its table's description.
fn kind_doc(kind: Kind) -> &'static str {
    match kind {
        Kind::Dir => "Directories.",
        Kind::File => "Files with content.",
        Kind::Unit => "systemd units.",
        Kind::User => "User accounts and their primary group.",
        Kind::Check => "Health checks run during an apply.",
        Kind::Ca => "Certificate authorities kept on the machine running cairn.",
        Kind::Cert => "Certificates and keys issued by a CA.",
        Kind::Binary => "Downloaded files or archive members, verified by sha256.",
        Kind::Firewall => "Rules in cairn's nftables table.",
        Kind::Cluster => "A clustered service's membership, one member per host.",
    }
}

/// The top-level keys, each resource kind with the keys of its `[KIND.NAME]` tables (built at run
/// time: `ignore` takes each kind's own list).
fn root() -> Vec<(Key, Option<Vec<Key>>)> {
    let mut keys = vec![
        (opt("include", Ty::StrList, "Other spec files merged into this one, relative to this file."), None),
        (opt("state_dir", Ty::Str, "Local state directory (main spec file only); default .cairn."), None),
        (opt("name", Ty::Str, "The spec's name on the hosts (main spec file only); default the file's or folder's name."), None),
        (
            opt(
                "age_recipients",
                Ty::StrList,
                "age recipients (age1…) every generated CA's key is encrypted to in the state dir (main spec file only); default none: plain keys.",
            ),
            None,
        ),
        (opt("vars", Ty::Map(&Ty::Any), "Free values for templates (`vars.NAME`)."), None),
        (opt("ssh", Ty::Table(SSH), "Connection defaults for every ssh host."), None),
        (opt("hosts", Ty::Map(&Ty::Table(HOST)), "The hosts, one table each: [hosts.NAME]."), None),
    ];
    for &kind in Kind::ALL {
        keys.push((opt(kind.as_str(), Ty::Any, kind_doc(kind)), Some(kind_keys(kind))));
    }
    keys.push((opt("module", Ty::Map(&Ty::OpenTable(MODULE_INSTANCE)), "Module instances: [module.NAME] with `source` and inputs; a string input may come from { env = … }, { file = … } or { command = […] }."), None));
    keys
}

/// The JSON Schema of a spec file.
pub fn json_schema() -> J {
    let mut props = Map::new();
    for (key, kind) in root() {
        let value = match kind {
            Some(kind_keys) => {
                let entry = object(&kind_keys, false, Some(&format!("[{}.NAME]", key.name)));
                json!({ "type": "object", "description": key.doc, "additionalProperties": entry })
            }
            None => described(ty(&key.ty), key.doc),
        };
        props.insert(key.name.to_string(), value);
    }
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "cairn spec",
        "description": "A cairn spec file (cairn.toml and the files it includes); see docs/spec.md. Made by `cairn schema`.",
        "type": "object",
        "properties": props,
        "additionalProperties": false,
    })
}

fn described(mut v: J, doc: &str) -> J {
    if let J::Object(m) = &mut v {
        m.insert("description".into(), J::String(doc.to_string()));
    }
    v
}

/// A table with `keys` (closed unless `open`).
fn object(keys: &[Key], open: bool, title: Option<&str>) -> J {
    let mut props = Map::new();
    for k in keys {
        props.insert(k.name.to_string(), described(ty(&k.ty), k.doc));
    }
    let required: Vec<J> = keys.iter().filter(|k| k.required).map(|k| J::String(k.name.to_string())).collect();
    let mut m = Map::new();
    if let Some(t) = title {
        m.insert("title".into(), J::String(t.to_string()));
    }
    m.insert("type".into(), json!("object"));
    m.insert("properties".into(), J::Object(props));
    if !required.is_empty() {
        m.insert("required".into(), J::Array(required));
    }
    m.insert("additionalProperties".into(), J::Bool(open));
    J::Object(m)
}

fn ty(t: &Ty) -> J {
    match t {
        Ty::Str => json!({ "type": "string" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Int(min, max) => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Ty::Seconds(min, max) => json!({ "anyOf": [
            { "type": "integer", "minimum": min, "maximum": max },
            { "type": "string", "pattern": "^([0-9]+[smh])+$" },
        ] }),
        Ty::Duration => json!({ "type": "string", "pattern": "^([0-9]+[ywdh])+$" }),
        Ty::Mode => json!({ "type": "string", "pattern": "^[0-7]{3,4}$" }),
        Ty::Choice(allowed) => json!({ "type": "string", "enum": allowed }),
        Ty::StrList => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::ChoiceList([]) => json!({ "type": "array", "maxItems": 0 }),
        Ty::ChoiceList(allowed) => json!({ "type": "array", "items": { "type": "string", "enum": allowed } }),
        Ty::Table(keys) => object(keys, false, None),
        Ty::OpenTable(keys) => object(keys, true, None),
        Ty::Map(value) => json!({ "type": "object", "additionalProperties": ty(value) }),
        Ty::Tables(keys) => json!({ "type": "array", "items": object(keys, false, None) }),
        Ty::AnyOf(types) => json!({ "anyOf": types.iter().map(ty).collect::<Vec<_>>() }),
        Ty::Any => json!({}),
        Ty::Ports => {
            let one = json!({ "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 65535 },
                { "type": "string", "pattern": "^[0-9]+(-[0-9]+)?$" },
            ] });
            json!({ "anyOf": [one.clone(), { "type": "array", "minItems": 1, "items": one }] })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::reader::{READS, Read};
    use super::*;

    /// Keys the loader asks for only to refuse them with a clear message.
    const REFUSED: &[(&str, &str)] = &[("ca", "hosts"), ("ca", "after")];

    /// The table shape a reader's name in messages stands for: `""` for the spec file, `ssh`,
    /// `hosts` (a host), `module` (an instance), a kind, and `SHAPE.KEY` for a table inside one.
    fn shape_of(what: &str) -> String {
        if what == "the spec file" {
            return String::new();
        }
        if let Some((sub, outer)) = what.strip_prefix('`').and_then(|w| w.split_once("` of ")) {
            return format!("{}.{sub}", shape_of(outer));
        }
        if let Some((_, outer)) = what.strip_prefix("rule ").and_then(|w| w.split_once(" of ")) {
            return format!("{}.rules", shape_of(outer));
        }
        let inner = what.trim_start_matches('[').trim_end_matches(']');
        let parts: Vec<&str> = inner.split('.').collect();
        let known = |p: &str| ["ssh", "hosts", "module", "vars"].contains(&p) || Kind::parse(p).is_some();
        match parts.as_slice() {
            [first, ..] if known(first) => (*first).to_string(),
            [_, second, ..] => (*second).to_string(),
            _ => inner.to_string(),
        }
    }

    /// Every closed or open table of the schema by shape, with its keys; and a spec (as JSON) that
    /// has one of each table, so loading it visits them all.
    /// The schema's tables by shape, each with its keys.
    type Shapes = BTreeMap<String, Vec<Key>>;

    fn walk(shape: &str, keys: &[Key], shapes: &mut Shapes) -> J {
        shapes.insert(shape.to_string(), keys.to_vec());
        let mut doc = Map::new();
        for k in keys {
            let sub = if shape.is_empty() { k.name.to_string() } else { format!("{shape}.{}", k.name) };
            if let Some(v) = fixture(&sub, &k.ty, shapes) {
                doc.insert(k.name.to_string(), v);
            }
        }
        J::Object(doc)
    }

    fn fixture(shape: &str, t: &Ty, shapes: &mut Shapes) -> Option<J> {
        match t {
            Ty::Table(keys) | Ty::OpenTable(keys) => Some(walk(shape, keys, shapes)),
            Ty::Tables(keys) => Some(J::Array(vec![walk(shape, keys, shapes)])),
            // A table of free names: one entry, whose tables are of the enclosing shape.
            Ty::Map(value) => match fixture(shape, value, shapes) {
                Some(entry) => Some(json!({ "x": entry })),
                None => Some(json!({})),
            },
            Ty::AnyOf(types) => types.iter().find_map(|t| match t {
                Ty::Table(_) => fixture(shape, t, shapes),
                _ => None,
            }),
            _ => None,
        }
    }

    /// Loads a spec holding one of every table of the schema (on this thread, recording what the
    /// loader reads); returns the schema's tables and the spec's text.
    fn load_every_table() -> (Shapes, String) {
        let mut shapes = BTreeMap::new();
        let root = root();
        let top: Vec<Key> = root.iter().map(|(k, _)| *k).collect();
        let mut doc = walk("", &top, &mut shapes).as_object().cloned().unwrap();
        for (key, kind_keys) in &root {
            if let Some(kind_keys) = kind_keys {
                doc.insert(key.name.to_string(), json!({ "x": walk(key.name, kind_keys, &mut shapes) }));
            }
        }
        let text = toml::to_string(&J::Object(doc)).unwrap();
        super::super::reader::ASKED.with(|a| a.borrow_mut().clear());
        super::super::reader::READS.with(|a| a.borrow_mut().clear());
        // The spec is wrong in many ways (required keys missing): only what was read matters.
        let _ = crate::spec::load_str(std::path::Path::new("/nonexistent/cairn.toml"), &text);
        (shapes, text)
    }

    #[test]
    fn schema_keys_are_exactly_the_keys_the_loader_reads() {
        let (shapes, text) = load_every_table();
        let shapes: BTreeMap<String, BTreeSet<&'static str>> =
            shapes.into_iter().map(|(shape, keys)| (shape, keys.iter().map(|k| k.name).collect())).collect();
        let mut asked: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        super::super::reader::ASKED.with(|a| {
            for (what, key) in a.borrow().iter() {
                let shape = shape_of(what);
                if !REFUSED.contains(&(shape.as_str(), *key)) {
                    asked.entry(shape).or_default().insert(*key);
                }
            }
        });
        let flat = |m: &BTreeMap<String, BTreeSet<&'static str>>| -> BTreeSet<String> {
            m.iter().flat_map(|(shape, keys)| keys.iter().map(move |k| format!("{shape}.{k}"))).collect()
        };
        let (asked, listed) = (flat(&asked), flat(&shapes));
        let unlisted: Vec<&String> = asked.difference(&listed).collect();
        let unread: Vec<&String> = listed.difference(&asked).collect();
        assert!(
            unlisted.is_empty() && unread.is_empty(),
            "read by the loader but not in the schema: {unlisted:?}\nin the schema but never read by the loader: {unread:?}\nspec loaded:\n{text}"
        );
    }

    /// How the loader reads a key of type `t`; `None` when it reads it by hand (`get`, then by the
    /// value's type) or the schema's type has no single reader.
    fn expected_read(t: &Ty) -> Option<Read> {
        Some(match t {
            Ty::Str | Ty::Duration => Read::Str,
            Ty::Bool => Read::Bool,
            Ty::Int(min, max) => Read::Int(*min, *max),
            Ty::Seconds(min, max) => Read::Seconds(*min, *max),
            Ty::Mode => Read::Mode,
            Ty::Choice(allowed) => Read::Choice(allowed.to_vec()),
            Ty::StrList | Ty::ChoiceList(_) => Read::List,
            Ty::Table(_) | Ty::OpenTable(_) | Ty::Map(_) => Read::Table,
            Ty::Tables(_) | Ty::AnyOf(_) | Ty::Any | Ty::Ports => return None,
        })
    }

    #[test]
    fn schema_types_are_the_types_the_loader_reads() {
        let (shapes, _) = load_every_table();
        let mut reads: BTreeMap<(String, &'static str), BTreeSet<Read>> = BTreeMap::new();
        READS.with(|r| {
            for (what, key, read) in r.borrow().iter() {
                reads.entry((shape_of(what), *key)).or_default().insert(read.clone());
            }
        });
        let mut wrong = Vec::new();
        for (shape, keys) in &shapes {
            for key in keys {
                let Some(found) = reads.get(&(shape.clone(), key.name)) else { continue };
                let Some(want) = expected_read(&key.ty) else { continue };
                // A choice is read as a string first; a few choices are checked after rendering.
                let mut found = found.clone();
                if found.iter().any(|r| matches!(r, Read::Choice(_))) || matches!(want, Read::Choice(_)) {
                    found.remove(&Read::Str);
                }
                if found.is_empty() {
                    continue;
                }
                if found != BTreeSet::from([want.clone()]) {
                    wrong.push(format!("{shape}.{}: schema {want:?}, loader {found:?}", key.name));
                }
            }
        }
        assert!(wrong.is_empty(), "types that differ:\n{}", wrong.join("\n"));
    }

    #[test]
    fn choices_match_the_models_lists() {
        let usages: Vec<&str> = crate::spec::pki::Usage::ALL.iter().map(|u| u.as_str()).collect();
        assert_eq!(usages, USAGES);
        let drivers: Vec<&str> = crate::spec::model::ClusterDriverKind::ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(drivers, DRIVERS);
        let keys: Vec<&str> = crate::spec::pki::KeyType::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(keys, KEY_CHOICES);
    }

    #[test]
    fn every_kind_has_a_table() {
        let schema = json_schema();
        for kind in Kind::ALL {
            assert!(schema["properties"][kind.as_str()]["additionalProperties"]["properties"].is_object(), "{kind}");
        }
    }
}
