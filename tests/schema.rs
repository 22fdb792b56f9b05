//! `cairn schema`: its output is `docs/spec.schema.json` byte for byte, it is a valid draft-07
//! schema, every example spec and every module's `example.toml` conforms to it (each TOML document
//! as written; includes such as the generated `mirror.toml` are separate files and not followed),
//! and it refuses what the loader refuses (a misspelt kind, a mode written as a number). That its
//! keys are exactly the loader's is checked by a unit test beside the schema (`cargo test --lib`).
//! No hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/run.rs"]
mod run;
use run::cairn;

use std::path::{Path, PathBuf};

fn schema() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string("docs/spec.schema.json").unwrap()).unwrap()
}

/// A TOML document as JSON, as a TOML language server sees it.
fn toml_as_json(text: &str) -> serde_json::Value {
    toml::from_str::<serde_json::Value>(text).unwrap()
}

/// Every schema violation in `doc`, one line each.
fn violations(doc: &serde_json::Value) -> Vec<String> {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    validator.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

fn spec_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (dir, name) in [("examples", "cairn.toml"), ("modules", "example.toml")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path().join(name);
            if path.exists() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(dir.path(), &["schema"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let committed = std::fs::read_to_string("docs/spec.schema.json").unwrap();
    assert!(
        out.stdout == committed,
        "docs/spec.schema.json is not what `cairn schema` prints; run `cargo run -q -- schema > docs/spec.schema.json`"
    );
}

#[test]
fn schema_is_a_valid_draft_07_schema() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::meta::validate(&schema).unwrap();
}

#[test]
fn every_example_and_module_example_conforms() {
    let files = spec_files();
    assert!(files.len() >= 4, "examples missing: {files:?}");
    assert!(files.iter().any(|f| f.starts_with("modules")), "no module example: {files:?}");
    let mut bad = Vec::new();
    for file in &files {
        let doc = toml_as_json(&std::fs::read_to_string(file).unwrap());
        bad.extend(violations(&doc).into_iter().map(|v| format!("{}: {v}", file.display())));
    }
    assert!(bad.is_empty(), "specs that do not conform to docs/spec.schema.json:\n{}", bad.join("\n"));
}

#[test]
fn schema_refuses_what_the_loader_refuses() {
    let cases = [
        ("[fiel.motd]\npath = \"/etc/motd\"\n", ""),
        ("[file.motd]\npath = \"/etc/motd\"\ncontent = \"x\"\nmode = 644\n", "/file/motd/mode"),
        ("[file.motd]\ncontent = \"x\"\n", "/file/motd"),
        ("[file.motd]\npath = \"/etc/motd\"\ncontent = \"x\"\ncolour = \"red\"\n", "/file/motd"),
        ("[unit.web]\nname = \"web.service\"\nstate = \"up\"\n", "/unit/web/state"),
        ("[check.up]\ncommand = [\"true\"]\ninterval = \"2 seconds\"\n", "/check/up/interval"),
        ("[ssh]\nport = 70000\n", "/ssh/port"),
        ("[firewall.ssh]\nrules = [{ port = 22, proto = \"tcp\" }]\n", "/firewall/ssh/rules/0"),
        ("[hosts.a]\naddress = \"192.0.2.1\"\nlabels = { n = 1 }\n", "/hosts/a/labels/n"),
    ];
    for (text, at) in cases {
        let found = violations(&toml_as_json(text));
        assert!(found.iter().any(|v| v.starts_with(&format!("{at}:"))), "expected a violation at {at} for\n{text}found: {found:?}");
    }
    // What the loader accepts, the schema does too: units with and without a unit, module inputs.
    let ok = "[check.up]\ncommand = \"true\"\ninterval = \"1m30s\"\ntimeout = 5\n\n\
              [module.m]\nsource = \"motd\"\ngreeting = \"hi\"\n\n\
              [file.t]\npath = \"/t\"\ncontent = { env = \"TOKEN\" }\n\n\
              [firewall.f]\nrules = [{ port = [22, \"8000-8080\"], proto = \"tcp\", action = \"accept\" }]\n";
    assert_eq!(violations(&toml_as_json(ok)), Vec::<String>::new());
}

#[test]
fn schema_files_exist_where_the_docs_say() {
    for doc in ["docs/spec.md", "docs/cli.md"] {
        let text = std::fs::read_to_string(Path::new(doc)).unwrap();
        assert!(text.contains("spec.schema.json"), "{doc} does not mention docs/spec.schema.json");
        assert!(text.contains("cairn schema"), "{doc} does not mention `cairn schema`");
    }
}
