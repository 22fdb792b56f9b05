//! Templating and modules. Renders [`TemplateText`] with minijinja for one host, with the context
//! every template sees (`vars`, `host`, `hosts`, and in a module's resources `inputs` and
//! `module`), and turns template errors into diagnostics that point at the template's file and
//! line. Module folders (`modules/<name>/module.toml`) are read by the spec loader, which reuses
//! its resource reader for them (see `docs/spec.md`, "Modules"); [`show`] describes a module for
//! `cairn module show` and its README. Knows nothing of hosts' state or SSH.

pub mod show;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, syntax::SyntaxConfig};

use crate::spec::diagnostic::did_you_mean;
use crate::spec::template::{budget_exceeded, render_bounded, with_budget};
use crate::spec::{ContentSource, Diagnostic, HostSpec, ModuleScope, ResourceBody, ResourceSpec, SourceMap, Span, Spec, TemplateText};

/// Renders templates with cairn's settings: undefined values are errors when printed (but can be
/// tested with `if`/`default`), a template's final newline is kept (config files need it), block
/// tags keep the whitespace around them (no `trim_blocks`/`lstrip_blocks`: the shipped modules'
/// templates are written for that, see `docs/spec.md`, "Template whitespace"), and nothing is
/// auto-escaped (minijinja would otherwise JSON-quote every value printed by a template
/// named `*.yml.j2` or `*.json.j2`, and HTML-escape `*.html.j2`). Every render has cairn's budget
/// (`spec::template::render_bounded`): a runaway template is an error, not a hang.
pub struct Templater {
    env: Environment<'static>,
}

impl Default for Templater {
    fn default() -> Self {
        Self::new()
    }
}

impl Templater {
    /// A templater with cairn's settings.
    pub fn new() -> Self {
        Self::with_block_trimming(false)
    }

    /// cairn's settings, but with minijinja's `trim_blocks` and `lstrip_blocks` (Jinja2's and
    /// Ansible's whitespace control) set to `trim`: for comparing what templates render both ways.
    pub fn with_block_trimming(trim: bool) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).trim_blocks(trim).lstrip_blocks(trim).build() {
            env.set_syntax(syntax);
        }
        env.set_debug(true);
        with_budget(&mut env);
        Self { env }
    }

    /// Renders `template` in `context`. Errors point at the template's line when known.
    pub fn render(&self, template: &TemplateText, context: &Value, sources: &SourceMap) -> Result<String, Diagnostic> {
        let rendered = render_bounded(&self.env, &template.name, &template.text, context.clone());
        rendered.map_err(|e| {
            let diag = template_diagnostic(template, &e, sources);
            if e.kind() == minijinja::ErrorKind::UndefinedError { undefined_var_hint(diag, template, &e, context) } else { diag }
        })
    }
}

/// For an undefined `vars.NAME`: "did you mean `vars.OTHER`?" when a defined variable is close
/// (the same [`did_you_mean`] as every other hint), and a help that says where variables come
/// from. Other undefined values keep the general help.
fn undefined_var_hint(diag: Diagnostic, template: &TemplateText, err: &minijinja::Error, context: &Value) -> Diagnostic {
    let defined: Vec<String> = context
        .get_attr("vars")
        .ok()
        .and_then(|v| v.try_iter().ok())
        .map(|keys| keys.filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    // minijinja names the undefined path in its detail ("`vars.greting` is undefined"); when it
    // does not, the names used on the failing line (or anywhere, for an inline template) are read.
    let line_text = err.line().and_then(|l| template.text.lines().nth(l.saturating_sub(1))).unwrap_or(&template.text);
    let used = var_names(err.detail().unwrap_or_default()).into_iter().chain(var_names(line_text));
    let Some(wanted) = used.into_iter().find(|name| !defined.contains(name)) else { return diag };
    let set_it = format!("define `{wanted}` in [vars], or give it with `--var {wanted}=VALUE`, a --var-file or CAIRN_VAR_{wanted}");
    match did_you_mean(&wanted, defined.iter().map(String::as_str)) {
        Some(close) => diag
            .with_label(format!("did you mean `vars.{close}`?"))
            .with_help(format!("`vars.{wanted}` is not defined, `vars.{close}` is: fix the name, or {set_it}")),
        None => {
            let known =
                if defined.is_empty() { "no variables are defined".to_string() } else { format!("defined: {}", defined.join(", ")) };
            diag.with_help(format!("`vars.{wanted}` is not defined ({known}): {set_it}, or use `| default(...)`"))
        }
    }
}

/// The `NAME` of every `vars.NAME` in `text`, in order.
fn var_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("vars.") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "vars.".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            names.push(name);
        }
    }
    names
}

/// Maps a minijinja error to a diagnostic. For a template file (its span covers the whole file)
/// the caret goes on the failing line; for an inline string it goes on the string.
fn template_diagnostic(template: &TemplateText, err: &minijinja::Error, sources: &SourceMap) -> Diagnostic {
    let detail = err.detail().map_or_else(|| err.kind().to_string(), str::to_string);
    let line = err.line();
    let whole_file = template.span.range.start == 0 && template.span.range.end == sources.text(template.span.file).len();
    // The failing expression itself when minijinja knows where it is and the source holds the
    // template as it is (a file, or a string without escapes); else its line, else the value.
    let inline_start = {
        let raw = sources.text(template.span.file).get(template.span.range.clone()).unwrap_or_default();
        let quoted = ["\"", "'"].iter().find_map(|q| raw.strip_prefix(q).and_then(|r| r.strip_suffix(q)));
        quoted.filter(|inner| *inner == template.text).map(|_| template.span.range.start + 1)
    };
    let exact = err.range().filter(|r| r.end <= template.text.len() && r.start < r.end).and_then(|r| {
        let base = if whole_file { Some(template.span.range.start) } else { inline_start };
        base.map(|b| Span::new(template.span.file, b + r.start..b + r.end))
    });
    let span = match (exact, line, whole_file) {
        (Some(exact), _, _) => exact,
        (None, Some(line), true) => {
            let text = sources.text(template.span.file);
            let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
            let end = text[start..].find('\n').map_or(text.len(), |n| start + n);
            Span::new(template.span.file, start..end.max(start + 1).min(text.len().max(start)))
        }
        _ => template.span.clone(),
    };
    let where_ = line.map(|l| format!(" (template line {l})")).unwrap_or_default();
    if let Some(limit) = budget_exceeded(err) {
        return Diagnostic::at(&span, format!("template {}{where_} does too much: {limit}", template.name))
            .with_help("a template renders one file or value: look for loops nested in loops or a huge `range(...)`, and render less");
    }
    Diagnostic::at(&span, format!("template error in {}{where_}: {} ({detail})", template.name, err.kind())).with_help(help_for(err.kind()))
}

/// What to do about a template error, by its kind.
fn help_for(kind: minijinja::ErrorKind) -> &'static str {
    use minijinja::ErrorKind;
    match kind {
        ErrorKind::UndefinedError => "fix the template; every value it prints must be defined (use `| default(...)` for optional ones)",
        ErrorKind::SyntaxError => {
            "fix the template's syntax: each `{{` needs its `}}`, each `{% if %}` / `{% for %}` its `{% endif %}` / `{% endfor %}`"
        }
        ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest | ErrorKind::UnknownMethod => {
            "templates have minijinja's built-in filters, tests and functions only; see docs/spec.md, \"Templates\""
        }
        ErrorKind::MissingArgument | ErrorKind::TooManyArguments | ErrorKind::InvalidOperation => {
            "fix the template: check the values and arguments used at that line"
        }
        _ => "fix the template",
    }
}

/// Secret inputs shorter than this are not looked for in rendered values (too many false hits).
const SHORTEST_TRACKED_SECRET: usize = 4;

/// The net that keeps a module's secret inputs out of everything cairn shows: a value rendered
/// from `template` for `resource` that holds a secret input's value is an error, unless it is the
/// content of a sensitive file (which plans, JSON, saved plans and logs never show).
pub fn secret_leak(resource: &ResourceSpec, template: &TemplateText, rendered: &str) -> Option<Diagnostic> {
    let scope = resource.scope.as_ref()?;
    let (input, secret, _) =
        scope.secret_texts().into_iter().find(|(_, _, v)| v.len() >= SHORTEST_TRACKED_SECRET && rendered.contains(v))?;
    let (content_of_file, sensitive) = match &resource.body {
        ResourceBody::File(f) => (matches!(&f.content, ContentSource::Template(c) if std::ptr::eq(c, template)), f.sensitive),
        _ => (false, false),
    };
    if content_of_file && sensitive {
        return None;
    }
    let diag = Diagnostic::at(
        &template.span,
        format!("`{}` would show the secret input `{input}` of module instance `{}` ({})", template.name, scope.name, secret.source),
    );
    Some(if content_of_file {
        diag.with_label("rendered into the content of a file that is not sensitive").with_help(format!(
            "add `sensitive = true` to [{}.{}] in the module, so its content is never shown",
            resource.id.kind, resource.id.name
        ))
    } else {
        diag.with_label("a secret rendered here would be shown in plans and logs").with_help(
            "a secret input may only go into the content of a `file` (which is then sensitive), e.g. an EnvironmentFile= or config file the service reads",
        )
    })
}

/// One host as templates see it: `name`, `address`, `labels`.
pub fn host_value(host: &HostSpec) -> Value {
    Value::from(minijinja::value::Serde(serde_json::json!({
        "name": host.name,
        "address": host.address,
        "labels": host.labels,
    })))
}

/// The context for rendering on `host`: `vars`, `host` and `hosts` (every host, sorted by name).
pub fn host_context(spec: &Spec, host: &HostSpec) -> Value {
    let hosts: Vec<Value> = spec.hosts.values().map(host_value).collect();
    minijinja::context! {
        vars => Value::from(minijinja::value::Serde(&spec.vars)),
        host => host_value(host),
        hosts => hosts,
    }
}

/// The context for a module resource on `host`: [`host_context`] plus `inputs` (the instance's
/// input values, defaults applied) and `module` (`name`, and `hosts`: the hosts it selects).
pub fn module_context(spec: &Spec, host: &HostSpec, scope: &ModuleScope) -> Value {
    let module_hosts: Vec<Value> = spec.hosts.values().filter(|h| scope.selects(h)).map(host_value).collect();
    // A string input given as a template (`version = "{{ vars.etcd_version }}"`) is rendered for
    // the host with `vars`, `host` and `hosts`; one that does not render stays as written, so the
    // value it was meant for reports it.
    let base = host_context(spec, host);
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    with_budget(&mut env);
    let inputs: std::collections::BTreeMap<&String, serde_json::Value> = scope
        .inputs
        .iter()
        .map(|(k, v)| match v {
            // A secret is a value, never a template (rendering it could also quote it in an error).
            serde_json::Value::String(s) if (s.contains("{{") || s.contains("{%")) && !scope.secret_inputs.contains_key(k) => {
                (k, serde_json::Value::String(render_bounded(&env, k, s, base.clone()).unwrap_or_else(|_| s.clone())))
            }
            _ => (k, v.clone()),
        })
        .collect();
    minijinja::context! {
        inputs => Value::from(minijinja::value::Serde(&inputs)),
        module => minijinja::context! { name => scope.name.clone(), hosts => module_hosts },
        ..host_context(spec, host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FileId;

    fn inline(text: &str) -> (TemplateText, SourceMap) {
        let mut sources = SourceMap::default();
        let src = format!("content = {text:?}\n");
        let id = sources.add("cairn.toml", src);
        (TemplateText { text: text.to_string(), span: Span::new(id, 10..10 + text.len() + 2), name: "file.x.content".into() }, sources)
    }

    #[test]
    fn keeps_trailing_newline_and_renders_vars() {
        let (t, sources) = inline("hello {{ vars.who }}\n");
        let ctx = minijinja::context! { vars => minijinja::context!{ who => "world" } };
        assert_eq!(Templater::new().render(&t, &ctx, &sources).unwrap(), "hello world\n");
    }

    #[test]
    fn printing_undefined_is_an_error_but_testing_it_is_not() {
        let (t, sources) = inline("{{ vars.missing }}");
        let ctx = minijinja::context! { vars => minijinja::context!{} };
        let err = Templater::new().render(&t, &ctx, &sources).unwrap_err();
        assert!(err.message.contains("undefined"), "{}", err.message);
        let (t, sources) = inline("{% if vars.missing is defined %}x{% endif %}{{ vars.missing | default('d') }}");
        assert_eq!(Templater::new().render(&t, &ctx, &sources).unwrap(), "d");
    }

    #[test]
    fn an_undefined_var_close_to_a_defined_one_says_did_you_mean() {
        let (t, sources) = inline("{{ vars.greting }}");
        let ctx = minijinja::context! { vars => minijinja::context!{ greeting => "hi", other => 1 } };
        let err = Templater::new().render(&t, &ctx, &sources).unwrap_err();
        assert_eq!(err.label.as_deref(), Some("did you mean `vars.greeting`?"));
        assert!(err.help.as_deref().unwrap().starts_with("`vars.greting` is not defined, `vars.greeting` is"), "{:?}", err.help);
        let (t, sources) = inline("{{ vars.zzz }}");
        let err = Templater::new().render(&t, &ctx, &sources).unwrap_err();
        assert_eq!(err.label, None);
        assert!(err.help.as_deref().unwrap().contains("defined: greeting, other"), "{:?}", err.help);
        // Not about vars: the general help.
        let (t, sources) = inline("{{ host.nope }}");
        let err = Templater::new()
            .render(&t, &minijinja::context! { host => minijinja::context!{}, vars => minijinja::context!{} }, &sources)
            .unwrap_err();
        assert!(err.help.as_deref().unwrap().starts_with("fix the template"), "{:?}", err.help);
    }

    #[test]
    fn var_names_are_read_from_text() {
        assert_eq!(var_names("{{ vars.a }}-{{ vars.b_2.c }} myvars.x"), vec!["a", "b_2"]);
    }

    #[test]
    fn yaml_and_json_templates_are_not_escaped() {
        for name in ["etcd.config.yml.j2", "x.json.j2", "x.html.j2"] {
            let (mut t, sources) = inline("a: {{ v }}");
            t.name = name.into();
            let ctx = minijinja::context! { v => "b<c>" };
            assert_eq!(Templater::new().render(&t, &ctx, &sources).unwrap(), "a: b<c>", "{name}");
        }
    }

    #[test]
    fn template_file_errors_point_at_the_failing_expression() {
        let mut sources = SourceMap::default();
        let text = "line one\n{{ nope.x }}\n".to_string();
        let len = text.len();
        let id = sources.add("templates/x.j2", text.clone());
        let t = TemplateText { text, span: Span::new(id, 0..len), name: "templates/x.j2".into() };
        let err = Templater::new().render(&t, &minijinja::context! {}, &sources).unwrap_err();
        let span = err.span.unwrap();
        assert_eq!(sources.line_col(FileId(0), span.range.start), (2, 4), "the caret is on the failing expression");
    }
}
