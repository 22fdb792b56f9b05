//! Runbook operations on a cluster (`cairn run INSTANCE OPERATION [KEY=VALUE …]`): what an
//! operator does by hand on day 2 — a snapshot now, compaction, defragmentation, clearing an
//! alarm — as named operations with typed inputs, planned into steps per member host before
//! anything happens, then applied with the same locks, approval and saved-plan refusal as any
//! plan. A driver says which operations it has ([`OperationDef`]); planning an operation into
//! [`OperationStep`]s is pure ([`plan_operation`]); running a step is the driver's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::membership::{ClusterView, Wanted, judge};
use super::{ClusterHealth, ClusterProblem};

/// An operation a driver offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationDef {
    /// Its name (`defrag`).
    pub name: &'static str,
    /// What it does, in a sentence.
    pub description: &'static str,
    /// Its inputs.
    pub inputs: &'static [OperationInput],
}

/// One input of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationInput {
    /// Its name (`revision`).
    pub name: &'static str,
    /// Its type.
    pub kind: InputKind,
    /// Whether it must be given.
    pub required: bool,
    /// What it is.
    pub description: &'static str,
}

/// The type of an operation input, checked when it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A non-negative integer.
    Int,
    /// Any text.
    String,
}

impl InputKind {
    /// Its name in listings and errors.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Int => "int",
            InputKind::String => "string",
        }
    }
}

/// The operations of etcd (the etcd driver's list).
pub const ETCD_OPERATIONS: &[OperationDef] = &[
    OperationDef {
        name: "snapshot",
        description: "take a snapshot now through a healthy member: verified, kept in the snapshot dir on that host and copied to the state dir",
        inputs: &[],
    },
    OperationDef {
        name: "compact",
        description: "compact the key space's history up to a revision (default: the current one), freeing space for defrag",
        inputs: &[OperationInput {
            name: "revision",
            kind: InputKind::Int,
            required: false,
            description: "compact up to this revision (default: the current revision)",
        }],
    },
    OperationDef {
        name: "defrag",
        description: "defragment every member's database, one member at a time, followers first and the leader last, each gated on the cluster answering",
        inputs: &[],
    },
    OperationDef {
        name: "restore",
        description: "restore the cluster from a snapshot: verified and copied to every member, a safety snapshot first, every member stopped, its data dir restored (old one kept aside), all started together, health-gated",
        inputs: &[OperationInput {
            name: "snapshot",
            kind: InputKind::String,
            required: true,
            description: "PATH of a snapshot on the machine running cairn, or HOST:PATH of one on a member's host",
        }],
    },
    OperationDef {
        name: "copy-backups",
        description: "copy every member's snapshots (the backup timer's and cairn's) to a folder on another host of the cluster, those not there yet, sha256 checked, so one lost disk never takes the only copy",
        inputs: &[OperationInput {
            name: "to",
            kind: InputKind::String,
            required: true,
            description: "HOST:DIR, a host of the cluster and a folder there: each member's snapshots go into DIR/MEMBER/",
        }],
    },
    OperationDef {
        name: "disarm",
        description: "clear the NOSPACE alarm once compaction and defrag have freed space; refused while a member's database is still near its quota",
        inputs: &[],
    },
];

/// The operations of a driver, by its kind (for `cairn module show`, which has no hosts).
pub fn for_driver(driver: crate::spec::ClusterDriverKind) -> &'static [OperationDef] {
    match driver {
        crate::spec::ClusterDriverKind::Etcd => ETCD_OPERATIONS,
    }
}

/// An operation as asked: its name and inputs (`KEY=VALUE` pairs, checked against its
/// definition by [`check_inputs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRequest {
    /// The cluster resource it runs on.
    pub cluster: String,
    /// The operation's name.
    pub name: String,
    /// Its inputs.
    pub inputs: BTreeMap<String, String>,
    /// The sha256 of a local file an input names (`restore snapshot=PATH`), read when the
    /// operation was asked for: the apply checks the file still has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_sha256: Option<String>,
}

/// Where a snapshot to restore comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum SnapshotSource {
    /// A file on the machine running cairn.
    Local {
        /// Its path.
        path: String,
        /// Its sha256.
        sha256: String,
    },
    /// A file on a member's host.
    Host {
        /// The host.
        host: String,
        /// Its path there.
        path: String,
    },
}

impl SnapshotSource {
    /// Reads `snapshot=…`: `HOST:PATH` when HOST is one of `hosts`, else a local path.
    pub fn parse(text: &str, hosts: &[&str], local_sha256: Option<&str>) -> Result<Self, String> {
        if let Some((host, path)) = text.split_once(':')
            && hosts.contains(&host)
        {
            return if path.starts_with('/') {
                Ok(SnapshotSource::Host { host: host.to_string(), path: path.to_string() })
            } else {
                Err(format!("snapshot={text}: the path on {host} must be absolute"))
            };
        }
        match local_sha256 {
            Some(sha) => Ok(SnapshotSource::Local { path: text.to_string(), sha256: sha.to_string() }),
            None => Err(format!(
                "snapshot={text}: no such file here, and `{}` is not a host of the cluster",
                text.split(':').next().unwrap_or(text)
            )),
        }
    }
}

/// One step of an operation, on one member's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum OperationStep {
    /// A snapshot through this member.
    Snapshot,
    /// A snapshot of the data a restore replaces, through this member, first.
    SafetySnapshot,
    /// Compaction of the key space up to `revision` (cluster-wide, through this member).
    Compact {
        /// The revision compacted to.
        revision: u64,
    },
    /// Defragmentation of this member's database.
    Defrag {
        /// The member.
        member: String,
        /// It leads (so it goes last).
        leader: bool,
        /// Its database size now, bytes.
        db_size: u64,
        /// The part of it in use, bytes.
        in_use: u64,
    },
    /// The snapshot to restore, put at `path` on this member's host (copied, or already there)
    /// and checked: its sha256 and `snapshot status`.
    Upload {
        /// Where it comes from.
        source: SnapshotSource,
        /// Its path on this host.
        path: String,
    },
    /// The member's service stopped (every member, before any restores).
    Stop {
        /// The member.
        member: String,
    },
    /// The member's data dir restored from the snapshot at `path` (the old data kept aside).
    Restore {
        /// The member's name.
        member: String,
        /// Its peer URL.
        peer_url: String,
        /// The cluster's members, `name=peer_url,…`.
        initial_cluster: String,
        /// The restored cluster's token (new: it is another cluster).
        token: String,
        /// The snapshot on this host.
        path: String,
    },
    /// Every member's service started at once (a restored cluster needs its quorum), then the
    /// cluster healthy.
    StartAll {
        /// The hosts.
        hosts: Vec<String>,
    },
    /// This member's snapshots copied to another host (those not there yet).
    CopyBackups {
        /// The member.
        member: String,
        /// Its snapshot folder.
        from_dir: String,
        /// The host they go to.
        to_host: String,
        /// The folder there (`DIR/MEMBER`).
        to_dir: String,
    },
    /// Clearing the alarms (through this member).
    Disarm {
        /// The active alarms, `ALARM on MEMBER`.
        alarms: Vec<String>,
    },
}

/// Checks `given` against `def`: every unknown and every missing input is reported, and every
/// value of the wrong type.
pub fn check_inputs(def: &OperationDef, given: &BTreeMap<String, String>) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let known: Vec<&str> = def.inputs.iter().map(|i| i.name).collect();
    for (key, value) in given {
        match def.inputs.iter().find(|i| i.name == key) {
            None if known.is_empty() => errors.push(format!("`{}` takes no inputs, got `{key}={value}`", def.name)),
            None => errors.push(format!("`{}` has no input `{key}`; its inputs: {}", def.name, known.join(", "))),
            Some(i) if i.kind == InputKind::Int && value.parse::<u64>().is_err() => {
                errors.push(format!("input `{key}` of `{}` is an int, got `{value}`", def.name));
            }
            Some(_) => {}
        }
    }
    for i in def.inputs.iter().filter(|i| i.required && !given.contains_key(i.name)) {
        errors.push(format!("`{}` needs `{}=…` ({})", def.name, i.name, i.description));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// What planning an operation needs of the cluster as read.
#[derive(Debug, Clone)]
pub struct OperationContext<'a> {
    /// The spec's members, on their hosts.
    pub wanted: &'a [Wanted<'a>],
    /// Which hosts' members answered.
    pub answering: Vec<&'a str>,
    /// The cluster as read (`None`: no member answered).
    pub view: Option<&'a ClusterView>,
    /// The backend quota of a member's database, bytes, when the settings say.
    pub quota_bytes: Option<u64>,
    /// The folder for snapshots on the members' hosts, when the settings give one.
    pub snapshot_dir: Option<&'a str>,
}

/// How close to its quota a database may be for `disarm` to clear NOSPACE (90%: etcd would raise
/// the alarm again at once).
const DISARM_MAX_SHARE: f64 = 0.9;

/// Plans `request` into steps, in the order they run; the refusal says why and what to do.
pub fn plan_operation(request: &OperationRequest, ctx: &OperationContext<'_>) -> Result<Vec<(String, OperationStep)>, String> {
    if request.name == "restore" {
        return plan_restore(request, ctx);
    }
    if request.name == "copy-backups" {
        return plan_copy_backups(request, ctx);
    }
    let view = ctx.view.ok_or_else(|| format!("no member of {} answers: `{}` needs a running cluster", request.cluster, request.name))?;
    let (health, problems, leader) = judge(view);
    // Alarms are what these operations clear; anything else wrong stops them.
    let blocking: Vec<String> = problems.iter().filter(|p| !matches!(p, ClusterProblem::Alarm { .. })).map(ToString::to_string).collect();
    if health == ClusterHealth::Degraded && !blocking.is_empty() {
        return Err(format!("{} is degraded ({}); heal it first (`cairn plan` shows how)", request.cluster, blocking.join("; ")));
    }
    let member_of = |w: &Wanted<'_>| view.members.iter().find(|m| w.member.is(m) && !m.learner);
    // A follower that answers carries the cluster-wide steps.
    let via = ctx
        .wanted
        .iter()
        .filter(|w| ctx.answering.contains(&w.host))
        .find(|w| member_of(w).is_some_and(|m| Some(m.id) != leader))
        .or_else(|| ctx.wanted.iter().find(|w| ctx.answering.contains(&w.host)))
        .map(|w| w.host.to_string())
        .ok_or_else(|| format!("no member of {} in the spec answers", request.cluster))?;
    match request.name.as_str() {
        "snapshot" => Ok(vec![(via, OperationStep::Snapshot)]),
        "compact" => {
            let current = view.statuses.values().map(|s| s.revision).max().unwrap_or(0);
            let revision = request.inputs.get("revision").and_then(|r| r.parse().ok()).unwrap_or(current);
            if revision > current {
                return Err(format!("revision {revision} is ahead of the cluster's current revision {current}"));
            }
            Ok(vec![(via, OperationStep::Compact { revision })])
        }
        "defrag" => {
            let mut steps: Vec<(String, OperationStep)> = ctx
                .wanted
                .iter()
                .filter_map(|w| {
                    let m = member_of(w)?;
                    let s = view.statuses.get(&m.id)?;
                    let step = OperationStep::Defrag {
                        member: if m.name.is_empty() { format!("{:x}", m.id) } else { m.name.clone() },
                        leader: Some(m.id) == leader,
                        db_size: s.db_size,
                        in_use: s.db_size_in_use,
                    };
                    Some((w.host.to_string(), step))
                })
                .collect();
            steps.sort_by_key(|(_, s)| matches!(s, OperationStep::Defrag { leader: true, .. }));
            Ok(steps)
        }
        "disarm" => {
            let alarms: Vec<String> = problems
                .iter()
                .filter_map(|p| match p {
                    ClusterProblem::Alarm { member, alarm } => Some(format!("{alarm} on {member}")),
                    _ => None,
                })
                .collect();
            if alarms.is_empty() {
                return Err(format!("{} has no active alarm: nothing to disarm", request.cluster));
            }
            if let Some(quota) = ctx.quota_bytes {
                let full: Vec<String> = view
                    .members
                    .iter()
                    .filter_map(|m| view.statuses.get(&m.id).map(|s| (m, s)))
                    .filter(|(_, s)| s.db_size as f64 >= quota as f64 * DISARM_MAX_SHARE)
                    .map(|(m, s)| format!("{} ({} of {} bytes)", m.name, s.db_size, quota))
                    .collect();
                if !full.is_empty() {
                    return Err(format!(
                        "the space is not there: {} still near the quota; free it first with `cairn run … compact` then `cairn run … defrag`, \
                         or raise the quota",
                        full.join(", ")
                    ));
                }
            }
            Ok(vec![(via, OperationStep::Disarm { alarms })])
        }
        other => Err(format!("unknown operation `{other}`")),
    }
}

/// `copy-backups`: every member but the destination's own, one at a time (no cluster needed).
fn plan_copy_backups(request: &OperationRequest, ctx: &OperationContext<'_>) -> Result<Vec<(String, OperationStep)>, String> {
    let from_dir =
        ctx.snapshot_dir.ok_or_else(|| format!("{} has no snapshot dir (`settings.snapshot_dir`) to copy from", request.cluster))?;
    let to = request.inputs.get("to").map(String::as_str).unwrap_or_default();
    let hosts: Vec<&str> = ctx.wanted.iter().map(|w| w.host).collect();
    let (to_host, dir) = match to.split_once(':') {
        Some((h, d)) if hosts.contains(&h) && d.starts_with('/') => (h, d.trim_end_matches('/')),
        _ => return Err(format!("to={to}: write HOST:DIR with HOST one of {} and DIR absolute", hosts.join(", "))),
    };
    Ok(ctx
        .wanted
        .iter()
        .filter(|w| w.host != to_host)
        .map(|w| {
            let step = OperationStep::CopyBackups {
                member: w.member.name.clone(),
                from_dir: from_dir.to_string(),
                to_host: to_host.to_string(),
                to_dir: format!("{dir}/{}", w.member.name),
            };
            (w.host.to_string(), step)
        })
        .collect())
}

/// `restore`: works on a cluster that is down too (that is when it is needed most).
fn plan_restore(request: &OperationRequest, ctx: &OperationContext<'_>) -> Result<Vec<(String, OperationStep)>, String> {
    let dir = ctx
        .snapshot_dir
        .ok_or_else(|| format!("{} has no snapshot dir (`settings.snapshot_dir`) to put the snapshot in", request.cluster))?;
    let given = request.inputs.get("snapshot").map(String::as_str).unwrap_or_default();
    let hosts: Vec<&str> = ctx.wanted.iter().map(|w| w.host).collect();
    let source = SnapshotSource::parse(given, &hosts, request.local_sha256.as_deref())?;
    // The same name on every host: the file's digest when known, else its name on its host.
    let name = match &source {
        SnapshotSource::Local { sha256, .. } => format!("cairn-restore-{}.db", sha256.get(..12).unwrap_or(sha256)),
        SnapshotSource::Host { path, .. } => format!("cairn-restore-{}", path.rsplit('/').next().unwrap_or("snapshot.db")),
    };
    let token = match &source {
        SnapshotSource::Local { sha256, .. } => format!("restored-{}", sha256.get(..12).unwrap_or(sha256)),
        SnapshotSource::Host { host, path } => format!("restored-{host}-{}", path.rsplit('/').next().unwrap_or("snapshot")),
    };
    let initial_cluster: Vec<String> = ctx.wanted.iter().map(|w| format!("{}={}", w.member.name, w.member.peer_url)).collect();
    let mut steps = Vec::new();
    for w in ctx.wanted {
        let path = match &source {
            SnapshotSource::Host { host, path } if host == w.host => path.clone(),
            _ => format!("{}/{name}", dir.trim_end_matches('/')),
        };
        steps.push((w.host.to_string(), OperationStep::Upload { source: source.clone(), path }));
    }
    // A safety snapshot of what is there now, when the cluster answers.
    if let Some(via) = ctx.wanted.iter().find(|w| ctx.answering.contains(&w.host)) {
        steps.push((via.host.to_string(), OperationStep::SafetySnapshot));
    }
    for w in ctx.wanted {
        steps.push((w.host.to_string(), OperationStep::Stop { member: w.member.name.clone() }));
    }
    for (w, (_, upload)) in ctx.wanted.iter().zip(steps.clone()) {
        let OperationStep::Upload { path, .. } = upload else { continue };
        let step = OperationStep::Restore {
            member: w.member.name.clone(),
            peer_url: w.member.peer_url.clone(),
            initial_cluster: initial_cluster.join(","),
            token: token.clone(),
            path,
        };
        steps.push((w.host.to_string(), step));
    }
    let first = ctx.wanted.first().map(|w| w.host.to_string()).ok_or_else(|| format!("{} has no members in the spec", request.cluster))?;
    steps.push((first, OperationStep::StartAll { hosts: hosts.iter().map(|h| (*h).to_string()).collect() }));
    Ok(steps)
}

#[cfg(test)]
mod tests;
