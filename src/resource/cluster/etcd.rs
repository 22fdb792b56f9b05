//! The etcd driver: asks `etcdctl` (v3 API, mutual TLS, through the member's own client
//! endpoint) for the member list and every member's status in the host's probe, reads the JSON
//! answers, and runs the membership commands — `member add --learner`, `member promote`, `member
//! remove`, `move-leader`, `endpoint health --cluster` — on a member's host. etcd refuses a
//! reconfiguration for a few seconds after the previous one ("unhealthy cluster") and a
//! promotion until the learner has caught up; both are retried here, within bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::operations::OperationStep;
use super::{ClusterDriver, ListedMember, MemberObservation, MemberStatus, TakenSnapshot};
use crate::resource::{ApplyError, HostFacts, ProbeRequest};
use crate::spec::{Diagnostic, Span};
use crate::transport::{Stdin, Transport, argv};

/// The settings `[cluster.*]` takes for etcd: (name, required, what it is).
pub const SETTINGS: &[(&str, bool, &str)] = &[
    ("etcdctl", true, "path of etcdctl on the hosts"),
    ("cacert", true, "CA certificate etcdctl trusts"),
    ("cert", true, "client certificate of etcdctl"),
    ("key", true, "client key of etcdctl"),
    ("data_dir", true, "the member's data dir"),
    ("wal_dir", false, "the member's WAL dir (default DATA_DIR/wal)"),
    ("endpoint", false, "the member's own client URL, as reached on its host (default https://127.0.0.1:2379)"),
    ("version", false, "the etcd version the spec installs (e.g. 3.5.16): upgrade paths are checked against the members' versions"),
    ("etcdutl", false, "path of etcdutl on the hosts, used for `snapshot status` when installed (default: beside etcdctl)"),
    ("snapshot_dir", false, "folder on the hosts for the snapshot taken before an upgrade or a membership change (none when unset)"),
    ("quota_backend_bytes", false, "the members' quota-backend-bytes: `disarm` refuses to clear NOSPACE while a database is still near it"),
    ("snapshot_copy", false, "\"true\" (default) or \"false\": also copy that snapshot to the machine running cairn"),
];

/// One upgrade etcd supports: from a minor release to the next, from at least a patch release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradePath {
    /// The minor release upgraded from, (major, minor).
    pub from: (u64, u64),
    /// The minor release upgraded to.
    pub to: (u64, u64),
    /// The lowest patch release of `from` the upgrade starts from.
    pub min_from_patch: u64,
}

/// etcd's published upgrade rules, as data: one minor release at a time, and 3.5 → 3.6 only
/// from 3.5.26 on (the release that makes a 3.5 member ready for 3.6's membership store).
pub const UPGRADE_PATHS: &[UpgradePath] = &[
    UpgradePath { from: (3, 3), to: (3, 4), min_from_patch: 0 },
    UpgradePath { from: (3, 4), to: (3, 5), min_from_patch: 0 },
    UpgradePath { from: (3, 5), to: (3, 6), min_from_patch: 26 },
];

/// `3.5.16` → (3, 5, 16).
fn semver(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.trim().trim_start_matches('v').split(['.', '-', '+']).map(str::parse::<u64>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?))
}

/// Whether the members running `running` may go to `wanted`; the refusal says what to do instead.
pub fn check_upgrade(running: &[String], wanted: &str) -> Result<(), String> {
    let Some(to) = semver(wanted) else { return Ok(()) };
    let mut from: Vec<(u64, u64, u64)> = running.iter().filter_map(|v| semver(v)).collect();
    from.sort_unstable();
    from.dedup();
    let (Some(&lowest), Some(&highest)) = (from.first(), from.last()) else { return Ok(()) };
    let minor = |v: (u64, u64, u64)| (v.0, v.1);
    if minor(highest) > minor(to) {
        return Err(format!(
            "{wanted} would downgrade members running {}.{}.{} across minor releases, which etcd does not support; keep {}.{}.x              (or restore a snapshot taken before the upgrade)",
            highest.0, highest.1, highest.2, highest.0, highest.1
        ));
    }
    if minor(lowest) == minor(to) {
        return Ok(());
    }
    // Some members are below the wanted minor: the step from the lowest one must be a known path.
    if minor(lowest) != minor(highest) && minor(highest) != minor(to) {
        return Err(format!(
            "members run {}.{} and {}.{}: finish the upgrade to {}.{} on every member before going to {wanted}",
            lowest.0, lowest.1, highest.0, highest.1, highest.0, highest.1
        ));
    }
    match UPGRADE_PATHS.iter().find(|p| p.from == minor(lowest) && p.to == minor(to)) {
        Some(p) if lowest.2 >= p.min_from_patch => Ok(()),
        Some(p) => Err(format!(
            "etcd upgrades {}.{} to {}.{} only from {}.{}.{} or later; members run {}.{}.{}: upgrade them to the latest {}.{} first",
            p.from.0, p.from.1, p.to.0, p.to.1, p.from.0, p.from.1, p.min_from_patch, lowest.0, lowest.1, lowest.2, p.from.0, p.from.1
        )),
        None => {
            let next = UPGRADE_PATHS.iter().find(|p| p.from == minor(lowest)).map(|p| p.to);
            Err(match next {
                Some(n) => format!(
                    "etcd upgrades one minor release at a time: members run {}.{}.{}; go to {}.{}.x first, then to {wanted}",
                    lowest.0, lowest.1, lowest.2, n.0, n.1
                ),
                None => format!("no supported upgrade path from {}.{}.{} to {wanted}", lowest.0, lowest.1, lowest.2),
            })
        }
    }
}

/// How long a refused reconfiguration is retried.
const RECONFIGURE_RETRY: Duration = Duration::from_secs(60);

/// etcd's settings on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd {
    /// etcdctl's path.
    pub etcdctl: String,
    /// TLS files of the admin client.
    pub cacert: String,
    /// Client certificate.
    pub cert: String,
    /// Client key.
    pub key: String,
    /// The data dir.
    pub data_dir: String,
    /// The WAL dir.
    pub wal_dir: String,
    /// The member's own client endpoint.
    pub endpoint: String,
    /// The version the spec installs, when given.
    pub version: Option<String>,
    /// etcdutl's path (used when it is installed).
    pub etcdutl: String,
    /// Where snapshots before risky steps are kept on the host (none when unset).
    pub snapshot_dir: Option<String>,
    /// Whether those snapshots are copied to the machine running cairn.
    pub snapshot_copy: bool,
    /// The members' backend quota, bytes.
    pub quota_bytes: Option<u64>,
}

/// The script that restores a member's data dir (`run_step`, `Restore`).
const RESTORE_SCRIPT: &str = include_str!("restore.sh");

/// The script that takes a verified snapshot (`snapshot`).
const SNAPSHOT_SCRIPT: &str = include_str!("snapshot.sh");

/// The script that sets a data dir's contents aside (`set_data_aside`).
const ASIDE_SCRIPT: &str = include_str!("aside.sh");

impl Etcd {
    /// Reads the rendered settings; every unknown or missing one is reported.
    pub fn from_settings(mut settings: BTreeMap<String, (String, Span)>, table: &Span) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let known: Vec<&str> = SETTINGS.iter().map(|(n, _, _)| *n).collect();
        for (key, (_, span)) in &settings {
            if !known.contains(&key.as_str()) {
                errors.push(
                    Diagnostic::at(span, format!("unknown etcd setting `{key}`"))
                        .with_label("not a setting of the etcd driver")
                        .with_help(format!("the etcd driver takes: {}", known.join(", "))),
                );
            }
        }
        let mut take = |name: &str| settings.remove(name).map(|(v, _)| v);
        let (etcdctl, cacert, cert, key, data_dir) = (take("etcdctl"), take("cacert"), take("cert"), take("key"), take("data_dir"));
        let wal_dir = take("wal_dir");
        let endpoint = take("endpoint").unwrap_or_else(|| "https://127.0.0.1:2379".to_string());
        let version = take("version").filter(|v| !v.trim().is_empty());
        let etcdutl = take("etcdutl").filter(|v| !v.trim().is_empty());
        let snapshot_dir = take("snapshot_dir").filter(|v| !v.trim().is_empty());
        let quota_bytes = match settings.remove("quota_backend_bytes") {
            None => None,
            Some((v, _)) if v.trim().is_empty() => None,
            Some((v, span)) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| {
                    errors.push(
                        Diagnostic::at(&span, format!("`settings.quota_backend_bytes` must be a number of bytes, found `{v}`"))
                            .with_label("expected bytes")
                            .with_help("pass etcd's quota-backend-bytes, e.g. \"8589934592\""),
                    );
                })
                .ok(),
        };
        let snapshot_copy = match settings.remove("snapshot_copy") {
            None => true,
            // A module's bool input renders as `true` or `True`.
            Some((v, _)) if v.trim().eq_ignore_ascii_case("true") => true,
            Some((v, _)) if v.trim().eq_ignore_ascii_case("false") => false,
            Some((v, span)) => {
                errors.push(
                    Diagnostic::at(&span, format!("`settings.snapshot_copy` must be \"true\" or \"false\", found `{v}`"))
                        .with_label("expected \"true\" or \"false\"")
                        .with_help("set snapshot_copy = \"false\" to keep the snapshot on the host only (very large databases)"),
                );
                true
            }
        };
        for (name, required, what) in SETTINGS {
            let missing = match *name {
                "etcdctl" => etcdctl.is_none(),
                "cacert" => cacert.is_none(),
                "cert" => cert.is_none(),
                "key" => key.is_none(),
                "data_dir" => data_dir.is_none(),
                _ => false,
            };
            if *required && missing {
                errors.push(
                    Diagnostic::at(table, format!("the etcd driver needs `settings.{name}` ({what})"))
                        .with_help(format!("add it to `settings`, e.g. settings = {{ {name} = \"…\" }}")),
                );
            }
        }
        match (etcdctl, cacert, cert, key, data_dir) {
            (Some(etcdctl), Some(cacert), Some(cert), Some(key), Some(data_dir)) if errors.is_empty() => {
                let wal_dir = wal_dir.unwrap_or_else(|| format!("{data_dir}/wal"));
                let etcdutl = etcdutl.unwrap_or_else(|| match etcdctl.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/etcdutl"),
                    None => "etcdutl".to_string(),
                });
                Ok(Self {
                    etcdctl,
                    cacert,
                    cert,
                    key,
                    data_dir,
                    wal_dir,
                    endpoint,
                    version,
                    etcdutl,
                    snapshot_dir,
                    snapshot_copy,
                    quota_bytes,
                })
            }
            _ => Err(errors),
        }
    }

    /// etcdctl with TLS and timeouts, talking to `endpoints`.
    fn etcdctl(&self, endpoints: &str, args: &[&str]) -> Vec<String> {
        let mut v = argv(&["env", "ETCDCTL_API=3", &self.etcdctl]);
        v.push(format!("--endpoints={endpoints}"));
        v.push(format!("--cacert={}", self.cacert));
        v.push(format!("--cert={}", self.cert));
        v.push(format!("--key={}", self.key));
        v.push("--dial-timeout=2s".to_string());
        v.push("--command-timeout=5s".to_string());
        v.extend(args.iter().map(|a| (*a).to_string()));
        v
    }

    fn member_list(&self) -> Vec<String> {
        self.etcdctl(&self.endpoint, &["member", "list", "-w", "json"])
    }

    fn statuses(&self) -> Vec<String> {
        self.etcdctl(&self.endpoint, &["endpoint", "status", "--cluster", "-w", "json"])
    }

    /// etcd's `/version` (server and cluster version) from the member's own endpoint: etcdctl
    /// does not print the cluster version. Needs curl on the host; without it, it stays unknown.
    fn version_query(&self) -> Vec<String> {
        let mut v = argv(&["curl", "-sS", "--max-time", "5", "--cacert", &self.cacert, "--cert", &self.cert, "--key", &self.key]);
        v.push(format!("{}/version", self.endpoint.trim_end_matches('/')));
        v
    }

    /// This member's own status, asked on its host.
    async fn own_status(&self, host: &dyn Transport) -> Result<MemberStatus, ApplyError> {
        let out = self.run(host, &["endpoint", "status", "-w", "json"]).await?;
        parse_statuses(&out).into_iter().next().ok_or_else(|| ApplyError::Failed(format!("unreadable endpoint status on {}", host.host())))
    }

    /// Runs etcdctl on `host`; a refusal is the error, with what etcdctl said.
    async fn run(&self, host: &dyn Transport, args: &[&str]) -> Result<String, EtcdctlError> {
        let cmd = self.etcdctl(&self.endpoint, args);
        let out = host.run(&cmd, Stdin::Null).await.map_err(|e| EtcdctlError::Transport(e.to_string()))?;
        if out.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(EtcdctlError::Refused(format!("etcdctl {} on {}: {}", args.join(" "), host.host(), out.error_text())))
        }
    }

    /// [`Etcd::run`], retried while etcd refuses a reconfiguration it will accept shortly.
    async fn reconfigure(&self, host: &dyn Transport, args: &[&str]) -> Result<String, ApplyError> {
        let started = std::time::Instant::now();
        loop {
            match self.run(host, args).await {
                Ok(out) => return Ok(out),
                Err(EtcdctlError::Refused(e)) if retryable(&e) && started.elapsed() < RECONFIGURE_RETRY => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// An etcdctl run that failed.
#[derive(Debug)]
enum EtcdctlError {
    /// It could not run.
    Transport(String),
    /// etcd said no.
    Refused(String),
}

impl From<EtcdctlError> for ApplyError {
    fn from(e: EtcdctlError) -> Self {
        match e {
            EtcdctlError::Transport(e) | EtcdctlError::Refused(e) => ApplyError::Failed(e),
        }
    }
}

/// etcd's refusals that pass by themselves: a reconfiguration too soon after the previous one,
/// a leader election under way, a member not yet connected.
fn retryable(error: &str) -> bool {
    ["unhealthy cluster", "leader changed", "no leader", "timed out", "too many learner", "not enough started members"]
        .iter()
        .any(|m| error.contains(m))
}

/// The members `etcdctl endpoint health` found unhealthy, each named with its client URL and
/// what etcdctl said ("member b (https://b:2379) is unhealthy: failed to commit proposal: context
/// deadline exceeded"), joined by "; "; etcdctl's own log lines (JSON) are left out. `None` when
/// no line names an unhealthy endpoint.
fn unhealthy_members(said: &str, members: &[ListedMember]) -> Option<String> {
    let named: Vec<String> = said
        .lines()
        .filter_map(|line| line.trim().split_once(" is unhealthy: "))
        .map(|(url, why)| match members.iter().find(|m| m.client_urls.iter().any(|u| u == url)) {
            Some(m) if !m.name.is_empty() => format!("member {} ({url}) is unhealthy: {why}", m.name),
            _ => format!("{url} is unhealthy: {why}"),
        })
        .collect();
    (!named.is_empty()).then(|| named.join("; "))
}

/// Reads the snapshot script's report: path, sha256 and size, then the status JSON (which must
/// name a revision: `snapshot status` read the file).
fn parse_snapshot_output(text: &str) -> Option<TakenSnapshot> {
    let mut lines = text.lines();
    let path = lines.next()?.trim().to_string();
    let sha256 = lines.next()?.trim().to_string();
    let bytes = lines.next()?.trim().parse().ok()?;
    let status: Value = serde_json::from_str(lines.collect::<Vec<_>>().join("\n").trim()).ok()?;
    status.get("revision")?;
    (sha256.len() == 64 && !path.is_empty()).then_some(TakenSnapshot { path, sha256, bytes })
}

/// Reads `etcdctl member list -w json`.
pub fn parse_member_list(text: &str) -> Option<Vec<ListedMember>> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    let members = v.get("members")?.as_array()?;
    let strings = |m: &Value, key: &str| -> Vec<String> {
        m.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
    };
    members
        .iter()
        .map(|m| {
            Some(ListedMember {
                id: m.get("ID")?.as_u64()?,
                name: m.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                peer_urls: strings(m, "peerURLs"),
                client_urls: strings(m, "clientURLs"),
                learner: m.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

/// Reads `etcdctl endpoint status --cluster -w json` (the members that answered).
pub fn parse_statuses(text: &str) -> Vec<MemberStatus> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text.trim()) else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let s = item.get("Status")?;
            let num = |key: &str| s.get(key).and_then(Value::as_u64).unwrap_or(0);
            let alarms = s
                .get("errors")
                .and_then(Value::as_array)
                .map(|errs| {
                    errs.iter()
                        .filter_map(Value::as_str)
                        .filter_map(|e| e.split("alarm:").nth(1).map(|a| a.trim().to_string()))
                        .filter(|a| !a.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            Some(MemberStatus {
                id: s.get("header")?.get("member_id")?.as_u64()?,
                leader: num("leader"),
                raft_index: num("raftIndex"),
                raft_term: num("raftTerm"),
                learner: s.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
                version: s.get("version").and_then(Value::as_str).unwrap_or_default().to_string(),
                db_size: num("dbSize"),
                db_size_in_use: num("dbSizeInUse"),
                revision: s.get("header").and_then(|h| h.get("revision")).and_then(Value::as_u64).unwrap_or(0),
                alarms,
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl ClusterDriver for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn upgrade(&self, running: &[String]) -> Result<(), String> {
        self.version.as_deref().map_or(Ok(()), |wanted| check_upgrade(running, wanted))
    }

    fn wanted_version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    fn snapshot_dir(&self) -> Option<&str> {
        self.snapshot_dir.as_deref()
    }

    fn snapshot_copy(&self) -> bool {
        self.snapshot_copy
    }

    fn operations(&self) -> &'static [super::operations::OperationDef] {
        super::operations::ETCD_OPERATIONS
    }

    fn quota_bytes(&self) -> Option<u64> {
        self.quota_bytes
    }

    async fn verify_snapshot(&self, host: &dyn Transport, path: &str) -> Result<(), ApplyError> {
        let tool = if self.etcdutl.is_empty() { self.etcdctl.clone() } else { self.etcdutl.clone() };
        // etcdutl when installed (etcd 3.6 removed the command from etcdctl), else etcdctl.
        let line =
            r#"if [ -x "$1" ]; then exec "$1" snapshot status "$3" -w json; else ETCDCTL_API=3 exec "$2" snapshot status "$3" -w json; fi"#;
        let out = host.run(&argv(&["sh", "-c", line, "cairn-status", &tool, &self.etcdctl, path]), Stdin::Null).await?;
        let status: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        match status {
            Some(v) if out.success() && v.get("revision").is_some() => Ok(()),
            _ => Err(ApplyError::Failed(format!("{path} on {} is not a snapshot etcd reads: {}", host.host(), out.error_text()))),
        }
    }

    async fn run_step(&self, via: &dyn Transport, step: &OperationStep) -> Result<String, ApplyError> {
        match step {
            OperationStep::Compact { revision } => {
                match self.run(via, &["compact", &revision.to_string(), "--physical"]).await {
                    Ok(_) => Ok(format!("compacted to revision {revision}")),
                    // Compacted already (by auto-compaction, or a run before): nothing left to do.
                    Err(EtcdctlError::Refused(e)) if e.contains("required revision has been compacted") => {
                        Ok(format!("revision {revision} was compacted already"))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            OperationStep::Defrag { member, db_size, .. } => {
                // Defragment this member only (its own endpoint), with time for a large database.
                let mut cmd = self.etcdctl(&self.endpoint, &["defrag"]);
                if let Some(t) = cmd.iter_mut().find(|a| a.starts_with("--command-timeout=")) {
                    *t = "--command-timeout=300s".to_string();
                }
                let out = via.run(&cmd, Stdin::Null).await?;
                if !out.success() {
                    return Err(ApplyError::Failed(format!("etcdctl defrag on {}: {}", via.host(), out.error_text())));
                }
                let after = self.own_status(via).await?;
                Ok(format!("member {member} defragmented: database {db_size} → {} bytes ({} in use)", after.db_size, after.db_size_in_use))
            }
            OperationStep::Disarm { alarms } => {
                self.run(via, &["alarm", "disarm"]).await?;
                let left = self.run(via, &["alarm", "list"]).await?;
                if left.trim().is_empty() {
                    Ok(format!("cleared {}", alarms.join(", ")))
                } else {
                    Err(ApplyError::Failed(format!("alarms still active after disarm: {}", left.trim())))
                }
            }
            OperationStep::Restore { member, peer_url, initial_cluster, token, path } => {
                let cmd = argv(&[
                    "sh",
                    "-c",
                    RESTORE_SCRIPT,
                    "cairn-restore",
                    path,
                    member,
                    peer_url,
                    initial_cluster,
                    token,
                    &self.data_dir,
                    &self.wal_dir,
                    &self.etcdutl,
                    &self.etcdctl,
                ]);
                let out = via.run(&cmd, Stdin::Null).await?;
                if !out.success() {
                    return Err(ApplyError::Failed(format!("restoring member {member} on {}: {}", via.host(), out.error_text())));
                }
                let kept = String::from_utf8_lossy(&out.stdout).trim().to_string();
                Ok(format!("member {member}'s data dir {} restored from {path}; the old data is kept in {kept}", self.data_dir))
            }
            OperationStep::Snapshot
            | OperationStep::SafetySnapshot
            | OperationStep::CopyBackups { .. }
            | OperationStep::Upload { .. }
            | OperationStep::Stop { .. }
            | OperationStep::StartAll { .. } => {
                Err(ApplyError::Failed(format!("{step:?} is run by the executor, not the driver (on {})", via.host())))
            }
        }
    }

    async fn snapshot(&self, via: &dyn Transport, dir: &str, name: &str) -> Result<TakenSnapshot, ApplyError> {
        let mut cmd = argv(&["sh", "-c", SNAPSHOT_SCRIPT, "cairn-snapshot", dir, name, &self.etcdutl]);
        // The snapshot of a large database takes longer than a membership command.
        let mut etcdctl = self.etcdctl(&self.endpoint, &[]);
        if let Some(t) = etcdctl.iter_mut().find(|a| a.starts_with("--command-timeout=")) {
            *t = "--command-timeout=300s".to_string();
        }
        cmd.extend(etcdctl);
        let out = via.run(&cmd, Stdin::Null).await?;
        if !out.success() {
            return Err(ApplyError::Failed(format!("snapshot through {}: {}", via.host(), out.error_text())));
        }
        parse_snapshot_output(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| ApplyError::Failed(format!("snapshot through {}: unreadable report of the snapshot script", via.host())))
    }

    fn add_to_probe(&self, request: &mut ProbeRequest) {
        request.queries.insert(self.member_list());
        request.queries.insert(self.statuses());
        request.queries.insert(self.version_query());
        request.paths.insert(format!("{}/member", self.data_dir));
        request.paths.insert(self.wal_dir.clone());
    }

    fn observe(&self, facts: &HostFacts) -> MemberObservation {
        let has_data = facts.path(&format!("{}/member", self.data_dir)).is_some() || facts.path(&self.wal_dir).is_some();
        let list = facts.queries.get(&self.member_list());
        let members = list.filter(|q| q.status == 0).and_then(|q| parse_member_list(&q.stdout));
        // Some members may not answer: the status of those that did is printed all the same.
        let statuses = facts.queries.get(&self.statuses()).map(|q| parse_statuses(&q.stdout)).unwrap_or_default();
        let error = match list {
            None => Some("not asked".to_string()),
            Some(q) if q.status == 0 && members.is_none() => Some("unreadable member list".to_string()),
            Some(q) if q.status == 124 => Some("etcdctl timed out".to_string()),
            Some(q) if q.status == 127 => Some("etcdctl not installed".to_string()),
            Some(q) if q.status != 0 => Some(format!("{} did not answer", self.endpoint)),
            Some(_) => None,
        };
        let cluster_version = facts
            .queries
            .get(&self.version_query())
            .filter(|q| q.status == 0)
            .and_then(|q| serde_json::from_str::<Value>(q.stdout.trim()).ok())
            .and_then(|v| v.get("etcdcluster").and_then(Value::as_str).map(str::to_string))
            .filter(|v| !v.is_empty() && v != "not_decided");
        MemberObservation { answered: members.is_some(), has_data, members, statuses, error, cluster_version }
    }

    async fn add_learner(&self, via: &dyn Transport, name: &str, peer_url: &str) -> Result<u64, ApplyError> {
        let peers = format!("--peer-urls={peer_url}");
        let out = self.reconfigure(via, &["member", "add", name, "--learner", &peers, "-w", "json"]).await?;
        let v: Value =
            serde_json::from_str(out.trim()).map_err(|e| ApplyError::Failed(format!("member add printed unreadable JSON: {e}")))?;
        v.get("member")
            .and_then(|m| m.get("ID"))
            .and_then(Value::as_u64)
            .ok_or_else(|| ApplyError::Failed("member add printed no member id".to_string()))
    }

    async fn promote(&self, via: &dyn Transport, id: u64) -> Result<bool, ApplyError> {
        match self.run(via, &["member", "promote", &format!("{id:x}")]).await {
            Ok(_) => Ok(true),
            Err(EtcdctlError::Refused(e)) if e.contains("in sync") || e.contains("not ready") || retryable(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove(&self, via: &dyn Transport, id: u64) -> Result<(), ApplyError> {
        match self.reconfigure(via, &["member", "remove", &format!("{id:x}")]).await {
            Err(ApplyError::Failed(e)) if e.contains("member not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn move_leader(&self, via: &dyn Transport, to: u64) -> Result<(), ApplyError> {
        // move-leader must reach the leader: give it every member's client URL.
        let list = self.run(via, &["member", "list", "-w", "json"]).await?;
        let members = parse_member_list(&list).unwrap_or_default();
        let endpoints: Vec<String> = members.iter().flat_map(|m| m.client_urls.clone()).collect();
        let cmd = self.etcdctl(&endpoints.join(","), &["move-leader", &format!("{to:x}")]);
        let out = via.run(&cmd, Stdin::Null).await?;
        if out.success() { Ok(()) } else { Err(ApplyError::Failed(format!("etcdctl move-leader on {}: {}", via.host(), out.error_text()))) }
    }

    async fn healthy(&self, via: &dyn Transport) -> Result<(), ApplyError> {
        // The voting members: a learner serves no linearizable read, so its health check fails
        // until it is promoted.
        let list = self.run(via, &["member", "list", "-w", "json"]).await?;
        let members = parse_member_list(&list).ok_or_else(|| ApplyError::Failed("unreadable member list".into()))?;
        let voters: Vec<&str> = members.iter().filter(|m| !m.learner).flat_map(|m| m.client_urls.iter().map(String::as_str)).collect();
        let started = members.iter().filter(|m| !m.learner && !m.client_urls.is_empty()).count();
        if started < members.iter().filter(|m| !m.learner).count() {
            return Err(ApplyError::Failed("a voting member has never started".into()));
        }
        let cmd = self.etcdctl(&voters.join(","), &["endpoint", "health"]);
        let out = via.run(&cmd, Stdin::Null).await?;
        if out.success() {
            return Ok(());
        }
        let said = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let why = unhealthy_members(&said, &members).unwrap_or_else(|| out.error_text());
        Err(ApplyError::Failed(format!("{why} (etcdctl endpoint health on {})", via.host())))
    }

    async fn set_data_aside(&self, host: &dyn Transport, why: &str) -> Result<Option<String>, ApplyError> {
        let cmd = argv(&["sh", "-c", ASIDE_SCRIPT, "cairn-aside", &self.data_dir, &self.wal_dir, why]);
        let out = host.run(&cmd, Stdin::Null).await?;
        if !out.success() {
            return Err(ApplyError::Failed(format!("setting {} aside on {}: {}", self.data_dir, host.host(), out.error_text())));
        }
        let kept = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(if kept.is_empty() { None } else { Some(kept) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unhealthy_member_is_named_without_etcdctls_log_lines() {
        // etcdctl 3.4's `endpoint health` with node2 cut off from its peers (seen in the lab).
        let said = r#"{"level":"warn","ts":"2026-12-01T19:57:48.070Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-0bb8/10.231.36.3:2379","attempt":0,"error":"rpc error: code = DeadlineExceeded desc = context deadline exceeded"}
https://10.231.36.4:2379 is healthy: successfully committed proposal: took = 12.430561ms
https://10.231.36.2:2379 is healthy: successfully committed proposal: took = 14.858395ms
https://10.231.36.3:2379 is unhealthy: failed to commit proposal: context deadline exceeded
Error: unhealthy cluster"#;
        let member = |name: &str, address: &str| ListedMember {
            id: 1,
            name: name.to_string(),
            peer_urls: vec![format!("https://{address}:2380")],
            client_urls: vec![format!("https://{address}:2379")],
            learner: false,
        };
        let members = [member("node1", "10.231.36.2"), member("node2", "10.231.36.3"), member("node3", "10.231.36.4")];
        assert_eq!(
            unhealthy_members(said, &members).as_deref(),
            Some("member node2 (https://10.231.36.3:2379) is unhealthy: failed to commit proposal: context deadline exceeded")
        );
        assert_eq!(
            unhealthy_members(said, &members[..1]).as_deref(),
            Some("https://10.231.36.3:2379 is unhealthy: failed to commit proposal: context deadline exceeded"),
            "a URL no member lists is kept as it is"
        );
        assert_eq!(unhealthy_members("Error: context deadline exceeded", &members), None);
    }

    #[test]
    fn reads_member_lists_with_learners_and_unstarted_members() {
        let text = r#"{"header":{"cluster_id":17237436991929493444,"member_id":9372538179322589801,"raft_term":2},"members":[{"ID":9372538179322589801,"name":"node1","peerURLs":["https://10.9.0.2:2380"],"clientURLs":["https://10.9.0.2:2379"]},{"ID":10501334649042878790,"peerURLs":["https://10.9.0.5:2380"],"isLearner":true}]}"#;
        let members = parse_member_list(text).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].name, "node1");
        assert_eq!(members[0].id, 9_372_538_179_322_589_801);
        assert!(!members[0].learner);
        assert!(members[1].name.is_empty() && members[1].learner && members[1].client_urls.is_empty());
        assert_eq!(parse_member_list("Error: context deadline exceeded"), None);
    }

    #[test]
    fn reads_statuses_and_their_alarms() {
        let text = r#"[{"Endpoint":"https://10.9.0.2:2379","Status":{"header":{"cluster_id":1,"member_id":11,"revision":5,"raft_term":3},"version":"3.4.23","dbSize":20480,"leader":11,"raftIndex":42,"raftTerm":3,"raftAppliedIndex":42,"errors":["memberID:11 alarm:NOSPACE "],"dbSizeInUse":16384}},{"Endpoint":"https://10.9.0.3:2379","Status":{"header":{"member_id":12},"version":"3.4.23","leader":11,"raftIndex":40,"raftTerm":3,"isLearner":true}}]"#;
        let s = parse_statuses(text);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].id, s[0].leader, s[0].raft_index, s[0].db_size), (11, 11, 42, 20480));
        assert_eq!(s[0].alarms, vec!["NOSPACE".to_string()]);
        assert!(s[1].learner && s[1].alarms.is_empty());
        assert!(parse_statuses("").is_empty());
    }

    #[test]
    fn upgrade_paths_follow_etcds_rules() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        assert_eq!(check_upgrade(&v(&["3.4.23"]), "3.4.23"), Ok(()));
        assert_eq!(check_upgrade(&v(&["3.4.23"]), "3.5.16"), Ok(()), "one minor up");
        assert_eq!(check_upgrade(&v(&["3.4.23", "3.5.16"]), "3.5.16"), Ok(()), "finishing a step");
        assert_eq!(check_upgrade(&v(&["3.5.30"]), "3.5.16"), Ok(()), "a patch downgrade within a minor");
        assert_eq!(check_upgrade(&v(&["3.5.30"]), "3.6.4"), Ok(()));
        assert_eq!(
            check_upgrade(&v(&["3.4.23"]), "3.6.4").unwrap_err(),
            "etcd upgrades one minor release at a time: members run 3.4.23; go to 3.5.x first, then to 3.6.4"
        );
        assert_eq!(
            check_upgrade(&v(&["3.5.16"]), "3.6.4").unwrap_err(),
            "etcd upgrades 3.5 to 3.6 only from 3.5.26 or later; members run 3.5.16: upgrade them to the latest 3.5 first"
        );
        assert!(check_upgrade(&v(&["3.5.16"]), "3.4.23").unwrap_err().contains("downgrade"));
        assert!(check_upgrade(&v(&["3.4.23", "3.5.30"]), "3.6.4").unwrap_err().contains("finish the upgrade to 3.5"));
        assert_eq!(check_upgrade(&[], "3.5.16"), Ok(()), "a cluster not formed yet");
        assert_eq!(check_upgrade(&v(&["3.4.23"]), "main"), Ok(()), "not a version: nothing to check");
    }

    #[test]
    fn settings_are_checked_by_name() {
        let span = Span::default();
        let mut settings: BTreeMap<String, (String, Span)> =
            ["etcdctl", "cacert", "cert", "key"].iter().map(|k| ((*k).to_string(), (format!("/x/{k}"), span.clone()))).collect();
        settings.insert("dat_dir".into(), ("/var/lib/etcd".into(), span.clone()));
        let errors = Etcd::from_settings(settings, &span).unwrap_err();
        let words: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(words, vec!["unknown etcd setting `dat_dir`", "the etcd driver needs `settings.data_dir` (the member's data dir)"]);
    }
}
