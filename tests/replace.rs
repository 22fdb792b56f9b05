//! `--replace ID[HOST]` and `--exclude ID` on `plan` and `apply`: plan text as snapshots against
//! local hosts (a file written again, a certificate reissued, a new CA), the refusals as exact
//! text, saved plans that keep them, and on a lab host a reissued certificate, a restarted unit
//! and a replaced CA; a lost state dir refused; `destroy` removing the CA file and the folders a
//! certificate made.
#![allow(clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/run.rs"]
mod run;
use run::cairn;

#[path = "common/lab.rs"]
mod lab;

use std::path::Path;

fn local_spec(root: &Path) -> String {
    format!(
        r#"
[hosts.alpha]
transport = "local"

[hosts.beta]
transport = "local"

[dir.etc]
path = "{root}/{{{{ host.name }}}}"

[file.motd]
path = "{root}/{{{{ host.name }}}}/motd"
content = "hello {{{{ host.name }}}}\n"

[file.limits]
path = "{root}/{{{{ host.name }}}}/limits"
content = "nofile 1024\n"
after = ["file.motd"]

[file.other]
path = "{root}/{{{{ host.name }}}}/other"
content = "other\n"
{pki}"#,
        root = root.display(),
        pki = pki(&format!("{}/{{{{ host.name }}}}/pki", root.display()))
    )
}

/// The CA `ca.web` and its certificate `cert.server`, written into `dir` on each host.
fn pki(dir: &str) -> String {
    format!(
        r#"
[ca.web]
common_name = "web"

[cert.server]
ca = "ca.web"
common_name = "{{{{ host.name }}}}"
sans = ["{{{{ host.address }}}}"]
cert_path = "{dir}/server.pem"
key_path = "{dir}/server-key.pem"
ca_path = "{dir}/ca.pem"
"#
    )
}

fn shown(text: &str, root: &Path) -> String {
    text.replace(&root.display().to_string(), "[ROOT]")
}

#[test]
fn replace_and_exclude_against_local_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root)).unwrap();
    let d = dir.path();
    assert_eq!(cairn(d, &["apply", "--auto-approve"]).code, 0);
    assert_eq!(cairn(d, &["plan", "--detailed-exitcode"]).code, 0);

    // A file on one host, a certificate on every host.
    let plan = cairn(d, &["plan", "--replace", "file.motd[beta]", "--replace", "cert.server"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    insta::assert_snapshot!("replace_file_on_one_host_and_cert_everywhere", shown(&plan.stdout, &root));
    let json = cairn(d, &["plan", "--json", "--replace", "file.motd[beta]"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let change = v["changes"].as_array().unwrap().iter().find(|c| c["action"] != "no-op").unwrap().clone();
    assert_eq!(
        (&change["resource"], &change["host"], &change["reason"]),
        (&"file.motd".into(), &"beta".into(), &"--replace: written again".into())
    );

    // The CA: a new one, and every certificate issued by it.
    let plan = cairn(d, &["plan", "--replace", "ca.web"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    insta::assert_snapshot!("replace_ca", shown(&plan.stdout, &root));

    // --exclude leaves out what depends on the excluded, and says so.
    std::fs::write(root.join("alpha/motd"), "edited\n").unwrap();
    std::fs::write(root.join("alpha/limits"), "edited\n").unwrap();
    std::fs::write(root.join("alpha/other"), "edited\n").unwrap();
    let plan = cairn(d, &["plan", "--exclude", "file.motd"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    insta::assert_snapshot!("exclude_motd_and_its_dependents", format!("{}--- stderr\n{}", shown(&plan.stdout, &root), plan.stderr));

    // Saved plans keep both; apply PLAN does exactly that.
    let saved = cairn(d, &["plan", "-o", "p.json", "--exclude", "file.motd", "--replace", "cert.server[alpha]"]);
    assert_eq!(saved.code, 0, "{}", saved.all());
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("p.json")).unwrap()).unwrap();
    assert_eq!(file["exclude"], serde_json::json!(["file.motd"]));
    assert_eq!(file["replace"], serde_json::json!(["cert.server[alpha]"]));
    let cert_before = (std::fs::read(root.join("alpha/pki/server.pem")).unwrap(), std::fs::read(root.join("beta/pki/server.pem")).unwrap());
    let apply = cairn(d, &["apply", "p.json"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(std::fs::read_to_string(root.join("alpha/motd")).unwrap(), "edited\n", "excluded, left as it was");
    assert_eq!(std::fs::read_to_string(root.join("alpha/limits")).unwrap(), "edited\n", "depends on the excluded");
    assert_eq!(std::fs::read_to_string(root.join("alpha/other")).unwrap(), "other\n");
    assert_ne!(std::fs::read(root.join("alpha/pki/server.pem")).unwrap(), cert_before.0, "reissued");
    assert_eq!(std::fs::read(root.join("beta/pki/server.pem")).unwrap(), cert_before.1, "only on alpha");

    // A replaced CA: the old one is kept aside in the state dir, the certificates are the new one's.
    let old_ca = std::fs::read(d.join(".cairn/pki/web/ca.pem")).unwrap();
    let apply = cairn(d, &["apply", "--auto-approve", "--replace", "ca.web"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let new_ca = std::fs::read(d.join(".cairn/pki/web/ca.pem")).unwrap();
    assert_ne!(new_ca, old_ca);
    for host in ["alpha", "beta"] {
        assert_eq!(std::fs::read(root.join(host).join("pki/ca.pem")).unwrap(), new_ca);
    }
    let retired: Vec<_> = std::fs::read_dir(d.join(".cairn/pki"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".web.retired-"))
        .collect();
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(std::fs::read(d.join(".cairn/pki").join(&retired[0]).join("ca.pem")).unwrap(), old_ca);
    assert_eq!(cairn(d, &["apply", "--auto-approve"]).code, 0);
    assert_eq!(cairn(d, &["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn replace_and_exclude_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root)).unwrap();
    let d = dir.path();
    let mut out = String::new();
    for args in [
        &["plan", "--replace", "dir.etc"][..],
        &["plan", "--replace", "file.nope"],
        &["plan", "--replace", "file.motd[gamma]"],
        &["plan", "--replace", "ca.nope"],
        &["plan", "--replace", "ca.web[alpha]"],
        &["plan", "--replace", "not an id"],
        &["plan", "--exclude", "file.nope"],
        &["plan", "--exclude", "file.motd", "--replace", "file.limits"],
    ] {
        let run = cairn(d, args);
        assert_eq!(run.code, 1, "{}", run.all());
        out.push_str(&format!("$ cairn {}\n{}", args.join(" "), run.stderr));
    }
    assert!(!root.exists(), "a refused plan touched the hosts");
    insta::assert_snapshot!(out);
}

/// A CA, a certificate and a unit.
fn lab_spec() -> String {
    format!(
        r#"include = ["lab.toml"]
{}
[unit.web]
name = "cairn-web.service"
content = """
[Unit]
Description=cairn --replace test service
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
"#,
        pki("/etc/web")
    )
}

#[test]
fn lab_replace_reissues_a_certificate_and_restarts_a_unit() {
    let Some(lab) = lab::Lab::up_or_skip("replace", 1) else { return };
    let dir = lab.dir();
    std::fs::write(dir.join("cairn.toml"), lab_spec()).unwrap();
    let node = lab.info.nodes[0].name.clone();
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let serial = || lab.ssh_ok(&node, &["openssl", "x509", "-noout", "-serial", "-in", "/etc/web/server.pem"]);
    let pid = || lab.ssh_ok(&node, &["systemctl", "show", "-p", "MainPID", "--value", "cairn-web.service"]);
    let (serial0, pid0) = (serial(), pid());
    assert_ne!(pid0, "0");

    let plan = cairn(dir, &["plan", "--replace", "cert.server", "--replace", "unit.web"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("--replace: issued again with a new key"), "{}", plan.stdout);
    assert!(plan.stdout.contains("--replace: restarted"), "{}", plan.stdout);
    let apply = cairn(dir, &["apply", "--auto-approve", "--replace", &format!("cert.server[{node}]"), "--replace", "unit.web"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let (serial1, pid1) = (serial(), pid());
    assert_ne!(serial1, serial0, "the certificate was not reissued");
    assert_ne!(pid1, pid0, "the unit was not restarted");
    assert_ne!(pid1, "0");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);

    // A new CA: the host's certificate verifies against the new CA only.
    let apply = cairn(dir, &["apply", "--auto-approve", "--replace", "ca.web"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let verify = lab.ssh_ok(&node, &["openssl", "verify", "-CAfile", "/etc/web/ca.pem", "/etc/web/server.pem"]);
    assert_eq!(verify, "/etc/web/server.pem: OK");
    assert_eq!(lab.ssh_ok(&node, &["cat", "/etc/web/ca.pem"]), std::fs::read_to_string(dir.join(".cairn/pki/web/ca.pem")).unwrap().trim());
    assert_ne!(serial(), serial1);
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
}

/// Moves the state dir of the spec in `dir` away (a lost `.cairn/`, or another checkout).
fn lose_state_dir(dir: &Path) {
    std::fs::rename(dir.join(".cairn"), dir.join("state-backup")).unwrap();
}

/// Puts the moved state dir back (restored from its backup).
fn restore_state_dir(dir: &Path) {
    std::fs::rename(dir.join("state-backup"), dir.join(".cairn")).unwrap();
}

#[test]
fn a_lost_state_dir_refuses_to_make_a_new_ca() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root)).unwrap();
    let d = dir.path();
    assert_eq!(cairn(d, &["apply", "--auto-approve"]).code, 0);
    let cert = std::fs::read(root.join("alpha/pki/server.pem")).unwrap();
    lose_state_dir(d);

    let plan = cairn(d, &["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    let text = format!("{}--- stderr\n{}", shown(&plan.stdout, &root), plan.stderr).replace(&d.display().to_string(), "[DIR]");
    insta::assert_snapshot!(text);
    let apply = cairn(d, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(apply.stderr.contains("but alpha, beta carry certificates from a CA of that name"), "{}", apply.stderr);
    assert_eq!(std::fs::read(root.join("alpha/pki/server.pem")).unwrap(), cert, "nothing reissued");
    assert!(!d.join(".cairn/pki/web").exists(), "no new CA made");

    // --replace ca.web asks for the new CA: planned, not refused.
    let plan = cairn(d, &["plan", "--replace", "ca.web"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(plan.stdout.matches("--replace ca.web: a new CA web replaces the current one").count(), 2, "{}", plan.stdout);

    // The state dir restored: all is in order again.
    restore_state_dir(d);
    assert_eq!(cairn(d, &["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn lab_a_lost_state_dir_refuses_to_reissue() {
    let Some(lab) = lab::Lab::up_or_skip("lost-state", 1) else { return };
    let dir = lab.dir();
    std::fs::write(dir.join("cairn.toml"), lab_spec()).unwrap();
    let node = lab.info.nodes[0].name.clone();
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);
    let serial = || lab.ssh_ok(&node, &["openssl", "x509", "-noout", "-serial", "-in", "/etc/web/server.pem"]);
    let before = serial();
    lose_state_dir(dir);
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(apply.stderr.contains("CA web is not in the state dir"), "{}", apply.stderr);
    assert!(apply.stderr.contains(&format!("but {node} carries certificates from a CA of that name")), "{}", apply.stderr);
    assert_eq!(serial(), before, "the certificate was reissued");
    restore_state_dir(dir);
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn lab_destroy_removes_what_a_certificate_made() {
    let Some(lab) = lab::Lab::up_or_skip("destroy-pki", 1) else { return };
    let dir = lab.dir();
    std::fs::write(dir.join("cairn.toml"), format!("include = [\"lab.toml\"]\n{}", pki("/srv/made/pki"))).unwrap();
    let node = lab.info.nodes[0].name.clone();
    let exists = |p: &str| lab.ssh(&node, &["test", "-e", p]).status.success();
    assert!(!exists("/srv/made"));

    let plan = cairn(dir, &["plan"]);
    assert!(plan.stdout.contains("folders: (none) → /srv/made, /srv/made/pki"), "{}", plan.stdout);
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);
    assert!(exists("/srv/made/pki/ca.pem"));
    let destroy = cairn(dir, &["destroy", "--auto-approve"]);
    assert_eq!(destroy.code, 0, "{}", destroy.all());
    assert!(
        destroy.stdout.contains(
            "delete /srv/made/pki/server.pem, /srv/made/pki/server-key.pem, /srv/made/pki/ca.pem; \
             delete the folders cairn made: /srv/made/pki, /srv/made"
        ),
        "{}",
        destroy.stdout
    );
    assert!(!exists("/srv/made"), "destroy left what the certificate made");
    assert!(exists("/srv"), "a folder cairn did not make is not touched");

    // A folder that holds something else is kept, and the plan says why.
    assert_eq!(cairn(dir, &["apply", "--auto-approve"]).code, 0);
    lab.ssh_ok(&node, &["sh", "-c", "echo mine > /srv/made/notes.txt"]);
    let destroy = cairn(dir, &["destroy", "--auto-approve"]);
    assert_eq!(destroy.code, 0, "{}", destroy.all());
    assert!(destroy.stdout.contains("keep /srv/made: it holds notes.txt"), "{}", destroy.stdout);
    assert!(!exists("/srv/made/pki"));
    assert_eq!(lab.ssh_ok(&node, &["cat", "/srv/made/notes.txt"]), "mine");
}

/// Changing a generated CA's key type in the spec plans the same phased rotation as `--replace`:
/// the plan says why, one apply takes every certificate to a new CA of that type, and the plan
/// after it is empty.
#[test]
fn a_changed_ca_key_type_rotates_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    let d = dir.path();
    std::fs::write(d.join("cairn.toml"), local_spec(&root)).unwrap();
    assert_eq!(cairn(d, &["apply", "--auto-approve"]).code, 0);
    let old_ca = std::fs::read_to_string(d.join(".cairn/pki/web/ca.pem")).unwrap();

    let spec = local_spec(&root).replace("common_name = \"web\"\n", "common_name = \"web\"\nkey = \"ed25519\"\n");
    std::fs::write(d.join("cairn.toml"), spec).unwrap();
    let plan = cairn(d, &["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        plan.stdout.contains("CA rotation web (the spec asks for key type ed25519 (the CA's is ecdsa-p256)): 2 certificates on 2 hosts"),
        "{}",
        plan.all()
    );
    let apply = cairn(d, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(apply.stdout.contains("CA rotation web complete"), "{}", apply.all());
    let new_ca = std::fs::read_to_string(d.join(".cairn/pki/web/ca.pem")).unwrap();
    assert_ne!(new_ca, old_ca);
    for host in ["alpha", "beta"] {
        assert_eq!(std::fs::read_to_string(root.join(host).join("pki/ca.pem")).unwrap(), new_ca, "{host} trusts the new CA alone");
    }
    let json = cairn(d, &["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(json.code, 0, "{}", json.all());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["rotations"], serde_json::json!([]));
    let key = v["changes"].as_array().unwrap().iter().find(|c| c["resource"] == "cert.server").unwrap()["reason"].clone();
    assert!(key.as_str().unwrap().contains("issued by CA web"), "{key}");
}
