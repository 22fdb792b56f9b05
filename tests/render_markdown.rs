//! The markdown plan view (a pull-request comment), from plans built by hand: layout, quiet
//! instances, sensitive content, and escaping of text that markdown would read as markup.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn::graph::InstanceId;
use cairn::plan::render;
use cairn::plan::{Action, AttrChange, Change, HostError, Plan};
use cairn::spec::{Kind, ResourceId};

/// A change with no attributes or diff. Built through serde, as a saved plan is loaded, so fields
/// the views never read (skipped in saved plans) take their defaults.
fn change(host: &str, kind: Kind, name: &str, action: Action, reason: &str, target: &str) -> Change {
    serde_json::from_value(serde_json::json!({
        "id": InstanceId { resource: ResourceId::new(kind, name), host: host.into() },
        "action": action,
        "reason": reason,
        "target": target,
        "attrs": [],
        "diff": null,
        "sensitive": false,
        "disruptive": false,
        "waits_for": [format!("waits for dir.conf on {host}: parent directory")],
    }))
    .unwrap()
}

/// An attribute as the kinds make it: `sha256` is a digest of the content.
fn attr(name: &str, before: Option<&str>, after: Option<&str>) -> AttrChange {
    let (before, after) = (before.map(Into::into), after.map(Into::into));
    if name == "sha256" { AttrChange::digest(name, before, after) } else { AttrChange::new(name, before, after) }
}

fn plan(hosts: Vec<(&str, &str, Vec<Change>)>) -> Plan {
    let mut plan = Plan::default();
    for (host, address, changes) in hosts {
        plan.addresses.insert(host.into(), address.into());
        plan.hosts.insert(host.into(), changes);
    }
    plan
}

/// node1 is new; node2 drifted (content, mode, a sensitive key, a file no longer in the spec);
/// node3 could not be read.
fn mixed_plan() -> Plan {
    let mut motd1 = change("node1", Kind::File, "motd", Action::Create, "file does not exist", "/etc/demo/motd");
    motd1.attrs = vec![attr("mode", None, Some("0644")), attr("size", None, Some("30 bytes"))];
    motd1.diff =
        Some("--- /etc/demo/motd (on node1)\n+++ /etc/demo/motd (wanted)\n@@ -0,0 +1,2 @@\n+cluster demo on node1\n+welcome\n".into());
    let mut motd2 = change("node2", Kind::File, "motd", Action::Update, "content differs, mode differs", "/etc/demo/motd");
    motd2.attrs = vec![attr("sha256", Some("48bc66c6550a"), Some("502203e255e3")), attr("mode", Some("0644"), Some("0600"))];
    motd2.diff = Some(
        "--- /etc/demo/motd (on node2)\n+++ /etc/demo/motd (wanted)\n@@ -1,2 +1,2 @@\n-cluster old on node2\n+cluster demo on node2\n welcome\n"
            .into(),
    );
    let mut key = change("node2", Kind::File, "key", Action::Update, "content differs", "/etc/demo/key.pem");
    key.sensitive = true;
    key.attrs = vec![attr("sha256", Some("9f86d081884c"), Some("60303ae22b99"))];
    let mut etcd = change("node2", Kind::Unit, "etcd", Action::Restart, "a file it uses changed", "etcd.service");
    etcd.disruptive = true;
    let mut p = plan(vec![
        (
            "node1",
            "192.0.2.11",
            vec![
                change("node1", Kind::Dir, "conf", Action::NoOp, "directory matches", "/etc/demo"),
                motd1,
                change("node1", Kind::Check, "health", Action::Check, "runs after changes", "curl -fsS localhost:2379/health"),
            ],
        ),
        (
            "node2",
            "192.0.2.12",
            vec![
                change("node2", Kind::Dir, "conf", Action::NoOp, "directory matches", "/etc/demo"),
                motd2,
                key,
                etcd,
                change("node2", Kind::File, "old", Action::Delete, "no longer in the spec", "/etc/demo/old.conf"),
            ],
        ),
        ("node4", "192.0.2.14", vec![change("node4", Kind::Dir, "conf", Action::NoOp, "directory matches", "/etc/demo")]),
    ]);
    p.errors.push(HostError { host: "node3".into(), error: "node3: ssh: connect to 192.0.2.13:22: connection refused".into() });
    p
}

#[test]
fn markdown_plan_with_changes_on_two_hosts_and_an_error() {
    let md = render::markdown(&mixed_plan());
    assert!(md.starts_with("### cairn plan\n\n**Plan: 1 to create, 2 to change, 1 to delete, 1 to restart; 1 check will run.**\n"), "{md}");
    for hidden in ["9f86d081884c", "60303ae22b99", "waits for", "directory matches", "node4"] {
        assert!(!md.contains(hidden), "{hidden:?} shown:\n{md}");
    }
    insta::assert_snapshot!(md);
}

#[test]
fn markdown_without_changes_says_so_and_lists_nothing() {
    let p = plan(vec![
        (
            "node1",
            "192.0.2.11",
            vec![
                change("node1", Kind::Dir, "conf", Action::NoOp, "directory matches", "/etc/demo"),
                change("node1", Kind::Check, "health", Action::Check, "runs after changes", "true"),
            ],
        ),
        ("node2", "192.0.2.12", vec![change("node2", Kind::Dir, "conf", Action::NoOp, "directory matches", "/etc/demo")]),
    ]);
    let md = render::markdown(&p);
    assert_eq!(md, "### cairn plan\n\n**No changes. 2 resource instances on 2 hosts match the spec.**\n");
    insta::assert_snapshot!(md);
}

#[test]
fn markdown_escapes_reasons_targets_and_fenced_diffs() {
    let mut readme =
        change("web-1", Kind::File, "readme_md", Action::Update, "content *differs* <script>alert(1)</script>", "/srv/`x`/README.md");
    readme.diff = Some("--- a\n+++ b\n@@ -1,3 +1,3 @@\n ```sh\n-echo old\n+echo new\n```\n".into());
    let mut p = plan(vec![("web-1", "[2001:db8::1]:22", vec![readme])]);
    p.errors.push(HostError { host: "web_2".into(), error: "web_2: probe failed:\n  # not a heading\n  - not a list <b>".into() });
    let md = render::markdown(&p);
    assert!(!md.contains("<script>") && !md.contains("<b>"), "raw HTML from the plan:\n{md}");
    assert!(md.contains("\\*differs\\*") && md.contains("\\<script\\>"), "{md}");
    assert!(md.contains(" ``/srv/`x`/README.md`` "), "target code span:\n{md}");
    assert!(md.contains("  ````diff\n") && md.contains("\n  ````\n  </details>"), "diff fence must outlast the ``` inside:\n{md}");
    insta::assert_snapshot!(md);
}
