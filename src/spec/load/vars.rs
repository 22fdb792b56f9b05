//! Variables from outside the spec: `CAIRN_VAR_NAME` environment variables, `--var-file FILE`
//! (a TOML file of `NAME = value` lines) and `--var NAME=VALUE`, merged over the spec's `[vars]`
//! before anything uses them (module checks, templates). Precedence, lowest first: `[vars]`, the
//! environment, var files in the order given, `--var`s in the order given (docs/spec.md, "Variables
//! from outside the spec").
//!
//! A value from `--var` or the environment is a string, unless the spec's `[vars]` value of that
//! name has another TOML type: then it is read as TOML of that type (an error says so when it is
//! not). Values from a var file keep their own TOML types. Values never appear in messages. A name
//! the spec's `[vars]` lacks is defined by the override; `--var` and var files warn about it (a
//! typo would otherwise do nothing), the environment only when a `[vars]` name differs from it in
//! case alone (the environment is shared by every spec, so other names are left alone).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::reader::{to_json, type_phrase};
use super::{Loader, read_text, toml_error};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, FileId, Span, did_you_mean};

/// The prefix of variables taken from the environment: `CAIRN_VAR_region` sets `vars.region`.
pub const ENV_PREFIX: &str = "CAIRN_VAR_";

/// Variables given from outside the spec, as the command line gathered them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarInputs {
    /// `CAIRN_VAR_NAME=VALUE` from the environment, as (NAME, VALUE), sorted by name.
    pub env: Vec<(String, String)>,
    /// `--var-file FILE`, in the order given (paths relative to the current folder).
    pub files: Vec<PathBuf>,
    /// `--var NAME=VALUE`, as written, in the order given.
    pub flags: Vec<String>,
}

impl VarInputs {
    /// The `CAIRN_VAR_*` entries of `environment` (every other variable is ignored).
    pub fn with_env(mut self, environment: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = environment
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(ENV_PREFIX).filter(|name| !name.is_empty()).map(|name| (name.to_string(), v)))
            .collect();
        self.env.sort();
        self
    }
}

/// Where an override came from, for messages.
enum Origin<'a> {
    Env(&'a str),
    Flag(&'a str),
}

impl Origin<'_> {
    fn describe(&self) -> String {
        match self {
            Origin::Env(name) => format!("{ENV_PREFIX}{name}"),
            Origin::Flag(name) => format!("--var {name}"),
        }
    }

    /// How to give a value of this kind, e.g. `--var port=2379`.
    fn example(&self, value: &str) -> String {
        match self {
            Origin::Env(name) => format!("{ENV_PREFIX}{name}={value}"),
            Origin::Flag(name) => format!("--var '{name}={value}'"),
        }
    }
}

impl Loader {
    /// Merges `inputs` over the `[vars]` read so far; returns warnings, records errors.
    pub(super) fn override_vars(&mut self, inputs: &VarInputs) -> Vec<String> {
        let declared: BTreeMap<String, (serde_json::Value, Span)> = self.vars.clone();
        let mut warnings = Vec::new();
        for (name, text) in &inputs.env {
            if !declared.contains_key(name)
                && let Some(close) = declared.keys().find(|k| k.eq_ignore_ascii_case(name))
            {
                warnings.push(format!(
                    "{ENV_PREFIX}{name} sets `vars.{name}`, which [vars] does not have; names are case-sensitive: \
                     did you mean {ENV_PREFIX}{close}?"
                ));
            }
            self.set_typed(&declared, name, text, &Origin::Env(name));
        }
        for path in &inputs.files {
            self.var_file(&declared, path, &mut warnings);
        }
        for flag in &inputs.flags {
            let Some((name, text)) = flag.split_once('=') else {
                self.diags.push(
                    Diagnostic::global(format!("`--var {flag}` has no value"))
                        .with_help(format!("write --var NAME=VALUE, e.g. --var '{flag}=...' (an empty value is --var '{flag}=')")),
                );
                continue;
            };
            let name = name.trim();
            if name.is_empty() {
                self.diags.push(Diagnostic::global("a `--var` has no name before `=`").with_help("write --var NAME=VALUE"));
                continue;
            }
            if !declared.contains_key(name) {
                warnings.push(undeclared(&format!("--var {name}"), name, &declared));
            }
            self.set_typed(&declared, name, text, &Origin::Flag(name));
        }
        warnings
    }

    /// Sets `name` from text given on the command line or in the environment: a string, or TOML
    /// of the type the spec's `[vars]` gives it.
    fn set_typed(&mut self, declared: &BTreeMap<String, (serde_json::Value, Span)>, name: &str, text: &str, origin: &Origin<'_>) {
        let Some((spec_value, spec_span)) = declared.get(name) else {
            self.vars.insert(name.to_string(), (serde_json::Value::String(text.to_string()), Span::default()));
            return;
        };
        let value = match typed(spec_value, text) {
            Ok(value) => value,
            Err(kind) => {
                let example = match spec_value {
                    serde_json::Value::Object(_) => "{ key = \"value\" }".to_string(),
                    other => other.to_string(),
                };
                self.diags.push(
                    Diagnostic::global(format!(
                        "{}: `{name}` is {kind} in [vars], and the value given is not {kind} (values are not shown)",
                        origin.describe()
                    ))
                    .with_related(spec_span, format!("`{name}` is {kind} here"))
                    .with_help(format!(
                        "give {kind} written as in TOML, e.g. {}; or make `{name}` a string in [vars] to take any text",
                        origin.example(&example)
                    )),
                );
                return;
            }
        };
        self.vars.insert(name.to_string(), (value, spec_span.clone()));
    }

    /// One `--var-file`: every top-level key is a variable, keeping its TOML type.
    fn var_file(&mut self, declared: &BTreeMap<String, (serde_json::Value, Span)>, path: &Path, warnings: &mut Vec<String>) {
        let text = match read_text(path) {
            Ok(text) => text,
            Err(why) => {
                self.diags.push(
                    Diagnostic::global(format!("cannot read the var file `{}` (--var-file): {why}", path.display()))
                        .with_help("--var-file paths are relative to the current folder; check the name"),
                );
                return;
            }
        };
        let file = self.sources.add_outside(path, text.clone());
        let (doc, errors) = DeTable::parse_recoverable(&text);
        if !errors.is_empty() {
            self.diags.0.extend(errors.iter().map(|e| toml_error(file, e)));
            return;
        }
        for (key, value) in doc.get_ref() {
            let name = key.get_ref().to_string();
            if name == "vars" && matches!(value.get_ref(), DeValue::Table(_)) && !declared.contains_key("vars") {
                self.diags.push(
                    Diagnostic::at(&Span::new(file, key.span()), "a var file lists its variables at the top, not under [vars]")
                        .with_label("not a variable of the spec")
                        .with_help("remove the `[vars]` line: a var file holds `NAME = value` lines only"),
                );
                continue;
            }
            let span = Span::new(file, key.span());
            if !declared.contains_key(&name) {
                let (line, col) = self.sources.line_col(file, span.range.start);
                warnings.push(undeclared(&format!("{}:{line}:{col}", path.display()), &name, declared));
            }
            let json = to_json(file, value, &mut self.diags);
            self.vars.insert(name, (json, span));
        }
    }
}

/// The warning for an override of a name `[vars]` lacks, given at `at`.
fn undeclared(at: &str, name: &str, declared: &BTreeMap<String, (serde_json::Value, Span)>) -> String {
    let hint = match did_you_mean(name, declared.keys().map(String::as_str)) {
        Some(close) => format!(" (did you mean `{close}`?)"),
        None => String::new(),
    };
    format!("{at}: `{name}` is not in the spec's [vars]{hint}; it is defined for templates as `vars.{name}`")
}

/// `text` read as the type of `like`: any text for a string, else TOML of the same type (an
/// integer is also taken for a float). `Err` names the type wanted.
fn typed(like: &serde_json::Value, text: &str) -> Result<serde_json::Value, &'static str> {
    use serde_json::Value as J;
    let kind = match like {
        J::String(_) | J::Null => return Ok(J::String(text.to_string())),
        J::Bool(_) => "a boolean",
        J::Number(n) if n.is_f64() => "a float",
        J::Number(_) => "an integer",
        J::Array(_) => "an array",
        J::Object(_) => "a table",
    };
    let source = format!("v = {text}");
    let doc = DeTable::parse(&source).map_err(|_| kind)?;
    if doc.get_ref().len() != 1 {
        return Err(kind);
    }
    let value = doc.get_ref().get("v").ok_or(kind)?;
    let found = type_phrase(value.get_ref());
    let mut sink = Diagnostics::default();
    let json = to_json(FileId::default(), value, &mut sink);
    let fits = found == kind || (kind == "a float" && found == "an integer");
    if !fits || !sink.is_empty() {
        return Err(kind);
    }
    Ok(match json {
        J::Number(n) if kind == "a float" => n.as_f64().and_then(serde_json::Number::from_f64).map_or(J::Number(n), J::Number),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_read_as_the_type_of_the_spec_value() {
        assert_eq!(typed(&json!("a"), "2379"), Ok(json!("2379")));
        assert_eq!(typed(&json!(1), "2379"), Ok(json!(2379)));
        assert_eq!(typed(&json!(1), "x"), Err("an integer"));
        assert_eq!(typed(&json!(1), "1.5"), Err("an integer"));
        assert_eq!(typed(&json!(1.5), "2"), Ok(json!(2.0)));
        assert_eq!(typed(&json!(true), "false"), Ok(json!(false)));
        assert_eq!(typed(&json!(true), "yes"), Err("a boolean"));
        assert_eq!(typed(&json!([1]), "[2379, 2380]"), Ok(json!([2379, 2380])));
        assert_eq!(typed(&json!([1]), "2379"), Err("an array"));
        assert_eq!(typed(&json!({"a": 1}), "{ a = 2, b = \"x\" }"), Ok(json!({"a": 2, "b": "x"})));
        assert_eq!(typed(&json!({"a": 1}), "a = 2"), Err("a table"));
        // No injection of further keys through the value.
        assert_eq!(typed(&json!(1), "1\nw = 2"), Err("an integer"));
    }

    #[test]
    fn only_prefixed_environment_variables_are_taken() {
        let env = [("CAIRN_VAR_b", "2"), ("PATH", "/bin"), ("CAIRN_VAR_", "x"), ("CAIRN_VAR_a", "1"), ("CAIRN_LOG", "debug")];
        let inputs = VarInputs::default().with_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(inputs.env, vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
    }
}
