//! The spec loader's user-facing errors, as exact text (insta snapshots), and the model it builds
//! from a good spec. Inline specs are loaded as `cairn.toml`; specs that name other files live
//! under `tests/fixtures/spec/` and are loaded by relative path, so rendered paths are stable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};

use cairn::spec::{ContentSource, HostKeyChecking, Kind, Mode, ResourceBody, ResourceId, Selector, TransportKind, load, load_str};

/// Two hosts with labels, shared by the inline specs.
const HOSTS: &str = r#"
[hosts.node1]
address = "192.0.2.11"
labels = { role = "etcd" }

[hosts.node2]
address = "192.0.2.12"
labels = { role = "worker" }
"#;

/// Loads inline spec text that must fail; returns the rendered diagnostics.
fn errors(text: &str) -> String {
    corpus::keep_spec(Path::new("cairn.toml"), text);
    match load_str(Path::new("cairn.toml"), text) {
        Ok(_) => panic!("expected the spec to be rejected:\n{text}"),
        Err(e) => e.render(),
    }
}

/// Loads `tests/fixtures/spec/<name>/cairn.toml`, which must fail.
fn fixture_errors(name: &str) -> String {
    let path = PathBuf::from(format!("tests/fixtures/spec/{name}/cairn.toml"));
    match load(&path) {
        Ok(_) => panic!("expected {} to be rejected", path.display()),
        Err(e) => e.render(),
    }
}

#[test]
fn malformed_toml() {
    insta::assert_snapshot!(errors("[file.motd\npath = \"/etc/motd\"\n\n[dir.conf]\npath = /etc/demo\n"));
}

#[test]
fn unknown_top_level_table() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[fiel.motd]\npath = \"/etc/motd\"\ncontent = \"hi\"\n")));
}

#[test]
fn unknown_key() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[file.motd]\npath = \"/etc/motd\"\ncontnet = \"hi\"\n")));
}

#[test]
fn unknown_key_without_suggestion() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[dir.conf]\npath = \"/etc/demo\"\nrecursive = true\n")));
}

#[test]
fn wrong_types() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[ssh]\nport = \"22\"\n\n[file.motd]\nhosts = \"node1\"\npath = 5\ncontent = \"hi\"\nsensitive = \"yes\"\n"
    )));
}

#[test]
fn wrong_type_in_list() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[file.motd]\nhosts = [\"node1\", 2]\npath = \"/etc/motd\"\ncontent = \"hi\"\n")));
}

#[test]
fn missing_required_keys() {
    insta::assert_snapshot!(errors("[hosts.node1]\nport = 22\n\n[dir.conf]\nmode = \"0755\"\n"));
}

#[test]
fn bad_mode_strings() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[dir.a]\npath = \"/a\"\nmode = \"999\"\n\n[dir.b]\npath = \"/b\"\nmode = \"0o755\"\n\n[dir.c]\npath = \"/c\"\nmode = \"rwxr-xr-x\"\n"
    )));
}

#[test]
fn mode_as_integer() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[file.a]\npath = \"/a\"\ncontent = \"\"\nmode = 644\n\n[file.b]\npath = \"/b\"\ncontent = \"\"\nmode = 0o600\n"
    )));
}

#[test]
fn relative_path() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[file.motd]\npath = \"etc/motd\"\ncontent = \"hi\"\n\n[file.templated]\npath = \"{{{{ vars.root }}}}/motd\"\ncontent = \"hi\"\n"
    )));
}

#[test]
fn after_names_missing_resource() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\"\n\n[file.issue]\nafter = [\"file.mtod\", \"dir.nothing\"]\npath = \"/etc/issue\"\ncontent = \"hi\"\n"
    )));
}

#[test]
fn after_unparsable_id() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[file.motd]\nafter = [\"motd\", \"unit.etcd\", \"fiel.a\", \"a.b.c.d\"]\npath = \"/etc/motd\"\ncontent = \"hi\"\n"
    )));
}

#[test]
fn selector_matches_no_host() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[file.motd]\nhosts = [\"role=db\", \"nod1\", \"node2\"]\npath = \"/etc/motd\"\ncontent = \"hi\"\n"
    )));
}

#[test]
fn invalid_selector_and_empty_hosts() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[file.a]\nhosts = [\"role=\"]\npath = \"/a\"\ncontent = \"\"\n\n[file.b]\nhosts = []\npath = \"/b\"\ncontent = \"\"\n"
    )));
}

#[test]
fn host_key_checking_and_transport_values() {
    insta::assert_snapshot!(errors(
        "[ssh]\nhost_key_checking = \"accept_new\"\n\n[hosts.node1]\naddress = \"192.0.2.11\"\ntransport = \"docker\"\n"
    ));
}

#[test]
fn content_and_template_both_set() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\"\ntemplate = \"motd.j2\"\n")));
}

#[test]
fn no_content() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[file.motd]\npath = \"/etc/motd\"\nmode = \"0644\"\n")));
}

#[test]
fn missing_include() {
    insta::assert_snapshot!(fixture_errors("include_missing"));
}

/// Issue 15: a device or a FIFO as an include, a template or a file's source would be read
/// forever (or block); the loader refuses every path that is not a regular file.
#[test]
fn devices_are_not_read() {
    insta::assert_snapshot!(errors(&format!(
        "include = [\"/dev/zero\"]\n{HOSTS}\n[file.a]\npath = \"/etc/a\"\ntemplate = \"/dev/zero\"\n\n[file.b]\npath = \"/etc/b\"\nsource = \"/dev/zero\"\n"
    )));
}

#[test]
fn include_cycle() {
    insta::assert_snapshot!(fixture_errors("include_cycle"));
}

#[test]
fn missing_template_and_source_files() {
    insta::assert_snapshot!(fixture_errors("file_missing"));
}

#[test]
fn template_not_utf8() {
    insta::assert_snapshot!(fixture_errors("template_not_utf8"));
}

#[test]
fn defined_twice_across_includes() {
    insta::assert_snapshot!(fixture_errors("duplicates"));
}

#[test]
fn duplicate_literal_path_on_a_host() {
    // file.a and file.b overlap on node1; dir.c only on node2 where nothing else has /etc/a;
    // templated paths are left to the graph layer.
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[file.a]\npath = \"/etc/a\"\ncontent = \"\"\n\n[file.b]\nhosts = [\"role=etcd\"]\npath = \"/etc/a/\"\ncontent = \"\"\n\n\
         [file.c]\nhosts = [\"node2\"]\npath = \"/etc/c\"\ncontent = \"\"\n\n[dir.c]\nhosts = [\"node1\"]\npath = \"/etc/c\"\n\n\
         [file.t1]\npath = \"{{{{ vars.x }}}}\"\ncontent = \"\"\n\n[file.t2]\npath = \"{{{{ vars.x }}}}\"\ncontent = \"\"\n"
    )));
}

#[test]
fn invalid_names() {
    insta::assert_snapshot!(errors(
        "[hosts.\"node 1\"]\naddress = \"192.0.2.11\"\n\n[file.\"my.motd\"]\npath = \"/etc/motd\"\ncontent = \"hi\"\n"
    ));
}

#[test]
fn many_errors_reported_together_in_order() {
    let rendered = errors(
        r#"[ssh]
port = 70000

[hosts.node1]
address = "192.0.2.11"
labels = { role = "etcd", size = 3 }

[fiel.motd]
path = "/etc/motd"

[file.issue]
after = ["dir.conff"]
path = "issue"
contnet = "hi"
mode = "999"

[dir.conf]
hosts = ["role=db"]
path = "/etc/demo"
"#,
    );
    let positions: Vec<usize> =
        rendered.lines().filter_map(|l| l.strip_prefix("  --> cairn.toml:")).filter_map(|l| l.split(':').next()?.parse().ok()).collect();
    assert!(positions.windows(2).all(|w| w[0] <= w[1]), "not sorted by line: {positions:?}");
    insta::assert_snapshot!(rendered);
}

#[test]
fn unreadable_spec_file() {
    let err = load(Path::new("tests/fixtures/spec/no-such-dir/cairn.toml")).unwrap_err();
    insta::assert_snapshot!(err.render());
}

#[test]
fn example_spec_loads() {
    let spec = load(Path::new("tests/fixtures/spec/example/cairn.toml")).unwrap_or_else(|e| panic!("{}", e.render()));
    let base = Path::new("tests/fixtures/spec/example");
    assert_eq!(spec.base_dir, base);
    assert_eq!(spec.state_dir, base.join("state"));

    // [vars]
    assert_eq!(spec.vars["cluster"], serde_json::json!("demo"));
    assert_eq!(spec.vars["ports"], serde_json::json!([2379, 2380]));
    assert_eq!(spec.vars["debug"], serde_json::json!(false));

    // [ssh]; `~` is kept as written (the transport expands it).
    assert_eq!(spec.ssh.user.as_deref(), Some("admin"));
    assert_eq!(spec.ssh.port, None);
    assert_eq!(spec.ssh.identity_file, Some(PathBuf::from("~/.ssh/cairn_ed25519")));
    assert_eq!(spec.ssh.known_hosts_file, Some(PathBuf::from("~/.ssh/known_hosts")));
    assert_eq!(spec.ssh.host_key_checking, HostKeyChecking::AcceptNew);
    assert!(spec.ssh.r#become);
    assert_eq!(spec.ssh.connect_timeout_secs, Some(5));

    // Hosts come from the included file.
    assert_eq!(spec.hosts.keys().collect::<Vec<_>>(), ["local", "node1", "node2"]);
    let node1 = &spec.hosts["node1"];
    assert_eq!(node1.address, "192.0.2.11");
    assert_eq!(node1.labels["role"], "etcd");
    assert_eq!(node1.labels["zone"], "a");
    assert_eq!((node1.port, node1.user.as_deref(), node1.r#become), (None, None, None));
    assert_eq!(node1.transport, TransportKind::Ssh);
    assert_eq!(spec.sources.path(node1.span.file), Path::new("tests/fixtures/spec/example/cluster.toml"));
    let node2 = &spec.hosts["node2"];
    assert_eq!((node2.port, node2.user.as_deref(), node2.r#become), (Some(2222), Some("ops"), Some(false)));
    let local = &spec.hosts["local"];
    assert_eq!(local.transport, TransportKind::Local);
    assert_eq!(local.address, "127.0.0.1");

    // Resources in the order written; dir before file because its table comes first.
    let ids: Vec<String> = spec.resources.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, ["dir.conf", "file.motd", "file.config", "file.logo"]);

    let conf = &spec.resources[0];
    assert_eq!(conf.hosts.iter().map(|s| s.value.clone()).collect::<Vec<_>>(), [Selector::All]);
    let ResourceBody::Dir(dir) = &conf.body else { panic!("dir.conf is a dir") };
    assert_eq!(dir.path.text, "/etc/demo");
    assert_eq!(dir.path.name, "dir.conf.path");
    assert_eq!(dir.mode, Some(Mode(0o750)));
    assert_eq!(dir.owner.as_ref().map(|o| o.value.as_str()), Some("root"));
    assert_eq!(dir.group.as_ref().map(|o| o.value.as_str()), Some("demo"));

    let motd = &spec.resources[1];
    let ResourceBody::File(file) = &motd.body else { panic!("file.motd is a file") };
    assert_eq!((file.mode, file.owner.as_ref(), file.group.as_ref(), file.sensitive), (None, None, None, false));
    let ContentSource::Template(t) = &file.content else { panic!("content is a template") };
    assert_eq!(t.text, "Welcome to {{ host.name }} in {{ vars.cluster }}\n");
    assert_eq!(t.name, "file.motd.content");
    assert_eq!(&spec.sources.text(t.span.file)[t.span.range.clone()], "\"Welcome to {{ host.name }} in {{ vars.cluster }}\\n\"");

    let config = &spec.resources[2];
    assert_eq!(
        config.hosts.iter().map(|s| s.value.clone()).collect::<Vec<_>>(),
        [Selector::Label("role".into(), "etcd".into()), Selector::Name("local".into())]
    );
    assert_eq!(config.after.iter().map(|a| a.value.clone()).collect::<Vec<_>>(), [ResourceId::new(Kind::Dir, "conf")]);
    let ResourceBody::File(file) = &config.body else { panic!("file.config is a file") };
    assert_eq!(file.mode, Some(Mode(0o640)));
    assert!(file.sensitive);
    let ContentSource::Template(t) = &file.content else { panic!("template is a template") };
    assert_eq!(t.name, "templates/config.toml.j2");
    assert_eq!(t.text, "cluster = \"{{ vars.cluster }}\"\nname = \"{{ host.name }}\"\n");
    assert_eq!(spec.sources.path(t.span.file), base.join("templates/config.toml.j2"));
    assert_eq!(t.span.range, 0..t.text.len());

    let logo = &spec.resources[3];
    let ResourceBody::File(file) = &logo.body else { panic!("file.logo is a file") };
    assert_eq!(file.path.text, "{{ vars.root }}/logo.txt");
    assert_eq!(file.content, ContentSource::Bytes { bytes: b"cairn\n".to_vec(), path: base.join("files/logo.txt") });
}

#[test]
fn defaults_when_nothing_is_set() {
    let spec = load_str(Path::new("cairn.toml"), "[hosts.a]\naddress = \"a.example\"\n").unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(spec.state_dir, Path::new(".cairn"));
    assert_eq!(spec.ssh.host_key_checking, HostKeyChecking::Strict);
    assert!(!spec.ssh.r#become);
    assert_eq!((spec.ssh.user.as_ref(), spec.ssh.port, spec.ssh.connect_timeout_secs), (None, None, None));
    assert!(spec.resources.is_empty() && spec.vars.is_empty());
}

#[test]
fn same_path_on_disjoint_hosts_is_fine() {
    let text = format!(
        "{HOSTS}\n[file.a]\nhosts = [\"node1\"]\npath = \"/etc/a\"\ncontent = \"\"\n\n[file.b]\nhosts = [\"role=worker\"]\npath = \"/etc/a\"\ncontent = \"\"\n"
    );
    assert!(load_str(Path::new("cairn.toml"), &text).is_ok());
}

#[test]
fn misspelled_required_key_is_reported_once() {
    // `pth` and `contnet` are reported as unknown keys with "did you mean"; no "missing" errors.
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[file.motd]\npth = \"/etc/motd\"\ncontnet = \"hi\"\n")));
}

#[test]
fn syntax_error_in_an_include() {
    // Only the syntax error: `after = ["dir.conf"]` is not reported, since the file that may define
    // `dir.conf` could not be read.
    insta::assert_snapshot!(fixture_errors("include_syntax"));
}

#[test]
fn nested_includes_merge_in_order() {
    let spec = load(Path::new("tests/fixtures/spec/nested_includes/cairn.toml")).unwrap_or_else(|e| panic!("{}", e.render()));
    let ids: Vec<String> = spec.resources.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, ["file.common", "file.a", "file.b", "file.main"]);
    assert_eq!(spec.hosts.keys().collect::<Vec<_>>(), ["node1"]);
    assert_eq!(spec.vars["cluster"], serde_json::json!("demo"));

    // A template is found beside the file that names it, and registered for diagnostics.
    let ResourceBody::File(a) = &spec.resources[1].body else { panic!("file.a is a file") };
    let ContentSource::Template(t) = &a.content else { panic!("file.a has a template") };
    assert_eq!(t.text, "from sub/a.j2\n");
    assert_eq!(t.name, "a.j2");
    assert_eq!(spec.sources.path(t.span.file), Path::new("tests/fixtures/spec/nested_includes/sub/a.j2"));
    assert_eq!(spec.sources.text(t.span.file), "from sub/a.j2\n");
}

#[test]
fn host_errors_are_not_repeated() {
    // A misspelled `address`, and an invalid transport without an address: one error each.
    insta::assert_snapshot!(errors("[hosts.node1]\nadress = \"192.0.2.11\"\n\n[hosts.node2]\ntransport = \"locl\"\n"));
}

#[test]
fn docs_example_is_in_sync_and_loads() {
    let docs = std::fs::read_to_string("docs/spec.md").unwrap();
    for file in ["cairn.toml", "cluster.toml"] {
        let text = std::fs::read_to_string(format!("tests/fixtures/spec/docs_example/{file}")).unwrap();
        assert!(docs.contains(&format!("```toml\n{text}```")), "docs/spec.md no longer shows tests/fixtures/spec/docs_example/{file}");
    }
    let spec = load(Path::new("tests/fixtures/spec/docs_example/cairn.toml")).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(spec.hosts.len(), 2);
    assert_eq!(spec.resources.len(), 3);
}

#[test]
fn bad_ignore_and_spec_name() {
    insta::assert_snapshot!(errors(&format!(
        "name = \".hidden/x\"\n{HOSTS}\n[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\"\nignore = [\"mdoe\", \"owner\"]\n\n\
         [unit.u]\nname = \"u.service\"\nignore = [\"enabled\"]\n\n[dir.d]\npath = \"/srv/d\"\nprevent_destroy = \"yes\"\n"
    )));
}

#[test]
fn spec_name_defaults_to_the_folder_or_file_and_lifecycle_keys_are_read() {
    let text = format!(
        "{HOSTS}\n[dir.d]\npath = \"/srv/d\"\npurge = true\nprevent_destroy = true\nignore = [\"mode\"]\n\n[user.u]\nremove = true\n"
    );
    let spec = load_str(Path::new("/srv/infra/team-a/cairn.toml"), &text).unwrap();
    assert_eq!(spec.name, "team-a");
    assert_eq!(load_str(Path::new("/srv/infra/etcd-prod.toml"), &text).unwrap().name, "etcd-prod");
    let named = load_str(Path::new("/srv/infra/cairn.toml"), &format!("name = \"prod\"\n{text}")).unwrap();
    assert_eq!(named.name, "prod");
    let dir = &spec.resources[0];
    assert!(dir.prevent_destroy);
    assert_eq!(dir.ignore, ["mode"]);
    let ResourceBody::Dir(d) = &dir.body else { panic!() };
    assert!(d.purge);
    let ResourceBody::User(u) = &spec.resources[1].body else { panic!() };
    assert!(u.remove);
}

/// `check.interval`, `check.timeout` and `unit.start_timeout` take seconds or a string with units.
#[test]
fn durations_take_seconds_or_units() {
    let text = format!(
        "{HOSTS}\n[unit.web]\nhosts = [\"role=etcd\"]\nname = \"web.service\"\nstart_timeout = \"1m30s\"\n\n\
         [check.a]\nhosts = [\"role=etcd\"]\ncommand = [\"true\"]\ninterval = \"1m\"\ntimeout = \"1h30m\"\n\n\
         [check.b]\nhosts = [\"role=etcd\"]\ncommand = [\"true\"]\ninterval = 5\ntimeout = 7\n"
    );
    let spec = load_str(Path::new("cairn.toml"), &text).unwrap_or_else(|e| panic!("{}", e.render()));
    let body = |kind, name: &str| &spec.resources.iter().find(|r| r.id == ResourceId::new(kind, name)).unwrap().body;
    let ResourceBody::Unit(web) = body(Kind::Unit, "web") else { panic!() };
    assert_eq!(web.start_timeout_secs, 90);
    let ResourceBody::Check(a) = body(Kind::Check, "a") else { panic!() };
    assert_eq!((a.interval_secs, a.timeout_secs), (60, 5_400));
    let ResourceBody::Check(b) = body(Kind::Check, "b") else { panic!() };
    assert_eq!((b.interval_secs, b.timeout_secs), (5, 7));
}

#[test]
fn bad_durations_say_how_to_write_them() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[unit.web]\nhosts = [\"role=etcd\"]\nname = \"web.service\"\nstart_timeout = \"90\"\n\n\
         [check.a]\nhosts = [\"role=etcd\"]\ncommand = [\"true\"]\ninterval = \"2 days\"\ntimeout = 0\n\n\
         [check.b]\nhosts = [\"role=etcd\"]\ncommand = [\"true\"]\ninterval = 1.5\ntimeout = \"2h\"\n"
    )));
}

/// A table named as another tool names the kind points at cairn's name for it.
#[test]
fn other_tools_names_point_at_cairns_kinds() {
    insta::assert_snapshot!(errors(&format!("{HOSTS}\n[service.web]\nname = \"web.service\"\n\n[directory.conf]\npath = \"/etc/demo\"\n")));
}

/// A CA is local state, not applied to hosts: `after` cannot name it.
#[test]
fn after_cannot_name_a_ca() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[ca.web]\ncommon_name = \"web\"\n\n[file.x]\npath = \"/etc/x\"\ncontent = \"x\"\nafter = [\"ca.web\"]\n"
    )));
}

#[test]
fn cluster_tables_name_every_problem() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[cluster.a]\nunit = \"file.x\"\npeer_url = \"https://{{{{ host.address }}}}:2380\"\n\
         [cluster.b]\ndriver = \"consul\"\nunit = \"unit.missing\"\n\
         [cluster.c]\ndriver = \"etcd\"\nunit = \"unit.etcd\"\npeer_url = \"x\"\nsettings = {{ etcdctl = 3 }}\nafter_on_peers = [\"nope\"]\n\
         [unit.etcd]\nname = \"etcd.service\"\n"
    )));
}

#[test]
fn optional_names_a_member_extract_does_not_have() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nsha256 = \"{}\"\nextract = {{ \"etcd\" = \"/usr/local/bin/etcd\" }}\noptional = [\"etcdutl\"]\n",
        "a".repeat(64)
    )));
}

#[test]
fn reloads_certificates_must_be_certificates_of_restart_on() {
    insta::assert_snapshot!(errors(&format!(
        "{HOSTS}\n[unit.web]\nname = \"web.service\"\nrestart_on = [\"cert.peer\"]\nreloads_certificates = [\"cert.server\", \"file.conf\"]\n"
    )));
}
