//! Reading the PKI tables: `[ca.NAME]` (kept apart from resources: a CA has no hosts) and the
//! body of `[cert.NAME]`; then, once every file is merged, linking each certificate to its CA.
//! Every problem is a [`Diagnostic`] at the value that caused it.

use std::collections::BTreeMap;
use std::path::Path;

use super::reader::{TableReader, Value, choice_of, expect_table, quote_list};
use super::{Loader, check_resource_name, claim_resource_id, is_templated, missing_file, read_bytes};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, FileId, Located, Span, did_you_mean};
use crate::spec::duration::Duration;
use crate::spec::model::{Kind, ResourceBody, ResourceId, TemplateText};
use crate::spec::module::ModuleScope;
use crate::spec::pki::{CaSource, CaSpec, CertSpec, KeyType, Subject, Usage, age_recipient_problem, check_san, san_error};

/// Default lifetime of a generated CA.
pub const DEFAULT_CA_VALIDITY: &str = "10y";
/// Default lifetime of a certificate.
pub const DEFAULT_CERT_VALIDITY: &str = "1y";
/// Default renewal margin.
pub const DEFAULT_RENEW_BEFORE: &str = "30d";

/// What the loader gathers for the PKI kinds.
#[derive(Debug, Default)]
pub(super) struct PkiParts {
    /// `[ca.*]` tables by id as a reference writes it: `ca.NAME`, or `MODULE.ca.NAME` for a CA
    /// defined inside a module instance (so two instances of one module get two CAs).
    pub(super) cas: BTreeMap<String, PendingCa>,
    /// Every `ca = "ca.NAME"` written in a certificate, checked once every CA is known.
    pub(super) refs: Vec<(ResourceId, Located<String>)>,
    /// The spec's top-level `age_recipients` (main file only): the default of every generated CA.
    pub(super) age_recipients: Option<Vec<String>>,
}

/// A `[ca.*]` read from a file, before the state directory is known.
#[derive(Debug, Clone)]
pub(super) struct PendingCa {
    pub(super) spec: CaSpec,
    /// `dir = "..."` was written (else the store goes under the state directory).
    pub(super) explicit_dir: bool,
    /// `age_recipients = [...]` as written in the table (else the spec's top-level list applies).
    pub(super) age_recipients: Option<Vec<String>>,
}

impl Loader {
    /// `[ca.NAME]`.
    pub(super) fn ca_table(&mut self, file: FileId, base: &Path, name: Located<String>, value: &Value<'_>) {
        let d = &mut self.diags;
        let module = self.module_ctx.as_ref().map(|m| m.scope.name.clone());
        let id = ResourceId { module, kind: Kind::Ca, name: name.value.clone() };
        let help = format!("write it as a table under the header [{id}]");
        let Some(table) = expect_table(Span::new(file, value.span()), value.get_ref(), &format!("`{id}`"), help, d) else { return };
        check_resource_name(&name, d);
        let span = Span::new(file, value.span());
        let mut r = TableReader::new(file, table, span.clone(), format!("[{id}]"));
        for key in ["hosts", "after"] {
            if let Some((key_span, _)) = r.get(key) {
                d.push(Diagnostic::at(&key_span, format!("[{id}] cannot have `{key}`")).with_label("a CA has no hosts").with_help(
                    "a CA lives on the machine running cairn and is created when a certificate first needs it; remove this key",
                ));
            }
        }
        let common_name = r.required_string("common_name", "\"etcd\"", d);
        let subject = read_subject(&mut r, d);
        // Inside a module, `key` may come from an input: key = "{{ inputs.ca_key }}".
        let key = r
            .optional_string("key", d)
            .and_then(|k| with_module_inputs(k, self.module_ctx.as_ref().map(|m| &*m.scope), d))
            .and_then(|k| choice_of(k, "key", &KEY_CHOICES, d))
            .and_then(|k| KeyType::parse(k.value));
        let validity = read_duration(&mut r, "validity", DEFAULT_CA_VALIDITY, d);
        let cert_file = r.optional_string("cert_file", d);
        let key_file = r.optional_string("key_file", d);
        let dir = r.optional_string("dir", d);
        let age_recipients = read_age_recipients(&mut r, d);
        if let (Some((span, _)), Some(_)) = (r.get("age_recipients"), &cert_file) {
            d.push(
                Diagnostic::at(&span, format!("[{id}] sets `age_recipients` on an imported CA"))
                    .with_label("`age_recipients` is for a CA cairn generates")
                    .with_help("an imported CA's `key_file` is used as it is, and may itself be age-encrypted (age -a -r RECIPIENT -o ca-key.pem.age ca-key.pem); remove `age_recipients`"),
            );
        }
        let source = match (cert_file, key_file) {
            (None, None) => Some(CaSource::Store { dir: dir.as_ref().map(|p| base.join(&p.value)).unwrap_or_default() }),
            (Some(c), Some(k)) => {
                if let Some(dir) = &dir {
                    d.push(
                        Diagnostic::at(&dir.span, format!("[{id}] sets both `dir` and `cert_file`/`key_file`"))
                            .with_label("`dir` is for a CA cairn generates")
                            .with_help("an imported CA is used where its files are; remove `dir`"),
                    );
                }
                let mut ok = true;
                for (what, f) in [("CA certificate", &c), ("CA key", &k)] {
                    if let Err(why) = read_bytes(&base.join(&f.value)) {
                        d.push(missing_file(f, what, &base.join(&f.value), &why));
                        ok = false;
                    }
                }
                ok.then(|| CaSource::Imported { cert_file: base.join(&c.value), key_file: base.join(&k.value) })
            }
            (Some(one), None) | (None, Some(one)) => {
                d.push(
                    Diagnostic::at(&one.span, format!("[{id}] needs both `cert_file` and `key_file` to import a CA"))
                        .with_label("only one of the two is set")
                        .with_help("set both to import an existing CA, or neither to let cairn generate one"),
                );
                None
            }
        };
        r.finish(d);
        if !claim_resource_id(&mut self.resource_keys, &id, name.span.clone(), d) {
            return;
        }
        // A CA with a bad `validity` is still registered (the spec fails anyway), so certificates
        // naming it get no second, misleading "not defined" error.
        if let (Some(common_name), Some(source)) = (common_name, source) {
            let validity = validity.unwrap_or(Duration { secs: 1 });
            let explicit_dir = dir.is_some();
            let spec = CaSpec {
                age_recipients: Vec::new(),
                // The store directory and messages use it: `etcd`, or `MODULE.etcd` in a module.
                name: id.to_string().replacen("ca.", "", 1),
                common_name: common_name.value,
                subject,
                key: key.unwrap_or(KeyType::EcdsaP256),
                validity,
                source,
                span,
            };
            self.pki.cas.insert(id.to_string(), PendingCa { spec, explicit_dir, age_recipients: age_recipients.flatten() });
        }
    }

    /// Links every certificate to its CA (and places each generated CA's store under the state
    /// directory, sealed to the table's or the spec's `age_recipients`). Reports `ca` values
    /// naming no `[ca.*]`.
    pub(super) fn resolve_cas(&mut self, state_dir: &Path) {
        let mut cas: BTreeMap<String, CaSpec> = BTreeMap::new();
        for (key, pending) in &self.pki.cas {
            let mut spec = pending.spec.clone();
            if let CaSource::Store { dir } = &mut spec.source {
                if !pending.explicit_dir {
                    *dir = state_dir.join("pki").join(&spec.name);
                }
                spec.age_recipients = pending.age_recipients.clone().or_else(|| self.pki.age_recipients.clone()).unwrap_or_default();
            }
            cas.insert(key.clone(), spec);
        }
        let names: Vec<String> = self.pki.cas.keys().cloned().collect();
        let mut issuers: BTreeMap<ResourceId, String> = BTreeMap::new();
        for (id, r) in &self.pki.refs {
            if let Some(key) = resolve_ca(id, &r.value, &cas) {
                issuers.insert(id.clone(), key);
                continue;
            }
            let wanted = r.value.strip_prefix("ca.").unwrap_or(&r.value);
            let mut diag = Diagnostic::at(&r.span, format!("`ca` of [{id}] names `{}`, which is not defined", r.value));
            diag = match did_you_mean(&r.value, names.iter().map(String::as_str)) {
                Some(m) => {
                    diag.with_label(format!("did you mean `{m}`?")).with_help(format!("write ca = \"{m}\", or define [{}]", r.value))
                }
                None if names.is_empty() => diag
                    .with_label("no such CA")
                    .with_help(format!("define the CA in a [ca.{wanted}] table with at least `common_name = \"...\"`")),
                None => diag.with_label("no such CA").with_help(format!(
                    "`ca` must name a [ca.*] table; defined: {}",
                    quote_list(&names.iter().map(String::as_str).collect::<Vec<_>>())
                )),
            };
            self.diags.push(diag);
        }
        for res in &mut self.resources {
            if let ResourceBody::Cert(cert) = &mut res.body {
                cert.issuer = issuers.get(&res.id).and_then(|key| cas.get(key)).map(|ca| Box::new(ca.clone()));
            }
        }
    }
}

/// The CA a certificate's `ca = "..."` names: inside a module, `ca.NAME` is the module's own CA
/// when it defines one, else the spec's; `MODULE.ca.NAME` names a module instance's CA from outside.
fn resolve_ca<T>(cert: &ResourceId, written: &str, cas: &BTreeMap<String, T>) -> Option<String> {
    let local = cert.module.as_ref().filter(|_| written.starts_with("ca.")).map(|m| format!("{m}.{written}"));
    local.into_iter().chain([written.to_string()]).find(|key| cas.contains_key(key))
}

/// `age_recipients = ["age1…", …]`: `Some(None)` when absent, `None` when wrong (reported). An
/// empty list is allowed (a CA that stays plain although the spec's default seals).
pub(super) fn read_age_recipients(r: &mut TableReader<'_, '_>, d: &mut Diagnostics) -> Option<Option<Vec<String>>> {
    if r.get("age_recipients").is_none() {
        return Some(None);
    }
    let list = r.string_list("age_recipients", d)?;
    let mut ok = true;
    for rec in &list.value {
        if let Some(why) = age_recipient_problem(&rec.value) {
            let help = if why.contains("secret key") {
                "never put an identity in the spec: remove it, treat it as leaked, and write the public key `age-keygen -y IDENTITY_FILE` prints (age1…)"
            } else {
                "write the public key age-keygen printed (age1…, 62 characters); `age-keygen -y IDENTITY_FILE` prints it again"
            };
            d.push(Diagnostic::at(&rec.span, "not a usable age recipient").with_label(why).with_help(help));
            ok = false;
        }
    }
    ok.then(|| Some(list.value.into_iter().map(|r| r.value).collect()))
}

/// `text` rendered with the module instance's `inputs` (a CA is made once, not per host, so it
/// sees no `host`); unchanged outside a module or without `{{`.
fn with_module_inputs(text: Located<String>, scope: Option<&ModuleScope>, d: &mut Diagnostics) -> Option<Located<String>> {
    let Some(scope) = scope.filter(|_| is_templated(&text.value)) else { return Some(text) };
    // Secret inputs show as "(sensitive)": a CA's values end up in certificates and plans.
    let ctx = minijinja::Value::from(minijinja::value::Serde(
        serde_json::json!({ "inputs": scope.shown_inputs(), "module": { "name": scope.name } }),
    ));
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    crate::spec::template::with_budget(&mut env);
    match crate::spec::template::render_bounded(&env, "value", &text.value, ctx) {
        Ok(value) => Some(Located::new(value, text.span)),
        Err(e) => {
            let why = crate::spec::template::budget_exceeded(&e).unwrap_or_else(|| e.to_string());
            d.push(
                Diagnostic::at(&text.span, format!("cannot render `{}`: {why}", text.value))
                    .with_label("in a [ca.*] table")
                    .with_help("a CA's values can use `inputs` and `module.name` only (a CA belongs to no host)"),
            );
            None
        }
    }
}

/// The values of `key` in `[ca.*]` and `[cert.*]`.
pub(super) const KEY_CHOICES: [&str; 4] = ["rsa-2048", "rsa-4096", "ecdsa-p256", "ed25519"];

/// The body of `[cert.NAME]`.
pub(super) fn cert_body(r: &mut TableReader<'_, '_>, id: &ResourceId, pki: &mut PkiParts, d: &mut Diagnostics) -> Option<ResourceBody> {
    let ca = r.required_string("ca", "\"ca.etcd\"", d);
    if let Some(ca) = &ca {
        if ResourceId::parse(&ca.value).is_some_and(|r| r.kind == Kind::Ca) {
            pki.refs.push((id.clone(), ca.clone()));
        } else {
            d.push(
                Diagnostic::at(&ca.span, format!("`ca` of [{id}] must name a CA as `ca.NAME`"))
                    .with_label(format!("`{}` is not `ca.NAME`", ca.value))
                    .with_help(format!("write ca = \"ca.{}\"", ca.value)),
            );
        }
    }
    let common_name = r.required_string("common_name", "\"{{ host.name }}\"", d).map(|c| TemplateText {
        text: c.value,
        span: c.span,
        name: format!("{id}.common_name"),
    });
    let subject = read_subject(r, d);
    let sans = read_sans(r, id, d);
    let usages = read_usages(r, id, d);
    let validity = read_duration(r, "validity", DEFAULT_CERT_VALIDITY, d);
    let renew_before = read_duration(r, "renew_before", DEFAULT_RENEW_BEFORE, d);
    if let (Some(v), Some(rb)) = (validity, renew_before)
        && rb >= v
    {
        let span = r.get("renew_before").map_or_else(|| r.span().clone(), |(s, _)| s);
        d.push(
            Diagnostic::at(&span, format!("`renew_before` ({rb}) of [{id}] is not shorter than `validity` ({v})"))
                .with_label("every certificate would be due for renewal as soon as it is issued")
                .with_help("make `renew_before` much shorter than `validity`, e.g. validity = \"1y\", renew_before = \"30d\""),
        );
    }
    let key = r.optional_choice("key", &KEY_CHOICES, d).and_then(|k| KeyType::parse(k.value));
    let cert_path = read_abs_path(r, "cert_path", id, true, d);
    let key_path = read_abs_path(r, "key_path", id, true, d);
    let ca_path = read_abs_path(r, "ca_path", id, false, d);
    let owner = r.optional_string("owner", d);
    let group = r.optional_string("group", d);
    match (ca, common_name, sans, usages, validity, renew_before, cert_path, key_path, ca_path) {
        (
            Some(ca),
            Some(common_name),
            Some(sans),
            Some(usages),
            Some(validity),
            Some(renew_before),
            Ok(Some(cert_path)),
            Ok(Some(key_path)),
            Ok(ca_path),
        ) => Some(ResourceBody::Cert(Box::new(CertSpec {
            ca,
            issuer: None,
            common_name,
            subject,
            sans,
            usages,
            validity,
            renew_before,
            key,
            cert_path,
            key_path,
            ca_path,
            owner,
            group,
        }))),
        _ => None,
    }
}

/// `subject = { O = "...", OU = "...", C = "...", ST = "...", L = "..." }`.
fn read_subject(r: &mut TableReader<'_, '_>, d: &mut Diagnostics) -> Subject {
    let what = format!("`subject` of {}", r.what());
    let Some(mut s) = r.table("subject", what, d) else { return Subject::default() };
    let mut get = |key: &'static str| s.optional_string(key, d).map(|v| v.value);
    let subject =
        Subject { country: get("C"), state: get("ST"), locality: get("L"), organization: get("O"), organizational_unit: get("OU") };
    s.finish(d);
    subject
}

/// `sans = [...]`: each an IP address or DNS name (checked now when literal, after rendering
/// when templated).
fn read_sans(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<Vec<TemplateText>> {
    let Some(list) = r.string_list("sans", d) else { return Some(Vec::new()) };
    let mut ok = true;
    let mut out = Vec::new();
    for s in list.value {
        if !is_templated(&s.value)
            && let Err(why) = check_san(&s.value)
        {
            d.push(san_error(&s.span, &s.value, &why, None));
            ok = false;
            continue;
        }
        out.push(TemplateText { text: s.value, span: s.span, name: format!("{id}.sans") });
    }
    ok.then_some(out)
}

fn read_usages(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<Vec<Usage>> {
    let Some(list) = r.string_list("usages", d) else { return Some(vec![Usage::Server, Usage::Client]) };
    let names: Vec<&str> = Usage::ALL.iter().map(|u| u.as_str()).collect();
    let mut ok = true;
    let mut out = Vec::new();
    for u in list.value {
        match Usage::parse(&u.value) {
            Some(usage) => {
                if !out.contains(&usage) {
                    out.push(usage);
                }
            }
            None => {
                let mut diag = Diagnostic::at(&u.span, format!("`{}` is not a certificate usage", u.value));
                diag = match did_you_mean(&u.value, names.iter().copied()) {
                    Some(m) => diag.with_label(format!("did you mean `{m}`?")),
                    None => diag.with_label("unknown usage"),
                };
                d.push(diag.with_help(format!("usages of [{id}] are {}", quote_list(&names))));
                ok = false;
            }
        }
    }
    if ok && out.is_empty() {
        d.push(
            Diagnostic::at(&list.span, format!("`usages` of [{id}] is empty"))
                .with_label("a certificate with no usage is useless")
                .with_help("write usages = [\"server\"], [\"client\"] or [\"server\", \"client\"]"),
        );
        ok = false;
    }
    out.sort();
    ok.then_some(out)
}

/// A duration such as `100y`, `30d`, `12h`; `default` when absent.
fn read_duration(r: &mut TableReader<'_, '_>, key: &'static str, default: &str, d: &mut Diagnostics) -> Option<Duration> {
    let Some(v) = r.optional_string(key, d) else {
        return if r.get(key).is_some() { None } else { Duration::parse(default) };
    };
    match Duration::parse(&v.value) {
        Some(dur) => Some(dur),
        None => {
            d.push(
                Diagnostic::at(&v.span, format!("`{}` is not a valid duration", v.value))
                    .with_label("expected a number and a unit")
                    .with_help(format!("write e.g. {key} = \"100y\", \"10y\", \"30d\" or \"12h\" (units: y = 365 days, w, d, h)")),
            );
            None
        }
    }
}

/// An absolute (possibly templated) path; `Ok(None)` when optional and absent, `Err` when wrong.
fn read_abs_path(
    r: &mut TableReader<'_, '_>,
    key: &'static str,
    id: &ResourceId,
    required: bool,
    d: &mut Diagnostics,
) -> Result<Option<TemplateText>, ()> {
    let path = if required { r.required_string(key, "\"/etc/pki/server.pem\"", d) } else { r.optional_string(key, d) };
    let Some(path) = path else {
        return if required || r.get(key).is_some() { Err(()) } else { Ok(None) };
    };
    if !path.value.starts_with('/') && !path.value.trim_start().starts_with("{{") {
        d.push(Diagnostic::at(&path.span, format!("`{key}` of [{id}] must be absolute")).with_label("a relative path").with_help(format!(
            "write the full path on the host, starting with `/`, e.g. {key} = \"/{}\"",
            path.value.trim_start_matches("./")
        )));
        return Err(());
    }
    Ok(Some(TemplateText { text: path.value, span: path.span, name: format!("{id}.{key}") }))
}
