//! Plans: what would change, as data. [`planner::plan`] reads every host once (one batched
//! probe per host) and diffs each instance purely; [`render`] turns a [`Plan`] into text or
//! JSON without touching a terminal. Sensitive content never enters a plan.

mod clusters;
pub mod planner;
pub mod render;
pub mod saved;
mod textdiff;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::InstanceId;
use crate::resource::removal::Orphan;
pub use crate::resource::{Action, AttrChange, Reason};
use crate::state::manifest::Manifest;

/// Version of the JSON plan format (`docs/plan-json.md`). Bump on any incompatible change.
pub const FORMAT_VERSION: &str = "1";

/// One instance's planned change (or no-op), with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Which resource on which host.
    pub id: InstanceId,
    /// What the change is about: an instance of the graph, or a removal.
    #[serde(skip)]
    pub subject: Subject,
    /// What will be done.
    pub action: Action,
    /// Why. Saved plan files keep its words (read back as [`Reason::Found`]): a saved plan is
    /// compared with a fresh one, never acted on.
    #[serde(with = "reason_as_text")]
    pub reason: Reason,
    /// What it acts on ("/etc/demo/motd").
    pub target: String,
    /// Attribute changes (before → after).
    pub attrs: Vec<AttrChange>,
    /// Unified diff of text content, when shown.
    pub diff: Option<String>,
    /// Content is sensitive: shown as `(sensitive)`.
    pub sensitive: bool,
    /// Carrying it out interrupts a running service; `rolling` units space such changes out.
    pub disruptive: bool,
    /// "waits for X on HOST: why", for each dependency (the verbose view).
    #[serde(default)]
    pub waits_for: Vec<String>,
    /// What the probe saw of everything this instance depends on, one line per fact
    /// ([`crate::resource::HostFacts::describe`]); a saved plan is refused when it differs at apply.
    #[serde(default)]
    pub observed: Vec<String>,
}

/// A reason in a saved plan file: its words.
mod reason_as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Reason;

    pub(super) fn serialize<S: Serializer>(reason: &Reason, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(reason)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        String::deserialize(d).map(Reason::from)
    }
}

/// What a [`Change`] is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Subject {
    /// The instance at this index of the graph.
    Instance(usize),
    /// The removal of something the spec no longer has, as the manifest records it.
    Removal(Box<Orphan>),
    /// The removal of a member the spec no longer has from this cluster (its step is the reason).
    MemberRemoval(crate::spec::ResourceId),
    /// A snapshot of this cluster's data, taken before the plan's risky steps (its reason says
    /// which), through the change's host.
    Snapshot(crate::spec::ResourceId),
    /// This cluster's upgrade, refused (an allowed one is carried by the members' restarts).
    Upgrade(crate::spec::ResourceId),
    /// A step of a runbook operation on this cluster (`cairn run`; its reason says which).
    Operation(crate::spec::ResourceId),
    /// Read back from a saved plan file: only compared with a fresh plan, never applied.
    #[default]
    Saved,
}

impl Change {
    /// The same decision, whatever was observed: what a saved plan must still agree on.
    pub fn decision(&self) -> (&InstanceId, Action, String, &[AttrChange], Option<&str>) {
        (&self.id, self.action, self.reason.to_string(), &self.attrs, self.diff.as_deref())
    }

    /// The graph index of the instance it changes (`None` for a removal).
    pub fn instance(&self) -> Option<usize> {
        match self.subject {
            Subject::Instance(i) => Some(i),
            Subject::Removal(_)
            | Subject::MemberRemoval(_)
            | Subject::Snapshot(_)
            | Subject::Operation(_)
            | Subject::Upgrade(_)
            | Subject::Saved => None,
        }
    }

    /// The removal it carries out, if it is one.
    pub fn removal(&self) -> Option<&Orphan> {
        match &self.subject {
            Subject::Removal(orphan) => Some(orphan),
            Subject::Instance(_)
            | Subject::MemberRemoval(_)
            | Subject::Snapshot(_)
            | Subject::Operation(_)
            | Subject::Upgrade(_)
            | Subject::Saved => None,
        }
    }
}

/// A CA rotation the plan carries on: the phase it stands at; the phases after it follow in the
/// same apply, each once the one before is done on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPlan {
    /// The CA's name.
    pub ca: String,
    /// The phase the hosts are in now.
    pub phase: crate::state::pki::RotationPhase,
    /// Whether the new CA exists (otherwise phase 1 makes it).
    pub started: bool,
    /// Why it starts when no `--replace` asked for it (the spec changed the CA's key type or
    /// subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    /// The CA's certificates, as `ID on HOST`.
    pub certificates: Vec<String>,
    /// How many changes this phase still makes (0: done, the apply records it and goes on).
    pub changes: usize,
    /// The plan covers part of the spec (`--host`, `--target`, `--exclude`): this phase's
    /// changes are made, but the rotation cannot move on to the next phase.
    pub partial: bool,
    /// The CA's store in the state dir (a local path: not in plan files or the JSON view).
    #[serde(default, skip_serializing)]
    pub store: std::path::PathBuf,
}

/// A cluster as the plan found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPlan {
    /// The cluster resource.
    pub id: crate::spec::ResourceId,
    /// Its driver (`etcd`).
    pub driver: String,
    /// The member's service, whose disruptive changes the quorum guard holds.
    pub unit: crate::spec::ResourceId,
    /// Health, counts, leader and member list.
    #[serde(flatten)]
    pub summary: crate::resource::cluster::membership::ClusterSummary,
    /// The members' version change, in the order it runs (`None`: none, or it is held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::resource::cluster::membership::UpgradePlan>,
}

impl ClusterPlan {
    /// Whether `change` is one of this cluster's member steps.
    pub fn owns(&self, change: &Change) -> bool {
        change.id.resource == self.id
    }
}

/// A host that could not be read; its instances cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostError {
    /// The host's name.
    pub host: String,
    /// What went wrong, with its cause chain.
    pub error: String,
}

/// Counts of changes by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `+`
    pub create: usize,
    /// `~`
    pub update: usize,
    /// `±`
    pub replace: usize,
    /// `-`
    pub delete: usize,
    /// `↻`
    pub restart: usize,
    /// Unchanged instances.
    pub unchanged: usize,
    /// Instances the host's state blocks (`!`).
    pub conflict: usize,
    /// Checks that will run (`?`); not changes.
    pub check: usize,
}

/// Everything a plan says: per host, every instance's decision, and the hosts that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Per host (sorted by name), its instances in dependency order.
    pub hosts: BTreeMap<String, Vec<Change>>,
    /// Hosts that could not be read.
    pub errors: Vec<HostError>,
    /// Each planned host's address, for the views (a saved plan is shown without the spec).
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// Each cluster's state and what the plan does to its membership (its members' steps are
    /// changes of the hosts, like any instance's).
    #[serde(default)]
    pub clusters: Vec<ClusterPlan>,
    /// The CA rotations in progress (their certificates' changes are the hosts').
    #[serde(default)]
    pub rotations: Vec<RotationPlan>,
    /// Each planned host's manifest of this spec as the plan found it (`None`: none yet), for
    /// hosts that keep one (reached over ssh).
    #[serde(skip)]
    pub manifests: BTreeMap<String, Option<Manifest>>,
    /// What the probes found and when: the apply's first wave on a host acts on it instead of
    /// reading the host again when the plan is only moments old (never kept in plan files).
    #[serde(skip)]
    pub read: Option<PlanRead>,
}

/// The hosts' facts as a plan read them.
#[derive(Debug, Clone)]
pub struct PlanRead {
    /// When the reading started (so its age is never understated).
    pub at: std::time::Instant,
    /// Per host.
    pub facts: BTreeMap<String, crate::resource::HostFacts>,
}

/// Two plans are the same plan whatever their reads.
impl PartialEq for PlanRead {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for PlanRead {}

impl Plan {
    /// An empty plan for the hosts of `graph`.
    pub fn for_graph(graph: &crate::graph::Graph) -> Self {
        let addresses = graph.hosts.iter().map(|(name, h)| (name.clone(), h.address.clone())).collect();
        Self { addresses, ..Self::default() }
    }

    /// Counts by action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in self.hosts.values().flatten() {
            match c.action {
                Action::NoOp => s.unchanged += 1,
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
                Action::Restart => s.restart += 1,
                Action::Conflict => s.conflict += 1,
                Action::Check => s.check += 1,
            }
        }
        s
    }

    /// True when nothing would change (errors aside).
    pub fn has_changes(&self) -> bool {
        // A rotation with nothing left in its phase still has phases to go.
        self.hosts.values().flatten().any(|c| c.action.is_change()) || self.rotations.iter().any(|r| !r.partial)
    }

    /// True when some host could not be read or some instance is blocked.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.hosts.values().flatten().any(|c| c.action == Action::Conflict)
    }

    /// The same plan with only what differs from the spec: changes and blocked instances (no
    /// unchanged instances, no checks, which change nothing).
    pub fn drift_only(mut self) -> Plan {
        for changes in self.hosts.values_mut() {
            changes.retain(|c| c.action.is_change() || c.action == Action::Conflict);
        }
        self.hosts.retain(|_, changes| !changes.is_empty());
        self
    }

    /// The changes `prevent_destroy` blocks: a plan with any is not applied at all.
    pub fn protected(&self) -> impl Iterator<Item = &Change> {
        self.changes().filter(|c| c.action == Action::Conflict && c.reason.is_protected())
    }

    /// Every change, in host order.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.hosts.values().flatten()
    }

    /// `cluster`'s steps in the order they run: its own (snapshots, removals) and its members'
    /// first, then an operation's (`cairn run`) by their place in it, across hosts.
    pub fn cluster_steps(&self, cluster: &ClusterPlan) -> Vec<&Change> {
        let mut steps: Vec<&Change> = self.changes().filter(|c| cluster.owns(c)).collect();
        steps.sort_by_key(|c| match c.reason {
            Reason::Operation { seq, .. } => seq,
            _ => 0,
        });
        steps
    }
}
