//! Modules in the model: what a module folder declares (`modules/<name>/module.toml`: typed
//! inputs, checks, resources) and the scope of one use of it (`[module.NAME]` in a spec): the
//! instance name, the input values with defaults applied, and the hosts it selects. Module
//! resources are ordinary [`super::ResourceSpec`]s whose ids carry the instance name
//! (`etcd.file.config`) and whose `scope` points here, so templates also see `inputs` and `module`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::diagnostic::{Located, Span};
use super::host::{HostSpec, Selector};
use super::id::ResourceId;
use super::secret::Secret;

/// The type of a module input (`type = "..."` in `[inputs.NAME]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// `"string"`.
    String,
    /// `"int"`: a whole number.
    Int,
    /// `"bool"`.
    Bool,
    /// `"list"`: an array of any values.
    List,
    /// `"table"`: a table of any values.
    Table,
}

impl InputType {
    /// Every type, as written in `module.toml`.
    pub const ALL: &'static [InputType] = &[InputType::String, InputType::Int, InputType::Bool, InputType::List, InputType::Table];

    /// The name written in `type = "..."`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Int => "int",
            InputType::Bool => "bool",
            InputType::List => "list",
            InputType::Table => "table",
        }
    }

    /// "a string", "an integer", … for messages.
    pub fn phrase(self) -> &'static str {
        match self {
            InputType::String => "a string",
            InputType::Int => "an integer",
            InputType::Bool => "a boolean",
            InputType::List => "an array",
            InputType::Table => "a table",
        }
    }

    /// An example value in TOML, for help lines.
    pub fn example(self) -> &'static str {
        match self {
            InputType::String => "\"...\"",
            InputType::Int => "1",
            InputType::Bool => "true",
            InputType::List => "[\"...\"]",
            InputType::Table => "{ key = \"value\" }",
        }
    }
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[inputs.NAME]` in `module.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDecl {
    /// The input's name (the key a spec sets).
    pub name: String,
    /// Its type.
    pub ty: InputType,
    /// What it is for (`description`).
    pub description: Option<String>,
    /// Value when the spec does not set it; `None` makes the input required.
    pub default: Option<serde_json::Value>,
    /// Smallest allowed value (`int`).
    pub min: Option<Located<i64>>,
    /// Largest allowed value (`int`).
    pub max: Option<Located<i64>>,
    /// Allowed values (`string`, `int`); empty means any.
    pub one_of: Option<Located<Vec<serde_json::Value>>>,
    /// The `[inputs.NAME]` table.
    pub span: Span,
    /// The `type = "..."` value.
    pub type_span: Span,
}

impl InputDecl {
    /// Whether a spec must set it.
    pub fn required(&self) -> bool {
        self.default.is_none()
    }

    /// The checks on its value in words (`10 to 1000`, `one of "a", "b"`), empty when none.
    pub fn constraints(&self) -> String {
        let mut parts = Vec::new();
        match (&self.min, &self.max) {
            (Some(min), Some(max)) => parts.push(format!("{} to {}", min.value, max.value)),
            (Some(min), None) => parts.push(format!("at least {}", min.value)),
            (None, Some(max)) => parts.push(format!("at most {}", max.value)),
            (None, None) => {}
        }
        if let Some(one_of) = &self.one_of {
            parts.push(format!("one of {}", one_of.value.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")));
        }
        parts.join("; ")
    }
}

/// `[[assert]]` in `module.toml`: a minijinja expression over `inputs`, `module` and `vars` that
/// must be true for every use of the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertDecl {
    /// The expression (`that`).
    pub that: Located<String>,
    /// The error message, a template over the same context (`message`).
    pub message: Option<Located<String>>,
}

/// A module folder as declared by its `module.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDef {
    /// The folder's name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// `[module] description`.
    pub description: Option<String>,
    /// Inputs, in the order written.
    pub inputs: Vec<InputDecl>,
    /// Checks, in the order written.
    pub asserts: Vec<AssertDecl>,
    /// The resources it declares, ids as written in the module (without an instance name).
    pub resources: Vec<ResourceId>,
    /// Where its inputs are declared (the `[inputs]` table, or the file's start).
    pub inputs_span: Span,
    /// Its `[cluster.*]` resources with their drivers (whose operations `cairn run` runs); filled
    /// by `load_module`.
    pub clusters: Vec<(ResourceId, super::ClusterDriverKind)>,
}

/// One use of a module (`[module.NAME]` in a spec), as its resources and templates see it.
/// `Debug` shows secret inputs as `(sensitive)`.
#[derive(Clone, PartialEq)]
pub struct ModuleScope {
    /// The instance name (the table key): the prefix of its resources' ids.
    pub name: String,
    /// `source` as written (a module name or a path).
    pub source: String,
    /// The module folder it resolved to.
    pub dir: PathBuf,
    /// Every input's value, defaults applied (`inputs` in templates). A secret input's value is
    /// here too (templates need it): never print this map, see [`ModuleScope::shown_inputs`].
    pub inputs: BTreeMap<String, serde_json::Value>,
    /// The inputs read from a secret source (`token = { env = "ETCD_TOKEN" }`), by input name.
    pub secret_inputs: BTreeMap<String, Secret>,
    /// The instance's `hosts` (empty: every host): the default selection of its resources.
    pub hosts: Vec<Located<Selector>>,
    /// The `[module.NAME]` table.
    pub span: Span,
}

impl ModuleScope {
    /// Whether the instance selects `host` (`module.hosts` in templates).
    pub fn selects(&self, host: &HostSpec) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|s| s.value.matches(host))
    }

    /// The inputs with every secret one replaced by `"(sensitive)"`: for messages (a module
    /// check's `message`) and anything else that may show them.
    pub fn shown_inputs(&self) -> BTreeMap<String, serde_json::Value> {
        let mut shown = self.inputs.clone();
        for name in self.secret_inputs.keys() {
            shown.insert(name.clone(), serde_json::Value::String(SENSITIVE.into()));
        }
        shown
    }

    /// The secret inputs' values as text (for the net that keeps them out of everything but the
    /// content of sensitive files): `(input name, where it came from, value)`.
    pub fn secret_texts(&self) -> Vec<(&str, &Secret, &str)> {
        self.secret_inputs
            .iter()
            .filter_map(|(name, s)| self.inputs.get(name).and_then(|v| v.as_str()).map(|v| (name.as_str(), s, v)))
            .collect()
    }
}

/// How a secret value is shown.
pub const SENSITIVE: &str = "(sensitive)";

impl fmt::Debug for ModuleScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleScope")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("dir", &self.dir)
            .field("inputs", &self.shown_inputs())
            .field("secret_inputs", &self.secret_inputs)
            .field("hosts", &self.hosts)
            .field("span", &self.span)
            .finish()
    }
}
