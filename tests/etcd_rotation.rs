//! A CA rotation of an etcd cluster on three lab hosts, under a writer (a key put every 50 ms
//! with a 5 s timeout to all endpoints) from the first phase to the last: `--replace
//! etcd.ca.etcd` plans three phases; the apply is killed (SIGKILL) once phase 1 is done on every
//! host and recorded; the next plan stands at phase 2 and the next apply finishes the rotation.
//! Then every certificate on every member verifies against the new CA alone, the CA files hold
//! the new CA alone, put and get with the new admin certificate work, a client certificate of
//! the old CA is refused, the old CA is archived in the state dir, and the plan is empty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/run.rs"]
mod run;

use std::time::{Duration, Instant};

use etcd::{Writer, etcdctl, etcdctl_ok};
use run::cairn_env;

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// The module instance's CA `etcd` is the CA `etcd.etcd`: its store in the state dir.
const STORE: &str = ".cairn/pki/etcd.etcd";

fn cairn(dir: &std::path::Path, args: &[&str]) -> run::Run {
    cairn_env(dir, args, &[("CAIRN_MODULE_PATH", &etcd::module_path())])
}

/// The phase the rotation recorded in the state dir, if any.
fn recorded_phase(dir: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{STORE}.next/rotation-phase"))).ok().map(|p| p.trim().to_string())
}

#[test]
fn etcd_ca_rotation_in_three_phases_with_zero_failed_writes() {
    etcd::mirror();
    let lab = lab::Lab::up("etcd-rotation", 3);
    let dir = lab.dir();
    etcd::copy_mirror_toml(dir);
    std::fs::write(dir.join("cairn.toml"), etcd::lab_spec("etcd-rotation", "ca_key = \"ecdsa-p256\"\n")).unwrap();
    let run = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let old_ca = std::fs::read_to_string(dir.join(STORE).join("ca.pem")).unwrap();
    // A client of the old CA, kept to show the cluster stops trusting it.
    lab.ssh_ok("node1", &["cp", "/etc/etcd/pki/admin.pem", "/root/old-admin.pem"]);
    lab.ssh_ok("node1", &["cp", "/etc/etcd/pki/admin-key.pem", "/root/old-admin-key.pem"]);

    // The plan shows the three phases; nothing is made yet.
    let plan = cairn(dir, &["plan", "--replace", "etcd.ca.etcd"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    for words in [
        "CA rotation etcd.etcd: 9 certificates on 3 hosts, in 3 phases",
        "1. trust both: every CA file holds the current CA etcd.etcd and a new CA etcd.etcd, made now in the state dir — now: 6 changes",
        "2. reissue: every certificate of CA etcd.etcd is issued again, with a new key, by the new CA — next, in this apply",
        "3. retire: every CA file holds the new CA alone",
        "CA rotation etcd.etcd, phase 1 of 3: the CA file trusts both",
        "snapshot of etcd.cluster.members before the rotation of CA etcd.etcd: verified (snapshot status)",
    ] {
        assert!(plan.stdout.contains(words), "the plan says `{words}`:\n{}", plan.all());
    }
    assert!(!dir.join(format!("{STORE}.next")).exists(), "planning made the new CA");

    // Phase 1 under the writer, then cairn is killed as soon as phase 1 is recorded.
    let writer = Writer::start(&lab, "node1", &etcd::client_urls(&lab, &NODES));
    let started = Instant::now();
    let mut child = run::spawn_env(
        dir,
        &["apply", "--auto-approve", "--replace", "etcd.ca.etcd"],
        &[("CAIRN_MODULE_PATH", &etcd::module_path())],
        false,
    );
    while recorded_phase(dir).as_deref() != Some("reissue") {
        assert!(child.try_wait().unwrap().is_none(), "the apply ended before phase 1 was recorded");
        assert!(started.elapsed() < Duration::from_secs(300), "phase 1 not done within 5 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("PHASE 1 done and cairn killed after {:.1} s", started.elapsed().as_secs_f64());
    for n in NODES {
        let ca_file = lab.ssh_ok(n, &["cat", "/etc/etcd/pki/ca.pem"]);
        assert_eq!(ca_file.matches("BEGIN CERTIFICATE").count(), 2, "{n} trusts both CAs after phase 1:\n{ca_file}");
    }
    // The snapshot taken first: copied to the state dir.
    let snapshots: Vec<String> = std::fs::read_dir(dir.join(".cairn/snapshots/etcd.cluster.members"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(snapshots.iter().any(|s| s.ends_with("-before-rotation-of-etcd.etcd.db")), "{snapshots:?}");
    let unlock = cairn(dir, &["unlock"]);
    assert_eq!(unlock.code, 0, "{}", unlock.all());

    // The next plan stands at phase 2; the next apply (no --replace) finishes the rotation.
    let plan = cairn(dir, &["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        plan.stdout.contains("1. trust both: every CA file holds the current CA etcd.etcd and the new CA etcd.etcd — done"),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains("2. reissue: every certificate of CA etcd.etcd is issued again, with a new key, by the new CA — now"),
        "{}",
        plan.all()
    );
    let run = cairn(dir, &["apply", "--auto-approve"]);
    let written = writer.stop(&lab);
    eprintln!("WRITER (CA rotation): {} writes, {} failed, {:.1} s", written.writes, written.failures, started.elapsed().as_secs_f64());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("CA rotation etcd.etcd: phase 2 of 3 is done on every host; phase 3 of 3 follows"), "{}", run.all());
    assert!(run.stdout.contains("CA rotation etcd.etcd complete"), "{}", run.all());
    assert_eq!(written.failures, 0, "writes failed during the rotation:\n{}\n{}", written.output, written.journals(&lab, &NODES));
    assert!(written.writes >= 20 && written.writes != u32::MAX, "the writer ran: {}", written.output);

    // The new CA alone: in the state dir, on every host, behind every certificate.
    let new_ca = std::fs::read_to_string(dir.join(STORE).join("ca.pem")).unwrap();
    assert_ne!(new_ca, old_ca);
    assert!(!dir.join(format!("{STORE}.next")).exists());
    let archived: Vec<String> = std::fs::read_dir(dir.join(".cairn/pki"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".etcd.etcd.retired-"))
        .collect();
    assert_eq!(archived.len(), 1, "the old CA is archived");
    let archive = dir.join(".cairn/pki").join(&archived[0]);
    assert_eq!(std::fs::read_to_string(archive.join("ca.pem")).unwrap(), old_ca);
    assert!(archive.join("ca-key.pem").exists(), "the old CA key is kept");
    for n in NODES {
        assert_eq!(lab.ssh_ok(n, &["cat", "/etc/etcd/pki/ca.pem"]).trim(), new_ca.trim(), "{n}'s CA file");
        lab.ssh_ok(n, &["sh", "-c", &format!("printf '%s' '{new_ca}' > /root/new-ca.pem")]);
        for cert in ["server", "peer", "admin"] {
            let verified = lab.ssh_ok(n, &["openssl", "verify", "-CAfile", "/root/new-ca.pem", &format!("/etc/etcd/pki/{cert}.pem")]);
            assert!(verified.ends_with(": OK"), "{n} {cert}: {verified}");
        }
    }
    etcdctl_ok(&lab, "node1", "etcdctl put /cairn/rotated yes");
    assert_eq!(etcdctl_ok(&lab, "node2", "etcdctl get /cairn/rotated --print-value-only"), "yes");
    let old_client =
        etcdctl(&lab, "node1", "etcdctl --cert /root/old-admin.pem --key /root/old-admin-key.pem --command-timeout=5s put /cairn/old yes");
    assert!(!old_client.status.success(), "a client certificate of the old CA is still accepted");

    let again = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "the plan after the rotation is empty:\n{}", again.all());

    // Phase 2 restarted nobody: etcd reads a new certificate and key on each connection. The
    // same for a single certificate issued again: served at once, the member still running.
    let phase2 = run.stdout.split("phase 2 of 3 is done").next().unwrap();
    let phase2_summary = phase2.lines().rfind(|l| l.starts_with("Plan: ")).unwrap();
    assert!(phase2_summary.contains("9 to replace") && !phase2_summary.contains("restart"), "{phase2_summary}");
    let since = etcd::active_since(&lab, "node1");
    let served = || {
        lab.ssh_ok(
            "node1",
            &[
                "sh",
                "-c",
                ". /etc/profile.d/etcdctl.sh; openssl s_client -connect 127.0.0.1:2379 -cert $ETCDCTL_CERT -key $ETCDCTL_KEY \
               -CAfile $ETCDCTL_CACERT </dev/null 2>/dev/null | openssl x509 -noout -serial",
            ],
        )
    };
    let before = served();
    let reissue = cairn(dir, &["apply", "--auto-approve", "--replace", "etcd.cert.server[node1]"]);
    assert_eq!(reissue.code, 0, "{}", reissue.all());
    assert!(!reissue.stdout.contains("to restart"), "a reissued certificate restarts nothing:\n{}", reissue.all());
    let on_disk = lab.ssh_ok("node1", &["openssl", "x509", "-noout", "-serial", "-in", "/etc/etcd/pki/server.pem"]);
    assert_ne!(before, on_disk);
    assert_eq!(served(), on_disk, "etcd serves the new certificate without a restart");
    assert_eq!(etcd::active_since(&lab, "node1"), since, "node1 was restarted");
    assert_eq!(cairn(dir, &["plan", "--detailed-exitcode"]).code, 0);
}
