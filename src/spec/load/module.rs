//! Reading modules: `[module.NAME]` in a spec (its `source`, `hosts`, `after`, and every other key
//! an input), finding the module folder, reading its `module.toml` (`[module]`, typed `[inputs.*]`,
//! `[[assert]]`, and resource tables read by the same [`Loader::resource`] as a spec's, so every
//! kind works in modules), checking the inputs against their declarations, and — once every host
//! is known — the module's asserts. Errors point at the spec line that set an input and at the
//! module's declaration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::reader::{TableReader, Value, expect_table, quote_list, to_json, type_phrase};
use super::{Loader, canonical, dir_of, parse_selector, read_text, valid_name};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, FileId, Located, Span, did_you_mean};
use crate::spec::model::{Kind, ResourceId, Selector};
use crate::spec::module::{AssertDecl, InputDecl, InputType, ModuleDef, ModuleScope};
use crate::spec::secret::Secret;

/// The module instance whose resources are being read.
pub(super) struct ModuleCtx {
    /// Its scope, shared by its resources.
    pub(super) scope: Arc<ModuleScope>,
    /// The instance's `after`: every resource of the module waits for these.
    pub(super) after: Vec<Located<ResourceId>>,
}

/// A module's `[[assert]]`s, evaluated for one instance once every host is known.
pub(super) struct PendingAssert {
    scope: Arc<ModuleScope>,
    source: String,
    asserts: Vec<AssertDecl>,
}

/// Keys of `[module.NAME]` that are not inputs.
const INSTANCE_KEYS: &[&str] = &["source", "hosts", "after"];

/// What a spec wrote in `[module.NAME]`.
struct Instance<'a, 'i> {
    file: FileId,
    name: Located<String>,
    span: Span,
    source: Located<String>,
    hosts: Vec<Located<Selector>>,
    after: Vec<Located<ResourceId>>,
    given: Vec<(Located<String>, &'a Value<'i>)>,
    /// The folder of the spec file that wrote it (relative secret files start there).
    base: PathBuf,
}

impl Loader {
    /// `[module.NAME]` in a spec file.
    pub(super) fn module_instance(&mut self, file: FileId, base: &Path, name: Located<String>, value: &Value<'_>) {
        let d = &mut self.diags;
        let help = format!("write it as a table: a [module.{}] header followed by `source = \"...\"`", name.value);
        let what = format!("module `{}`", name.value);
        let Some(table) = expect_table(Span::new(file, value.span()), value.get_ref(), &what, help, d) else { return };
        if !valid_name(&name.value) {
            d.push(
                Diagnostic::at(&name.span, format!("`{}` is not a valid module instance name", name.value))
                    .with_label("invalid name")
                    .with_help("instance names may use only letters, digits, `_` and `-`"),
            );
        }
        let span = Span::new(file, value.span());
        let mut r = TableReader::new(file, table, span.clone(), format!("[module.{}]", name.value));
        let source = r.required_string("source", "\"motd\"", d);
        let mut hosts = Vec::new();
        if let Some(list) = r.string_list("hosts", d) {
            if list.value.is_empty() {
                d.push(
                    Diagnostic::at(&list.span, format!("`hosts` of [module.{}] is empty", name.value))
                        .with_label("selects no host")
                        .with_help(
                            "list at least one selector (\"*\", a host name or \"label=value\"), or remove `hosts` to mean every host",
                        ),
                );
            }
            hosts = list.value.into_iter().filter_map(|s| parse_selector(&s, d)).collect();
        }
        let mut after = Vec::new();
        for a in r.string_list("after", d).map(|l| l.value).unwrap_or_default() {
            match ResourceId::parse(&a.value) {
                Some(target) if valid_name(&target.name) => {
                    let loc = Located::new(target, a.span);
                    self.pending_after.push(loc.clone());
                    after.push(loc);
                }
                _ => d.push(super::bad_after_id(&a)),
            }
        }
        let given = r.rest();
        r.finish(d);
        let what = format!("module instance `{}`", name.value);
        let help = "instance names must be unique; rename or remove one of them";
        if !super::claim_name(&mut self.module_keys, &name.value, &what, help, name.span.clone(), d) {
            return;
        }
        let Some(source) = source else { return };
        let Some(dir) = self.find_module(base, &source) else { return };
        let instance = Instance { file, name, span, source, hosts, after, given, base: base.to_path_buf() };
        self.module_folder(&dir, Some(instance));
    }

    /// The folder `source` names: a path (`./x`, `/x`, `x/y`) relative to the spec, else a module
    /// name looked up in `modules/` beside the spec and in each parent, then in `CAIRN_MODULE_PATH`.
    fn find_module(&mut self, base: &Path, source: &Located<String>) -> Option<PathBuf> {
        let written = source.value.as_str();
        if written.contains('/') || written.starts_with('.') {
            let dir = base.join(written);
            if dir.join("module.toml").is_file() {
                return Some(dir);
            }
            self.diags.push(
                Diagnostic::at(&source.span, format!("no module at `{written}`"))
                    .with_label(format!("no module.toml in {}", dir.display()))
                    .with_help("a module path is relative to the spec file and names a folder holding a module.toml"),
            );
            return None;
        }
        let roots = module_roots(base);
        if valid_name(written) {
            for root in &roots {
                let dir = root.join(written);
                if dir.join("module.toml").is_file() {
                    return Some(dir);
                }
            }
        }
        let known: Vec<String> = available_modules(&roots);
        let mut diag = Diagnostic::at(&source.span, format!("module `{written}` not found"));
        diag = match did_you_mean(written, known.iter().map(String::as_str)) {
            Some(m) => diag.with_label(format!("did you mean `{m}`?")),
            None => diag.with_label("no such module"),
        };
        let found = if known.is_empty() {
            "none were found".to_string()
        } else {
            format!("found: {}", quote_list(&known.iter().map(String::as_str).collect::<Vec<_>>()))
        };
        self.diags.push(diag.with_help(format!(
            "modules are folders with a module.toml, looked up in `modules/` beside the spec, in each parent directory's `modules/`, and in CAIRN_MODULE_PATH; {found}"
        )));
        None
    }

    /// Reads a module folder: its declarations, then (for an instance) its inputs and resources.
    /// Without an instance (for `cairn module show`), resources are read with default inputs.
    fn module_folder(&mut self, dir: &Path, instance: Option<Instance<'_, '_>>) -> Option<ModuleDef> {
        let path = dir.join("module.toml");
        let text = match read_text(&path) {
            Ok(t) => t,
            Err(why) => {
                let d = match &instance {
                    Some(i) => Diagnostic::at(&i.source.span, format!("cannot read `{}`", path.display())).with_label(why),
                    None => Diagnostic::global(format!("cannot read `{}`: {why}", path.display())),
                };
                self.diags.push(d.with_help("a module is a folder holding a module.toml"));
                return None;
            }
        };
        let file = self.sources.add(&path, text.clone());
        self.module_files.insert(file);
        let (doc, errors) = DeTable::parse_recoverable(&text);
        if !errors.is_empty() {
            self.broken = true;
            for e in errors {
                let span = Span::new(file, e.span().unwrap_or(0..0));
                let message = e.message().trim_end().to_string();
                let first = message.lines().next().unwrap_or_default();
                self.diags.push(
                    Diagnostic::at(&span, format!("invalid TOML: {first}")).with_help("fix the TOML syntax here; see https://toml.io"),
                );
            }
            return None;
        }
        let errors_before = self.diags.0.len();
        let folder = canonical(dir).file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut root = TableReader::new(file, doc.get_ref(), Span::new(file, 0..0), "module.toml");
        let d = &mut self.diags;
        let mut description = None;
        if let Some(mut m) = root.table("module", "[module]".into(), d) {
            description = m.optional_string("description", d).map(|s| s.value);
            m.finish(d);
        }
        let mut inputs = Vec::new();
        let mut inputs_span = Span::new(file, 0..0);
        if let Some(mut table) = root.table("inputs", "[inputs]".into(), d) {
            inputs_span = table.span().clone();
            for (key, value) in table.rest() {
                if let Some(decl) = read_input_decl(file, key, value, d) {
                    inputs.push(decl);
                }
            }
        }
        let asserts = read_asserts(&mut root, file, d);
        let mut resources = Vec::new();
        for &kind in Kind::ALL {
            if let Some(mut kind_table) = root.table(kind.as_str(), format!("[{kind}]"), d) {
                resources.extend(kind_table.rest().into_iter().map(|(name, value)| (kind, name, value)));
            }
        }
        root.finish(d);
        let def = ModuleDef {
            name: folder.clone(),
            dir: dir.to_path_buf(),
            description,
            inputs,
            asserts,
            resources: resources.iter().map(|(kind, name, _)| ResourceId::new(*kind, name.value.clone())).collect(),
            inputs_span,
            clusters: Vec::new(),
        };

        let (scope, after) = match instance {
            Some(instance) => {
                // When the module's own declarations are wrong, judging the inputs would only add noise.
                let (values, secret_inputs, ok) = if self.diags.0.len() == errors_before {
                    self.check_inputs(&def, &instance)
                } else {
                    (BTreeMap::new(), BTreeMap::new(), false)
                };
                let scope = Arc::new(ModuleScope {
                    name: instance.name.value.clone(),
                    source: instance.source.value.clone(),
                    dir: dir.to_path_buf(),
                    inputs: values,
                    secret_inputs,
                    hosts: instance.hosts.clone(),
                    span: instance.span.clone(),
                });
                self.modules.push(scope.clone());
                if ok && !def.asserts.is_empty() {
                    self.pending_asserts.push(PendingAssert {
                        scope: scope.clone(),
                        source: instance.source.value.clone(),
                        asserts: def.asserts.clone(),
                    });
                }
                (scope, instance.after)
            }
            None => {
                let inputs = def.inputs.iter().map(|i| (i.name.clone(), i.default.clone().unwrap_or(serde_json::Value::Null))).collect();
                let scope = ModuleScope {
                    name: folder,
                    source: dir.display().to_string(),
                    dir: dir.to_path_buf(),
                    inputs,
                    secret_inputs: BTreeMap::new(),
                    hosts: Vec::new(),
                    span: Span::new(file, 0..0),
                };
                (Arc::new(scope), Vec::new())
            }
        };
        let secrets: Vec<String> = scope.secret_inputs.keys().cloned().collect();
        self.module_ctx = Some(super::module::ModuleCtx { scope, after });
        let base = dir_of(&path);
        let first = self.resources.len();
        for (kind, name, value) in resources {
            self.resource(file, &base, kind, name, value);
        }
        self.module_ctx = None;
        super::secret::mark_sensitive(&mut self.resources[first..], &secrets);
        Some(def)
    }

    /// Checks an instance's inputs against the declarations: unknown, wrong type, out of range,
    /// missing. Returns every input's value (defaults applied), the secret ones among them (a
    /// `string` input given as `{ env = … }`, `{ file = … }` or `{ command = […] }`, read now),
    /// and whether all were fine.
    fn check_inputs(
        &mut self,
        def: &ModuleDef,
        instance: &Instance<'_, '_>,
    ) -> (BTreeMap<String, serde_json::Value>, BTreeMap<String, Secret>, bool) {
        let d = &mut self.diags;
        let before = d.0.len();
        let module = &instance.source.value;
        let mut values = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        let declared: Vec<&str> = def.inputs.iter().map(|i| i.name.as_str()).collect();
        for (key, value) in &instance.given {
            let Some(decl) = def.inputs.iter().find(|i| i.name == key.value) else {
                let mut diag = Diagnostic::at(&key.span, format!("module `{module}` has no input `{}`", key.value));
                let near = did_you_mean(&key.value, declared.iter().copied()).and_then(|m| def.inputs.iter().find(|i| i.name == m));
                diag = match near {
                    Some(m) => diag
                        .with_label(format!("did you mean `{}`?", m.name))
                        .with_related(&m.span, format!("`{}` is declared here", m.name)),
                    None => diag
                        .with_label("unknown input")
                        .with_related(&def.inputs_span, format!("the inputs of `{module}` are declared here")),
                };
                let takes = if declared.is_empty() { "no inputs".to_string() } else { format!("the inputs {}", quote_list(&declared)) };
                d.push(diag.with_help(format!("[module.{}] takes {}, and {takes}", instance.name.value, quote_list(INSTANCE_KEYS))));
                continue;
            };
            let what = format!("input `{}` of module `{module}`", decl.name);
            if let (InputType::String, DeValue::Table(table)) = (decl.ty, value.get_ref()) {
                let reader = TableReader::new(instance.file, table, Span::new(instance.file, value.span()), what);
                if let Some((text, secret)) = super::secret::read_input(reader, &instance.base, decl, d) {
                    values.insert(decl.name.clone(), serde_json::Value::String(text));
                    secrets.insert(decl.name.clone(), secret);
                }
                continue;
            }
            if let DeValue::Table(table) = value.get_ref()
                && decl.ty != InputType::Table
                && ["env", "file", "command"].iter().any(|k| table.get(*k).is_some())
            {
                d.push(
                    Diagnostic::at(&Span::new(instance.file, value.span()), format!("{what} cannot come from a secret source"))
                        .with_label(format!("`{}` is declared as {}", decl.name, decl.ty.phrase()))
                        .with_related(&decl.type_span, format!("`{}` is declared as {} here", decl.name, decl.ty.phrase()))
                        .with_help("secret sources ({ env = … }, { file = … }, { command = […] }) fill `string` inputs only"),
                );
                continue;
            }
            if let Some(v) = check_value(instance.file, decl, value, &what, d) {
                values.insert(decl.name.clone(), v);
            }
        }
        for decl in &def.inputs {
            if instance.given.iter().any(|(k, _)| k.value == decl.name) {
                continue;
            }
            // A misspelt key is reported as unknown with "did you mean"; "missing" would repeat it.
            let misspelt = instance.given.iter().any(|(k, _)| {
                !declared.contains(&k.value.as_str()) && did_you_mean(&k.value, declared.iter().copied()) == Some(decl.name.as_str())
            });
            if misspelt && decl.default.is_none() {
                continue;
            }
            match &decl.default {
                Some(v) => {
                    values.insert(decl.name.clone(), v.clone());
                }
                None => {
                    let what = decl.description.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
                    d.push(
                        Diagnostic::at(&instance.span, format!("[module.{}] is missing the input `{}`", instance.name.value, decl.name))
                            .with_label(format!("`{}` is required here", decl.name))
                            .with_related(&decl.span, format!("`{}` is declared here, without a default", decl.name))
                            .with_help(format!("add `{} = {}`{what} to [module.{}]", decl.name, decl.ty.example(), instance.name.value)),
                    );
                }
            }
        }
        (values, secrets, d.0.len() == before)
    }

    /// Module selectors that match no host, and every module's asserts (once hosts are known).
    pub(super) fn check_modules(&mut self) {
        let mut unmatched: Vec<&str> = Vec::new();
        for scope in &self.modules {
            for sel in &scope.hosts {
                if self.hosts.values().any(|h| sel.value.matches(h)) {
                    continue;
                }
                unmatched.push(&scope.name);
                let written = match &sel.value {
                    Selector::All => "*".to_string(),
                    Selector::Name(n) => n.clone(),
                    Selector::Label(k, v) => format!("{k}={v}"),
                };
                let diag = Diagnostic::at(&sel.span, format!("`{written}` in `hosts` of [module.{}] matches no host", scope.name))
                    .with_label("matches no host")
                    .with_help(self.hosts_help());
                self.diags.push(diag);
            }
        }
        let unmatched: Vec<String> = unmatched.into_iter().map(str::to_string).collect();
        let mut env = minijinja::Environment::new();
        // As in resource templates: an undefined value can be tested, but printing one is an error.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        crate::spec::template::with_budget(&mut env);
        let vars: BTreeMap<&String, &serde_json::Value> = self.vars.iter().map(|(k, (v, _))| (k, v)).collect();
        for pending in std::mem::take(&mut self.pending_asserts) {
            let scope = &pending.scope;
            if unmatched.contains(&scope.name) {
                continue;
            }
            let hosts: Vec<serde_json::Value> = self
                .hosts
                .values()
                .filter(|h| scope.selects(h))
                .map(|h| serde_json::json!({ "name": h.name, "address": h.address, "labels": h.labels }))
                .collect();
            let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
                "inputs": scope.inputs,
                "module": { "name": scope.name, "hosts": hosts },
                "vars": vars,
            })));
            // A message shows secret inputs as "(sensitive)"; the check itself sees their values.
            let shown = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
                "inputs": scope.shown_inputs(),
                "module": { "name": scope.name, "hosts": hosts },
                "vars": vars,
            })));
            for a in &pending.asserts {
                let result = env.compile_expression(&a.that.value).and_then(|e| e.eval(ctx.clone()));
                match result {
                    Ok(v) if v.is_true() => {}
                    Ok(_) => {
                        let message = match &a.message {
                            Some(m) => crate::spec::template::render_bounded(&env, "message", &m.value, shown.clone())
                                .unwrap_or_else(|_| m.value.clone()),
                            None => format!("`{}` is false", a.that.value),
                        };
                        self.diags.push(
                            Diagnostic::at(&scope.span, format!("module `{}` ({}): {message}", scope.name, pending.source))
                                .with_label(format!("fails a check of module `{}`", pending.source))
                                .with_related(&a.that.span, "the check")
                                .with_help(format!("change the inputs or `hosts` of [module.{}] so that the check holds", scope.name)),
                        );
                    }
                    Err(e) => self.diags.push(
                        Diagnostic::at(
                            &a.that.span,
                            format!(
                                "cannot evaluate the check `{}`: {}",
                                a.that.value,
                                crate::spec::template::budget_exceeded(&e).unwrap_or_else(|| e.to_string())
                            ),
                        )
                        .with_related(&scope.span, format!("evaluated for [module.{}]", scope.name))
                        .with_help("`that` is a minijinja expression over `inputs`, `module` (`name`, `hosts`) and `vars`"),
                    ),
                }
            }
        }
    }
}

/// Reads one module folder on its own (for `cairn module show` and tests): its declarations and
/// resources, with default inputs.
pub fn load_module(dir: &Path) -> Result<(ModuleDef, crate::spec::SourceMap), super::LoadError> {
    let mut loader = Loader::default();
    let def = loader.module_folder(dir, None);
    match def {
        Some(mut def) if loader.diags.is_empty() => {
            def.clusters = loader
                .resources
                .iter()
                .filter_map(|r| match &r.body {
                    crate::spec::ResourceBody::Cluster(c) => Some((r.id.clone(), c.driver)),
                    _ => None,
                })
                .collect();
            Ok((def, loader.sources))
        }
        _ => Err(super::LoadError { sources: loader.sources, diagnostics: loader.diags }),
    }
}

/// Where module names are looked up: `modules/` in `base` and each of its parents, then each
/// directory of `CAIRN_MODULE_PATH` (`:`-separated).
pub fn module_roots(base: &Path) -> Vec<PathBuf> {
    let start = canonical(if base.as_os_str().is_empty() { Path::new(".") } else { base });
    let mut roots: Vec<PathBuf> = start.ancestors().map(|a| a.join("modules")).filter(|p| p.is_dir()).collect();
    if let Some(path) = std::env::var_os("CAIRN_MODULE_PATH") {
        roots.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    roots
}

/// Names of the modules found in `roots`, sorted, without repeats.
fn available_modules(roots: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = roots
        .iter()
        .filter_map(|r| std::fs::read_dir(r).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("module.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `[inputs.NAME]`.
fn read_input_decl(file: FileId, key: Located<String>, value: &Value<'_>, d: &mut Diagnostics) -> Option<InputDecl> {
    let DeValue::Table(table) = value.get_ref() else {
        d.push(
            Diagnostic::at(
                &Span::new(file, value.span()),
                format!("input `{}` must be a table, found {}", key.value, type_phrase(value.get_ref())),
            )
            .with_label("expected a table")
            .with_help(format!("declare it as a table: [inputs.{}] with `type = \"string\"` and a `description`", key.value)),
        );
        return None;
    };
    if !valid_name(&key.value) || INSTANCE_KEYS.contains(&key.value.as_str()) {
        d.push(
            Diagnostic::at(&key.span, format!("`{}` cannot be an input name", key.value))
                .with_label("invalid input name")
                .with_help("input names use letters, digits, `_` and `-`, and cannot be `source`, `hosts` or `after`"),
        );
    }
    let span = Span::new(file, value.span());
    let mut r = TableReader::new(file, table, span.clone(), format!("[inputs.{}]", key.value));
    let names: Vec<&'static str> = InputType::ALL.iter().map(|t| t.as_str()).collect();
    let ty = if r.get("type").is_none() {
        d.push(r.missing("type", "\"string\"").with_help(format!(
            "add `type = ...` to [inputs.{}]: one of {}",
            key.value,
            quote_list(&names)
        )));
        None
    } else {
        r.optional_choice("type", &names, d)
            .and_then(|c| InputType::ALL.iter().find(|t| t.as_str() == c.value).map(|t| Located::new(*t, c.span)))
    };
    let description = r.optional_string("description", d).map(|s| s.value);
    let min = r.optional_int("min", i64::MIN, i64::MAX, 1, d);
    let max = r.optional_int("max", i64::MIN, i64::MAX, 10, d);
    let one_of = match r.get("one_of") {
        Some((_, v)) => match v.get_ref() {
            DeValue::Array(items) => {
                Some(Located::new(items.iter().map(|i| to_json(file, i, d)).collect::<Vec<_>>(), Span::new(file, v.span())))
            }
            other => {
                d.push(
                    Diagnostic::at(
                        &Span::new(file, v.span()),
                        format!("`one_of` in [inputs.{}] must be an array, found {}", key.value, type_phrase(other)),
                    )
                    .with_label("expected an array")
                    .with_help("list the allowed values, e.g. one_of = [\"a\", \"b\"]"),
                );
                None
            }
        },
        None => None,
    };
    let default = r.get("default").map(|(_, v)| v);
    r.finish(d);
    let ty = ty?;
    for (written, key_name, ok) in [
        (min.as_ref().map(|m| m.span.clone()), "min", ty.value == InputType::Int),
        (max.as_ref().map(|m| m.span.clone()), "max", ty.value == InputType::Int),
        (one_of.as_ref().map(|o| o.span.clone()), "one_of", matches!(ty.value, InputType::Int | InputType::String)),
    ] {
        if let (Some(span), false) = (written, ok) {
            d.push(
                Diagnostic::at(&span, format!("`{key_name}` does not apply to a {} input", ty.value))
                    .with_label(format!("input `{}` is a {}", key.value, ty.value))
                    .with_help(
                        "`min`/`max` apply to `int` inputs, `one_of` to `string` and `int` inputs; use an [[assert]] for other checks",
                    ),
            );
        }
    }
    let mut decl =
        InputDecl { name: key.value.clone(), ty: ty.value, description, default: None, min, max, one_of, span, type_span: ty.span };
    if let Some(v) = default {
        decl.default = check_value(file, &decl, v, &format!("the default of input `{}`", key.value), d);
    }
    Some(decl)
}

/// `[[assert]]` entries.
fn read_asserts(root: &mut TableReader<'_, '_>, file: FileId, d: &mut Diagnostics) -> Vec<AssertDecl> {
    let mut out = Vec::new();
    let Some((_, v)) = root.get("assert") else { return out };
    let DeValue::Array(items) = v.get_ref() else {
        d.push(
            Diagnostic::at(&Span::new(file, v.span()), format!("`assert` must be an array of tables, found {}", type_phrase(v.get_ref())))
                .with_label("expected [[assert]] tables")
                .with_help("write each check as an [[assert]] table with `that = \"...\"` and `message = \"...\"`"),
        );
        return out;
    };
    for item in items.iter() {
        let DeValue::Table(t) = item.get_ref() else {
            d.push(
                Diagnostic::at(
                    &Span::new(file, item.span()),
                    format!("each `assert` must be a table, found {}", type_phrase(item.get_ref())),
                )
                .with_label("expected a table")
                .with_help("write each check as an [[assert]] table with `that = \"...\"` and `message = \"...\"`"),
            );
            continue;
        };
        let mut r = TableReader::new(file, t, Span::new(file, item.span()), "[[assert]]");
        let that = r.required_string("that", "\"module.hosts | length is odd\"", d);
        let message = r.optional_string("message", d);
        r.finish(d);
        if let Some(that) = that {
            if let Err(e) = minijinja::Environment::new().compile_expression(&that.value) {
                d.push(
                    Diagnostic::at(&that.span, format!("`that` is not a valid expression: {e}"))
                        .with_label("cannot be compiled")
                        .with_help("`that` is a minijinja expression over `inputs`, `module` (`name`, `hosts`) and `vars`"),
                );
                continue;
            }
            out.push(AssertDecl { that, message });
        }
    }
    out
}

/// Checks one value (a spec's input, or a declared default) against its declaration.
fn check_value(file: FileId, decl: &InputDecl, v: &Value<'_>, what: &str, d: &mut Diagnostics) -> Option<serde_json::Value> {
    let span = Span::new(file, v.span());
    let fits = matches!(
        (decl.ty, v.get_ref()),
        (InputType::String, DeValue::String(_))
            | (InputType::Int, DeValue::Integer(_))
            | (InputType::Bool, DeValue::Boolean(_))
            | (InputType::List, DeValue::Array(_))
            | (InputType::Table, DeValue::Table(_))
    );
    if !fits {
        d.push(
            Diagnostic::at(&span, format!("{what} must be {}, found {}", decl.ty.phrase(), type_phrase(v.get_ref())))
                .with_label(format!("expected {}", decl.ty.phrase()))
                .with_related(&decl.type_span, format!("`{}` is declared as {} here", decl.name, decl.ty.phrase()))
                .with_help(format!("write {}, e.g. {} = {}", decl.ty.phrase(), decl.name, decl.ty.example())),
        );
        return None;
    }
    let json = to_json(file, v, d);
    if let (Some(n), Some(min)) = (json.as_i64(), &decl.min)
        && n < min.value
    {
        d.push(
            Diagnostic::at(&span, format!("{what} is {n}, below its minimum {}", min.value))
                .with_label(format!("must be at least {}", min.value))
                .with_related(&min.span, "the minimum is set here")
                .with_help(format!("use a value from {}", decl.constraints())),
        );
        return None;
    }
    if let (Some(n), Some(max)) = (json.as_i64(), &decl.max)
        && n > max.value
    {
        d.push(
            Diagnostic::at(&span, format!("{what} is {n}, above its maximum {}", max.value))
                .with_label(format!("must be at most {}", max.value))
                .with_related(&max.span, "the maximum is set here")
                .with_help(format!("use a value from {}", decl.constraints())),
        );
        return None;
    }
    if let Some(one_of) = &decl.one_of
        && !one_of.value.contains(&json)
    {
        d.push(
            Diagnostic::at(&span, format!("{what} is {json}, which is not allowed"))
                .with_label(format!("expected {}", decl.constraints()))
                .with_related(&one_of.span, "the allowed values are listed here")
                .with_help(format!("use {}", decl.constraints())),
        );
        return None;
    }
    Some(json)
}
