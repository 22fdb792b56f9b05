//! The engine without SSH: graph building (ordering, waves, cycles, template errors), plan
//! rendering (text and JSON snapshots from made-up host facts), and the real binary applying to
//! `transport = "local"` hosts in a temporary directory tree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/run.rs"]
mod run;
use run::cairn;

use std::collections::BTreeMap;
use std::path::Path;

use cairn::graph::Graph;
use cairn::plan::Plan;
use cairn::plan::planner::plan_from_facts;
use cairn::plan::render::{self, TextOptions};
use cairn::resource::{HostFacts, PathFact, PathKind};
use cairn::spec::load_str;

const HOSTS: &str = r#"
[vars]
cluster = "demo"

[hosts.node1]
address = "192.0.2.11"
labels = { role = "etcd" }

[hosts.node2]
address = "192.0.2.12"
labels = { role = "etcd" }
"#;

fn graph(text: &str) -> Graph {
    corpus::keep_spec(Path::new("cairn.toml"), text);
    let spec = load_str(Path::new("cairn.toml"), text).unwrap_or_else(|e| panic!("{}", e.render()));
    Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
}

fn graph_errors(path: &Path, text: &str) -> String {
    corpus::keep_spec(path, text);
    let spec = load_str(path, text).unwrap_or_else(|e| panic!("{}", e.render()));
    match Graph::build(&spec) {
        Ok(_) => panic!("expected graph errors"),
        Err(d) => d.render(&spec.sources),
    }
}

fn ids(g: &Graph, wave: &[usize]) -> Vec<String> {
    wave.iter().map(|&i| g.instances[i].id.to_string()).collect()
}

#[test]
fn waves_follow_after_and_directories() {
    let g = graph(&format!(
        "{HOSTS}
[file.motd]
path = \"/etc/demo/motd\"
content = \"x\"
[dir.conf]
path = \"/etc/demo\"
[file.last]
hosts = [\"node1\"]
path = \"/srv/last\"
content = \"y\"
after = [\"file.motd\"]
"
    ));
    let waves: Vec<Vec<String>> = g.waves().iter().map(|w| ids(&g, w)).collect();
    assert_eq!(
        waves,
        vec![vec!["dir.conf on node1", "dir.conf on node2"], vec!["file.motd on node1", "file.motd on node2"], vec!["file.last on node1"],]
    );
    // Deterministic: building twice gives the same order.
    let again = graph(&format!(
        "{HOSTS}\n[file.motd]\npath = \"/etc/demo/motd\"\ncontent = \"x\"\n[dir.conf]\npath = \"/etc/demo\"\n[file.last]\nhosts = [\"node1\"]\npath = \"/srv/last\"\ncontent = \"y\"\nafter = [\"file.motd\"]\n"
    ));
    assert_eq!(g.waves(), again.waves());
}

#[test]
fn cross_host_after_waits_for_every_instance() {
    let g = graph(&format!(
        "{HOSTS}
[file.a]
hosts = [\"node1\", \"node2\"]
path = \"/a\"
content = \"x\"
[file.b]
hosts = [\"node1\"]
path = \"/b\"
content = \"x\"
[file.c]
hosts = [\"node2\"]
path = \"/c\"
content = \"x\"
after = [\"file.b\"]
"
    ));
    let c = g.instances.iter().position(|i| i.id.to_string() == "file.c on node2").unwrap();
    let deps: Vec<String> = g.deps[c].iter().map(|&d| g.instances[d].id.to_string()).collect();
    assert_eq!(deps, vec!["file.b on node1"]);
}

#[test]
fn dependency_cycle_names_every_member() {
    insta::assert_snapshot!(graph_errors(
        Path::new("cairn.toml"),
        &format!(
            "{HOSTS}
[file.a]
path = \"/a\"
content = \"x\"
after = [\"file.c\"]
[file.b]
path = \"/b\"
content = \"x\"
after = [\"file.a\"]
[file.c]
path = \"/c\"
content = \"x\"
after = [\"file.b\"]
"
        )
    ));
}

#[test]
fn two_cycles_through_an_implied_edge_are_reported_apart() {
    // dir.d waits for unit.u (after), unit.u for file.f (restart_on), file.f for dir.d (its
    // path is inside it); and dir.d and file.g wait for each other (after both ways).
    insta::assert_snapshot!(graph_errors(
        Path::new("cairn.toml"),
        &format!(
            "{HOSTS}
[dir.d]
path = \"/d\"
after = [\"unit.u\", \"file.g\"]
[file.f]
path = \"/d/f\"
content = \"x\"
[unit.u]
name = \"u.service\"
restart_on = [\"file.f\"]
[file.g]
path = \"/g\"
content = \"x\"
after = [\"dir.d\"]
"
        )
    ));
}

#[test]
fn template_errors_name_file_and_line() {
    insta::assert_snapshot!(graph_errors(
        Path::new("tests/fixtures/engine/cairn.toml"),
        &format!(
            "{HOSTS}
[file.broken]
path = \"/etc/broken\"
template = \"templates/broken.j2\"
[file.inline]
path = \"/etc/inline\"
content = \"cluster {{{{ vars.clustr }}}}\\n\"
"
        )
    ));
}

#[test]
fn templated_paths_that_collide_on_a_host_are_refused() {
    insta::assert_snapshot!(graph_errors(
        Path::new("cairn.toml"),
        &format!(
            "{HOSTS}
[file.a]
path = \"/etc/{{{{ vars.cluster }}}}.conf\"
content = \"x\"
[file.b]
path = \"/etc/demo.conf\"
content = \"y\"
"
        )
    ));
}

fn fact(kind: PathKind, mode: u32, content: Option<&str>) -> PathFact {
    PathFact {
        kind,
        mode,
        owner: "root".into(),
        group: "root".into(),
        size: content.map_or(4096, |c| c.len() as u64),
        mtime: 0,
        sha256: content.map(|c| cairn::hash::sha256_hex(c.as_bytes())),
    }
}

const RENDER_SPEC: &str = r#"
[dir.conf]
path = "/etc/demo"
[file.motd]
path = "/etc/demo/motd"
content = "cluster {{ vars.cluster }} on {{ host.name }}\nwelcome\n"
[file.key]
path = "/etc/demo/key.pem"
content = "-----BEGIN PRIVATE KEY-----\nsecret\n"
sensitive = true
mode = "0600"
[file.same]
path = "/etc/demo/same"
content = "same\n"
"#;

/// node1: nothing exists. node2: dir right, motd drifted, key with wrong mode, same unchanged.
fn render_plan() -> (Graph, Plan) {
    let g = graph(&format!("{HOSTS}{RENDER_SPEC}"));
    let mut node2 = HostFacts::default();
    node2.paths.insert("/etc/demo".into(), fact(PathKind::Dir, 0o755, None));
    node2.paths.insert("/etc/demo/motd".into(), fact(PathKind::File, 0o644, Some("cluster old on node2\nwelcome\n")));
    node2.paths.insert("/etc/demo/key.pem".into(), fact(PathKind::File, 0o644, Some("other secret")));
    node2.paths.insert("/etc/demo/same".into(), fact(PathKind::File, 0o644, Some("same\n")));
    let old: BTreeMap<String, Vec<u8>> = [("/etc/demo/motd".to_string(), b"cluster old on node2\nwelcome\n".to_vec())].into();
    let mut plan = Plan::for_graph(&g);
    plan.hosts.insert("node1".into(), plan_from_facts(&g, "node1", &HostFacts::default(), &BTreeMap::new()));
    plan.hosts.insert("node2".into(), plan_from_facts(&g, "node2", &node2, &old));
    (g, plan)
}

#[test]
fn plan_text_view() {
    let (_, plan) = render_plan();
    insta::assert_snapshot!(render::text(&plan, TextOptions { color: false, verbose: false }));
}

#[test]
fn plan_text_view_verbose_lists_unchanged_with_reasons() {
    let (_, plan) = render_plan();
    insta::assert_snapshot!(render::text(&plan, TextOptions { color: false, verbose: true }));
}

#[test]
fn plan_json_view() {
    let (_, plan) = render_plan();
    let json = render::json(&plan);
    assert!(!json.contains("PRIVATE KEY") && !json.contains("secret"), "sensitive content leaked:\n{json}");
    insta::assert_snapshot!(json);
}

#[test]
fn plan_json_schema_is_stable() {
    let (_, plan) = render_plan();
    let v: serde_json::Value = serde_json::from_str(&render::json(&plan)).unwrap();
    assert_eq!(v["format_version"], "1");
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v), ["changes", "clusters", "errors", "format_version", "has_changes", "rotations", "summary"]);
    assert_eq!(keys(&v["summary"]), ["check", "conflict", "create", "delete", "replace", "restart", "unchanged", "update"]);
    for c in v["changes"].as_array().unwrap() {
        assert_eq!(keys(c), ["action", "attributes", "diff", "host", "kind", "reason", "resource", "sensitive", "target"]);
    }
}

#[test]
fn no_changes_says_so() {
    let g = graph(&format!("{HOSTS}[dir.conf]\npath = \"/etc/demo\"\n"));
    let mut facts = HostFacts::default();
    facts.paths.insert("/etc/demo".into(), fact(PathKind::Dir, 0o755, None));
    let mut plan = Plan::for_graph(&g);
    for h in ["node1", "node2"] {
        plan.hosts.insert(h.into(), plan_from_facts(&g, h, &facts, &BTreeMap::new()));
    }
    assert_eq!(render::text(&plan, TextOptions::default()), "No changes. 2 resource instances on 2 hosts match the spec.\n");
}

// ---- the real binary against local hosts ----

fn local_spec(root: &Path) -> String {
    format!(
        r#"
[vars]
root = "{root}"
cluster = "demo"

[hosts.alpha]
transport = "local"
labels = {{ role = "etcd" }}

[hosts.beta]
transport = "local"

[dir.conf]
path = "{{{{ vars.root }}}}/{{{{ host.name }}}}/etc"
mode = "0750"

[file.motd]
path = "{{{{ vars.root }}}}/{{{{ host.name }}}}/etc/motd"
content = "cluster {{{{ vars.cluster }}}} on {{{{ host.name }}}}\npeers: {{% for h in hosts %}}{{{{ h.name }}}} {{% endfor %}}\n"

[file.blob]
hosts = ["role=etcd"]
path = "{{{{ vars.root }}}}/{{{{ host.name }}}}/etc/blob.bin"
source = "files/blob.bin"
mode = "0600"
after = ["file.motd"]
"#,
        root = root.display()
    )
}

#[test]
fn apply_then_plan_is_empty_and_drift_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    let blob: Vec<u8> = b"quotes ' \" $(touch /tmp/pwned) `x`\n\xff\xfe\x00 end".to_vec();
    std::fs::write(dir.path().join("files/blob.bin"), &blob).unwrap();
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root)).unwrap();

    let v = cairn(dir.path(), &["validate"]);
    assert_eq!(v.code, 0, "{}", v.stderr);

    let plan = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("Plan: 5 to create, 0 to change, 0 to delete."), "{}", plan.stdout);

    let refused = cairn(dir.path(), &["apply"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("--auto-approve"), "{}", refused.stderr);
    assert!(!root.exists(), "apply without approval touched the hosts");

    let apply = cairn(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(apply.stdout.contains("Apply complete: 5 changed"), "{}", apply.stdout);
    assert_eq!(std::fs::read(root.join("alpha/etc/blob.bin")).unwrap(), blob, "bytes must arrive exactly");
    assert_eq!(std::fs::read_to_string(root.join("beta/etc/motd")).unwrap(), "cluster demo on beta\npeers: alpha beta \n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(root.join("alpha/etc/blob.bin")).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::metadata(root.join("alpha/etc")).unwrap().permissions().mode() & 0o7777, 0o750);
    assert!(!Path::new("/tmp/pwned").exists());

    let again = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(again.stdout, "No changes. 5 resource instances on 2 hosts match the spec.\n");

    // Drift on one host: content and mode.
    std::fs::write(root.join("beta/etc/motd"), "edited by hand\n").unwrap();
    std::fs::set_permissions(root.join("alpha/etc"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let drift = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(drift.code, 2);
    let shown = drift.stdout.replace(&root.display().to_string(), "[ROOT]");
    insta::assert_snapshot!(shown);

    let repair = cairn(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(repair.code, 0, "{}{}", repair.stdout, repair.stderr);
    assert!(repair.stdout.contains("Apply complete: 2 changed, 3 unchanged"), "{}", repair.stdout);
    assert_eq!(cairn(dir.path(), &["plan", "--detailed-exitcode"]).code, 0);

    // --json agrees.
    let json = cairn(dir.path(), &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["has_changes"], false);
    assert_eq!(v["summary"]["unchanged"], 5);
}

#[test]
fn a_failed_instance_skips_its_dependents_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    std::fs::write(dir.path().join("files/blob.bin"), b"x").unwrap();
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root)).unwrap();
    // On alpha, a directory sits where motd belongs: motd is blocked, blob (after motd) skipped.
    std::fs::create_dir_all(root.join("alpha/etc/motd")).unwrap();
    let plan = cairn(dir.path(), &["plan"]);
    assert_eq!(plan.code, 1, "a blocked resource fails the plan");
    assert!(plan.stdout.contains("! file.motd"), "{}", plan.stdout);
    let apply = cairn(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}{}", apply.stdout, apply.stderr);
    assert!(apply.stdout.contains("failed:  file.motd on alpha: path is a directory"), "{}", apply.stdout);
    assert!(apply.stdout.contains("skipped: file.blob on alpha: file.motd on alpha did not complete"), "{}", apply.stdout);
    assert_eq!(std::fs::read_to_string(root.join("beta/etc/motd")).unwrap(), "cluster demo on beta\npeers: alpha beta \n");
}

#[test]
fn spec_errors_touch_no_host_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cairn.toml"), "[hosts.a]\ntransport = \"local\"\n[file.x]\npath = \"relative\"\ncontent = 1\n")
        .unwrap();
    let r = cairn(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cairn.toml:4:8"), "{}", r.stderr);
    assert!(r.stderr.contains("cairn.toml:5:11"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}

#[test]
fn graph_command_draws_dot_and_mermaid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cairn.toml"),
        format!("{HOSTS}[dir.conf]\npath = \"/etc/demo\"\n[file.motd]\npath = \"/etc/demo/motd\"\ncontent = \"x\"\n"),
    )
    .unwrap();
    insta::assert_snapshot!("graph_dot", cairn(dir.path(), &["graph"]).stdout);
    insta::assert_snapshot!("graph_mermaid", cairn(dir.path(), &["graph", "--format", "mermaid"]).stdout);
}

/// Without `-f` and without a `cairn.toml` here, cairn says where it looked and how to name a spec.
#[test]
fn no_spec_in_the_folder_says_where_cairn_looked() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["plan", "validate", "apply"] {
        let run = cairn(dir.path(), &[command]);
        assert_eq!(run.code, 1, "{}", run.all());
        let here = std::fs::canonicalize(dir.path()).unwrap();
        assert!(
            run.stderr
                .contains(&format!("no spec here: cairn looked for `cairn.toml` in {}; name the spec with `-f PATH`", here.display())),
            "{command}: {}",
            run.all()
        );
    }
}

/// A sensitive file's content hash (for a short token, as good as the token) appears nowhere: not
/// in the plan text, not in a saved plan file, not in the refusal of a stale saved plan.
#[test]
fn a_sensitive_files_hash_never_leaves_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "old-token\n").unwrap();
    let spec = format!(
        "[hosts.alpha]\ntransport = \"local\"\n\n[file.token]\npath = \"{}\"\ncontent = \"new-token\\n\"\nmode = \"0600\"\nsensitive = true\n",
        token.display()
    );
    std::fs::write(dir.path().join("cairn.toml"), spec).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let hashes: Vec<String> = ["old-token\n", "new-token\n"].iter().map(|t| cairn::hash::sha256_hex(t.as_bytes())).collect();
    let leaks = |text: &str| hashes.iter().any(|h| text.contains(&h[..12]));

    let plan = cairn(dir.path(), &["plan", "-o", "saved.cairn"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("sha256: (sensitive) → (sensitive)"), "{}", plan.stdout);
    let saved = std::fs::read_to_string(dir.path().join("saved.cairn")).unwrap();
    assert!(!leaks(&saved) && !leaks(&plan.all()), "a hash of the token is in the saved plan:\n{saved}");
    assert!(saved.contains("sha256 (sensitive)"), "{saved}");

    // The host moves (mode): the saved plan is refused, listing what it saw then and now.
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = cairn(dir.path(), &["apply", "saved.cairn"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.all().contains("0644"), "{}", refused.all());
    assert!(!leaks(&refused.all()), "a hash of the token is in the refusal:\n{}", refused.all());
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "old-token\n", "nothing applied");
}

/// A saved plan refused because the spec moved names the files that changed, not just the spec.
#[test]
fn a_stale_saved_plan_names_the_spec_files_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/motd.j2"), "hello {{ host.name }}\n").unwrap();
    let spec = format!(
        "[hosts.alpha]\ntransport = \"local\"\n\n[file.motd]\npath = \"{}\"\ntemplate = \"templates/motd.j2\"\n",
        dir.path().join("motd").display()
    );
    std::fs::write(dir.path().join("cairn.toml"), spec).unwrap();
    let plan = cairn(dir.path(), &["plan", "-o", "saved.cairn"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    std::fs::write(dir.path().join("templates/motd.j2"), "goodbye {{ host.name }}\n").unwrap();
    let refused = cairn(dir.path(), &["apply", "saved.cairn"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("was made from another version of the spec"), "{}", refused.all());
    assert!(refused.stderr.contains("): templates/motd.j2 changed; nothing was applied."), "{}", refused.all());
    assert!(!dir.path().join("motd").exists(), "nothing applied");
}

/// `validate` warns when git tracks files of the state dir (it holds CA private keys).
#[test]
fn validate_warns_when_the_state_dir_is_tracked_by_git() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.path().join("cairn.toml"), "[hosts.alpha]\ntransport = \"local\"\n").unwrap();
    let clean = cairn(dir.path(), &["validate"]);
    assert_eq!(clean.code, 0, "{}", clean.all());
    assert!(!clean.stderr.contains("warning:"), "{}", clean.all());
    git(&["init", "-q"]);
    std::fs::create_dir_all(dir.path().join(".cairn/pki/web")).unwrap();
    std::fs::write(dir.path().join(".cairn/pki/web/ca-key.pem"), "not a real key").unwrap();
    let untracked = cairn(dir.path(), &["validate"]);
    assert!(!untracked.stderr.contains("warning:"), "{}", untracked.all());
    git(&["add", "-f", ".cairn"]);
    let tracked = cairn(dir.path(), &["validate"]);
    assert_eq!(tracked.code, 0, "a warning, not an error: {}", tracked.all());
    assert!(tracked.stderr.contains("warning: 1 file(s) of the state dir"), "{}", tracked.all());
    assert!(tracked.stderr.contains("git rm -r --cached"), "{}", tracked.all());
}

/// A template error that happens on some hosts names them; the help fits the kind of error.
#[test]
fn template_errors_name_their_hosts_and_fit_the_help_to_the_error() {
    let text = format!(
        "{HOSTS}\n[hosts.node3]\naddress = \"192.0.2.13\"\nlabels = {{ role = \"etcd\", tier = \"db\" }}\n\n\
         [file.tier]\npath = \"/etc/tier\"\ncontent = \"{{{{ host.labels.tier }}}}\\n\"\n\n\
         [file.syntax]\npath = \"/etc/syntax\"\ncontent = \"{{% if true %}}x\"\n\n\
         [file.filter]\npath = \"/etc/filter\"\ncontent = \"{{{{ vars.cluster | shout }}}}\"\n"
    );
    insta::assert_snapshot!(graph_errors(Path::new("cairn.toml"), &text));
}

/// `cairn check` runs the checks now, changes nothing, and fails when one fails.
#[test]
fn check_runs_the_checks_alone() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("untouched");
    let spec = |bad: bool| {
        format!(
            "[hosts.alpha]\ntransport = \"local\"\n\n[file.marker]\npath = \"{}\"\ncontent = \"x\"\n\n\
             [check.ok]\ncommand = [\"true\"]\n\n[check.maybe]\ncommand = [\"{}\"]\ninterval = \"0s\"\n",
            marker.display(),
            if bad { "false" } else { "true" }
        )
    };
    std::fs::write(dir.path().join("cairn.toml"), spec(true)).unwrap();
    let failing = cairn(dir.path(), &["check"]);
    assert_eq!(failing.code, 1, "{}", failing.all());
    assert!(failing.stdout.contains("passed  check.ok on alpha: "), "{}", failing.stdout);
    assert!(failing.stdout.contains("FAILED  check.maybe on alpha: "), "{}", failing.stdout);
    assert!(failing.stdout.ends_with("Checks: 1 passed, 1 failed.\n"), "{}", failing.stdout);
    assert!(!marker.exists(), "check changes nothing");
    std::fs::write(dir.path().join("cairn.toml"), spec(false)).unwrap();
    let passing = cairn(dir.path(), &["check"]);
    assert_eq!(passing.code, 0, "{}", passing.all());
    assert!(passing.stdout.ends_with("Checks: 2 passed, 0 failed.\n"), "{}", passing.stdout);
}

/// Issue 15: a template with nested loops made `validate` run for minutes, and one printing a
/// huge value ate memory. Both now stop at the rendering budget, naming the template, the limit
/// and its size; the well-behaved template beside them is not reported.
#[test]
fn runaway_templates_fail_fast_naming_the_limit() {
    let v = cairn(Path::new("tests/fixtures/budget"), &["validate"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(!v.stderr.contains("file.fine"), "{}", v.stderr);
    insta::assert_snapshot!(v.stderr);
}
