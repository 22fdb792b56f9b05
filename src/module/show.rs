//! `cairn module show`: a module described in Markdown (inputs with types, defaults and
//! descriptions, checks, resources). The same text heads each module's `README.md`; a test keeps
//! the two equal.

use std::fmt::Write as _;

use crate::spec::ModuleDef;

/// The module as Markdown: a title, its description, an inputs table, its checks and resources.
pub fn markdown(def: &ModuleDef) -> String {
    let mut out = format!("# Module `{}`\n\n", def.name);
    if let Some(d) = &def.description {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    out.push_str("## Inputs\n\n");
    if def.inputs.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| Input | Type | Default | Description |\n|---|---|---|---|\n");
        for input in &def.inputs {
            let default = input.default.as_ref().map_or_else(|| "*required*".to_string(), |v| format!("`{v}`"));
            let mut description = input.description.clone().unwrap_or_default();
            let constraints = input.constraints();
            if !constraints.is_empty() {
                if !description.is_empty() {
                    description.push(' ');
                }
                let _ = write!(description, "({constraints})");
            }
            let _ = writeln!(out, "| `{}` | {} | {} | {} |", input.name, input.ty, cell(&default), cell(&description));
        }
    }
    if !def.asserts.is_empty() {
        out.push_str("\n## Checks\n\n");
        for a in &def.asserts {
            match &a.message {
                Some(m) => {
                    let _ = writeln!(out, "- `{}`: {}", a.that.value, m.value);
                }
                None => {
                    let _ = writeln!(out, "- `{}`", a.that.value);
                }
            }
        }
    }
    out.push_str("\n## Resources\n\n");
    if def.resources.is_empty() {
        out.push_str("None.\n");
    }
    for id in &def.resources {
        let _ = writeln!(out, "- `{id}`");
    }
    for (id, driver) in &def.clusters {
        let ops = crate::resource::cluster::operations::for_driver(*driver);
        if ops.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## Operations of `{id}`\n\n`cairn run INSTANCE OPERATION [KEY=VALUE ...]`:\n");
        for op in ops {
            let _ = writeln!(out, "- `{}`: {}", op.name, op.description);
            for i in op.inputs {
                let need = if i.required { "required" } else { "optional" };
                let _ = writeln!(out, "  - `{}` ({}, {need}): {}", i.name, i.kind.name(), i.description);
            }
        }
    }
    out
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
