//! Templating and modules. Renders [`TemplateText`] with minijinja for one host, with the context
//! every template sees (`vars`, `host`, `hosts`, and in a module's resources `inputs` and
//! `module`), and turns template errors into diagnostics that point at the template's file and
//! line. Module folders (`modules/<name>/module.toml`) are read by the spec loader, which reuses
//! its resource reader for them (see `docs/spec.md`, "Modules"); [`show`] describes a module for
//! `cairn module show` and its README. Knows nothing of hosts' state or SSH.

pub mod show;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, syntax::SyntaxConfig};

use crate::spec::template::{budget_exceeded, render_bounded, with_budget};
use crate::spec::{Diagnostic, HostSpec, ModuleScope, SourceMap, Span, Spec, TemplateText};

/// Renders templates with cairn's settings: undefined values are errors when printed (but can be
/// tested with `if`/`default`), a template's final newline is kept (config files need it), and
/// nothing is auto-escaped (minijinja would otherwise JSON-quote every value printed by a template
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
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        env.set_debug(true);
        with_budget(&mut env);
        Self { env }
    }

    /// Renders `template` in `context`. Errors point at the template's line when known.
    pub fn render(&self, template: &TemplateText, context: &Value, sources: &SourceMap) -> Result<String, Diagnostic> {
        let rendered = render_bounded(&self.env, &template.name, &template.text, context.clone());
        rendered.map_err(|e| template_diagnostic(template, &e, sources))
    }
}

/// Maps a minijinja error to a diagnostic. For a template file (its span covers the whole file)
/// the caret goes on the failing line; for an inline string it goes on the string.
fn template_diagnostic(template: &TemplateText, err: &minijinja::Error, sources: &SourceMap) -> Diagnostic {
    let detail = err.detail().map_or_else(|| err.kind().to_string(), str::to_string);
    let line = err.line();
    let whole_file = template.span.range.start == 0 && template.span.range.end == sources.text(template.span.file).len();
    let span = match (line, whole_file) {
        (Some(line), true) => {
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
            serde_json::Value::String(s) if s.contains("{{") || s.contains("{%") => {
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
    fn yaml_and_json_templates_are_not_escaped() {
        for name in ["etcd.config.yml.j2", "x.json.j2", "x.html.j2"] {
            let (mut t, sources) = inline("a: {{ v }}");
            t.name = name.into();
            let ctx = minijinja::context! { v => "b<c>" };
            assert_eq!(Templater::new().render(&t, &ctx, &sources).unwrap(), "a: b<c>", "{name}");
        }
    }

    #[test]
    fn template_file_errors_point_at_the_line() {
        let mut sources = SourceMap::default();
        let text = "line one\n{{ nope.x }}\n".to_string();
        let len = text.len();
        let id = sources.add("templates/x.j2", text.clone());
        let t = TemplateText { text, span: Span::new(id, 0..len), name: "templates/x.j2".into() };
        let err = Templater::new().render(&t, &minijinja::context! {}, &sources).unwrap_err();
        let span = err.span.unwrap();
        assert_eq!(sources.line_col(FileId(0), span.range.start), (2, 1));
    }
}
