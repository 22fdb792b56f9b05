//! Every example under `examples/` is a valid spec. Examples meant for `cairn lab` include a
//! `lab.toml` that `cairn lab up` writes; here a stand-in with three hosts takes its place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/files.rs"]
mod files;
use files::copy_dir;

use std::path::{Path, PathBuf};
use std::process::Command;

const STAND_IN_LAB: &str = r#"
[ssh]
user = "root"
identity_file = "/nonexistent/lab/id_ed25519"
known_hosts_file = "/nonexistent/lab/known_hosts"
host_key_checking = "strict"

[hosts.node1]
address = "192.0.2.11"
labels = { lab = "example" }

[hosts.node2]
address = "192.0.2.12"
labels = { lab = "example" }

[hosts.node3]
address = "192.0.2.13"
labels = { lab = "example" }
"#;

/// Stands in for the `mirror.toml` that `examples/etcd-lab/make-mirror.sh` writes.
const STAND_IN_MIRROR: &str = r#"
[vars]
etcd_version = "3.4.23"
etcd_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
etcd_mirror = "file:///nonexistent/mirror"
"#;

fn example_specs() -> Vec<PathBuf> {
    let mut specs: Vec<PathBuf> =
        std::fs::read_dir("examples").unwrap().map(|e| e.unwrap().path().join("cairn.toml")).filter(|p| p.exists()).collect();
    specs.sort();
    specs
}

#[test]
fn every_example_validates() {
    let specs = example_specs();
    assert!(specs.len() >= 2, "examples missing: {specs:?}");
    for spec in specs {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(spec.parent().unwrap(), dir.path());
        let text = std::fs::read_to_string(&spec).unwrap();
        if text.contains("\"lab.toml\"") && !dir.path().join("lab.toml").exists() {
            std::fs::write(dir.path().join("lab.toml"), STAND_IN_LAB).unwrap();
        }
        if text.contains("\"mirror.toml\"") && !dir.path().join("mirror.toml").exists() {
            std::fs::write(dir.path().join("mirror.toml"), STAND_IN_MIRROR).unwrap();
        }
        // Copied away from the repository, examples find its modules through CAIRN_MODULE_PATH.
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["validate", "-f", "cairn.toml"])
            .current_dir(dir.path())
            .env("CAIRN_MODULE_PATH", std::fs::canonicalize("modules").unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate:\n{}{}",
            spec.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn readme_commands_exist() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let ci = std::fs::read_to_string(".ci/run").unwrap();
    let test_command = readme
        .lines()
        .skip_while(|l| !l.starts_with("## Test it"))
        .find(|l| l.starts_with("cargo ") || l.starts_with("sudo "))
        .expect("README has a test command under '## Test it'");
    assert!(ci.contains(test_command.trim()), ".ci/run must run the README's test command `{test_command}`");
}

#[test]
fn changelog_has_an_unreleased_section() {
    let changelog = std::fs::read_to_string("CHANGELOG.md").unwrap();
    assert!(changelog.contains("## Unreleased"));
}

/// Every `cairn ...` command in `examples/ci/cairn.yml` parses with cairn's real command line.
#[test]
fn ci_pipeline_uses_only_real_flags() {
    use clap::Parser as _;
    let pipeline = std::fs::read_to_string("examples/ci/cairn.yml").unwrap();
    let mut seen = 0;
    for line in pipeline.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let line = line.strip_prefix("run: ").unwrap_or(line);
        if !line.starts_with("cairn ") {
            continue;
        }
        let command = line.split(['>', '|', ';']).next().unwrap().replace("\"$SPEC\"", "infra/cairn.toml");
        let argv: Vec<&str> = command.split_whitespace().collect();
        if let Err(e) = cairn::cli::Cli::try_parse_from(&argv) {
            panic!("`{command}` in examples/ci/cairn.yml does not parse:\n{e}");
        }
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} cairn commands found");
}

/// The shell scripts the modules render onto hosts (`etcd-start`, `etcd-restore`, …) pass
/// shellcheck, as rendered for real hosts: the templates themselves are not shell until then.
#[test]
fn rendered_module_scripts_pass_shellcheck() {
    if Command::new("shellcheck").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI installs shellcheck (.ci/run); it is missing");
        eprintln!("SKIPPED rendered_module_scripts_pass_shellcheck: shellcheck is not installed");
        return;
    }
    // Inside the repository, so the spec finds `modules/` in a parent directory.
    std::fs::create_dir_all("target").unwrap();
    let dir = tempfile::tempdir_in("target").unwrap();
    copy_dir(Path::new("examples/etcd-lab"), dir.path());
    std::fs::write(dir.path().join("lab.toml"), STAND_IN_LAB).unwrap();
    std::fs::write(dir.path().join("mirror.toml"), STAND_IN_MIRROR).unwrap();
    let spec = cairn::spec::load(&dir.path().join("cairn.toml")).unwrap_or_else(|e| panic!("{}", e.render()));
    let graph = cairn::graph::Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)));
    let mut scripts: Vec<(String, Vec<u8>)> = Vec::new();
    for inst in &graph.instances {
        if let cairn::resource::Desired::File(f) = &inst.desired {
            let first_line = f.content.split(|&b| b == b'\n').next().unwrap_or_default();
            let script = first_line.starts_with(b"#!") && first_line.ends_with(b"sh");
            // A profile snippet (`/etc/profile.d/*.sh`) has no `#!`: it is read by sh.
            let content = match (script, f.path.ends_with(".sh")) {
                (true, _) => f.content.clone(),
                (false, true) => [b"# shellcheck shell=sh\n".as_slice(), &f.content].concat(),
                (false, false) => continue,
            };
            if !scripts.iter().any(|(_, c)| *c == content) {
                scripts.push((f.path.clone(), content));
            }
        }
    }
    let mut files = Vec::new();
    for (i, (path, content)) in scripts.iter().enumerate() {
        let file = dir.path().join(format!("script-{i}-{}", path.rsplit('/').next().unwrap()));
        std::fs::write(&file, content).unwrap();
        files.push(file);
    }
    assert!(files.len() >= 5, "expected the etcd module's scripts, found {scripts:?}");
    // SC1091: the scripts source the module's own profile snippet, checked here on its own.
    let out = Command::new("shellcheck").arg("--exclude=SC1091").args(&files).output().unwrap();
    assert!(out.status.success(), "rendered scripts fail shellcheck:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Template whitespace (docs/spec.md, "Template whitespace"): cairn renders with minijinja's
/// `trim_blocks` and `lstrip_blocks` off, and this pins why. Every example and every module's
/// `example.toml` is rendered for every host both ways; the listed files would come out different
/// with them on (the shipped templates rely on the newline after a block tag), so turning them on
/// would rewrite files on every host that uses them. When this list becomes empty, the default can
/// be reconsidered.
#[test]
fn template_whitespace_is_kept_around_block_tags() {
    use cairn::module::Templater;
    use cairn::resource::Desired;
    // Inside the repository, so specs find `modules/` in a parent directory.
    std::fs::create_dir_all("target").unwrap();
    let mut specs: Vec<(String, PathBuf)> = Vec::new();
    let mut keep = Vec::new();
    for spec in example_specs() {
        let dir = tempfile::tempdir_in("target").unwrap();
        copy_dir(spec.parent().unwrap(), dir.path());
        for (name, stand_in) in [("lab.toml", STAND_IN_LAB), ("mirror.toml", STAND_IN_MIRROR)] {
            if !dir.path().join(name).exists() {
                std::fs::write(dir.path().join(name), stand_in).unwrap();
            }
        }
        specs.push((spec.display().to_string(), dir.path().join("cairn.toml")));
        keep.push(dir);
    }
    let mut modules: Vec<PathBuf> = std::fs::read_dir("modules").unwrap().map(|e| e.unwrap().path().join("example.toml")).collect();
    modules.sort();
    for example in modules.into_iter().filter(|p| p.exists()) {
        specs.push((example.display().to_string(), example));
    }
    let mut differ: Vec<String> = Vec::new();
    let mut rendered = 0;
    for (name, path) in &specs {
        let spec = cairn::spec::load(path).unwrap_or_else(|e| panic!("{name}: {}", e.render()));
        let build = |trim| {
            cairn::graph::Graph::build_with(&spec, &Templater::with_block_trimming(trim))
                .unwrap_or_else(|d| panic!("{name}: {}", d.render(&spec.sources)))
        };
        let (kept, trimmed) = (build(false), build(true));
        assert_eq!(kept.instances.len(), trimmed.instances.len());
        for (a, b) in kept.instances.iter().zip(&trimmed.instances) {
            rendered += 1;
            if a.desired != b.desired {
                let what = match &a.desired {
                    Desired::File(f) => f.path.clone(),
                    _ => a.id.resource.to_string(),
                };
                let entry = format!("{name}: {what}");
                if !differ.contains(&entry) {
                    differ.push(entry);
                }
            }
        }
    }
    assert!(rendered > 50, "only {rendered} instances rendered");
    differ.sort();
    insta::assert_snapshot!(differ.join("\n"));
    // And the default is what the documentation says: the newline after a block tag stays.
    let spec_text =
        "[hosts.a]\naddress = \"192.0.2.1\"\n[file.x]\npath = \"/x\"\ncontent = \"{% if true %}\\n  a\\n  {% endif %}\\nb\\n\"\n";
    let spec = cairn::spec::load_str(Path::new("cairn.toml"), spec_text).unwrap();
    let graph = cairn::graph::Graph::build(&spec).unwrap();
    let Desired::File(f) = &graph.instances[0].desired else { panic!("not a file") };
    assert_eq!(String::from_utf8_lossy(&f.content), "\n  a\n  \nb\n");
    let graph = cairn::graph::Graph::build_with(&spec, &Templater::with_block_trimming(true)).unwrap();
    let Desired::File(f) = &graph.instances[0].desired else { panic!("not a file") };
    assert_eq!(String::from_utf8_lossy(&f.content), "  a\nb\n");
}
