//! Plans: what would change, as data. [`planner::plan`] reads every host once (one batched
//! probe per host) and diffs each instance purely; [`render`] turns a [`Plan`] into text or
//! JSON without touching a terminal. Sensitive content never enters a plan.

pub mod planner;
pub mod render;
mod textdiff;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::graph::InstanceId;
pub use crate::resource::{Action, AttrChange};

/// Version of the JSON plan format (`docs/plan-json.md`). Bump on any incompatible change.
pub const FORMAT_VERSION: &str = "1";

/// One instance's planned change (or no-op), with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Which resource on which host.
    pub id: InstanceId,
    /// Index of the instance in the graph.
    #[serde(skip)]
    pub instance: usize,
    /// What will be done.
    pub action: Action,
    /// Why.
    pub reason: String,
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
}

/// A host that could not be read; its instances cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Per host (sorted by name), its instances in dependency order.
    pub hosts: BTreeMap<String, Vec<Change>>,
    /// Hosts that could not be read.
    pub errors: Vec<HostError>,
}

impl Plan {
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
        self.hosts.values().flatten().any(|c| c.action.is_change())
    }

    /// True when some host could not be read or some instance is blocked.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.hosts.values().flatten().any(|c| c.action == Action::Conflict)
    }

    /// Every change, in host order.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.hosts.values().flatten()
    }
}
