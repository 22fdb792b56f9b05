//! Secret sources (`content = { env = … }`, `{ file = … }`, `{ command = […] }`): their errors as
//! exact text, then the real binary against local hosts and lab hosts. A secret is written to the
//! host exactly, and never reaches plan text, JSON, a saved plan file or `CAIRN_LOG=debug` logs (the
//! leak net of `common/run.rs`); `apply PLAN` refuses a plan whose secret changed since.
#![allow(clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/run.rs"]
mod run;
use run::{SECRET_MARKER, assert_no_secret, cairn_env};

#[path = "common/lab.rs"]
mod lab;

use std::path::Path;

use cairn::spec::load_str;

fn errors(text: &str) -> String {
    match load_str(Path::new("cairn.toml"), text) {
        Ok(_) => panic!("expected the spec to be rejected:\n{text}"),
        Err(e) => e.render(),
    }
}

#[test]
fn secret_source_errors_point_at_the_source() {
    let text = errors(
        r#"
[hosts.node1]
address = "192.0.2.11"

[file.env]
path = "/etc/a"
content = { env = "CAIRN_TEST_SURELY_UNSET_VARIABLE" }

[file.missing]
path = "/etc/b"
content = { file = "/nonexistent/cairn/secret" }

[file.failing]
path = "/etc/c"
content = { command = ["sh", "-c", "printf 'cairn-test-%s' secret-stdout; echo access denied >&2; exit 3"] }

[file.noprogram]
path = "/etc/d"
content = { command = ["cairn-no-such-program", "x"] }

[file.two]
path = "/etc/e"
content = { env = "HOME", file = "/etc/hostname" }

[file.none]
path = "/etc/f"
content = { envv = "HOME" }

[unit.web]
name = "web.service"
content = { env = "HOME" }
"#,
    );
    assert!(!text.contains(SECRET_MARKER), "a failing command's stdout was quoted:\n{text}");
    insta::assert_snapshot!(text);
}

/// Three files under `root/etc`, one per source; the command prints the file `command_secret`.
fn secret_files(root: &str, command_secret: &Path) -> String {
    format!(
        r#"
[dir.etc]
path = "{root}/etc"

[file.from_env]
path = "{root}/etc/env-token"
content = {{ env = "CAIRN_TEST_TOKEN" }}
mode = "0600"

[file.from_file]
path = "{root}/etc/file-token"
content = {{ file = "~/secrets/token" }}

[file.from_command]
path = "{root}/etc/command-token"
content = {{ command = ["cat", "{command_secret}"] }}
"#,
        command_secret = command_secret.display()
    )
}

const ENV_SECRET: &str = "cairn-test-secret-env\n";
const FILE_SECRET: &str = "cairn-test-secret-file\n";
const COMMAND_SECRET: &str = "cairn-test-secret-command\n";

/// Plans (text, JSON, debug logs, saved), applies the saved plan, and checks the plan is empty
/// after; then changes the env secret and checks `apply PLAN` refuses the older plan.
fn round_trip(dir: &Path, home: &Path, read: &dyn Fn(&str) -> String) {
    let home_s = home.display().to_string();
    let env = [("CAIRN_TEST_TOKEN", ENV_SECRET.trim_end()), ("HOME", home_s.as_str())];
    let with_log = [env[0], env[1], ("CAIRN_LOG", "debug")];

    let plan = cairn_env(dir, &["plan"], &with_log);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("from_env") && plan.stdout.contains("(sensitive)"), "{}", plan.stdout);
    let json = cairn_env(dir, &["plan", "--json"], &env);
    assert_eq!(json.code, 0, "{}", json.all());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let files: Vec<_> = v["changes"].as_array().unwrap().iter().filter(|c| c["kind"] == "file").collect();
    assert!(files.len() == 3 && files.iter().all(|c| c["sensitive"] == true), "{}", json.stdout);

    let saved = cairn_env(dir, &["plan", "-o", "p.json"], &env);
    assert_eq!(saved.code, 0, "{}", saved.all());
    let file = std::fs::read_to_string(dir.join("p.json")).unwrap();
    assert_no_secret("the saved plan", &file);
    for secret in [ENV_SECRET, FILE_SECRET, COMMAND_SECRET] {
        for form in [secret, secret.trim_end()] {
            assert!(!file.contains(&cairn::hash::sha256_hex(form.as_bytes())), "a plain digest of a secret in the plan file");
        }
    }
    let v: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(v["spec"]["secrets"].as_object().unwrap().len(), 3, "{file}");

    let apply = cairn_env(dir, &["apply", "p.json"], &with_log);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(read("env-token"), ENV_SECRET.trim_end());
    assert_eq!(read("file-token"), FILE_SECRET);
    assert_eq!(read("command-token"), COMMAND_SECRET);
    let again = cairn_env(dir, &["plan", "--detailed-exitcode"], &env);
    assert_eq!(again.code, 0, "{}", again.all());

    // The secret changes between plan and apply: the saved plan is refused.
    std::fs::write(home.join("secrets/token"), "cairn-test-secret-file-2\n").unwrap();
    let saved = cairn_env(dir, &["plan", "-o", "p2.json"], &env);
    assert_eq!(saved.code, 0, "{}", saved.all());
    let moved = [("CAIRN_TEST_TOKEN", "cairn-test-secret-env-2"), env[1]];
    let refused = cairn_env(dir, &["apply", "p2.json"], &moved);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stderr.contains("was made with other secrets: `file.from_env.content` has another value; nothing was applied"),
        "{}",
        refused.stderr
    );
    assert_eq!(read("env-token"), ENV_SECRET.trim_end(), "a refused plan wrote");
    let applied = cairn_env(dir, &["apply", "p2.json"], &env);
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert_eq!(read("file-token"), "cairn-test-secret-file-2\n");
}

/// A temp dir with the spec folder `spec/` holding `spec(command_secret)`, a home with
/// `secrets/token`, and the file the command prints.
fn setup(spec: &dyn Fn(&Path) -> String) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, home) = (tmp.path().join("spec"), tmp.path().join("home"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(home.join("secrets")).unwrap();
    std::fs::write(home.join("secrets/token"), FILE_SECRET).unwrap();
    let command_secret = tmp.path().join("command-secret");
    std::fs::write(&command_secret, COMMAND_SECRET).unwrap();
    std::fs::write(dir.join("cairn.toml"), spec(&command_secret)).unwrap();
    (tmp, dir, home)
}

#[test]
fn secrets_reach_local_hosts_and_nothing_else() {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().join("root");
    let (_tmp, dir, home) =
        setup(&|secret| format!("[hosts.here]\ntransport = \"local\"\n{}", secret_files(&root.display().to_string(), secret)));
    round_trip(&dir, &home, &|name| std::fs::read_to_string(root.join("etc").join(name)).unwrap());
}

#[test]
fn lab_secret_sources_write_files_on_hosts() {
    let Some(lab) = lab::Lab::up_or_skip("secret-sources", 1) else { return };
    let hosts = lab.hosts_file().display().to_string();
    let (_tmp, dir, home) = setup(&|secret| format!("include = [\"{hosts}\"]\n{}", secret_files("/srv/s", secret)));
    let node = lab.info.nodes[0].name.clone();
    round_trip(&dir, &home, &|name| {
        let out = lab.ssh(&node, &["cat", &format!("/srv/s/etc/{name}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    });
    assert_eq!(lab.ssh_ok(&node, &["stat", "-c", "%a", "/srv/s/etc/env-token"]), "600");

    // Module inputs from the same sources, on the lab host: written into the sensitive file only.
    std::fs::create_dir_all(dir.join("modules/tokened")).unwrap();
    std::fs::write(dir.join("modules/tokened/module.toml"), TOKENED_MODULE).unwrap();
    let command_secret = dir.parent().unwrap().join("command-secret");
    let module = module_spec("/srv/s/etc", &command_secret, "").replace("[hosts.here]\ntransport = \"local\"\n", "");
    let spec = format!("include = [\"{hosts}\"]\n{}{module}", secret_files("/srv/s", &command_secret));
    std::fs::write(dir.join("cairn.toml"), spec).unwrap();
    let home_s = home.display().to_string();
    let env = [("CAIRN_TEST_TOKEN", ENV_SECRET.trim_end()), ("HOME", home_s.as_str()), ("CAIRN_LOG", "debug")];
    let apply = cairn_env(&dir, &["-v", "apply", "--auto-approve"], &env);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(
        lab.ssh_ok(&node, &["cat", "/srv/s/etc/tokens.env"]),
        "A=cairn-test-secret-env\nB=cairn-test-secret-file-2\nC=cairn-test-secret-command"
    );
    assert_eq!(lab.ssh_ok(&node, &["stat", "-c", "%a", "/srv/s/etc/tokens.env"]), "600");
    let again = cairn_env(&dir, &["plan", "--detailed-exitcode"], &env);
    assert_eq!(again.code, 0, "{}", again.all());
}

// ---- module inputs from secret sources ----

/// A module whose `string` inputs become a sensitive env file, a plain file that uses none of
/// them, and a unit-less check of the first.
const TOKENED_MODULE: &str = r#"
[module]
description = "Writes tokens for a service."

[inputs.root]
type = "string"
description = "Where the files go."

[inputs.env_token]
type = "string"
description = "A token."

[inputs.file_token]
type = "string"
description = "Another token."

[inputs.command_token]
type = "string"
description = "A third token."

[inputs.label]
type = "string"
default = "plain"
description = "Not a secret."

[[assert]]
that = "inputs.env_token | length >= 8"
message = "the token {{ inputs.env_token }} is too short"

[file.tokens]
path = "{{ inputs.root }}/tokens.env"
content = "A={{ inputs.env_token }}\nB={{ inputs.file_token }}\nC={{ inputs.command_token }}\n"
mode = "0600"

[file.plain]
path = "{{ inputs.root }}/plain.txt"
content = "label={{ inputs.label }}\n"
"#;

fn module_spec(root: &str, command_secret: &Path, extra: &str) -> String {
    format!(
        r#"
[hosts.here]
transport = "local"

[module.svc]
source = "tokened"
root = "{root}"
env_token = {{ env = "CAIRN_TEST_TOKEN" }}
file_token = {{ file = "~/secrets/token" }}
command_token = {{ command = ["cat", "{command_secret}"] }}
{extra}"#,
        command_secret = command_secret.display()
    )
}

#[test]
fn secret_module_inputs_reach_file_content_and_nothing_else() {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let root_s = root.display().to_string();
    let (tmp, dir, home) = setup(&|secret| module_spec(&root_s, secret, ""));
    std::fs::create_dir_all(dir.join("modules/tokened")).unwrap();
    std::fs::write(dir.join("modules/tokened/module.toml"), TOKENED_MODULE).unwrap();
    let home_s = home.display().to_string();
    let env = [("CAIRN_TEST_TOKEN", ENV_SECRET.trim_end()), ("HOME", home_s.as_str())];
    let with_log = [env[0], env[1], ("CAIRN_LOG", "debug")];

    // Plan text, verbose text, JSON and debug logs: the tokens file is sensitive, the plain one
    // is shown; the net of `cairn_env` checks that no secret got out.
    let plan = cairn_env(&dir, &["-v", "plan"], &with_log);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("label=plain"), "{}", plan.stdout);
    let json = cairn_env(&dir, &["plan", "--json"], &env);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let sensitive: Vec<(String, bool)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "file")
        .map(|c| (c["resource"].as_str().unwrap_or_default().to_string(), c["sensitive"] == true))
        .collect();
    assert!(sensitive.contains(&("svc.file.tokens".to_string(), true)), "{}", json.stdout);
    assert!(sensitive.contains(&("svc.file.plain".to_string(), false)), "{}", json.stdout);

    // A saved plan keeps keyed digests of the three inputs, never the values or plain digests.
    let saved = cairn_env(&dir, &["plan", "-o", "p.json"], &env);
    assert_eq!(saved.code, 0, "{}", saved.all());
    let file = std::fs::read_to_string(dir.join("p.json")).unwrap();
    assert_no_secret("the saved plan", &file);
    for secret in [ENV_SECRET, FILE_SECRET, COMMAND_SECRET] {
        assert!(!file.contains(&cairn::hash::sha256_hex(secret.trim_end().as_bytes())), "a plain digest of a secret in the plan file");
    }
    let v: serde_json::Value = serde_json::from_str(&file).unwrap();
    let names: Vec<&String> = v["spec"]["secrets"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["module.svc.inputs.command_token", "module.svc.inputs.env_token", "module.svc.inputs.file_token"], "{file}");

    let apply = cairn_env(&dir, &["apply", "p.json"], &with_log);
    assert_eq!(apply.code, 0, "{}", apply.all());
    // One final line ending of a file's or a command's output is dropped, as Ansible's lookups do.
    assert_eq!(
        std::fs::read_to_string(root.join("tokens.env")).unwrap(),
        "A=cairn-test-secret-env\nB=cairn-test-secret-file\nC=cairn-test-secret-command\n"
    );
    assert_eq!(cairn_env(&dir, &["plan", "--detailed-exitcode"], &env).code, 0);

    // The input changes between plan and apply: the saved plan is refused, naming the input.
    let saved = cairn_env(&dir, &["plan", "-o", "p2.json"], &env);
    assert_eq!(saved.code, 0, "{}", saved.all());
    let moved = [("CAIRN_TEST_TOKEN", "cairn-test-secret-env-2"), env[1]];
    let refused = cairn_env(&dir, &["apply", "p2.json"], &moved);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("`module.svc.inputs.env_token` has another value; nothing was applied"), "{}", refused.stderr);

    // A module check's message shows a secret input as "(sensitive)".
    let short = [("CAIRN_TEST_TOKEN", "cairn"), env[1]];
    let failed = cairn_env(&dir, &["validate"], &short);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stderr.contains("the token (sensitive) is too short"), "{}", failed.stderr);
    drop(tmp);
}

#[test]
fn a_secret_module_input_anywhere_but_sensitive_content_is_refused() {
    let module = r#"
[inputs.token]
type = "string"
description = "A token."

[inputs.mode]
type = "string"
one_of = ["a", "b"]
description = "Checked."

[inputs.count]
type = "int"
default = 1
description = "A number."

[file.path]
path = "/srv/{{ inputs.token }}"
content = "x\n"

[file.indirect]
path = "/srv/indirect"
content = "{% for k, v in inputs | items %}{{ v }}{% endfor %}\n"

[unit.svc]
name = "svc.service"
content = "[Service]\nEnvironment=TOKEN={{ inputs.token }}\n"
"#;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("modules/leaky")).unwrap();
    std::fs::write(dir.join("modules/leaky/module.toml"), module).unwrap();
    let spec = r#"[hosts.here]
transport = "local"

[module.svc]
source = "leaky"
token = { env = "CAIRN_TEST_TOKEN" }
mode = { env = "CAIRN_TEST_TOKEN" }
count = { env = "CAIRN_TEST_TOKEN" }
"#;
    std::fs::write(dir.join("cairn.toml"), spec).unwrap();
    let env = [("CAIRN_TEST_TOKEN", "cairn-test-secret-value")];
    let load = cairn_env(dir, &["validate"], &env);
    assert_eq!(load.code, 1, "{}", load.all());
    insta::assert_snapshot!("secret_module_input_load_errors", load.stderr.replace(&dir.display().to_string(), "[tmp]"));

    // Once the inputs load, every place the token would show is an error.
    std::fs::write(
        dir.join("cairn.toml"),
        spec.replace("mode = { env = \"CAIRN_TEST_TOKEN\" }", "mode = \"a\"").replace("count = { env = \"CAIRN_TEST_TOKEN\" }\n", ""),
    )
    .unwrap();
    let graph = cairn_env(dir, &["validate"], &env);
    assert_eq!(graph.code, 1, "{}", graph.all());
    insta::assert_snapshot!("secret_module_input_leak_errors", graph.stderr.replace(&dir.display().to_string(), "[tmp]"));
}
