//! The `binary` kind end to end: spec errors (exact text), the real `cairn` binary against
//! `transport = "local"` hosts with the archive served by a local HTTP server on 127.0.0.1
//! (downloaded once, cached, pushed only where needed), and on lab hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_docs)]

#[path = "common/run.rs"]
mod run;
use run::cairn;

#[path = "common/lab.rs"]
mod lab;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn::spec::load_str;
use sha2::{Digest, Sha256};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

// ---------- spec errors ----------

const HOSTS: &str = r#"
[hosts.node1]
address = "192.0.2.11"
labels = { role = "etcd" }
"#;

const SUM: &str = "3f2a000000000000000000000000000000000000000000000000000000009c1d";

fn errors(body: &str) -> String {
    let text = format!("{HOSTS}\n{body}");
    match load_str(Path::new("cairn.toml"), &text) {
        Ok(_) => panic!("expected the spec to be rejected:\n{text}"),
        Err(e) => e.render(),
    }
}

#[test]
fn spec_missing_sha256() {
    insta::assert_snapshot!(errors(
        "[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nextract = { \"etcd\" = \"/usr/local/bin/etcd\" }\n"
    ));
}

#[test]
fn spec_sha256_not_64_hex() {
    insta::assert_snapshot!(errors(&format!(
        "[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nsha256 = \"3f2a9c1d\"\npath = \"/usr/local/bin/etcd\"\n\n\
         [binary.tool]\nurl = \"https://example.com/tool\"\nsha256 = \"{}\"\npath = \"/usr/local/bin/tool\"\n",
        "z".repeat(64)
    )));
}

#[test]
fn spec_unsupported_url_scheme() {
    insta::assert_snapshot!(errors(&format!(
        "[binary.etcd]\nurl = \"ftp://example.com/etcd.tar.gz\"\nsha256 = \"{SUM}\"\npath = \"/usr/local/bin/etcd\"\n"
    )));
}

#[test]
fn spec_relative_extract_destination() {
    insta::assert_snapshot!(errors(&format!(
        "[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nsha256 = \"{SUM}\"\n\
         extract = {{ \"etcd\" = \"usr/local/bin/etcd\", \"../etcdctl\" = \"/usr/local/bin/etcdctl\" }}\n"
    )));
}

#[test]
fn spec_extract_together_with_path() {
    insta::assert_snapshot!(errors(&format!(
        "[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nsha256 = \"{SUM}\"\n\
         extract = {{ \"etcd\" = \"/usr/local/bin/etcd\" }}\npath = \"/usr/local/bin/etcd\"\n"
    )));
}

#[test]
fn spec_nothing_to_install() {
    insta::assert_snapshot!(errors(&format!("[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nsha256 = \"{SUM}\"\n")));
}

#[test]
fn every_destination_is_a_managed_path() {
    // A dir managing /usr/local/bin comes first; a file at a destination clashes.
    let text = format!(
        "{HOSTS}\n[dir.bin]\npath = \"/usr/local/bin\"\n\n[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nsha256 = \"{SUM}\"\n\
         extract = {{ \"etcd\" = \"/usr/local/bin/etcd\", \"etcdctl\" = \"/usr/local/bin/etcdctl\" }}\n"
    );
    let spec = load_str(Path::new("cairn.toml"), &text).unwrap_or_else(|e| panic!("{}", e.render()));
    let g = cairn::graph::Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)));
    assert_eq!(g.instances[1].desired.paths(), vec!["/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]);
    assert!(g.deps[1].contains(&0), "binary.etcd must wait for dir.bin");

    let clash = format!("{text}\n[file.x]\npath = \"/usr/local/bin/etcdctl\"\ncontent = \"x\"\n");
    let spec = load_str(Path::new("cairn.toml"), &clash).unwrap();
    let err = cairn::graph::Graph::build(&spec).map(|_| ()).unwrap_err().render(&spec.sources);
    assert!(err.contains("file.x and binary.etcd both manage /usr/local/bin/etcdctl on node1"), "{err}");
}

#[test]
fn two_members_at_one_destination_are_refused() {
    let text = format!(
        "{HOSTS}\n[binary.etcd]\nurl = \"https://example.com/etcd.tar.gz\"\nsha256 = \"{SUM}\"\n\
         extract = {{ \"etcd\" = \"/usr/local/bin/etcd\", \"bin/etcd\" = \"/usr/local/bin/etcd\" }}\n"
    );
    let spec = load_str(Path::new("cairn.toml"), &text).unwrap_or_else(|e| panic!("{}", e.render()));
    let err = cairn::graph::Graph::build(&spec).map(|_| ()).unwrap_err().render(&spec.sources);
    assert!(err.contains("two members of `extract` are installed at /usr/local/bin/etcd"), "{err}");
}

// ---------- the real binary against local hosts ----------

/// Serves `body` for any GET on 127.0.0.1 (never anywhere else), counting requests.
fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    serve_over("http", body, Some, |_| {})
}

/// Serves `body` to every connection on 127.0.0.1 that sends a whole request, counting those:
/// `open` makes the stream to talk over from the socket (plain, or TLS), `finish` ends it.
fn serve_over<S: Read + Write>(
    scheme: &str,
    body: Vec<u8>,
    open: impl Fn(std::net::TcpStream) -> Option<S> + Send + 'static,
    finish: impl Fn(&mut S) + Send + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            let Some(mut stream) = open(sock) else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            if !req.windows(4).any(|w| w == b"\r\n\r\n") {
                continue; // no request: e.g. the client refused the TLS certificate
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            finish(&mut stream);
        }
    });
    (format!("{scheme}://{addr}"), hits)
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

const ETCD: &[u8] = b"#!/bin/sh\necho 'etcd Version: 3.5.22'\necho 'Git SHA: abc'\n";
const ETCDCTL: &[u8] = b"#!/bin/sh\necho 'etcdctl version: 3.5.22'\n";

fn local_spec(root: &Path, url: &str, sha: &str) -> String {
    format!(
        r#"
[vars]
root = "{root}"

[hosts.alpha]
transport = "local"

[hosts.beta]
transport = "local"

[dir.bin]
path = "{{{{ vars.root }}}}/{{{{ host.name }}}}/bin"

[binary.etcd]
url = "{url}"
sha256 = "{sha}"
extract = {{ "etcd" = "{{{{ vars.root }}}}/{{{{ host.name }}}}/bin/etcd", "etcdctl" = "{{{{ vars.root }}}}/{{{{ host.name }}}}/bin/etcdctl" }}
mode = "0755"
version_command = ["{{{{ vars.root }}}}/{{{{ host.name }}}}/bin/etcd", "--version"]
"#,
        root = root.display()
    )
}

#[test]
fn local_hosts_download_once_push_where_needed_and_plan_after_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    let archive = tar_gz(&[("etcd-v3.5.22-linux-amd64/etcd", ETCD), ("etcd-v3.5.22-linux-amd64/etcdctl", ETCDCTL)]);
    let sum = sha256_hex(&archive);
    let (base, hits) = serve(archive);
    let url = format!("{base}/etcd-v3.5.22-linux-amd64.tar.gz");
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root, &url, &sum)).unwrap();

    assert_eq!(cairn(dir.path(), &["validate"]).code, 0);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "validate must not download");

    let plan = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("Plan: 4 to create, 0 to change, 0 to delete."), "{}", plan.stdout);
    assert!(plan.stderr.contains(&format!("downloading {url}")), "{}", plan.stderr);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "two hosts, one download");

    let apply = cairn(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(apply.stdout.contains("Apply complete: 4 changed"), "{}", apply.stdout);
    for host in ["alpha", "beta"] {
        for (name, bytes) in [("etcd", ETCD), ("etcdctl", ETCDCTL)] {
            let p = root.join(host).join("bin").join(name);
            assert_eq!(sha256_hex(&std::fs::read(&p).unwrap()), sha256_hex(bytes));
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o755);
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the archive is cached by its sha256");

    let again = cairn(dir.path(), &["plan", "--detailed-exitcode", "--verbose"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("No changes. 4 resource instances on 2 hosts match the spec."), "{}", again.stdout);
    assert!(again.stdout.contains("sha256 matches"), "{}", again.stdout);

    // Drift: one file on one host edited by hand.
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let (alpha_etcd, beta_etcd, beta_ctl) = (root.join("alpha/bin/etcd"), root.join("beta/bin/etcd"), root.join("beta/bin/etcdctl"));
    let before = [inode(&alpha_etcd), inode(&beta_etcd), inode(&beta_ctl)];
    std::fs::write(root.join("alpha/bin/etcdctl"), b"#!/bin/sh\necho hacked\n").unwrap();
    std::fs::write(&alpha_etcd, b"#!/bin/sh\necho 'etcd Version: 3.5.21'\n").unwrap();
    let before_alpha_etcd = inode(&alpha_etcd);
    let drift = cairn(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(drift.code, 2);
    insta::assert_snapshot!(drift.stdout.replace(&root.display().to_string(), "[ROOT]"));

    let repair = cairn(dir.path(), &["apply", "--auto-approve", "--verbose"]);
    assert_eq!(repair.code, 0, "{}{}", repair.stdout, repair.stderr);
    assert!(repair.stdout.contains("Apply complete: 1 changed, 3 unchanged"), "{}", repair.stdout);
    assert_ne!(inode(&alpha_etcd), before_alpha_etcd, "alpha's etcd was replaced");
    assert_eq!([inode(&beta_etcd), inode(&beta_ctl)], [before[1], before[2]], "beta got nothing");
    // beta: one probe for the plan; alpha: the probe and one batched write carrying both
    // files (its wave acts on the plan's read, moments old).
    assert!(repair.stderr.contains("beta: 1 connection(s), 1 remote command(s)"), "{}", repair.stderr);
    assert!(repair.stderr.contains("alpha: 1 connection(s), 2 remote command(s)"), "{}", repair.stderr);
    assert_eq!(cairn(dir.path(), &["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn sha_mismatch_fails_the_plan_naming_both_sums() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    std::fs::write(dir.path().join("etcd.tar.gz"), tar_gz(&[("etcd", ETCD), ("etcdctl", ETCDCTL)])).unwrap();
    let actual = sha256_hex(&std::fs::read(dir.path().join("etcd.tar.gz")).unwrap());
    let wrong = "0".repeat(64);
    let url = format!("file://{}/etcd.tar.gz", dir.path().display());
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root, &url, &wrong)).unwrap();
    let plan = cairn(dir.path(), &["plan"]);
    assert_eq!(plan.code, 1, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!("sha256 mismatch for {url}: the spec expects {wrong}, the downloaded file has {actual}")),
        "{}",
        plan.stdout
    );
    assert!(!dir.path().join(".cairn/cache/sha256").join(&wrong).exists());
    assert!(!dir.path().join(".cairn/cache/sha256").join(&actual).exists());
}

/// A CA and a server certificate for 127.0.0.1 (PEM), made for one test run.
fn test_mirror_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "cairn test mirror CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    (ca_pem, leaf.pem(), key.serialize_pem())
}

/// Serves `body` over TLS on 127.0.0.1 with the given certificate, counting requests.
fn serve_https(body: Vec<u8>, cert_pem: &str, key_pem: &str) -> (String, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    serve_over(
        "https",
        body,
        move |sock| rustls::ServerConnection::new(Arc::clone(&config)).ok().map(|conn| rustls::StreamOwned::new(conn, sock)),
        |tls| {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        },
    )
}

#[test]
fn https_download_verifies_the_server_against_the_trusted_roots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    let archive = tar_gz(&[("etcd-v3.5.22-linux-amd64/etcd", ETCD), ("etcd-v3.5.22-linux-amd64/etcdctl", ETCDCTL)]);
    let sum = sha256_hex(&archive);
    let (ca_pem, cert_pem, key_pem) = test_mirror_pki();
    let (base, hits) = serve_https(archive, &cert_pem, &key_pem);
    let url = format!("{base}/etcd-v3.5.22-linux-amd64.tar.gz");
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root, &url, &sum)).unwrap();

    // The mirror's CA is not trusted: the handshake fails, nothing is downloaded or cached.
    let untrusted = cairn(dir.path(), &["plan"]);
    assert_eq!(untrusted.code, 1, "{}", untrusted.all());
    assert!(untrusted.stdout.contains(&format!("GET {url}")), "{}", untrusted.all());
    assert!(untrusted.stdout.contains("invalid peer certificate: UnknownIssuer"), "{}", untrusted.all());
    assert!(untrusted.stdout.contains("trust it with SSL_CERT_FILE=/path/to/ca.pem"), "{}", untrusted.all());
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Trusted through SSL_CERT_FILE (how a private mirror's CA is added): downloaded over TLS,
    // verified, unpacked and installed.
    let ca_file = dir.path().join("mirror-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let trust = [("SSL_CERT_FILE", ca_file.to_str().unwrap())];
    let apply = run::cairn_env(dir.path(), &["apply", "--auto-approve"], &trust);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(apply.stderr.contains(&format!("downloading {url}")), "{}", apply.all());
    assert!(apply.stdout.contains("Apply complete: 4 changed"), "{}", apply.stdout);
    for host in ["alpha", "beta"] {
        assert_eq!(std::fs::read(root.join(host).join("bin/etcd")).unwrap(), ETCD);
        assert_eq!(std::fs::read(root.join(host).join("bin/etcdctl")).unwrap(), ETCDCTL);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(run::cairn_env(dir.path(), &["plan", "--detailed-exitcode"], &trust).code, 0);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the second plan uses the cache");
}

/// Serves `body` over plain http slowly (`chunks` pieces, `pause` apart), so a progress bar has
/// time to draw.
fn serve_slowly(body: Vec<u8>, chunks: usize, pause: std::time::Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = sock.write_all(head.as_bytes());
            for piece in body.chunks(body.len().div_ceil(chunks)) {
                let _ = sock.write_all(piece);
                std::thread::sleep(pause);
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_download_draws_a_byte_progress_bar_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed to give cairn a terminal");
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hosts");
    let archive = tar_gz(&[("etcd", &padded_script("etcd Version: 3.5.22", 4 << 20)), ("etcdctl", ETCDCTL)]);
    let sum = sha256_hex(&archive);
    let url = format!("{}/etcd-v3.5.22-linux-amd64.tar.gz", serve_slowly(archive, 20, std::time::Duration::from_millis(100)));
    std::fs::write(dir.path().join("cairn.toml"), local_spec(&root, &url, &sum)).unwrap();
    // `script` runs cairn on a pseudo-terminal and records everything it drew.
    let typescript = dir.path().join("typescript");
    let command = format!("{} plan", env!("CARGO_BIN_EXE_cairn"));
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &command])
        .arg(&typescript)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let drawn = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert_eq!(out.status.code(), Some(0), "{drawn}");
    assert!(!drawn.contains("PRIVATE KEY"));
    // The bar names the file and counts bytes up to the total the server announced.
    assert!(drawn.contains("etcd-v3.5.22-linux-amd64.tar.gz ["), "{drawn}");
    let total = drawn.lines().flat_map(|l| l.split('\r')).filter(|l| l.contains("etcd-v3.5.22-linux-amd64.tar.gz [")).count();
    assert!(total >= 3, "the bar was redrawn as bytes arrived ({total} frames):\n{drawn}");
    assert!(drawn.contains(" MiB/"), "{drawn}");
    // On a terminal the plain "downloading …" log line is replaced by the bar.
    assert!(!drawn.contains(&format!("downloading {url}")), "{drawn}");
    assert!(drawn.contains("Plan: 4 to create"), "{drawn}");
}

// ---------- lab hosts ----------

/// Shell-script "binaries" padded with random bytes after `exit 0`, so uploads are real work.
fn padded_script(first_line: &str, pad: usize) -> Vec<u8> {
    let mut v = format!("#!/bin/sh\necho '{first_line}'\nexit 0\n").into_bytes();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ pad as u64;
    for _ in 0..pad {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x & 0xff) as u8);
    }
    v
}

fn lab_spec(url: &str, sha: &str) -> String {
    format!(
        r#"include = ["lab.toml"]

[binary.etcd]
url = "{url}"
sha256 = "{sha}"
extract = {{ "etcd" = "/usr/local/bin/etcd", "etcdctl" = "/usr/local/bin/etcdctl" }}
mode = "0755"
version_command = ["/usr/local/bin/etcd", "--version"]
"#
    )
}

#[test]
fn lab_push_two_members_to_three_hosts_then_repair_one() {
    let lab = lab::Lab::up("kinds_binary", 3);
    let dir = lab.dir();
    let etcd = padded_script("etcd Version: 3.5.22", 4 << 20);
    let etcdctl = padded_script("etcdctl version: 3.5.22", 3 << 20);
    let archive = tar_gz(&[("etcd-v3.5.22-linux-amd64/etcd", &etcd), ("etcd-v3.5.22-linux-amd64/etcdctl", &etcdctl)]);
    std::fs::write(dir.join("etcd-v3.5.22-linux-amd64.tar.gz"), &archive).unwrap();
    let url = format!("file://{}/etcd-v3.5.22-linux-amd64.tar.gz", dir.display());
    std::fs::write(dir.join("cairn.toml"), lab_spec(&url, &sha256_hex(&archive))).unwrap();

    let apply = cairn(dir, &["apply", "--auto-approve", "--verbose"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(apply.stdout.contains("Apply complete: 3 changed"), "{}", apply.stdout);
    for node in ["node1", "node2", "node3"] {
        // The plan's probe, one batched write carrying both files (7 MB, streamed from the
        // cache), the manifest.
        assert_eq!(apply.commands(node), 3, "both binaries go in one write:\n{}", apply.stderr);
    }
    let want = format!("{}  /usr/local/bin/etcd\n{}  /usr/local/bin/etcdctl", sha256_hex(&etcd), sha256_hex(&etcdctl));
    for node in ["node1", "node2", "node3"] {
        assert_eq!(lab.ssh_ok(node, &["sha256sum", "/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]), want);
        assert_eq!(lab.ssh_ok(node, &["stat", "-c", "%a %U", "/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]), "755 root\n755 root");
        assert_eq!(lab.ssh_ok(node, &["/usr/local/bin/etcd", "--version"]), "etcd Version: 3.5.22");
    }

    let again = cairn(dir, &["plan", "--detailed-exitcode", "--verbose"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("No changes. 3 resource instances on 3 hosts match the spec."), "{}", again.stdout);
    for node in ["node1", "node2", "node3"] {
        assert_eq!(again.commands(node), 1, "a no-change plan is one command per host:\n{}", again.stderr);
    }

    // Drift by hand on node2 only.
    lab.ssh_ok("node2", &["sh", "-c", "echo tampered >> /usr/local/bin/etcdctl"]);
    let drift = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}{}", drift.stdout, drift.stderr);
    assert!(drift.stdout.contains("~ binary.etcd"), "{}", drift.stdout);
    assert!(drift.stdout.contains("sha256 differs on /usr/local/bin/etcdctl"), "{}", drift.stdout);
    assert!(drift.stdout.contains("version: etcd Version: 3.5.22 → from etcd-v3.5.22-linux-amd64.tar.gz"), "{}", drift.stdout);
    assert!(drift.stdout.contains("node2 (") && !drift.stdout.contains("node1 (") && !drift.stdout.contains("node3 ("), "{}", drift.stdout);
    assert!(drift.stdout.contains("Plan: 0 to create, 1 to change, 0 to delete."), "{}", drift.stdout);

    let repair = cairn(dir, &["apply", "--auto-approve", "--verbose"]);
    assert_eq!(repair.code, 0, "{}{}", repair.stdout, repair.stderr);
    assert!(repair.stdout.contains("Apply complete: 1 changed, 2 unchanged"), "{}", repair.stdout);
    // Every host: the plan's probe (which takes the lock), unlock (no manifest changed). node2
    // also: one upload (etcdctl only); its wave acts on the plan's read, moments old, instead
    // of reading the host again.
    assert_eq!((repair.commands("node1"), repair.commands("node3")), (2, 2), "{}", repair.stderr);
    assert_eq!(repair.commands("node2"), 3, "{}", repair.stderr);
    assert_eq!(lab.ssh_ok("node2", &["sha256sum", "/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]), want);
    let last = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(last.code, 0, "{}{}", last.stdout, last.stderr);
}

/// Pushing a ~50 MB file to 3 lab hosts with cairn, against `scp` of it to one host. Prints both.
#[test]
fn lab_measure_50_mb_to_three_hosts_against_scp_to_one() {
    let lab = lab::Lab::up("kinds_binary_50mb", 3);
    let dir = lab.dir();
    let big = padded_script("big 1.0", 50 << 20);
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let url = format!("file://{}/big.bin", dir.display());
    let spec = format!(
        "include = [\"lab.toml\"]\n\n[binary.big]\nurl = \"{url}\"\nsha256 = \"{}\"\npath = \"/usr/local/bin/big\"\n",
        sha256_hex(&big)
    );
    std::fs::write(dir.join("cairn.toml"), spec).unwrap();

    let t = std::time::Instant::now();
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    let cairn_secs = t.elapsed().as_secs_f64();
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    for node in ["node1", "node2", "node3"] {
        assert_eq!(lab.ssh_ok(node, &["sha256sum", "/usr/local/bin/big"]), format!("{}  /usr/local/bin/big", sha256_hex(&big)));
    }
    let t = std::time::Instant::now();
    let noop = cairn(dir, &["apply", "--auto-approve"]);
    let noop_secs = t.elapsed().as_secs_f64();
    assert_eq!(noop.code, 0);
    // Again with the local cache warm: only the pushes.
    for node in ["node1", "node2", "node3"] {
        lab.ssh_ok(node, &["rm", "/usr/local/bin/big"]);
    }
    let t = std::time::Instant::now();
    let warm = cairn(dir, &["apply", "--auto-approve"]);
    let warm_secs = t.elapsed().as_secs_f64();
    assert_eq!(warm.code, 0, "{}{}", warm.stdout, warm.stderr);

    let info = &lab.info;
    let node1 = info.nodes[0].address.to_string();
    let t = std::time::Instant::now();
    let scp = Command::new("scp")
        .args(["-q", "-i"])
        .arg(&info.key_path)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", info.known_hosts_path.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(dir.join("big.bin"))
        .arg(format!("root@{node1}:/tmp/big.scp"))
        .status()
        .unwrap();
    let scp_secs = t.elapsed().as_secs_f64();
    assert!(scp.success());
    eprintln!(
        "MEASURE {} MB: cairn apply to 3 hosts {cairn_secs:.2} s (cache warm: {warm_secs:.2} s; no-change apply: {noop_secs:.2} s); scp to 1 host {scp_secs:.2} s",
        big.len() >> 20
    );
}
