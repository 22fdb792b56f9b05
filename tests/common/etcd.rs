//! etcd helpers for lab end-to-end tests: the local release mirror, `etcdctl` on a node with the
//! module's client environment, the member list and statuses, and the writer every change to a
//! running cluster is tested under (a key put every 50 ms with a 5 s timeout, failures counted).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::lab::Lab;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the local etcd mirror (Debian's etcd repacked as a release; reproducible).
pub fn mirror() {
    let out = Command::new("bash").arg(repo().join("examples/etcd-lab/make-mirror.sh")).output().unwrap();
    assert!(out.status.success(), "make-mirror.sh failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Builds the mirror of every etcd release the lab upgrades through (3.4.23, 3.5.16, 3.5.30:
/// `make-mirror.sh all`, from Debian's suites) and copies `mirror-versions.toml` into `dir`.
pub fn mirror_all(dir: &Path) {
    let out = Command::new("bash").arg(repo().join("examples/etcd-lab/make-mirror.sh")).arg("all").output().unwrap();
    assert!(out.status.success(), "make-mirror.sh all failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::copy(repo().join("examples/etcd-lab/mirror-versions.toml"), dir.join("mirror-versions.toml")).unwrap();
}

/// Copies the mirror's vars file into `dir`.
pub fn copy_mirror_toml(dir: &Path) {
    std::fs::copy(repo().join("examples/etcd-lab/mirror.toml"), dir.join("mirror.toml")).unwrap();
}

/// A spec of the `etcd-cluster` module on every lab host, from the local mirror (`lab.toml` and
/// `mirror.toml` beside it), with cluster token `token` and the further inputs in `inputs` (TOML
/// lines).
pub fn lab_spec(token: &str, inputs: &str) -> String {
    format!(
        r#"include = ["lab.toml", "mirror.toml"]
[module.etcd]
source = "etcd-cluster"
hosts = ["*"]
version = "{{{{ vars.etcd_version }}}}"
sha256 = "{{{{ vars.etcd_sha256 }}}}"
mirror = "{{{{ vars.etcd_mirror }}}}"
cluster_token = "{token}"
{inputs}"#
    )
}

/// `CAIRN_MODULE_PATH` for the repository's modules.
pub fn module_path() -> String {
    repo().join("modules").to_str().unwrap().to_string()
}

/// Runs a shell line on a node with the etcdctl environment of /etc/profile.d loaded.
pub fn etcdctl(lab: &Lab, node: &str, line: &str) -> std::process::Output {
    lab.ssh(node, &["sh", "-c", &format!(". /etc/profile.d/etcdctl.sh && {line}")])
}

/// [`etcdctl`], which must succeed; its stdout, trimmed.
pub fn etcdctl_ok(lab: &Lab, node: &str, line: &str) -> String {
    let out = etcdctl(lab, node, line);
    assert!(
        out.status.success(),
        "`{line}` on {node} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One member of `member list -w simple`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Hex id.
    pub id: String,
    /// `started` or `unstarted`.
    pub status: String,
    /// Its name.
    pub name: String,
    /// A learner.
    pub learner: bool,
}

/// The member list, asked through `node`'s own endpoint.
pub fn members(lab: &Lab, node: &str) -> Vec<Member> {
    let out = etcdctl_ok(lab, node, "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl member list -w simple");
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            Member { id: f[0].into(), status: f[1].into(), name: f[2].into(), learner: f.get(5) == Some(&"true") }
        })
        .collect()
}

/// The leader's member name, asked through `node`.
pub fn leader(lab: &Lab, node: &str) -> String {
    let st = etcdctl_ok(lab, node, "ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl endpoint status --cluster -w simple");
    let leader_id =
        st.lines().find(|l| l.split(", ").nth(4) == Some("true")).and_then(|l| l.split(", ").nth(1)).expect("a leader").to_string();
    members(lab, node).into_iter().find(|m| m.id == leader_id).map(|m| m.name).expect("the leader is a member")
}

/// When `node`'s etcd.service last became active (monotonic µs).
pub fn active_since(lab: &Lab, node: &str) -> u64 {
    lab.ssh_ok(node, &["systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", "etcd.service"]).parse().unwrap_or(0)
}

/// The client URLs (`https://ADDRESS:2379`) of `nodes`, comma-separated, from the lab's hosts file.
pub fn client_urls(lab: &Lab, nodes: &[&str]) -> String {
    let hosts: toml::Table = std::fs::read_to_string(lab.hosts_file()).unwrap().parse().unwrap();
    nodes.iter().map(|n| format!("https://{}:2379", hosts["hosts"][*n]["address"].as_str().unwrap())).collect::<Vec<_>>().join(",")
}

/// A client on `node` putting a key every 50 ms to `endpoints` with a 5 s timeout.
pub struct Writer {
    child: Child,
    node: String,
    since: u64,
}

/// What a writer did.
#[derive(Debug)]
pub struct Written {
    /// Puts attempted.
    pub writes: u32,
    /// Puts that failed.
    pub failures: u32,
    /// Everything it printed: each failure's time (UTC), then what etcdctl said.
    pub output: String,
    /// When it started (Unix seconds), for [`Written::journals`].
    pub since: u64,
}

impl Written {
    /// What etcd logged on `nodes` since the writer started ([`journals`]).
    pub fn journals(&self, lab: &Lab, nodes: &[&str]) -> String {
        journals(lab, nodes, self.since)
    }
}

/// Now, in Unix seconds (for [`journals`]).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// What etcd logged on `nodes` since `since` (Unix seconds; the last 80 lines of each), for a
/// failed write's assertion: the next time one fails, the message says what the members did.
pub fn journals(lab: &Lab, nodes: &[&str], since: u64) -> String {
    let mut out = String::new();
    for node in nodes {
        let since = format!("--since=@{since}");
        let log = lab.ssh(node, &["journalctl", "-u", "etcd", &since, "-o", "short-iso-precise", "--no-pager", "-n", "80"]);
        out.push_str(&format!("--- etcd on {node}:\n{}\n", String::from_utf8_lossy(&log.stdout)));
    }
    out
}

impl Writer {
    /// Starts the writer (it runs until [`Writer::stop`]).
    pub fn start(lab: &Lab, node: &str, endpoints: &str) -> Writer {
        let line = format!(
            ". /etc/profile.d/etcdctl.sh; export ETCDCTL_ENDPOINTS={endpoints}; n=0; fail=0; rm -f /tmp/stop-writer; \
             while [ ! -e /tmp/stop-writer ]; do n=$((n+1)); \
             etcdctl put /cairn/writer $n --command-timeout=5s >/dev/null 2>/tmp/writer.err || {{ fail=$((fail+1)); date -u +%T.%3N; cat /tmp/writer.err; }}; \
             sleep 0.05; done; echo writes=$n failures=$fail"
        );
        let argv = lab.info.ssh_argv(node, &["sh", "-c", &line]).unwrap();
        let since = unix_now();
        let child = Command::new(&argv[0]).args(&argv[1..]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(2));
        Writer { child, node: node.to_string(), since }
    }

    /// Stops the writer and returns its counts.
    pub fn stop(self, lab: &Lab) -> Written {
        std::thread::sleep(std::time::Duration::from_secs(1));
        lab.ssh_ok(&self.node, &["touch", "/tmp/stop-writer"]);
        let out = self.child.wait_with_output().unwrap();
        let output = String::from_utf8_lossy(&out.stdout).to_string();
        let last = output.lines().last().unwrap_or_default().to_string();
        let field =
            |name: &str| last.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| v.parse().ok()).unwrap_or(u32::MAX);
        Written { writes: field("writes="), failures: field("failures="), output, since: self.since }
    }
}
