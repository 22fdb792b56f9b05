//! Why a decision was made, as data. Kinds explain their own findings in a sentence
//! ([`Reason::Found`]); what other layers act on — a removal, a block by `prevent_destroy`, a path
//! another spec owns, drift accepted by `ignore` — is a variant of its own, so no layer ever
//! looks at words. The words of every variant are made by the plan renderer
//! (`plan::render`, its `Display` for [`Reason`]).

use serde::{Deserialize, Serialize};

/// Why an instance gets its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// The kind's own account of what it found ("file does not exist", "up to date").
    Found {
        /// The sentence.
        text: String,
    },
    /// Only `ignore`d attributes differ: nothing to do.
    OnlyIgnoredDrift {
        /// The `ignore` list.
        ignored: Vec<String>,
    },
    /// Some attributes differ, and the `ignore`d ones are left out.
    DriftIgnoring {
        /// What differs ("content", "mode").
        differs: Vec<String>,
        /// The `ignore` list.
        ignored: Vec<String>,
    },
    /// The host's manifest lists it and the spec no longer has it (or `destroy` removes all).
    Removal {
        /// `cairn destroy` plans it.
        destroy: bool,
        /// What the removal does or found, in the kind's words ("delete /etc/old").
        detail: String,
    },
    /// `prevent_destroy` forbids what the plan would do.
    Protected(Protected),
    /// A cluster member's step (the cluster's planner decided it).
    Member(super::cluster::MemberStep),
    /// A disruptive change refused because the cluster is degraded (the quorum guard).
    ClusterDegraded {
        /// The cluster resource.
        cluster: String,
        /// What is wrong with it.
        problems: Vec<super::cluster::ClusterProblem>,
    },
    /// The version the spec installs is not a supported step from what the members run.
    UpgradeRefused {
        /// The cluster resource.
        cluster: String,
        /// Why, and which step to take instead.
        why: String,
    },
    /// A snapshot of the cluster's data is taken first, before the plan's risky steps.
    SnapshotFirst {
        /// The cluster resource.
        cluster: String,
        /// The version the members are upgraded to, when they are.
        upgrade: Option<String>,
        /// Members join, leave or are replaced.
        membership: bool,
        /// The CA whose rotation starts (its certificates restart the cluster's service).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rotation: Option<String>,
        /// Where it is kept on the host.
        dir: String,
        /// Also copied to the machine running cairn.
        copied: bool,
    },
    /// A step of a runbook operation (`cairn run`).
    Operation {
        /// The cluster resource.
        cluster: String,
        /// The step.
        step: super::cluster::operations::OperationStep,
        /// Where a snapshot is kept on the host, when the cluster keeps them.
        kept_in: Option<String>,
        /// Its place in the operation (1, 2, …): steps run in this order, across hosts.
        seq: usize,
    },
    /// An operation that cannot run now, and why.
    OperationRefused {
        /// The operation.
        operation: String,
        /// The cluster resource.
        cluster: String,
        /// Why, and what to do.
        why: String,
    },
    /// Removing this member would leave fewer healthy voting members than a quorum.
    WouldLoseQuorum {
        /// The member.
        member: String,
        /// Voting members after the removal.
        voters: usize,
        /// Healthy ones among them.
        healthy: usize,
    },
    /// The host carries a certificate, but its CA is not in the local state dir (a lost or
    /// missing state dir): a new CA would be made and every certificate reissued, so the plan
    /// refuses until the state dir is restored or `--replace ca.NAME` asks for a new CA.
    CaNotInStateDir {
        /// The CA's name.
        ca: String,
        /// Where the state dir keeps it.
        store: String,
    },
    /// A phase of a CA rotation (started by `--replace ca.NAME`) changes this certificate.
    Rotation {
        /// The CA's name.
        ca: String,
        /// The phase.
        phase: crate::state::pki::RotationPhase,
    },
    /// `--replace` asked for it: made again, in order or not.
    Replace(Replacing),
    /// Another spec's manifest on the host owns what this instance wants.
    OwnedElsewhere {
        /// The path or unit both want.
        what: String,
        /// The other spec's name.
        spec: String,
        /// Its resource there.
        resource: String,
        /// Its manifest file.
        manifest: String,
    },
}

/// What `--replace` does to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "replacing", rename_all = "kebab-case")]
pub enum Replacing {
    /// A file's content written again.
    Rewrite,
    /// A unit restarted.
    Restart,
    /// A certificate issued again, with a new key, by the same CA.
    Reissue,
    /// `--replace ca.NAME`: a new CA replaces the current one, and the certificate is issued by it.
    NewCa {
        /// The CA's name.
        ca: String,
    },
    /// A binary's files downloaded and installed again.
    Reinstall,
}

/// What `prevent_destroy` prevented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "would", rename_all = "kebab-case")]
pub enum Protected {
    /// Removing something that left the spec.
    Removal {
        /// What the removal would do ("delete /etc/keep").
        detail: String,
    },
    /// Replacing a resource still in the spec.
    Replacement {
        /// Why it would be replaced.
        because: Box<Reason>,
    },
}

impl Reason {
    /// A kind's own sentence.
    pub fn found(text: impl Into<String>) -> Self {
        Reason::Found { text: text.into() }
    }

    /// Whether `prevent_destroy` blocks the change (the whole apply is refused then).
    pub fn is_protected(&self) -> bool {
        matches!(self, Reason::Protected(_))
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Reason::Found { text }
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Reason::found(text)
    }
}
