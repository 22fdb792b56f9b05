//! Variables from outside the spec (`CAIRN_VAR_*`, `--var-file`, `--var`): precedence and types
//! through the loader, their error messages and warnings as snapshots, "did you mean" for a
//! mistyped `vars.NAME` in a template, and through the real binary on `transport = "local"`
//! hosts: applied values, and a saved plan refused when the variables differ. No lab.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/run.rs"]
mod run;
use run::{cairn, cairn_env};

use std::path::{Path, PathBuf};

use cairn::graph::Graph;
use cairn::spec::{VarInputs, load_str, load_str_with_vars};
use serde_json::json;

const SPEC: &str = r#"[vars]
region = "eu"
port = 2379
ratio = 0.5
debug = false
ports = [2379, 2380]
tuning = { max_conns = 512 }

[hosts.node1]
address = "192.0.2.11"
"#;

fn inputs(env: &[(&str, &str)], files: &[&str], flags: &[&str]) -> VarInputs {
    VarInputs {
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        files: files.iter().map(PathBuf::from).collect(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
    }
}

/// The fixtures' var files are named relative to the crate root, as a user names them relative
/// to the current folder.
const FILES: &str = "tests/fixtures/vars";

#[test]
fn precedence_is_spec_then_env_then_files_in_order_then_flags_in_order() {
    let (a, b) = (format!("{FILES}/a.toml"), format!("{FILES}/b.toml"));
    let load =
        |vars: &VarInputs| load_str_with_vars(Path::new("cairn.toml"), SPEC, vars).unwrap_or_else(|e| panic!("{}", e.render())).0.vars;

    assert_eq!(load(&VarInputs::default())["region"], json!("eu"));
    assert_eq!(load(&inputs(&[("region", "env")], &[], &[]))["region"], json!("env"));
    // a.toml: region = "a", port = 1; b.toml: region = "b".
    assert_eq!(load(&inputs(&[("region", "env")], &[&a], &[]))["region"], json!("a"));
    let both = load(&inputs(&[("region", "env")], &[&a, &b], &[]));
    assert_eq!((&both["region"], &both["port"]), (&json!("b"), &json!(1)), "a later file wins, per name");
    let reversed = load(&inputs(&[], &[&b, &a], &[]));
    assert_eq!(reversed["region"], json!("a"));
    // A --var wins over every file, wherever it is written; a later --var over an earlier one.
    let flags = load(&inputs(&[("region", "env")], &[&a, &b], &["region=one", "region=two"]));
    assert_eq!(flags["region"], json!("two"));
    assert_eq!(flags["port"], json!(1), "untouched by the flags");
    assert_eq!(flags["ratio"], json!(0.5), "untouched by anything");
}

#[test]
fn flag_and_env_values_take_the_type_of_the_spec_value() {
    let vars = inputs(
        &[("debug", "true"), ("ratio", "2")],
        &[],
        &["port=2380", "ports=[1, 2]", "tuning={ max_conns = 1024, debug = true }", "region=2379", "extra=7"],
    );
    let (spec, _) = load_str_with_vars(Path::new("cairn.toml"), SPEC, &vars).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(spec.vars["port"], json!(2380));
    assert_eq!(spec.vars["ports"], json!([1, 2]));
    assert_eq!(spec.vars["tuning"], json!({"max_conns": 1024, "debug": true}));
    assert_eq!(spec.vars["debug"], json!(true));
    assert_eq!(spec.vars["ratio"], json!(2.0));
    assert_eq!(spec.vars["region"], json!("2379"), "a string var takes any text as it is");
    assert_eq!(spec.vars["extra"], json!("7"), "a name [vars] lacks is defined, as a string");
    // Var files keep their own types, even against the spec's.
    let (spec, _) = load_str_with_vars(Path::new("cairn.toml"), SPEC, &inputs(&[], &[&format!("{FILES}/types.toml")], &[])).unwrap();
    assert_eq!(spec.vars["port"], json!("2379"));
    assert_eq!(spec.vars["when"], json!("2026-12-01T10:00:00Z"), "date-times become strings, as in [vars]");
}

#[test]
fn bad_overrides_are_all_reported_at_once() {
    let vars = inputs(
        &[("debug", "maybe")],
        &[&format!("{FILES}/broken.toml"), &format!("{FILES}/missing.toml"), &format!("{FILES}/header.toml")],
        &["port=eighty", "ports=2379", "tuning=max_conns", "novalue", "=x"],
    );
    let err = load_str_with_vars(Path::new("cairn.toml"), SPEC, &vars).unwrap_err();
    let text = err.render();
    assert!(!text.contains("maybe") && !text.contains("eighty"), "values are not shown:\n{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn overrides_of_names_not_in_vars_warn() {
    let vars = inputs(&[("REGION", "x"), ("unrelated", "y")], &[&format!("{FILES}/typo.toml")], &["regoin=us", "brand_new=1"]);
    let (_, warnings) = load_str_with_vars(Path::new("cairn.toml"), SPEC, &vars).unwrap_or_else(|e| panic!("{}", e.render()));
    insta::assert_snapshot!(warnings.join("\n"));
}

#[test]
fn a_mistyped_var_in_a_template_says_did_you_mean() {
    let text = r#"[vars]
greeting = "hello"
cluster = "demo"

[hosts.node1]
address = "192.0.2.11"

[file.motd]
path = "/etc/motd"
content = "{{ vars.greting }} from {{ host.name }}\n"

[file.other]
path = "/etc/other"
content = "{{ vars.nothing_like_it }}\n"
"#;
    let spec = load_str(Path::new("cairn.toml"), text).unwrap();
    let errors = match Graph::build(&spec) {
        Ok(_) => panic!("expected template errors"),
        Err(d) => d.render(&spec.sources),
    };
    insta::assert_snapshot!(errors);
}

/// A spec on a local host writing `vars.region` and `vars.port` into a file.
fn local_spec(dir: &Path) -> PathBuf {
    let out = dir.join("out.txt");
    let spec = format!(
        "[vars]\nregion = \"eu\"\nport = 2379\n\n[hosts.alpha]\ntransport = \"local\"\n\n\
         [file.out]\npath = \"{}\"\ncontent = \"{{{{ vars.region }}}}:{{{{ vars.port + 1 }}}}\\n\"\n",
        out.display()
    );
    std::fs::write(dir.join("cairn.toml"), spec).unwrap();
    out
}

#[test]
fn apply_uses_the_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let out = local_spec(dir.path());
    std::fs::write(dir.path().join("prod.toml"), "region = \"prod\"\nport = 8000\n").unwrap();
    let r = cairn_env(
        dir.path(),
        &["apply", "--auto-approve", "--var-file", "prod.toml", "--var", "port=9000"],
        &[("CAIRN_VAR_region", "from-env"), ("CAIRN_VAR_port", "1")],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "prod:9001\n", "the file wins over env, --var over the file; port is a number");
    // Every command that reads a spec takes them: validate, graph, plan.
    for args in [&["validate", "--var", "port=x"][..], &["graph", "--var", "port=x"], &["plan", "--var", "port=x"]] {
        let bad = cairn(dir.path(), args);
        assert_eq!(bad.code, 1, "{}", bad.all());
        assert!(bad.stderr.contains("error: --var port: `port` is an integer in [vars]"), "{}", bad.all());
    }
    let plan = cairn(dir.path(), &["plan", "--detailed-exitcode", "--var-file", "prod.toml", "--var", "port=9000"]);
    assert_eq!(plan.code, 0, "no changes with the same variables: {}", plan.all());
}

#[test]
fn a_saved_plan_is_refused_when_the_variables_differ() {
    let dir = tempfile::tempdir().unwrap();
    let out = local_spec(dir.path());
    let plan = cairn(dir.path(), &["plan", "-o", "saved.cairn", "--var", "region=secret-region-value"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let saved = std::fs::read_to_string(dir.path().join("saved.cairn")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let digests = &file["spec"]["vars"]["digests"];
    assert_eq!(digests.as_object().unwrap().keys().collect::<Vec<_>>(), ["port", "region"], "{saved}");
    // The plan itself shows the rendered content (this file is not sensitive); the variables'
    // record holds no value.
    assert!(!file["spec"]["vars"].to_string().contains("secret-region-value"), "{saved}");

    let refused = cairn_env(dir.path(), &["apply", "saved.cairn"], &[("CAIRN_VAR_port", "1")]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stderr.contains(
            "saved.cairn was made with other variables: `port` has another value, `region` has another value; nothing was applied."
        ),
        "{}",
        refused.all()
    );
    assert!(!refused.all().contains("secret-region-value"), "{}", refused.all());
    assert!(!out.exists(), "nothing applied");

    let extra = cairn(dir.path(), &["apply", "saved.cairn", "--var", "region=secret-region-value", "--var", "more=1"]);
    assert_eq!(extra.code, 1, "{}", extra.all());
    assert!(extra.stderr.contains("`more` is set now and was not then"), "{}", extra.all());

    let same = cairn(dir.path(), &["apply", "saved.cairn", "--var", "region=secret-region-value"]);
    assert_eq!(same.code, 0, "{}", same.all());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "secret-region-value:2380\n");
}

#[test]
fn var_files_are_not_part_of_the_spec_digest() {
    let dir = tempfile::tempdir().unwrap();
    local_spec(dir.path());
    std::fs::write(dir.path().join("a.toml"), "region = \"x\"\n").unwrap();
    let plan = cairn(dir.path(), &["plan", "-o", "saved.cairn", "--var-file", "a.toml"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let saved = std::fs::read_to_string(dir.path().join("saved.cairn")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(file["spec"]["files"].as_object().unwrap().keys().collect::<Vec<_>>(), ["cairn.toml"], "{saved}");
    // The same values from another file are the same variables.
    std::fs::write(dir.path().join("b.toml"), "# the same, written differently\nregion = 'x'\n").unwrap();
    let same = cairn(dir.path(), &["apply", "saved.cairn", "--var-file", "b.toml"]);
    assert_eq!(same.code, 0, "{}", same.all());
}

/// An override reaches module inputs given as templates, as every other template.
#[test]
fn module_inputs_see_the_overrides() {
    let text = "[vars]\netcd_version = \"3.5.22\"\n\n\
                [hosts.n1]\naddress = \"192.0.2.11\"\n\n\
                [module.etcd]\nsource = \"etcd-cluster\"\nversion = \"{{ vars.etcd_version }}\"\n";
    let vars = inputs(&[], &[], &["etcd_version=3.5.30"]);
    let (spec, warnings) =
        load_str_with_vars(Path::new("tests/fixtures/modules/cairn.toml"), text, &vars).unwrap_or_else(|e| panic!("{}", e.render()));
    assert!(warnings.is_empty(), "{warnings:?}");
    let graph = Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)));
    let env = graph.instances.iter().find(|i| i.id.resource.to_string() == "etcd.file.env").unwrap();
    assert_eq!(String::from_utf8(env.desired.new_text().unwrap().to_vec()).unwrap(), "ETCD_VERSION=3.5.30\n");
}

#[test]
fn every_command_that_reads_a_spec_takes_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["validate", "plan", "apply", "drift", "check", "destroy", "unlock", "graph"] {
        let help = cairn(dir.path(), &[command, "--help"]);
        assert_eq!(help.code, 0, "{}", help.all());
        assert!(help.stdout.contains("--var <NAME=VALUE>") && help.stdout.contains("--var-file <FILE>"), "{command}: {}", help.stdout);
    }
}
