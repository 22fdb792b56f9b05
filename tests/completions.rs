//! `cairn completions SHELL` and `cairn man`, through the real binary: the bash script parses
//! (`bash -n`) and completes the subcommands (`schema` among them); zsh and fish scripts are
//! made; the man page renders. No hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/run.rs"]
mod run;
use run::cairn;

use std::process::Command;

#[test]
fn bash_completion_parses_and_names_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(dir.path(), &["completions", "bash"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let script = dir.path().join("cairn.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    for sub in ["validate", "plan", "apply", "destroy", "drift", "check", "graph", "unlock", "completions", "schema", "man"] {
        assert!(out.stdout.contains(sub), "the bash script does not mention `{sub}`");
    }
    assert!(out.stdout.contains("--var-file"), "flags are completed too");
    // Sourcing it registers the completion function for `cairn`.
    let sourced = Command::new("bash").arg("-c").arg(format!("source {} && complete -p cairn", script.display())).output().unwrap();
    assert!(sourced.status.success(), "{}", String::from_utf8_lossy(&sourced.stderr));
    assert!(String::from_utf8_lossy(&sourced.stdout).contains("cairn"));
}

#[test]
fn zsh_and_fish_scripts_are_made() {
    let dir = tempfile::tempdir().unwrap();
    let zsh = cairn(dir.path(), &["completions", "zsh"]);
    assert_eq!(zsh.code, 0, "{}", zsh.all());
    assert!(zsh.stdout.starts_with("#compdef cairn"), "{}", zsh.stdout);
    let fish = cairn(dir.path(), &["completions", "fish"]);
    assert_eq!(fish.code, 0, "{}", fish.all());
    assert!(fish.stdout.contains("complete -c cairn"), "{}", fish.stdout);
    let bad = cairn(dir.path(), &["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("bash"), "the error lists the shells: {}", bad.stderr);
}

#[test]
fn man_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(dir.path(), &["man"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains(".TH cairn 1"), "{}", out.stdout);
    assert!(out.stdout.contains(".SH SUBCOMMANDS"), "{}", out.stdout);
    assert!(out.stdout.contains("plan"), "{}", out.stdout);
    assert!(out.stdout.contains("schema"), "the man page lists `cairn schema`: {}", out.stdout);
    // With a folder: one page per command.
    let pages = dir.path().join("man");
    std::fs::create_dir(&pages).unwrap();
    let out = cairn(dir.path(), &["man", "--dir", "man"]);
    assert_eq!(out.code, 0, "{}", out.all());
    for page in ["cairn.1", "cairn-plan.1", "cairn-apply.1", "cairn-schema.1"] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    assert!(out.stderr.contains("cairn-plan.1"), "{}", out.stderr);
    let missing = cairn(dir.path(), &["man", "--dir", "nowhere"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(missing.stderr.contains("cannot write the man page into nowhere"), "{}", missing.stderr);
}
