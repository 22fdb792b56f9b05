//! Loading a spec: reads the TOML file and everything it names (includes, template files, source
//! files), validates it by hand against the spec's shape, and builds the [`Spec`] model. Every
//! problem becomes a [`Diagnostic`] with file:line:col; loading goes on after a problem so that one
//! run reports all of them.
//!
//! Files are parsed with `toml`'s span-preserving `DeTable` and read through a small typed
//! [`reader::TableReader`]. An included file's contents are merged before the contents of the file
//! that includes it (as if pasted where `include` stands); each file is read at most once. Checks
//! that need the whole spec (`after` targets, selectors, duplicate paths) run once everything is
//! merged, and only when no file had TOML syntax errors.

mod binary;
mod cluster;
mod firewall;
mod module;
mod pki;
mod reader;
mod schema;
mod secret;
mod systemd;
mod vars;

pub(crate) use binary::{bad_scheme as binary_bad_scheme, supported_scheme as binary_url_scheme_ok};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

pub use self::module::{load_module, module_roots};
use self::reader::{TableReader, Value, expect_table, quote_list, to_json, type_phrase};
pub use self::schema::json_schema;
pub use self::vars::VarInputs;
use super::diagnostic::{Diagnostic, Diagnostics, FileId, Located, SourceMap, Span, did_you_mean};
use super::model::{
    ContentSource, DirSpec, FileSpec, HostKeyChecking, HostSpec, Kind, ResourceBody, ResourceId, ResourceSpec, Selector, Spec, SshDefaults,
    TemplateText, TransportKind,
};

/// A spec that could not be loaded: every problem, and the files needed to quote them.
#[derive(Debug)]
pub struct LoadError {
    /// Files read so far.
    pub sources: SourceMap,
    /// Every problem found.
    pub diagnostics: Diagnostics,
}

impl LoadError {
    /// Every problem as user-facing text (file:line:col, source line, caret, help).
    pub fn render(&self) -> String {
        self.diagnostics.render(&self.sources)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for LoadError {}

/// Reads and validates the spec at `path`, with its includes.
pub fn load(path: &Path) -> Result<Spec, LoadError> {
    load_with_vars(path, &VarInputs::default()).map(|(spec, _)| spec)
}

/// [`load`], with variables from outside the spec overriding its `[vars]` (see [`VarInputs`]);
/// also returns warnings (a variable set that the spec's `[vars]` does not have).
pub fn load_with_vars(path: &Path, vars: &VarInputs) -> Result<(Spec, Vec<String>), LoadError> {
    match read_text(path) {
        Ok(text) => load_str_with_vars(path, &text, vars),
        Err(why) => {
            let d = Diagnostic::global(format!("cannot read the spec file `{}`: {why}", path.display()))
                .with_help("check the path given to cairn");
            Err(LoadError { sources: SourceMap::default(), diagnostics: d.into() })
        }
    }
}

/// Validates spec text as if read from `path` (includes and templates resolved beside it).
pub fn load_str(path: &Path, text: &str) -> Result<Spec, LoadError> {
    load_str_with_vars(path, text, &VarInputs::default()).map(|(spec, _)| spec)
}

/// [`load_str`] with variables from outside the spec, as [`load_with_vars`].
pub fn load_str_with_vars(path: &Path, text: &str, vars: &VarInputs) -> Result<(Spec, Vec<String>), LoadError> {
    let mut loader = Loader::default();
    loader.stack.push(canonical(path));
    loader.seen.insert(canonical(path));
    loader.file(path, text.to_string(), true);
    let warnings = loader.override_vars(vars);
    loader.finish(path).map(|spec| (spec, warnings))
}

/// A TOML syntax error in `file`, at its position.
fn toml_error(file: FileId, e: &toml::de::Error) -> Diagnostic {
    let span = Span::new(file, e.span().unwrap_or(0..0));
    let message = e.message().trim_end().to_string();
    let (first, rest) = message.split_once('\n').unwrap_or((&message, ""));
    let mut diag = Diagnostic::at(&span, format!("invalid TOML: {first}"));
    if !rest.trim().is_empty() {
        diag = diag.with_label(rest.trim().to_string());
    }
    diag.with_help("fix the TOML syntax here; see https://toml.io")
}

/// Reads a file as UTF-8 text, with a short reason on failure.
fn read_text(path: &Path) -> Result<String, String> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).map_err(|_| "it is not valid UTF-8 text".to_string())
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    // A device or a FIFO (`include = ["/dev/zero"]`) would never end or block the loader.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err("it is not a regular file".to_string());
    }
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    })
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A spec name that is safe as a file name on every host.
fn valid_spec_name(name: &str) -> bool {
    name.len() <= 100 && !name.starts_with('.') && valid_host_name(name)
}

/// The spec's name when it does not set one: its file's stem, or for `cairn.toml` its
/// directory's name, made safe as a file name.
fn default_spec_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let raw = if stem == "cairn" {
        canonical(path).parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or(stem)
    } else {
        stem
    };
    let safe: String = raw.chars().map(|c| if name_char(c, true) { c } else { '-' }).collect();
    let safe: String = safe.trim_start_matches('.').chars().take(100).collect();
    if safe.is_empty() { "cairn".to_string() } else { safe }
}

/// The directory paths written in `path` are relative to.
fn dir_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn is_templated(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Reports a resource name that is not `[A-Za-z0-9_-]+`.
fn check_resource_name(name: &Located<String>, d: &mut Diagnostics) {
    if !valid_name(&name.value) {
        d.push(
            Diagnostic::at(&name.span, format!("`{}` is not a valid resource name", name.value))
                .with_label("invalid name")
                .with_help("resource names may use only letters, digits, `_` and `-`"),
        );
    }
}

/// Records `id` as defined at `at`; a second definition is an error pointing at both. Returns
/// whether the id was free.
fn claim_resource_id(keys: &mut BTreeMap<ResourceId, Span>, id: &ResourceId, at: Span, d: &mut Diagnostics) -> bool {
    claim_name(keys, id, &format!("resource `{id}`"), "resource ids must be unique; rename or remove one of them", at, d)
}

/// Records `key` as defined at `at`, or reports "`what` is defined twice" (pointing at both
/// places) and returns false when it already was.
fn claim_name<K: Ord + Clone>(keys: &mut BTreeMap<K, Span>, key: &K, what: &str, help: &str, at: Span, d: &mut Diagnostics) -> bool {
    if let Some(old) = keys.get(key) {
        d.push(
            Diagnostic::at(&at, format!("{what} is defined twice"))
                .with_label("defined again here")
                .with_related(old, "first defined here")
                .with_help(help),
        );
        return false;
    }
    keys.insert(key.clone(), at);
    true
}

/// Letters, digits, `_` and `-`, and `.` when `dot`.
fn name_char(c: char, dot: bool) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dot && c == '.')
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| name_char(c, false))
}

fn valid_host_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| name_char(c, true))
}

/// The values of `ssh.host_key_checking`.
pub(super) const HOST_KEY_CHECKING: &[&str] = &["strict", "accept-new", "off"];

/// The values of a host's `transport`.
pub(super) const TRANSPORTS: &[&str] = &["ssh", "local"];

/// `[ssh]` as merged from every file, each value with where it was set.
#[derive(Default)]
struct SshParts {
    user: Option<Located<String>>,
    port: Option<Located<u16>>,
    identity_file: Option<Located<String>>,
    known_hosts_file: Option<Located<String>>,
    host_key_checking: Option<Located<HostKeyChecking>>,
    r#become: Option<Located<bool>>,
    connect_timeout: Option<Located<u64>>,
}

/// Sets `slot` unless it was set already (in another file), which is reported.
fn merge<T>(slot: &mut Option<Located<T>>, new: Option<Located<T>>, what: &str, d: &mut Diagnostics) {
    let Some(new) = new else { return };
    match slot {
        Some(old) => d.push(
            Diagnostic::at(&new.span, format!("{what} is set twice"))
                .with_label("set again here")
                .with_related(&old.span, "first set here")
                .with_help(format!("keep one of the two settings of {what}")),
        ),
        None => *slot = Some(new),
    }
}

/// Everything gathered while reading the files of one spec.
#[derive(Default)]
struct Loader {
    sources: SourceMap,
    diags: Diagnostics,
    /// Files being read (canonical paths), for include cycles.
    stack: Vec<PathBuf>,
    /// Files read already (canonical paths): each is read once.
    seen: HashSet<PathBuf>,
    /// Some file had TOML syntax errors: whole-spec checks would only add noise.
    broken: bool,
    state_dir: Option<Located<String>>,
    name: Option<Located<String>>,
    vars: BTreeMap<String, (serde_json::Value, Span)>,
    ssh: SshParts,
    hosts: BTreeMap<String, HostSpec>,
    /// Where each host name was written (for duplicates).
    host_keys: BTreeMap<String, Span>,
    resources: Vec<ResourceSpec>,
    /// Where each resource name was written (for duplicates).
    resource_keys: BTreeMap<ResourceId, Span>,
    /// Written `after` targets, checked once every resource is known.
    pending_after: Vec<Located<ResourceId>>,
    /// Written `restart_on` targets of units, checked likewise.
    pending_restart_on: Vec<Located<ResourceId>>,
    /// Written `rolling.wait_for` checks of units, checked likewise.
    pending_wait_for: Vec<Located<ResourceId>>,
    /// Written `unit` targets of clusters, checked likewise.
    pending_cluster_units: Vec<Located<ResourceId>>,
    /// Written selectors with their resource, checked once every host is known.
    pending_selectors: Vec<(ResourceId, Located<Selector>)>,
    /// The module instance whose resources are being read, if any.
    module_ctx: Option<module::ModuleCtx>,
    /// Where each module instance name was written (for duplicates).
    module_keys: BTreeMap<String, Span>,
    /// Module instances read so far.
    modules: Vec<Arc<super::module::ModuleScope>>,
    /// Module checks, evaluated once every host is known.
    pending_asserts: Vec<module::PendingAssert>,
    /// Files that are a module's `module.toml` (ids there are written without the instance name).
    module_files: BTreeSet<FileId>,
    /// `[ca.*]` tables (not resources: a CA has no hosts) and the `ca` references of certificates.
    pki: pki::PkiParts,
}

impl Loader {
    /// Reads one spec file (the main one or an include).
    fn file(&mut self, path: &Path, text: String, is_main: bool) {
        let file = self.sources.add(path, text.clone());
        let (doc, errors) = DeTable::parse_recoverable(&text);
        if !errors.is_empty() {
            self.broken = true;
            self.diags.0.extend(errors.iter().map(|e| toml_error(file, e)));
            return;
        }
        let root_span = Span::new(file, 0..0);
        let mut root = TableReader::new(file, doc.get_ref(), root_span, "the spec file");
        let base = dir_of(path);

        if let Some(list) = root.string_list("include", &mut self.diags) {
            for inc in list.value {
                self.include(&base, &inc);
            }
        }
        if let Some(dir) = root.optional_string("state_dir", &mut self.diags) {
            if is_main {
                self.state_dir = Some(dir);
            } else {
                self.diags.push(
                    Diagnostic::at(&dir.span, "`state_dir` can only be set in the main spec file")
                        .with_label("in an included file")
                        .with_help("move `state_dir` to the spec file given to cairn"),
                );
            }
        }
        if root.get("age_recipients").is_some() {
            let span = root.get("age_recipients").map(|(s, _)| s);
            match pki::read_age_recipients(&mut root, &mut self.diags) {
                Some(list) if is_main => self.pki.age_recipients = list,
                Some(_) => self.diags.push(
                    Diagnostic::at(&span.unwrap_or_else(|| root.span().clone()), "`age_recipients` can only be set in the main spec file")
                        .with_label("in an included file")
                        .with_help("move `age_recipients` to the spec file given to cairn, or set it on a [ca.NAME] table"),
                ),
                None => {}
            }
        }
        if let Some(name) = root.optional_string("name", &mut self.diags) {
            if !is_main {
                self.diags.push(
                    Diagnostic::at(&name.span, "`name` can only be set in the main spec file")
                        .with_label("in an included file")
                        .with_help("move `name` to the spec file given to cairn"),
                );
            } else if valid_spec_name(&name.value) {
                self.name = Some(name);
            } else {
                self.diags.push(
                    Diagnostic::at(&name.span, format!("spec name `{}` is not usable as a file name", name.value))
                        .with_label("expected letters, digits, `.`, `_` and `-`, not starting with `.`")
                        .with_help(
                            "write e.g. name = \"etcd-prod\"; hosts keep what the spec manages in /var/lib/cairn/manifests/NAME.json",
                        ),
                );
            }
        }
        if let Some(mut vars) = root.table("vars", "[vars]".into(), &mut self.diags) {
            for (key, value) in vars.rest() {
                let json = to_json(file, value, &mut self.diags);
                if let Some((_, old)) = self.vars.get(&key.value) {
                    self.diags.push(
                        Diagnostic::at(&key.span, format!("variable `{}` is defined twice", key.value))
                            .with_label("defined again here")
                            .with_related(old, "first defined here")
                            .with_help("keep one of the two definitions"),
                    );
                } else {
                    self.vars.insert(key.value, (json, key.span));
                }
            }
        }
        if let Some(ssh) = root.table("ssh", "[ssh]".into(), &mut self.diags) {
            self.ssh_table(ssh);
        }
        if let Some(mut hosts) = root.table("hosts", "[hosts]".into(), &mut self.diags) {
            for (name, value) in hosts.rest() {
                self.host(file, name, value);
            }
        }
        for &kind in Kind::ALL {
            if let Some(mut kind_table) = root.table(kind.as_str(), format!("[{kind}]"), &mut self.diags) {
                for (name, value) in kind_table.rest() {
                    self.resource(file, &base, kind, name, value);
                }
            }
        }
        if let Some(mut modules) = root.table("module", "[module]".into(), &mut self.diags) {
            for (name, value) in modules.rest() {
                self.module_instance(file, &base, name, value);
            }
        }
        root.finish(&mut self.diags);
    }

    /// Follows one `include = [...]` entry.
    fn include(&mut self, base: &Path, inc: &Located<String>) {
        let path = base.join(&inc.value);
        let canon = canonical(&path);
        if let Some(pos) = self.stack.iter().position(|p| *p == canon) {
            let chain: Vec<String> = self.stack[pos..]
                .iter()
                .chain(std::iter::once(&canon))
                .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
                .collect();
            self.diags.push(
                Diagnostic::at(&inc.span, format!("include cycle: {}", chain.join(" → ")))
                    .with_label(format!("`{}` is already being included", inc.value))
                    .with_help("remove one of the includes so no file includes itself, directly or through others"),
            );
            return;
        }
        if !self.seen.insert(canon.clone()) {
            return;
        }
        match read_text(&path) {
            Ok(text) => {
                self.stack.push(canon);
                self.file(&path, text, false);
                self.stack.pop();
            }
            Err(why) => self.diags.push(
                Diagnostic::at(&inc.span, format!("cannot read included file `{}`", inc.value))
                    .with_label(format!("{why}: {}", path.display()))
                    .with_help("include paths are relative to the file that includes them; check the name"),
            ),
        }
    }

    fn ssh_table(&mut self, mut r: TableReader<'_, '_>) {
        let d = &mut self.diags;
        let user = r.optional_string("user", d);
        merge(&mut self.ssh.user, user, "`ssh.user`", d);
        let port = r.optional_int("port", 1, 65535, 22, d).map(|p| Located::new(u16::try_from(p.value).unwrap_or(22), p.span));
        merge(&mut self.ssh.port, port, "`ssh.port`", d);
        let identity = r.optional_string("identity_file", d);
        merge(&mut self.ssh.identity_file, identity, "`ssh.identity_file`", d);
        let known = r.optional_string("known_hosts_file", d);
        merge(&mut self.ssh.known_hosts_file, known, "`ssh.known_hosts_file`", d);
        let hkc = r.optional_choice("host_key_checking", HOST_KEY_CHECKING, d).map(|c| {
            let v = match c.value {
                "accept-new" => HostKeyChecking::AcceptNew,
                "off" => HostKeyChecking::Off,
                _ => HostKeyChecking::Strict,
            };
            Located::new(v, c.span)
        });
        merge(&mut self.ssh.host_key_checking, hkc, "`ssh.host_key_checking`", d);
        let become_ = r.optional_bool("become", d);
        merge(&mut self.ssh.r#become, become_, "`ssh.become`", d);
        let timeout = r
            .optional_int("connect_timeout", 1, i64::from(u32::MAX), 10, d)
            .map(|t| Located::new(u64::try_from(t.value).unwrap_or(10), t.span));
        merge(&mut self.ssh.connect_timeout, timeout, "`ssh.connect_timeout`", d);
        r.finish(d);
    }

    /// `[hosts.NAME]`.
    fn host(&mut self, file: FileId, name: Located<String>, value: &Value<'_>) {
        let d = &mut self.diags;
        let what = format!("[hosts.{}]", name.value);
        let help = format!("write it as a table: a [hosts.{}] header followed by `address = \"...\"`", name.value);
        let noun = format!("host `{}`", name.value);
        let Some(table) = expect_table(Span::new(file, value.span()), value.get_ref(), &noun, help, d) else { return };
        if !valid_host_name(&name.value) {
            d.push(
                Diagnostic::at(&name.span, format!("`{}` is not a valid host name", name.value))
                    .with_label("invalid host name")
                    .with_help("host names may use letters, digits, `.`, `_` and `-`"),
            );
        }
        let mut r = TableReader::new(file, table, Span::new(file, value.span()), what);
        let transport_written = r.get("transport").is_some();
        let transport = r.optional_choice("transport", TRANSPORTS, d);
        // An invalid `transport` is reported on its own; whether `address` is needed is then unknown.
        let address_required = transport.as_ref().map_or(!transport_written, |t| t.value == "ssh");
        let transport =
            transport.map_or(TransportKind::Ssh, |t| if t.value == "local" { TransportKind::Local } else { TransportKind::Ssh });
        let address = match transport {
            TransportKind::Local => r.optional_string("address", d).map_or_else(|| "127.0.0.1".to_string(), |a| a.value),
            TransportKind::Ssh => {
                if r.get("address").is_none() {
                    if address_required && !r.near_miss(&["address"]) {
                        d.push(r.missing("address", "\"192.0.2.10\"").with_help(format!(
                            "add `address = \"...\"` (an IP address or DNS name) to {}, or `transport = \"local\"` for this machine",
                            r.what()
                        )));
                    }
                    String::new()
                } else {
                    r.optional_string("address", d).map(|a| a.value).unwrap_or_default()
                }
            }
        };
        let port = r.optional_int("port", 1, 65535, 22, d).and_then(|p| u16::try_from(p.value).ok());
        let user = r.optional_string("user", d).map(|u| u.value);
        let become_ = r.optional_bool("become", d).map(|b| b.value);
        let mut labels = BTreeMap::new();
        if let Some(mut lr) = r.table("labels", format!("`labels` of {}", r.what()), d) {
            for (key, v) in lr.rest() {
                match v.get_ref() {
                    DeValue::String(s) => {
                        labels.insert(key.value, s.to_string());
                    }
                    other => d.push(
                        Diagnostic::at(
                            &Span::new(file, v.span()),
                            format!("label `{}` must be a string, found {}", key.value, type_phrase(other)),
                        )
                        .with_label("expected a string")
                        .with_help(format!("put the value in double quotes: {} = \"...\"", key.value)),
                    ),
                }
            }
        }
        let span = r.span().clone();
        r.finish(d);
        let what = format!("host `{}`", name.value);
        if !claim_name(&mut self.host_keys, &name.value, &what, "each host is defined once; remove or rename one of them", name.span, d) {
            return;
        }
        self.hosts
            .insert(name.value.clone(), HostSpec { name: name.value, address, port, user, r#become: become_, labels, transport, span });
    }

    /// `[KIND.NAME]`.
    fn resource(&mut self, file: FileId, base: &Path, kind: Kind, name: Located<String>, value: &Value<'_>) {
        if kind == Kind::Ca {
            return self.ca_table(file, base, name, value);
        }
        let d = &mut self.diags;
        // Inside a module, ids carry the instance name and `after` names the module's own resources.
        let scope = self.module_ctx.as_ref().map(|m| m.scope.clone());
        let id = ResourceId { module: scope.as_ref().map(|m| m.name.clone()), kind, name: name.value.clone() };
        let help = format!("write it as a table under the header [{id}]");
        let Some(table) = expect_table(Span::new(file, value.span()), value.get_ref(), &format!("`{id}`"), help, d) else { return };
        check_resource_name(&name, d);
        let span = Span::new(file, value.span());
        let mut r = TableReader::new(file, table, span.clone(), format!("[{id}]"));

        let hosts = match r.string_list("hosts", d) {
            Some(list) => {
                if list.value.is_empty() {
                    d.push(Diagnostic::at(&list.span, format!("`hosts` of [{id}] is empty")).with_label("selects no host").with_help(
                        "list at least one selector (\"*\", a host name or \"label=value\"), or remove `hosts` to mean every host",
                    ));
                }
                let selectors: Vec<Located<Selector>> = list.value.into_iter().filter_map(|s| parse_selector(&s, d)).collect();
                self.pending_selectors.extend(selectors.iter().map(|s| (id.clone(), s.clone())));
                selectors
            }
            None => match &scope {
                Some(m) if !m.hosts.is_empty() => m.hosts.clone(),
                _ => vec![Located::new(Selector::All, span.clone())],
            },
        };
        let mut after = Vec::new();
        for a in r.string_list("after", d).map(|l| l.value).unwrap_or_default() {
            match ResourceId::parse(&a.value) {
                Some(mut target) if valid_name(&target.name) => {
                    if target.module.is_none() {
                        target.module = scope.as_ref().map(|m| m.name.clone());
                    }
                    let loc = Located::new(target, a.span);
                    self.pending_after.push(loc.clone());
                    after.push(loc);
                }
                _ => d.push(bad_after_id(&a)),
            }
        }
        let prevent_destroy = r.optional_bool("prevent_destroy", d).is_some_and(|b| b.value);
        let ignore = read_ignore(&mut r, kind, d);
        let body = match kind {
            Kind::Dir => {
                let path = read_path(&mut r, &id, d);
                let mode = r.optional_mode("mode", d);
                let owner = r.optional_string("owner", d);
                let group = r.optional_string("group", d);
                let purge = r.optional_bool("purge", d).is_some_and(|b| b.value);
                path.map(|path| ResourceBody::Dir(DirSpec { path, mode, owner, group, purge }))
            }
            Kind::File => {
                let path = read_path(&mut r, &id, d);
                let content = read_content(&mut r, &mut self.sources, base, &id, d);
                let mode = r.optional_mode("mode", d);
                let owner = r.optional_string("owner", d);
                let group = r.optional_string("group", d);
                // A secret is sensitive whatever the spec says.
                let sensitive =
                    r.optional_bool("sensitive", d).is_some_and(|b| b.value) || content.as_ref().is_some_and(|c| c.secret().is_some());
                match (path, content) {
                    (Some(path), Some(content)) => Some(ResourceBody::File(FileSpec { path, content, mode, owner, group, sensitive })),
                    _ => None,
                }
            }
            Kind::Unit => {
                let mut unit = systemd::unit(&mut r, &mut self.sources, base, &id, d);
                if let Some(u) = &mut unit {
                    // Inside a module, short ids name the module's own resources, as in `after`.
                    let module = scope.as_ref().map(|m| m.name.clone());
                    let targets = u
                        .restart_on
                        .iter_mut()
                        .chain(u.reloads_certificates.iter_mut())
                        .chain(u.rolling.as_mut().and_then(|r| r.wait_for.as_mut()));
                    for target in targets {
                        if target.value.module.is_none() {
                            target.value.module.clone_from(&module);
                        }
                    }
                    // `restart_on` entries are dependencies too.
                    for a in &u.restart_on {
                        self.pending_restart_on.push(a.clone());
                        after.push(a.clone());
                    }
                    self.pending_wait_for.extend(u.rolling.as_ref().and_then(|r| r.wait_for.clone()));
                }
                unit.map(ResourceBody::Unit)
            }
            Kind::User => systemd::user(&mut r, &name, d).map(ResourceBody::User),
            Kind::Check => systemd::check(&mut r, &id, d).map(ResourceBody::Check),
            Kind::Cert => pki::cert_body(&mut r, &id, &mut self.pki, d),
            Kind::Ca => None,
            Kind::Binary => binary::read(&mut r, &id, d).map(ResourceBody::Binary),
            Kind::Firewall => firewall::read_firewall(&mut r, &id, d).map(ResourceBody::Firewall),
            Kind::Cluster => {
                let mut c = cluster::read(&mut r, &id, d);
                if let Some(c) = &mut c {
                    let module = scope.as_ref().map(|m| m.name.clone());
                    for target in std::iter::once(&mut c.unit).chain(c.after_on_peers.iter_mut()) {
                        if target.value.module.is_none() {
                            target.value.module.clone_from(&module);
                        }
                    }
                    self.pending_cluster_units.push(c.unit.clone());
                    self.pending_after.extend(c.after_on_peers.iter().cloned());
                }
                c.map(ResourceBody::Cluster)
            }
        };
        r.finish(d);
        if let Some(m) = &self.module_ctx {
            after.extend(m.after.iter().cloned());
        }
        if !claim_resource_id(&mut self.resource_keys, &id, name.span, d) {
            return;
        }
        if let Some(body) = body {
            self.resources.push(ResourceSpec { id, span, hosts, after, body, scope, prevent_destroy, ignore });
        }
    }

    /// Whole-spec checks, then the model.
    fn finish(mut self, path: &Path) -> Result<Spec, LoadError> {
        if !self.broken {
            self.check_after();
            self.check_restart_on();
            self.check_wait_for();
            self.check_cluster_units();
            self.check_selectors();
            self.check_modules();
            self.check_duplicate_paths();
            self.resolve_cas(&dir_of(path).join(self.state_dir.as_ref().map_or(".cairn", |s| s.value.as_str())));
        }
        if !self.diags.is_empty() {
            return Err(LoadError { sources: self.sources, diagnostics: self.diags });
        }
        let base_dir = dir_of(path);
        let state_dir = base_dir.join(self.state_dir.map_or_else(|| ".cairn".to_string(), |s| s.value));
        for res in &mut self.resources {
            match &mut res.body {
                ResourceBody::Binary(b) => b.cache_dir = state_dir.join("cache"),
                ResourceBody::Cluster(c) => c.snapshot_local_dir = state_dir.join("snapshots").join(res.id.to_string()),
                _ => {}
            }
        }
        let ssh = SshDefaults {
            user: self.ssh.user.map(|v| v.value),
            port: self.ssh.port.map(|v| v.value),
            identity_file: self.ssh.identity_file.map(|v| PathBuf::from(v.value)),
            known_hosts_file: self.ssh.known_hosts_file.map(|v| PathBuf::from(v.value)),
            host_key_checking: self.ssh.host_key_checking.map(|v| v.value).unwrap_or_default(),
            r#become: self.ssh.r#become.is_some_and(|v| v.value),
            connect_timeout_secs: self.ssh.connect_timeout.map(|v| v.value),
        };
        Ok(Spec {
            name: self.name.map_or_else(|| default_spec_name(path), |n| n.value),
            sources: self.sources,
            path: path.to_path_buf(),
            base_dir,
            state_dir,
            vars: self.vars.into_iter().map(|(k, (v, _))| (k, v)).collect(),
            ssh,
            hosts: self.hosts,
            resources: self.resources,
            modules: self.modules,
        })
    }

    fn check_after(&mut self) {
        let known: Vec<String> = self.resource_keys.keys().map(ToString::to_string).collect();
        for a in &self.pending_after {
            if a.value.kind == Kind::Ca && self.resource_keys.contains_key(&a.value) {
                // A CA lives on the machine running cairn, not on hosts: nothing waits for it.
                self.diags.push(
                    Diagnostic::at(&a.span, format!("`after` names `{}`, a certificate authority, which is not applied to hosts", a.value))
                        .with_label("nothing on a host can wait for a CA")
                        .with_help(
                            "a `cert` issued by it already waits for what it needs; name the `cert` resource instead, or remove this entry",
                        ),
                );
                continue;
            }
            if self.resource_keys.contains_key(&a.value) {
                continue;
            }
            let mut wanted = a.value.to_string();
            let mut known = known.clone();
            // Inside a module, speak of ids as written there: without the instance name.
            if let Some(m) = a.value.module.as_ref().filter(|_| self.module_files.contains(&a.span.file)) {
                let prefix = format!("{m}.");
                wanted = wanted.strip_prefix(&prefix).unwrap_or(&wanted).to_string();
                known = known.iter().filter_map(|k| k.strip_prefix(&prefix)).map(str::to_string).collect();
            }
            let help = if known.is_empty() {
                "no resources are defined; remove this entry".to_string()
            } else {
                format!(
                    "`after` must name a resource defined in the spec; defined: {}",
                    quote_list(&known.iter().map(String::as_str).collect::<Vec<_>>())
                )
            };
            self.diags.push(undefined_reference(&a.span, "after", &wanted, &known, "no such resource", help));
        }
    }

    fn check_selectors(&mut self) {
        for (id, sel) in &self.pending_selectors {
            if self.hosts.values().any(|h| sel.value.matches(h)) {
                continue;
            }
            let written = match &sel.value {
                Selector::All => "*".to_string(),
                Selector::Name(n) => n.clone(),
                Selector::Label(k, v) => format!("{k}={v}"),
            };
            let mut diag =
                Diagnostic::at(&sel.span, format!("`{written}` in `hosts` of [{id}] matches no host")).with_label("matches no host");
            if let Selector::Name(n) = &sel.value
                && let Some(m) = did_you_mean(n, self.hosts.keys().map(String::as_str))
            {
                diag = diag.with_label(format!("matches no host; did you mean `{m}`?"));
            }
            diag = diag.with_help(self.hosts_help());
            self.diags.push(diag);
        }
    }

    /// "hosts: a, b; labels: role=x" for selector errors.
    fn hosts_help(&self) -> String {
        if self.hosts.is_empty() {
            return "no hosts are defined; add a [hosts.NAME] table".to_string();
        }
        let names: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
        let labels: BTreeSet<String> = self.hosts.values().flat_map(|h| h.labels.iter().map(|(k, v)| format!("{k}={v}"))).collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut help = format!("a selector is \"*\", a host name or \"label=value\"; hosts: {}", quote_list(&names));
        if labels.is_empty() {
            help.push_str("; no host has labels");
        } else {
            help.push_str(&format!("; labels: {}", quote_list(&labels)));
        }
        help
    }

    fn check_duplicate_paths(&mut self) {
        let mut literal: Vec<(&ResourceSpec, String, &Span, BTreeSet<&str>)> = Vec::new();
        for res in &self.resources {
            let path = match &res.body {
                ResourceBody::Dir(dir) => &dir.path,
                ResourceBody::File(file) => &file.path,
                ResourceBody::Unit(_) | ResourceBody::User(_) | ResourceBody::Check(_) | ResourceBody::Cluster(_) => continue,
                ResourceBody::Cert(cert) => &cert.cert_path,
                // Several paths each; checked on rendered paths when the graph is built.
                ResourceBody::Binary(_) => continue,
                ResourceBody::Firewall(_) => continue,
            };
            if is_templated(&path.text) {
                continue;
            }
            let normal = match path.text.trim_end_matches('/') {
                "" => "/".to_string(),
                p => p.to_string(),
            };
            let on: BTreeSet<&str> =
                self.hosts.values().filter(|h| res.hosts.iter().any(|s| s.value.matches(h))).map(|h| h.name.as_str()).collect();
            for (other, other_path, other_span, other_on) in &literal {
                if *other_path != normal {
                    continue;
                }
                let both: Vec<&str> = on.intersection(other_on).copied().collect();
                if both.is_empty() {
                    continue;
                }
                self.diags.push(
                    Diagnostic::at(&path.span, format!("`{normal}` is managed by both `{}` and `{}`", other.id, res.id))
                        .with_label(format!("`{}` manages it on {}", res.id, quote_list(&both)))
                        .with_related(other_span, format!("`{}` manages it too", other.id))
                        .with_help(
                            "a path can be managed by only one resource per host; remove one, or change `hosts` so they do not overlap",
                        ),
                );
            }
            literal.push((res, normal, &path.span, on));
        }
    }
}

/// Why an `after` entry is not a resource id.
fn bad_after_id(a: &Located<String>) -> Diagnostic {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let parts: Vec<&str> = a.value.split('.').collect();
    let kind = match parts.as_slice() {
        [kind, _] | [_, kind, _] => Some(*kind),
        _ => None,
    };
    match kind {
        Some(kind) if Kind::parse(kind).is_none() => {
            let diag = Diagnostic::at(&a.span, format!("`{}` names an unknown resource kind `{kind}`", a.value));
            match did_you_mean(kind, kinds.iter().copied()) {
                Some(m) => diag.with_label(format!("did you mean `{m}`?")).with_help(format!("the kinds are {}", quote_list(&kinds))),
                None => diag.with_label("unknown kind").with_help(format!("the kinds are {}", quote_list(&kinds))),
            }
        }
        _ => Diagnostic::at(&a.span, format!("`{}` is not a resource id", a.value))
            .with_label("expected `kind.name`")
            .with_help(format!("name a resource as `kind.name`, e.g. \"dir.conf\"; the kinds are {}", quote_list(&kinds))),
    }
}

/// Parses one written selector, rejecting `label=` and `=value`.
fn parse_selector(s: &Located<String>, d: &mut Diagnostics) -> Option<Located<Selector>> {
    let sel = Selector::parse(&s.value);
    let bad = match &sel {
        Selector::Label(k, v) => k.is_empty() || v.is_empty(),
        Selector::Name(n) => n.trim().is_empty(),
        Selector::All => false,
    };
    if bad {
        d.push(
            Diagnostic::at(&s.span, format!("`{}` is not a valid host selector", s.value))
                .with_label("expected \"*\", a host name or \"label=value\"")
                .with_help("write \"*\" for every host, a host name, or a label test such as \"role=etcd\""),
        );
        return None;
    }
    Some(Located::new(sel, s.span.clone()))
}

/// `path = "/abs/path"` of a file or dir.
/// Attributes each kind lets `ignore` name: those its plan reports and its apply sets one by one.
pub(crate) fn ignorable(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::File => &["content", "mode", "owner", "group"],
        Kind::Dir => &["mode", "owner", "group"],
        Kind::User => &["uid", "group", "home", "shell", "groups"],
        _ => &[],
    }
}

/// `ignore = ["mode", ...]`: attributes whose drift is accepted.
fn read_ignore(r: &mut TableReader<'_, '_>, kind: Kind, d: &mut Diagnostics) -> Vec<String> {
    let Some(list) = r.string_list("ignore", d) else { return Vec::new() };
    let known = ignorable(kind);
    let mut names = Vec::new();
    for name in list.value {
        if known.contains(&name.value.as_str()) {
            names.push(name.value);
            continue;
        }
        let diag = Diagnostic::at(&name.span, format!("`ignore` names `{}`, which {} cannot ignore", name.value, r.what()));
        d.push(if known.is_empty() {
            diag.with_label("not supported for this kind").with_help("`ignore` works on file, dir and user resources; remove it here")
        } else {
            match did_you_mean(&name.value, known.iter().copied()) {
                Some(m) => diag.with_label(format!("did you mean `{m}`?")),
                None => diag.with_label("unknown attribute"),
            }
            .with_help(format!("{kind} resources can ignore {}", quote_list(known)))
        });
    }
    names
}

fn read_path(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<TemplateText> {
    let path = r.required_string("path", "\"/absolute/path\"", d)?;
    if !path.value.starts_with('/') && !path.value.trim_start().starts_with("{{") {
        d.push(Diagnostic::at(&path.span, format!("`path` of [{id}] must be absolute")).with_label("a relative path").with_help(
            if path.value.is_empty() {
                "write the full path on the host, starting with `/`".to_string()
            } else {
                format!("write the full path on the host, starting with `/`, e.g. path = \"/{}\"", path.value.trim_start_matches("./"))
            },
        ));
        return None;
    }
    Some(TemplateText { text: path.value, span: path.span, name: format!("{id}.path") })
}

/// Exactly one of `content` (a template, or a secret source as an inline table), `template`,
/// `source`.
fn read_content(
    r: &mut TableReader<'_, '_>,
    sources: &mut SourceMap,
    base: &Path,
    id: &ResourceId,
    d: &mut Diagnostics,
) -> Option<ContentSource> {
    let secret_span = match r.get("content") {
        Some((_, v)) if v.get_ref().is_table() => Some(r.at(v.span())),
        _ => None,
    };
    let secret_table = if secret_span.is_some() { r.table("content", format!("`content` of [{id}]"), d) } else { None };
    let content = if secret_span.is_some() { None } else { r.optional_string("content", d) };
    let template = r.optional_string("template", d);
    let source = r.optional_string("source", d);
    let given: Vec<(&str, &Span)> = [
        ("content", content.as_ref().map(|c| &c.span).or(secret_span.as_ref())),
        ("template", template.as_ref().map(|t| &t.span)),
        ("source", source.as_ref().map(|s| &s.span)),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    match given.as_slice() {
        [] => {
            let keys = ["content", "template", "source"];
            if keys.iter().all(|k| r.get(k).is_none()) && !r.near_miss(&keys) {
                d.push(
                    Diagnostic::at(r.span(), format!("{} has no content", r.what()))
                        .with_label("needs `content`, `template` or `source`")
                        .with_help("add one of: content = \"text\", template = \"file.j2\" (a template file) or source = \"file\" (copied as it is)"),
                );
            }
            return None;
        }
        [_] => {}
        [(first, first_span), rest @ ..] => {
            for (k, span) in rest {
                d.push(
                    Diagnostic::at(span, format!("{} sets both `{first}` and `{k}`", r.what()))
                        .with_label(format!("`{k}` set here"))
                        .with_related(first_span, format!("`{first}` set here"))
                        .with_help("keep one: `content` for inline text, `template` for a template file, `source` to copy a file as it is"),
                );
            }
            return None;
        }
    }
    if let Some(table) = secret_table {
        return secret::read(table, base, d).map(ContentSource::Secret);
    }
    if let Some(c) = content {
        return Some(ContentSource::Template(TemplateText { text: c.value, span: c.span, name: format!("{id}.content") }));
    }
    if let Some(t) = template {
        let path = base.join(&t.value);
        let bytes = match read_bytes(&path) {
            Ok(b) => b,
            Err(why) => {
                d.push(missing_file(&t, "template", &path, &why));
                return None;
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            d.push(
                Diagnostic::at(&t.span, format!("template file `{}` is not valid UTF-8", t.value))
                    .with_label(format!("read from {}", path.display()))
                    .with_help("templates must be text; use `source = ...` to copy a binary file as it is"),
            );
            return None;
        };
        let len = text.len();
        let file = sources.add(&path, text.clone());
        return Some(ContentSource::Template(TemplateText { text, span: Span::new(file, 0..len), name: t.value }));
    }
    if let Some(s) = source {
        let path = base.join(&s.value);
        return match read_bytes(&path) {
            Ok(bytes) => {
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    sources.add(&path, text.to_string());
                }
                Some(ContentSource::Bytes { bytes, path })
            }
            Err(why) => {
                d.push(missing_file(&s, "source", &path, &why));
                None
            }
        };
    }
    None
}

fn missing_file(written: &Located<String>, what: &str, resolved: &Path, why: &str) -> Diagnostic {
    Diagnostic::at(&written.span, format!("cannot read {what} file `{}`", written.value))
        .with_label(format!("{why}: {}", resolved.display()))
        .with_help(format!("{what} paths are relative to the spec file that names them; check the name"))
}

/// The error for a reference (`after`, `restart_on`, `wait_for`) naming `wanted`, which is not
/// defined: "did you mean" the closest of `known` when one is close, else `missing` as the label
/// and `help` as the help.
fn undefined_reference(span: &Span, field: &str, wanted: &str, known: &[String], missing: &str, help: String) -> Diagnostic {
    let diag = Diagnostic::at(span, format!("`{field}` names `{wanted}`, which is not defined"));
    match did_you_mean(wanted, known.iter().map(String::as_str)) {
        Some(m) => diag.with_label(format!("did you mean `{m}`?")).with_help(format!("write \"{m}\", or define [{wanted}]")),
        None => diag.with_label(missing).with_help(help),
    }
}
