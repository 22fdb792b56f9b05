//! `cluster`: a clustered service's membership, one member per selected host. Its facts belong to
//! the cluster, not to a host: the member list (name, id, peer URLs, learner or voter), each
//! member's status (leader, raft index, alarms) and the cluster version. Every member's probe
//! carries its own view of them (a few query commands in the host's one probe), and the planner
//! merges the views into one [`membership::ClusterView`] and decides every member's step at once
//! ([`membership::plan_members`], pure): join as a learner and be promoted, replace, remove, or
//! nothing. The service-specific part — what to ask, how to read the answers, how to add,
//! promote, remove and move leadership — is a [`ClusterDriver`]; [`Driver`] is the registry of
//! drivers (today [`etcd`]), so another clustered service plugs in without touching the planner
//! or the executor.

pub mod etcd;
pub mod membership;
pub mod operations;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Applied, ApplyError, Decision, HostFacts, ProbeRequest, ResourceKind};
use crate::spec::{ClusterDriverKind, ClusterSpec, Diagnostic, Kind, ResourceId, TemplateText};
use crate::state::manifest::Owned;
use crate::transport::Transport;

pub use membership::{ClusterHealth, ClusterProblem, ClusterView, MemberStep};

/// One member of a cluster as the spec wants it, on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMember {
    /// The member's name (etcd's `--name`).
    pub name: String,
    /// The URL the other members reach it at.
    pub peer_url: String,
    /// The member's service resource (`unit.etcd`), whose disruptive changes are guarded.
    pub unit: ResourceId,
    /// The systemd unit of `unit` on this host (linked by the graph; `None` until then).
    pub service: Option<String>,
    /// How long a join (start, catch up, promote) may take.
    pub join_timeout_secs: u64,
    /// Resources it waits for on every member's host.
    pub after_on_peers: Vec<ResourceId>,
    /// The driver, with its settings rendered for this host.
    pub driver: Driver,
    /// Snapshots before risky steps (`None`: the driver's settings ask for none).
    pub snapshots: Option<SnapshotSettings>,
}

/// The drivers cairn has, with their settings: the registry ([`Driver::get`] is its one match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// etcd.
    Etcd(etcd::Etcd),
}

impl Driver {
    /// The driver's behaviour.
    pub fn get(&self) -> &dyn ClusterDriver {
        match self {
            Driver::Etcd(e) => e,
        }
    }
}

/// What one member's host saw of itself and of the cluster (parsed from its probe by the driver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberObservation {
    /// The member's service answered on this host.
    pub answered: bool,
    /// The member has data on this host (it was part of a cluster once).
    pub has_data: bool,
    /// The member list, as this member sees it (`None`: it did not answer).
    pub members: Option<Vec<ListedMember>>,
    /// The status of every member that answered, as reached from this host.
    pub statuses: Vec<MemberStatus>,
    /// Why the member did not answer, when it did not.
    pub error: Option<String>,
    /// The cluster version, as this member tells it.
    pub cluster_version: Option<String>,
}

/// Where a cluster's snapshots go before a risky step (an upgrade, a membership change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// The folder on the member's host the snapshot is kept in.
    pub dir: String,
    /// The folder on the machine running cairn it is copied to (`None`: no local copy).
    pub local_dir: Option<std::path::PathBuf>,
}

/// A snapshot taken and verified on a member's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenSnapshot {
    /// Its path on the host.
    pub path: String,
    /// Its sha256, as the host computed it.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// One entry of the cluster's member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedMember {
    /// The member id.
    pub id: u64,
    /// Its name; empty for a member added but never started.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs (empty until started).
    pub client_urls: Vec<String>,
    /// A learner (not voting).
    pub learner: bool,
}

/// One member's status, as it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member id.
    pub id: u64,
    /// The leader it follows (0: none).
    pub leader: u64,
    /// Its raft index.
    pub raft_index: u64,
    /// Its raft term.
    pub raft_term: u64,
    /// A learner.
    pub learner: bool,
    /// Its server version.
    pub version: String,
    /// Its database size in bytes.
    pub db_size: u64,
    /// The part of the database in use, bytes (the rest is freed by a defrag).
    #[serde(default)]
    pub db_size_in_use: u64,
    /// The key space's revision it has applied.
    #[serde(default)]
    pub revision: u64,
    /// Active alarms it reports (`NOSPACE`, `CORRUPT`).
    pub alarms: Vec<String>,
}

/// A clustered service's membership operations. Every method that changes the cluster runs
/// through a member's host (`via`), never from the machine running cairn, so it needs no network
/// path of its own to the cluster.
#[async_trait::async_trait]
pub trait ClusterDriver: Send + Sync {
    /// The driver's name (`etcd`).
    fn name(&self) -> &'static str;

    /// Whether the members running `running` (their versions) may go to the version the spec
    /// installs; the refusal says which step to take instead. Drivers keep the rules as data.
    fn upgrade(&self, _running: &[String]) -> Result<(), String> {
        Ok(())
    }

    /// The version the spec installs on the members, when the settings say.
    fn wanted_version(&self) -> Option<&str> {
        None
    }

    /// The folder on a member's host where snapshots before risky steps are kept, when the
    /// driver takes snapshots and its settings ask for them.
    fn snapshot_dir(&self) -> Option<&str> {
        None
    }

    /// Whether a snapshot is also copied to the machine running cairn.
    fn snapshot_copy(&self) -> bool {
        true
    }

    /// The runbook operations it offers (`cairn run`).
    fn operations(&self) -> &'static [operations::OperationDef] {
        &[]
    }

    /// A member's database quota, bytes, when the settings say (`disarm` checks the space).
    fn quota_bytes(&self) -> Option<u64> {
        None
    }

    /// Checks that `path` on `host` is a snapshot the service reads.
    async fn verify_snapshot(&self, host: &dyn Transport, path: &str) -> Result<(), ApplyError> {
        Err(ApplyError::Failed(format!("the {} driver cannot check {path} on {}", self.name(), host.host())))
    }

    /// Runs one step of an operation (other than a snapshot) through `via`; says what it did.
    async fn run_step(&self, via: &dyn Transport, step: &operations::OperationStep) -> Result<String, ApplyError> {
        Err(ApplyError::Failed(format!("the {} driver cannot run {step:?} (on {})", self.name(), via.host())))
    }

    /// Takes a snapshot of the cluster's data through `via` into `dir/name` on that host,
    /// verified before it is kept there.
    async fn snapshot(&self, via: &dyn Transport, _dir: &str, _name: &str) -> Result<TakenSnapshot, ApplyError> {
        Err(ApplyError::Failed(format!("the {} driver takes no snapshots (on {})", self.name(), via.host())))
    }

    /// Adds this member's share to its host's probe (query commands, data paths).
    fn add_to_probe(&self, request: &mut ProbeRequest);

    /// Reads this member's share of a probe.
    fn observe(&self, facts: &HostFacts) -> MemberObservation;

    /// Reads the same, live, through this member's host (the re-check before acting).
    async fn read(&self, host: &dyn Transport) -> Result<MemberObservation, ApplyError> {
        let mut request = ProbeRequest::default();
        self.add_to_probe(&mut request);
        let facts = request.run(host).await?;
        Ok(self.observe(&facts))
    }

    /// Adds a member as a learner, through `via`; returns its id.
    async fn add_learner(&self, via: &dyn Transport, name: &str, peer_url: &str) -> Result<u64, ApplyError>;

    /// Promotes a learner to a voting member once it has caught up; `Ok(false)` while it has not.
    async fn promote(&self, via: &dyn Transport, id: u64) -> Result<bool, ApplyError>;

    /// Removes a member, through `via`.
    async fn remove(&self, via: &dyn Transport, id: u64) -> Result<(), ApplyError>;

    /// Moves leadership to member `to`, through `via` (any member's host).
    async fn move_leader(&self, via: &dyn Transport, to: u64) -> Result<(), ApplyError>;

    /// Whether every member answers and one leader leads, asked through `via`.
    async fn healthy(&self, via: &dyn Transport) -> Result<(), ApplyError>;

    /// Moves this member's data out of the way on its host (kept beside, never deleted);
    /// returns where it went, or `None` when there was none.
    async fn set_data_aside(&self, host: &dyn Transport, why: &str) -> Result<Option<String>, ApplyError>;
}

impl DesiredMember {
    /// Whether `listed` is this member: the same peer URL, or the same name once it started.
    pub fn is(&self, listed: &ListedMember) -> bool {
        listed.peer_urls.contains(&self.peer_url) || (!listed.name.is_empty() && listed.name == self.name)
    }

    /// Renders a `[cluster.*]` table for one host.
    pub fn from_spec(
        spec: &ClusterSpec,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut one = |t: &TemplateText, errors: &mut Vec<Diagnostic>| render(t).map_err(|e| errors.push(e)).ok();
        let name = one(&spec.member, &mut errors);
        let peer_url = one(&spec.peer_url, &mut errors);
        let mut settings = BTreeMap::new();
        for (key, value) in &spec.settings {
            if let Some(v) = one(value, &mut errors) {
                settings.insert(key.value.clone(), (v, key.span.clone()));
            }
        }
        let driver: Option<Driver> = match spec.driver {
            ClusterDriverKind::Etcd => {
                etcd::Etcd::from_settings(settings, &spec.unit.span).map(Driver::Etcd).map_err(|e| errors.extend(e)).ok()
            }
        };
        match (name, peer_url, driver) {
            (Some(name), Some(peer_url), Some(driver)) if errors.is_empty() => Ok(Self {
                snapshots: driver.get().snapshot_dir().map(|dir| SnapshotSettings {
                    dir: dir.to_string(),
                    local_dir: driver.get().snapshot_copy().then(|| spec.snapshot_local_dir.clone()),
                }),
                name,
                peer_url,
                unit: spec.unit.value.clone(),
                service: None,
                join_timeout_secs: spec.join_timeout_secs,
                after_on_peers: spec.after_on_peers.iter().map(|a| a.value.clone()).collect(),
                driver,
            }),
            _ => Err(errors),
        }
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredMember {
    fn kind(&self) -> Kind {
        Kind::Cluster
    }

    fn target(&self) -> String {
        format!("{} member {}", self.driver.get().name(), self.name)
    }

    fn add_to_probe(&self, probe: &mut ProbeRequest) {
        self.driver.get().add_to_probe(probe);
    }

    /// Alone, a member cannot decide: the planner decides every member of the cluster at once
    /// from all their views ([`membership::plan_members`]) and puts that decision in the plan.
    fn diff(&self, _facts: &HostFacts) -> Decision {
        Decision::noop(super::Reason::Member(MemberStep::Decided))
    }

    /// Membership steps need the other members' hosts: the executor runs them
    /// (`apply::cluster`), never through this.
    async fn apply(&self, _transport: &dyn Transport, _decision: &Decision) -> Result<Applied, ApplyError> {
        Err(ApplyError::Failed(format!("member {}: a membership step runs through the cluster, not one host", self.name)))
    }

    fn owned(&self, _created: bool) -> Option<Owned> {
        None
    }

    fn member(&self) -> Option<&DesiredMember> {
        Some(self)
    }

    fn member_mut(&mut self) -> Option<&mut DesiredMember> {
        Some(self)
    }
}
