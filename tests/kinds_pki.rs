//! The `ca` and `cert` kinds end to end: spec errors as exact text, then the real binary against
//! local hosts (no lab needed) and against lab hosts over SSH: the CA is created once, every host
//! gets a certificate that `openssl verify` accepts with the right SANs and a 0600 key, plan after
//! apply is empty, a new SAN reissues exactly the certificate that lacks it, a CA whose key is
//! sealed with age signs only with its identity and plans without it, and no output ever
//! contains a private key.
#![allow(clippy::panic, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/run.rs"]
mod run;
use run::{cairn, cairn_env};

#[path = "common/lab.rs"]
mod lab;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cairn::spec::load_str;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- spec errors ----

const HOSTS: &str = "[hosts.node1]\naddress = \"192.0.2.11\"\nlabels = { role = \"etcd\" }\n";

fn errors(text: &str) -> String {
    match load_str(Path::new("cairn.toml"), text) {
        Ok(_) => panic!("expected the spec to be rejected:\n{text}"),
        Err(e) => e.render(),
    }
}

#[test]
fn pki_spec_errors_are_all_reported_with_positions() {
    insta::assert_snapshot!(errors(&format!(
        r#"{HOSTS}
[ca.etcd]
common_name = "etcd"
key = "rsa-1024"
validity = "100 years"
hosts = ["*"]

[cert.server]
ca = "ca.etcdd"
common_name = "{{{{ host.name }}}}"
sans = ["127.0.0.1", "not a name", "{{{{ host.address }}}}", "10.0.0.256"]
usages = ["server", "peer"]
validity = "10y"
renew_before = "30days"
cert_path = "etc/etcd/server.pem"
key_path = "/etc/etcd/server-key.pem"
ca_path = "ca.pem"
"#
    )));
}

#[test]
fn pki_spec_errors_ca_reference_and_import() {
    insta::assert_snapshot!(errors(&format!(
        r#"{HOSTS}
[ca.etcd]
common_name = "etcd"
cert_file = "no-such-ca.pem"

[cert.server]
ca = "etcd"
common_name = "x"
cert_path = "/etc/x.pem"
key_path = "/etc/x-key.pem"
renew_before = "1y"
validity = "1y"
"#
    )));
}

#[test]
fn a_templated_san_that_renders_badly_is_reported() {
    let spec = format!(
        "{HOSTS}\n[ca.etcd]\ncommon_name = \"etcd\"\n\n[cert.server]\nca = \"ca.etcd\"\ncommon_name = \"x\"\nsans = [\"{{{{ host.name }}}} bad\"]\ncert_path = \"/etc/x.pem\"\nkey_path = \"/etc/x-key.pem\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cairn.toml"), spec).unwrap();
    let v = cairn(dir.path(), &["validate"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stderr.contains("SAN `node1 bad` is neither an IP address nor a DNS name"), "{}", v.stderr);
    assert!(!dir.path().join(".cairn").exists(), "validate must not create the CA");
}

/// A valid age recipient (the age crate's test vector; its identity is public, never use it).
const RECIPIENT: &str = "age1t7rxyev2z3rw82stdlrrepyc39nvn86l5078zqkf5uasdy86jp6svpy7pa";

#[test]
fn age_recipient_errors_are_all_reported_with_positions() {
    insta::assert_snapshot!(errors(&format!(
        r#"age_recipients = ["age1notarecipient"]
{HOSTS}
[ca.etcd]
common_name = "etcd"
age_recipients = ["{RECIPIENT}", "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"]

[ca.web]
common_name = "web"
age_recipients = "{RECIPIENT}"

[ca.ext]
common_name = "ext"
cert_file = "Cargo.toml"
key_file = "Cargo.toml"
age_recipients = ["{RECIPIENT}"]
"#
    )));
}

// ---- local hosts ----

fn local_spec(root: &Path, extra_san: &str) -> String {
    format!(
        r#"
[vars]
root = "{root}"

[hosts.alpha]
transport = "local"
labels = {{ role = "etcd" }}

[hosts.beta]
transport = "local"
labels = {{ role = "etcd" }}

[ca.etcd]
common_name = "etcd"
subject = {{ O = "etcd", OU = "Etcd Security", C = "CN", ST = "Beijing", L = "Beijing" }}
key = "ecdsa-p256"
validity = "100y"

[cert.etcd-server]
hosts = ["role=etcd"]
ca = "ca.etcd"
common_name = "{{{{ host.name }}}}"
sans = ["127.0.0.1", "localhost", "{{{{ host.name }}}}"{extra_san}]
usages = ["server", "client"]
validity = "10y"
renew_before = "30d"
cert_path = "{{{{ vars.root }}}}/{{{{ host.name }}}}/pki/server.pem"
key_path = "{{{{ vars.root }}}}/{{{{ host.name }}}}/pki/server-key.pem"
ca_path = "{{{{ vars.root }}}}/{{{{ host.name }}}}/pki/ca.pem"
owner = "root"
"#,
        root = root.display()
    )
}

#[test]
fn local_hosts_get_verified_certificates_and_no_churn() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root, "")).unwrap();

    assert_eq!(cairn(dir.path(), &["validate"]).code, 0);
    let plan = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("CA etcd will be created; the certificate will be issued by the new CA etcd"), "{}", plan.stdout);
    assert!(!dir.path().join(".cairn").exists(), "plan must not create the CA");

    // Debug logs and the verbose view, too, never show a key (checked by `cairn_env`).
    let apply = cairn_env(dir.path(), &["-v", "apply", "--auto-approve"], &[("CAIRN_LOG", "debug")]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let store = dir.path().join(".cairn/pki/etcd");
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&store.join("ca-key.pem")), 0o600);
    for host in ["alpha", "beta"] {
        let pki = root.join(host).join("pki");
        assert_eq!(mode(&pki.join("server-key.pem")), 0o600);
        assert_eq!(mode(&pki.join("server.pem")), 0o644);
        assert_eq!(std::fs::read(pki.join("ca.pem")).unwrap(), std::fs::read(store.join("ca.pem")).unwrap());
        let ok = openssl(&["verify", "-CAfile", pki.join("ca.pem").to_str().unwrap(), pki.join("server.pem").to_str().unwrap()]);
        assert!(ok.trim_end().ends_with(": OK"), "{ok}");
        let san = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", pki.join("server.pem").to_str().unwrap()]);
        for wanted in ["DNS:localhost".to_string(), format!("DNS:{host}"), "IP Address:127.0.0.1".to_string()] {
            assert!(san.contains(&wanted), "{wanted} missing in {san}");
        }
    }

    for _ in 0..2 {
        let again = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(again.code, 0, "{}", again.all());
        assert_eq!(again.stdout, "No changes. 2 resource instances on 2 hosts match the spec.\n");
    }
    let verbose = cairn_env(dir.path(), &["-v", "plan"], &[("CAIRN_LOG", "debug")]);
    assert!(verbose.stdout.contains("issued by CA etcd, matching its key, SANs and usages"), "{}", verbose.stdout);

    // A new SAN: both certificates say why they are reissued; nothing else changes.
    let before = std::fs::read(root.join("alpha/pki/server.pem")).unwrap();
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root, ", \"etcd.example.org\"")).unwrap();
    let plan = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2);
    assert_eq!(plan.stdout.matches("SAN etcd.example.org missing").count(), 2, "{}", plan.stdout);
    let json = cairn(dir.path(), &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["summary"]["replace"], 2, "{}", json.stdout);
    let apply = cairn(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_ne!(std::fs::read(root.join("alpha/pki/server.pem")).unwrap(), before);
    assert_eq!(cairn(dir.path(), &["plan", "--detailed-exitcode"]).code, 0);

    // A mode drift on the key is fixed in place, without reissuing.
    let cert = std::fs::read(root.join("beta/pki/server.pem")).unwrap();
    std::fs::set_permissions(root.join("beta/pki/server-key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let plan = cairn(dir.path(), &["plan"]);
    assert!(plan.stdout.contains("key mode differs"), "{}", plan.stdout);
    assert_eq!(cairn(dir.path(), &["apply", "--auto-approve"]).code, 0);
    assert_eq!(mode(&root.join("beta/pki/server-key.pem")), 0o600);
    assert_eq!(std::fs::read(root.join("beta/pki/server.pem")).unwrap(), cert);

    // A CA file edited by hand is rewritten, again without reissuing.
    std::fs::write(root.join("beta/pki/ca.pem"), "edited\n").unwrap();
    let plan = cairn(dir.path(), &["plan"]);
    assert!(plan.stdout.contains("CA certificate file differs"), "{}", plan.stdout);
    assert_eq!(cairn(dir.path(), &["apply", "--auto-approve"]).code, 0);
    assert_eq!(std::fs::read(root.join("beta/pki/ca.pem")).unwrap(), std::fs::read(store.join("ca.pem")).unwrap());
    assert_eq!(std::fs::read(root.join("beta/pki/server.pem")).unwrap(), cert);
    assert_eq!(cairn(dir.path(), &["plan", "--detailed-exitcode"]).code, 0);
}

/// A new age identity in `dir/name` (0600, as age-keygen writes it); returns its path and its
/// public key.
fn age_keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    let text = format!("# created by the test\n# public key: {}\n{}\n", id.to_public(), id.to_string().expose_secret());
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, id.to_public().to_string())
}

#[test]
fn an_age_sealed_ca_signs_only_with_its_identity_and_plans_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = age_keygen(keys.path(), "me.key");
    let (other, _) = age_keygen(keys.path(), "other.key");
    let root = d.join("hosts");
    let spec = |extra_san: &str| format!("age_recipients = [\"{recipient}\"]\n{}", local_spec(&root, extra_san));
    std::fs::write(d.join("cairn.toml"), spec("")).unwrap();
    let with_file = [("CAIRN_AGE_IDENTITY_FILE", identity.to_str().unwrap()), ("CAIRN_LOG", "debug")];

    // plan needs no identity; applying does (it signs), and says how to give one.
    let plan = cairn(d, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    let apply = cairn(d, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(apply.stderr.contains("CA etcd: "), "{}", apply.stderr);
    assert!(
        apply.stderr.contains("ca-key.pem.age is encrypted with age and no identity is given: set CAIRN_AGE_IDENTITY_FILE"),
        "{}",
        apply.stderr
    );
    assert!(!d.join(".cairn/pki/etcd").exists(), "no CA is made that cannot be opened again");

    // With the identity (a file), the CA is made sealed and certificates verify.
    let apply = cairn_env(d, &["apply", "--auto-approve"], &with_file);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let store = d.join(".cairn/pki/etcd");
    assert!(!store.join("ca-key.pem").exists());
    assert_eq!(mode(&store.join("ca-key.pem.age")), 0o600);
    let sealed = std::fs::read_to_string(store.join("ca-key.pem.age")).unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{sealed}");
    run::assert_no_secret("the sealed CA key", &sealed);
    let pki = root.join("alpha/pki");
    let ok = openssl(&["verify", "-CAfile", pki.join("ca.pem").to_str().unwrap(), pki.join("server.pem").to_str().unwrap()]);
    assert!(ok.trim_end().ends_with(": OK"), "{ok}");

    // A second plan, with no identity anywhere, is empty.
    let again = cairn(d, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.stdout, "No changes. 2 resource instances on 2 hosts match the spec.\n");

    // A reissue with the wrong identity is refused, naming the file and where the identity came from.
    std::fs::write(d.join("cairn.toml"), spec(", \"etcd.example.org\"")).unwrap();
    let wrong = cairn_env(d, &["apply", "--auto-approve"], &[("CAIRN_AGE_IDENTITY_FILE", other.to_str().unwrap())]);
    assert_eq!(wrong.code, 1, "{}", wrong.all());
    assert!(
        wrong.stderr.contains("ca-key.pem.age cannot be decrypted with the identities from $CAIRN_AGE_IDENTITY_FILE"),
        "{}",
        wrong.stderr
    );
    // The identity itself in the environment works too; the old certificates are replaced.
    let text = std::fs::read_to_string(&identity).unwrap();
    let apply = cairn_env(d, &["apply", "--auto-approve"], &[("CAIRN_AGE_IDENTITY", text.as_str()), ("CAIRN_LOG", "debug")]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let san = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", pki.join("server.pem").to_str().unwrap()]);
    assert!(san.contains("DNS:etcd.example.org"), "{san}");
    assert_eq!(cairn(d, &["plan", "--detailed-exitcode"]).code, 0);
}

// ---- lab hosts ----

fn lab_spec(extra: &str) -> String {
    format!(
        r#"include = ["lab.toml"]

[vars]
vip = "10.0.0.244"

[ca.etcd]
common_name = "etcd"
subject = {{ O = "etcd", OU = "Etcd Security", C = "CN", ST = "Beijing", L = "Beijing" }}
key = "rsa-2048"
validity = "100y"

[cert.etcd-server]
ca = "ca.etcd"
common_name = "{{{{ host.name }}}}"
sans = ["127.0.0.1", "localhost", "{{{{ host.name }}}}", "{{{{ host.address }}}}"{extra}]
usages = ["server", "client"]
validity = "10y"
renew_before = "30d"
cert_path = "/etc/etcd/pki/server.pem"
key_path = "/etc/etcd/pki/server-key.pem"
ca_path = "/etc/etcd/pki/ca.pem"
owner = "root"
"#
    )
}

#[test]
fn lab_hosts_get_a_pki_that_openssl_accepts() {
    let Some(lab) = lab::Lab::up_or_skip("kinds-pki", 3) else { return };
    let dir = lab.dir();
    std::fs::write(dir.join("cairn.toml"), lab_spec("")).unwrap();

    let plan = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert_eq!(plan.stdout.matches("will be issued by the new CA etcd").count(), 3, "{}", plan.stdout);

    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(mode(&dir.join(".cairn/pki/etcd/ca-key.pem")), 0o600);

    for node in &lab.info.nodes {
        let n = node.name.as_str();
        let verify = lab.ssh_ok(n, &["openssl", "verify", "-CAfile", "/etc/etcd/pki/ca.pem", "/etc/etcd/pki/server.pem"]);
        assert_eq!(verify, "/etc/etcd/pki/server.pem: OK");
        let san = lab.ssh_ok(n, &["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", "/etc/etcd/pki/server.pem"]);
        for wanted in
            ["DNS:localhost".to_string(), format!("DNS:{n}"), format!("IP Address:{}", node.address), "IP Address:127.0.0.1".to_string()]
        {
            assert!(san.contains(&wanted), "{wanted} missing in {san}");
        }
        let text = lab.ssh_ok(n, &["openssl", "x509", "-noout", "-text", "-in", "/etc/etcd/pki/server.pem"]);
        for wanted in [
            "CA:FALSE",
            "Digital Signature, Key Encipherment",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "Subject Key Identifier",
            "Authority Key Identifier",
            "Issuer: C = CN, ST = Beijing, L = Beijing, O = etcd, OU = Etcd Security, CN = etcd",
        ] {
            assert!(text.contains(wanted), "{wanted} missing in\n{text}");
        }
        assert_eq!(lab.ssh_ok(n, &["stat", "-c", "%a %U", "/etc/etcd/pki/server-key.pem"]), "600 root");
        // The key on the host is the certificate's key.
        let a = lab.ssh_ok(n, &["sh", "-c", "openssl pkey -in /etc/etcd/pki/server-key.pem -pubout | sha256sum"]);
        let b = lab.ssh_ok(n, &["sh", "-c", "openssl x509 -in /etc/etcd/pki/server.pem -pubkey -noout | sha256sum"]);
        assert_eq!(a, b);
    }
    let ca_text = lab.ssh_ok("node1", &["openssl", "x509", "-noout", "-text", "-in", "/etc/etcd/pki/ca.pem"]);
    assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");

    // No churn: plan twice.
    for _ in 0..2 {
        let again = cairn(dir, &["plan", "--detailed-exitcode"]);
        assert_eq!(again.code, 0, "{}", again.all());
        assert_eq!(again.stdout, "No changes. 3 resource instances on 3 hosts match the spec.\n");
    }
    // A no-change plan costs one remote command per host, the probe (which checked the keys).
    let verbose = cairn(dir, &["-v", "plan"]);
    for node in ["node1", "node2", "node3"] {
        assert!(verbose.stderr.contains(&format!("{node}: 1 connection(s), 1 remote command(s)")), "{}", verbose.stderr);
    }
    assert!(!verbose.stderr.contains("DEBUG"), "-v shows no debug logs (CAIRN_LOG does):\n{}", verbose.stderr);

    // node2 gets one more SAN: only its certificate is reissued, and the plan says why.
    let serial = |n: &str| lab.ssh_ok(n, &["openssl", "x509", "-noout", "-serial", "-in", "/etc/etcd/pki/server.pem"]);
    let before: Vec<String> = ["node1", "node2", "node3"].iter().map(|n| serial(n)).collect();
    std::fs::write(dir.join("cairn.toml"), lab_spec(", \"{{ vars.vip if host.name == 'node2' else host.address }}\"")).unwrap();
    let plan = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("SAN 10.0.0.244 missing"), "{}", plan.stdout);
    assert!(plan.stdout.contains("Plan: 0 to create, 0 to change, 0 to delete, 1 to replace."), "{}", plan.stdout);
    let json = cairn(dir, &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let changed: Vec<&str> =
        v["changes"].as_array().unwrap().iter().filter(|c| c["action"] != "no-op").map(|c| c["host"].as_str().unwrap()).collect();
    assert_eq!(changed, ["node2"], "{}", json.stdout);
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let after: Vec<String> = ["node1", "node2", "node3"].iter().map(|n| serial(n)).collect();
    assert_eq!((before[0] == after[0], before[1] == after[1], before[2] == after[2]), (true, false, true));
    let san = lab.ssh_ok("node2", &["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", "/etc/etcd/pki/server.pem"]);
    assert!(san.contains("IP Address:10.0.0.244"), "{san}");
    assert_eq!(
        lab.ssh_ok("node2", &["openssl", "verify", "-CAfile", "/etc/etcd/pki/ca.pem", "/etc/etcd/pki/server.pem"]),
        "/etc/etcd/pki/server.pem: OK"
    );
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);

    // A second CA, its key sealed with age: issued with the identity, planned without it.
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = age_keygen(keys.path(), "me.key");
    let sealed = format!(
        r#"
[ca.clients]
common_name = "clients"
age_recipients = ["{recipient}"]

[cert.client]
hosts = ["node1"]
ca = "ca.clients"
common_name = "client"
usages = ["client"]
cert_path = "/etc/clients/client.pem"
key_path = "/etc/clients/client-key.pem"
ca_path = "/etc/clients/ca.pem"
"#
    );
    let base = lab_spec(", \"{{ vars.vip if host.name == 'node2' else host.address }}\"");
    std::fs::write(dir.join("cairn.toml"), format!("{base}{sealed}")).unwrap();
    let apply =
        cairn_env(dir, &["apply", "--auto-approve"], &[("CAIRN_AGE_IDENTITY_FILE", identity.to_str().unwrap()), ("CAIRN_LOG", "debug")]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(dir.join(".cairn/pki/clients/ca-key.pem.age").exists() && !dir.join(".cairn/pki/clients/ca-key.pem").exists());
    assert_eq!(
        lab.ssh_ok("node1", &["openssl", "verify", "-CAfile", "/etc/clients/ca.pem", "-purpose", "sslclient", "/etc/clients/client.pem"]),
        "/etc/clients/client.pem: OK"
    );
    let again = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.stdout, "No changes. 4 resource instances on 3 hosts match the spec.\n");
}

#[test]
fn a_ca_made_by_openssl_can_be_imported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, key) = (d.join("ca.pem"), d.join("ca-key.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/O=ext/CN=ext-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        ca.to_str().unwrap(),
    ]);
    let root = d.join("host");
    let spec = format!(
        r#"
[hosts.alpha]
transport = "local"

[ca.ext]
common_name = "ignored for an imported CA"
cert_file = "ca.pem"
key_file = "ca-key.pem"

[cert.client]
ca = "ca.ext"
common_name = "client"
usages = ["client"]
validity = "20d"
renew_before = "2d"
cert_path = "{root}/client.pem"
key_path = "{root}/client-key.pem"
"#,
        root = root.display()
    );
    std::fs::write(d.join("cairn.toml"), spec).unwrap();
    let apply = cairn(d, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let ok = openssl(&["verify", "-CAfile", ca.to_str().unwrap(), "-purpose", "sslclient", root.join("client.pem").to_str().unwrap()]);
    assert!(ok.trim_end().ends_with(": OK"), "{ok}");
    assert!(!d.join(".cairn").exists(), "an imported CA is used where it is");
    assert_eq!(cairn(d, &["plan", "--detailed-exitcode"]).code, 0);

    // Another key beside the certificate is refused before any host is touched.
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", key.to_str().unwrap()]);
    let plan = cairn(d, &["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(plan.stderr.contains("CA ext cannot be used: the CA key does not belong to the CA certificate"), "{}", plan.stderr);
}
