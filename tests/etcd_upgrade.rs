//! etcd version upgrades on three lab hosts, every apply under a writer (a key put every 50 ms
//! with a 5 s timeout to all endpoints): 3.4.23 → 3.5.16 → 3.5.30, one member at a time and
//! the leader last, each gated on the member reporting the new version; a verified snapshot
//! taken first, kept on the host and copied under the state dir; paths etcd does not support
//! (3.4 → 3.6, a downgrade across minors) refused at plan time with nothing touched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/run.rs"]
mod run;

use etcd::{Writer, etcdctl_ok, leader};
use run::cairn_env;

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// The lab spec: the etcd-cluster module at `version`, from the test's mirror in `dir`, whose
/// tarball's sha256 is `sha_var` of mirror-versions.toml.
fn spec(dir: &std::path::Path, version: &str, sha_var: &str) -> String {
    let mirror = dir.join("mirror");
    let mirror = mirror.display();
    format!(
        r#"include = ["lab.toml", "mirror-versions.toml"]
[module.etcd]
source = "etcd-cluster"
hosts = ["*"]
version = "{version}"
sha256 = "{{{{ vars.{sha_var} }}}}"
mirror = "file://{mirror}"
cluster_token = "etcd-upgrade"
"#
    )
}

fn cairn(dir: &std::path::Path, args: &[&str]) -> run::Run {
    cairn_env(dir, args, &[("CAIRN_MODULE_PATH", etcd::repo().join("modules").to_str().unwrap())])
}

fn endpoints(lab: &lab::Lab) -> String {
    let hosts: toml::Table = std::fs::read_to_string(lab.hosts_file()).unwrap().parse().unwrap();
    NODES.iter().map(|n| format!("https://{}:2379", hosts["hosts"][*n]["address"].as_str().unwrap())).collect::<Vec<_>>().join(",")
}

/// The server version every member reports, through each member's own endpoint.
fn versions(lab: &lab::Lab) -> Vec<String> {
    NODES
        .iter()
        .map(|n| {
            let st = etcdctl_ok(lab, n, "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl endpoint status -w simple");
            st.split(", ").nth(2).unwrap().to_string()
        })
        .collect()
}

/// The cluster version etcd reports (`/version`'s etcdcluster).
fn cluster_version(lab: &lab::Lab) -> String {
    let out = lab.ssh_ok(
        "node1",
        &[
            "curl",
            "-sS",
            "--cacert",
            "/etc/etcd/pki/ca.pem",
            "--cert",
            "/etc/etcd/pki/admin.pem",
            "--key",
            "/etc/etcd/pki/admin-key.pem",
            "https://127.0.0.1:2379/version",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["etcdcluster"].as_str().unwrap().to_string()
}

/// Refused at plan time, and by apply, touching nothing: the binary on every host is unchanged.
fn assert_refused(lab: &lab::Lab, dir: &std::path::Path, version: &str, sha_var: &str, words: &str) {
    let before: Vec<String> = NODES.iter().map(|n| lab.ssh_ok(n, &["sha256sum", "/usr/local/bin/etcd"])).collect();
    std::fs::write(dir.join("cairn.toml"), spec(dir, version, sha_var)).unwrap();
    let plan = cairn(dir, &["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(plan.stdout.contains(words), "the refusal names the path:\n{}", plan.all());
    let apply = cairn(dir, &["apply", "--auto-approve"]);
    assert_ne!(apply.code, 0, "{}", apply.all());
    let after: Vec<String> = NODES.iter().map(|n| lab.ssh_ok(n, &["sha256sum", "/usr/local/bin/etcd"])).collect();
    assert_eq!(before, after, "a refused upgrade touched a binary:\n{}", apply.all());
}

/// Plans and applies the upgrade to `version` under the writer; checks the order, the gates and
/// the snapshot.
fn upgrade(lab: &lab::Lab, dir: &std::path::Path, from: &str, version: &str, sha_var: &str) {
    std::fs::write(dir.join("cairn.toml"), spec(dir, version, sha_var)).unwrap();
    let leader_before = leader(lab, "node1");
    let plan = cairn(dir, &["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains(&format!("upgrade {from} → {version}: one member at a time")), "{}", plan.all());
    let last = format!("3. {leader_before} (leader, last): {from} → {version}");
    assert!(plan.stdout.contains(&last), "the leader goes last:\n{}", plan.all());
    assert!(plan.stdout.contains("+ snapshot"), "{}", plan.all());
    assert!(plan.stdout.contains(&format!("before the upgrade to {version}: verified")), "{}", plan.all());

    let writer = Writer::start(lab, "node1", &endpoints(lab));
    let run = cairn(dir, &["apply", "--auto-approve"]);
    let written = writer.stop(lab);
    assert_eq!(run.code, 0, "{}", run.all());
    eprintln!("WRITER ({from} → {version}): {} writes, {} failed", written.writes, written.failures);
    assert_eq!(
        written.failures,
        0,
        "writes failed during the upgrade to {version}:\n{}\n{}",
        written.output,
        written.journals(lab, &NODES)
    );
    assert!(written.writes >= 20 && written.writes != u32::MAX, "the writer ran: {}", written.output);

    // One member at a time, each gated on reporting the new version; the leader last.
    let reported: Vec<String> = run
        .stderr
        .match_indices(&format!(" reports {version}; cluster healthy"))
        .map(|(i, _)| run.stderr[..i].rsplit("member ").next().unwrap().to_string())
        .collect();
    assert_eq!(reported.len(), 3, "every member gated on its version:\n{}", run.all());
    assert_eq!(reported.last().unwrap(), &leader_before, "the leader last:\n{}", run.all());
    assert_eq!(versions(lab), vec![version; 3]);
    // 3.5's tarball has etcdutl (3.4's does not): installed with the release.
    for n in NODES {
        assert!(lab.ssh_ok(n, &["/usr/local/bin/etcdutl", "version"]).contains(&format!("etcdutl version: {version}")), "{n}");
    }

    // The snapshot: on the host, accepted by `snapshot status`, and the same bytes locally.
    let line = run.stderr.lines().find(|l| l.contains("snapshot /var/backups/etcd/")).unwrap_or_else(|| panic!("{}", run.all()));
    let path = line.split("snapshot ").nth(1).unwrap().split_whitespace().next().unwrap();
    let host = line.split(" on ").nth(1).unwrap().split_whitespace().next().unwrap().trim_end_matches(':');
    assert!(path.contains(&format!("before-upgrade-to-{version}")), "{line}");
    etcdctl_ok(lab, host, &format!("etcdctl snapshot status {path} -w json"));
    let remote_sum = lab.ssh_ok(host, &["sha256sum", path]);
    let local = dir.join(".cairn/snapshots/etcd.cluster.members").join(path.rsplit('/').next().unwrap());
    let local_sum = sha2_hex(&std::fs::read(&local).unwrap_or_else(|e| panic!("{}: {e}\n{}", local.display(), run.all())));
    assert!(remote_sum.starts_with(&local_sum), "{remote_sum} vs {local_sum}");

    let again = cairn(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "the plan after the upgrade is empty:\n{}", again.all());
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn etcd_upgrades_one_member_at_a_time_leader_last_with_a_snapshot_first() {
    let lab = lab::Lab::up("etcd-upgrade", 3);
    let dir = lab.dir();
    etcd::mirror_all(dir);
    // The test's own mirror: the three releases, and 3.5.30's tarball posing as a 3.6.0 (so the
    // refusal comes from the path rule, not from a download that fails).
    let mirror = etcd::repo().join("examples/etcd-lab/mirror");
    for v in ["3.4.23", "3.5.16", "3.5.30", "3.6.0"] {
        let from = if v == "3.6.0" { "3.5.30" } else { v };
        std::fs::create_dir_all(dir.join(format!("mirror/v{v}"))).unwrap();
        std::fs::copy(
            mirror.join(format!("v{from}/etcd-v{from}-linux-amd64.tar.gz")),
            dir.join(format!("mirror/v{v}/etcd-v{v}-linux-amd64.tar.gz")),
        )
        .unwrap();
    }

    // Formed at 3.4.23.
    std::fs::write(dir.join("cairn.toml"), spec(dir, "3.4.23", "etcd_3_4_23_sha256")).unwrap();
    let run = cairn(dir, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(versions(&lab), vec!["3.4.23"; 3]);
    assert_eq!(cluster_version(&lab), "3.4.0");
    assert_ne!(lab.ssh(NODES[0], &["test", "-e", "/usr/local/bin/etcdutl"]).status.code(), Some(0), "3.4 has no etcdutl");

    // Paths etcd does not support: refused at plan time, nothing touched.
    assert_refused(
        &lab,
        dir,
        "3.6.0",
        "etcd_3_5_30_sha256",
        "etcd upgrades one minor release at a time: members run 3.4.23; go to 3.5.x first",
    );

    upgrade(&lab, dir, "3.4.23", "3.5.16", "etcd_3_5_16_sha256");
    assert_eq!(cluster_version(&lab), "3.5.0");
    let verbose = cairn(dir, &["plan", "-v"]);
    assert!(verbose.stdout.contains("(3.5.16), cluster version 3.5.0"), "the next read shows the cluster version:\n{}", verbose.all());

    assert_refused(&lab, dir, "3.4.23", "etcd_3_4_23_sha256", "would downgrade members running 3.5.16 across minor releases");

    upgrade(&lab, dir, "3.5.16", "3.5.30", "etcd_3_5_30_sha256");
    assert_eq!(cluster_version(&lab), "3.5.0");
}
