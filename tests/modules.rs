//! Modules: expansion into namespaced resources, `after` from outside and inside, the template
//! context (`inputs`, `module`), every input error as exact text, `cairn module show`, the READMEs
//! of `modules/*` kept equal to it, every module validated, and a module applied to
//! `transport = "local"` hosts with an empty plan afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn::graph::Graph;
use cairn::spec::{Spec, load_str};

/// A spec path whose `modules/` holds the fixtures (`tests/fixtures/modules/modules/*`).
const FIXTURE_SPEC: &str = "tests/fixtures/modules/cairn.toml";

const HOSTS: &str = r#"
[hosts.n1]
address = "192.0.2.11"
labels = { role = "etcd" }

[hosts.n2]
address = "192.0.2.12"
labels = { role = "etcd" }

[hosts.n3]
address = "192.0.2.13"
labels = { role = "etcd" }

[hosts.web]
address = "192.0.2.20"
"#;

fn load(text: &str) -> Spec {
    corpus::keep_spec(Path::new(FIXTURE_SPEC), text);
    load_str(Path::new(FIXTURE_SPEC), text).unwrap_or_else(|e| panic!("{}", e.render()))
}

fn graph(spec: &Spec) -> Graph {
    Graph::build(spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
}

/// Error text with the repository's absolute path masked.
fn errors(text: &str) -> String {
    corpus::keep_spec(Path::new(FIXTURE_SPEC), text);
    match load_str(Path::new(FIXTURE_SPEC), text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => mask(&e.render()),
    }
}

fn mask(s: &str) -> String {
    s.replace(env!("CARGO_MANIFEST_DIR"), "[repo]")
}

fn etcd(extra: &str) -> String {
    format!("{HOSTS}\n[module.etcd]\nsource = \"etcd-cluster\"\nhosts = [\"role=etcd\"]\nversion = \"3.5.22\"\n{extra}")
}

fn content(g: &Graph, id: &str, host: &str) -> String {
    let inst = g.instances.iter().find(|i| i.id.resource.to_string() == id && i.id.host == host).unwrap();
    String::from_utf8(inst.desired.new_text().unwrap().to_vec()).unwrap()
}

#[test]
fn module_resources_get_ids_under_the_instance() {
    let spec = load(&etcd(""));
    let ids: Vec<String> = spec.resources.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, ["etcd.dir.conf", "etcd.file.config", "etcd.file.env"]);
    assert_eq!(spec.modules.len(), 1);
    assert_eq!(spec.modules[0].name, "etcd");
    // The instance's `hosts` is the default selection of its resources.
    let g = graph(&spec);
    let on: Vec<String> =
        g.instances.iter().filter(|i| i.id.resource.to_string() == "etcd.file.config").map(|i| i.id.host.clone()).collect();
    assert_eq!(on, ["n1", "n2", "n3"]);
}

#[test]
fn two_instances_of_one_module_do_not_clash_in_ids() {
    let text = format!(
        "{HOSTS}\n[module.a]\nsource = \"etcd-cluster\"\nhosts = [\"n1\"]\nversion = \"1\"\n[module.b]\nsource = \"./modules/etcd-cluster\"\nhosts = [\"n2\"]\nversion = \"2\"\n"
    );
    let spec = load(&text);
    let ids: Vec<String> = spec.resources.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, ["a.dir.conf", "a.file.config", "a.file.env", "b.dir.conf", "b.file.config", "b.file.env"]);
    let g = graph(&spec);
    assert!(content(&g, "b.file.env", "n2").contains("ETCD_VERSION=2"));
}

#[test]
fn after_from_outside_and_inside() {
    let spec = load(&etcd(
        "after = [\"file.motd\"]\n\n[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\"\n\n[file.check]\nhosts = [\"n1\"]\npath = \"/srv/check\"\ncontent = \"x\"\nafter = [\"etcd.file.config\"]\n",
    ));
    let g = graph(&spec);
    let deps = |id: &str, host: &str| -> Vec<String> {
        let i = g.instances.iter().position(|x| x.id.resource.to_string() == id && x.id.host == host).unwrap();
        g.deps[i].iter().map(|&j| g.instances[j].id.to_string()).collect()
    };
    // Inside: `after = ["file.config"]` in the module is the module's own resource.
    assert!(deps("etcd.file.env", "n1").contains(&"etcd.file.config on n1".to_string()), "{:?}", deps("etcd.file.env", "n1"));
    // The instance's `after` applies to every resource of the module.
    assert!(deps("etcd.dir.conf", "n2").contains(&"file.motd on n2".to_string()));
    assert!(deps("etcd.file.env", "n2").contains(&"file.motd on n2".to_string()));
    // Outside: a module resource named by its full id.
    assert_eq!(deps("file.check", "n1"), ["etcd.file.config on n1"]);
    let dot = g.to_dot();
    assert!(dot.contains("\"etcd.file.config\""), "{dot}");
}

#[test]
fn templates_see_inputs_and_module_hosts() {
    let spec = load(&etcd("heartbeat_interval = 250\nextra_flags = { quota-backend-bytes = 8589934592 }\n"));
    let g = graph(&spec);
    insta::assert_snapshot!(content(&g, "etcd.file.config", "n2"), @r"
    name: n2
    # etcd, etcd 3.5.22
    heartbeat-interval: 250
    log-level: info
    initial-cluster: n1=https://192.0.2.11:2380,n2=https://192.0.2.12:2380,n3=https://192.0.2.13:2380
    quota-backend-bytes: 8589934592
    ");
    assert_eq!(content(&g, "etcd.file.env", "n3"), "ETCD_VERSION=3.5.22\n");
}

#[test]
fn unknown_input_says_did_you_mean() {
    insta::assert_snapshot!(errors(&etcd("heartbeat_intreval = 200\n")));
}

#[test]
fn input_of_the_wrong_type() {
    insta::assert_snapshot!(errors(&etcd("heartbeat_interval = \"100ms\"\ntls = \"yes\"\n")));
}

#[test]
fn missing_required_input() {
    let text = format!("{HOSTS}\n[module.etcd]\nsource = \"etcd-cluster\"\nhosts = [\"role=etcd\"]\n");
    insta::assert_snapshot!(errors(&text));
}

#[test]
fn input_out_of_range_or_not_allowed() {
    insta::assert_snapshot!(errors(&etcd("heartbeat_interval = 5\nlog_level = \"verbose\"\n")));
}

#[test]
fn failed_assert_points_at_the_instance_and_the_check() {
    let text = format!("{HOSTS}\n[module.etcd]\nsource = \"etcd-cluster\"\nhosts = [\"n1\", \"n2\"]\nversion = \"3.5.22\"\n");
    insta::assert_snapshot!(errors(&text));
}

#[test]
fn every_input_error_is_reported_at_once() {
    let text = format!(
        "{HOSTS}\n[module.etcd]\nsource = \"etcd-cluster\"\nhosts = [\"role=etcd\"]\nverison = \"3.5\"\nlog_level = 3\n\n[file.x]\npath = \"/x\"\ncontent = \"x\"\nafter = [\"etcd.file.confg\"]\n"
    );
    let text = errors(&text);
    assert!(text.ends_with("3 errors found; nothing was changed on any host.\n"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn module_not_found() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[module.etcd]\nsource = \"etcd-clustr\"\nversion = \"1\"\n")));
}

#[test]
fn bad_fields_in_a_module_point_at_module_toml() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[module.b]\nsource = \"broken\"\nsize = 3\n")));
}

#[test]
fn instance_hosts_that_match_nothing() {
    insta::assert_snapshot!(errors(&etcd("").replace("role=etcd", "role=etc")));
}

#[test]
fn after_inside_a_module_is_reported_in_the_module_s_own_names() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[module.t]\nsource = \"typo\"\n")));
}

// ---- the binary ----

fn cairn(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_MODULE_PATH")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn module_show_lists_inputs_checks_and_resources() {
    let (code, out, err) = cairn(&repo().join("tests/fixtures/modules"), &["module", "show", "etcd-cluster"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out);
    let (code, _, err) = cairn(&repo(), &["module", "show", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("module `nope` not found"), "{err}");
}

#[test]
fn module_show_reports_a_broken_module() {
    let (code, _, err) = cairn(&repo(), &["module", "show", "./tests/fixtures/modules/modules/broken"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(mask(&err));
}

#[test]
fn module_names_are_also_looked_up_in_cairn_module_path() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{HOSTS}\n[module.etcd]\nsource = \"etcd-cluster\"\nhosts = [\"n1\"]\nversion = \"3.5.22\"\n");
    std::fs::write(dir.path().join("cairn.toml"), spec).unwrap();
    let (code, _, err) = cairn(dir.path(), &["validate"]);
    assert_eq!(code, 1);
    assert!(err.contains("module `etcd-cluster` not found"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["validate"])
        .current_dir(dir.path())
        .env("CAIRN_MODULE_PATH", format!("/nonexistent:{}", repo().join("tests/fixtures/modules/modules").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn repo_modules() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(repo().join("modules")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("module.toml").is_file()).collect();
    dirs.sort();
    dirs
}

#[test]
fn every_module_readme_matches_module_show() {
    let dirs = repo_modules();
    assert!(!dirs.is_empty());
    for dir in dirs {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let (code, out, err) = cairn(&repo(), &["module", "show", &name]);
        assert_eq!(code, 0, "{name}: {err}");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_else(|_| panic!("modules/{name}/README.md is missing"));
        assert!(readme.starts_with(&out), "modules/{name}/README.md must start with the output of `cairn module show {name}`:\n{out}");
    }
}

#[test]
fn every_module_validates_with_its_example() {
    for dir in repo_modules() {
        let example = dir.join("example.toml");
        assert!(example.is_file(), "{} needs an example.toml using it", dir.display());
        let (code, out, err) = cairn(&repo(), &["validate", "-f", example.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {out}{err}", example.display());
        let (code, out, err) = cairn(&repo(), &["graph", "-f", example.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(out.contains(&format!("\"{name}.")), "graph ids are namespaced: {out}");
    }
}

#[test]
fn validate_and_graph_show_namespaced_ids() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cairn.toml"),
        format!(
            "{}\n[module.etcd]\nsource = \"{}\"\nhosts = [\"n1\"]\nversion = \"3.5.22\"\n",
            HOSTS,
            repo().join("tests/fixtures/modules/modules/etcd-cluster").display()
        ),
    )
    .unwrap();
    let (code, out, err) = cairn(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "cairn.toml is valid: 3 resources, 3 instances on 1 host, 3 waves.\n");
    let (code, out, _) = cairn(dir.path(), &["graph", "--format", "mermaid"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn apply_a_module_to_local_hosts_then_plan_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let spec = format!(
        r#"
[hosts.alpha]
transport = "local"
labels = {{ role = "web" }}

[module.motd]
source = "{module}"
hosts = ["role=web"]
greeting = "Hello from a module."
lines = ["line one", "line two"]
root = "{root}"

[file.after_motd]
hosts = ["alpha"]
path = "{root}/etc/motd.d/seen"
content = "seen\n"
after = ["motd.file.motd"]
"#,
        module = repo().join("modules/motd").display(),
        root = root.display()
    );
    std::fs::write(dir.path().join("cairn.toml"), spec).unwrap();
    let (code, out, err) = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("motd.file.motd"), "{out}");
    let (code, out, err) = cairn(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd.d/cairn")).unwrap(),
        "Hello from a module.\nThis is alpha, one of 1 host(s) of `motd`.\nline one\nline two\n"
    );
    let (code, out, err) = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "No changes. 3 resource instances on 1 host match the spec.\n");
}

#[test]
fn each_module_instance_gets_its_own_ca_and_outside_certs_can_name_it() {
    use cairn::spec::model::ResourceBody;
    let sum = "0".repeat(64);
    let text = format!(
        "{HOSTS}\n[module.red]\nsource = \"etcd-cluster\"\nhosts = [\"n1\"]\nversion = \"3.5.22\"\nsha256 = \"{sum}\"\n\n\
         [module.blue]\nsource = \"etcd-cluster\"\nhosts = [\"n2\"]\nversion = \"3.5.22\"\nsha256 = \"{sum}\"\nca_key = \"ecdsa-p256\"\n\n\
         [cert.client]\nhosts = [\"web\"]\nca = \"blue.ca.etcd\"\ncommon_name = \"web\"\nusages = [\"client\"]\n\
         cert_path = \"/etc/web/etcd.pem\"\nkey_path = \"/etc/web/etcd-key.pem\"\n"
    );
    let spec = load_str(&repo().join("cairn.toml"), &text).unwrap_or_else(|e| panic!("{}", e.render()));
    let issuer = |id: &str| {
        let res = spec.resources.iter().find(|r| r.id.to_string() == id).unwrap();
        let ResourceBody::Cert(cert) = &res.body else { panic!("{id} is not a cert") };
        let ca = cert.issuer.as_ref().unwrap();
        (ca.name.clone(), format!("{:?} {:?}", ca.source, ca.key))
    };
    let (red, red_store) = issuer("red.cert.server");
    let (blue, blue_store) = issuer("blue.cert.server");
    assert_eq!((red.as_str(), blue.as_str()), ("red.etcd", "blue.etcd"));
    assert!(red_store.contains("pki/red.etcd") && blue_store.contains("pki/blue.etcd"), "{red_store} {blue_store}");
    // The CA's key type comes from the instance's `ca_key` input.
    assert!(red_store.ends_with("Rsa2048") && blue_store.ends_with("EcdsaP256"), "{red_store} {blue_store}");
    assert_eq!(issuer("red.cert.admin").0, "red.etcd");
    assert_eq!(issuer("cert.client").0, "blue.etcd");
    // A CA that no instance defines is reported with the CAs that exist.
    let bad = text.replace("blue.ca.etcd", "green.ca.etcd");
    let err = mask(&load_str(&repo().join("cairn.toml"), &bad).map(|_| ()).unwrap_err().render());
    assert!(err.contains("`ca` of [cert.client] names `green.ca.etcd`, which is not defined"), "{err}");
}

/// The etcd module's `cluster_token` from a secret source: the two files that carry it (the
/// config and the restore script) are sensitive, and no other rendered value holds it.
#[test]
fn etcd_cluster_token_from_a_secret_source_stays_in_sensitive_files() {
    // The shipped module (not the fixture of the same name): its example, inside the repository.
    std::fs::create_dir_all("target").unwrap();
    let dir = tempfile::tempdir_in("target").unwrap();
    let example = std::fs::read_to_string("modules/etcd-cluster/example.toml").unwrap();
    std::fs::write(dir.path().join("token"), "cairn-test-secret-token\n").unwrap();
    let text = example.replace(
        "[module.etcd-cluster]\n",
        &format!("[module.etcd-cluster]\ncluster_token = {{ command = [\"cat\", \"{}\"] }}\n", dir.path().join("token").display()),
    );
    assert_ne!(text, example);
    std::fs::write(dir.path().join("cairn.toml"), text).unwrap();
    let spec = cairn::spec::load(&dir.path().join("cairn.toml")).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(spec.secrets().len(), 1);
    assert!(!format!("{:?}", spec.modules).contains("cairn-test-secret-token"), "Debug shows a secret input");
    let graph = graph(&spec);
    let mut carriers = std::collections::BTreeSet::new();
    for inst in &graph.instances {
        let debug = format!("{:?}", inst.desired);
        match &inst.desired {
            cairn::resource::Desired::File(f) if String::from_utf8_lossy(&f.content).contains("cairn-test-secret-token") => {
                assert!(f.sensitive, "{} carries the token but is not sensitive", f.path);
                // The final newline of the command's output is not part of the token.
                let text = String::from_utf8_lossy(&f.content);
                assert!(
                    text.contains("initial-cluster-token cairn-test-secret-token \\")
                        || text.contains("initial-cluster-token: cairn-test-secret-token\n"),
                    "{text}"
                );
                carriers.insert(inst.id.resource.to_string());
            }
            _ => assert!(!debug.contains("cairn-test-secret-token"), "{} holds the token", inst.id),
        }
    }
    assert_eq!(carriers.into_iter().collect::<Vec<_>>(), ["etcd-cluster.file.config", "etcd-cluster.file.restore-script"]);
}
