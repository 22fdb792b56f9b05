//! Moving CA rotations on between the phases of one apply: once a phase's apply succeeded on
//! every host of the spec, the state dir records the next phase (or, after the last, archives the
//! old CA and puts the new one in its place), and the graph's certificates read their CA again so
//! the next plan is the next phase's. The phases themselves are the certificates' diffs
//! (`resource::cert`); the order and the waiting are the apply's, like any restart.

use std::path::PathBuf;
use std::sync::Arc;

use crate::graph::Graph;
use crate::plan::Plan;
use crate::resource::cert::{RotationOf, ensure_next_ca};
use crate::state::pki::{CaStore, RotationPhase};

/// What moving on did to one rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// `phase` is done on every host; the rotation now stands at the next one.
    Next {
        /// The CA.
        ca: String,
        /// The phase now.
        phase: RotationPhase,
    },
    /// The last phase is done: the new CA is the CA, the old one is archived at `archive`.
    Finished {
        /// The CA.
        ca: String,
        /// Where the old CA is kept.
        archive: PathBuf,
    },
}

/// A rotation that cannot move on: the state dir's files could not be written.
#[derive(Debug, thiserror::Error)]
#[error("CA rotation {ca}: {error}; the rotation stays where it was, and the next apply goes on from there")]
pub struct RotationError {
    /// The CA.
    pub ca: String,
    /// What failed.
    pub error: String,
}

/// After a successful apply of `plan`: moves every rotation of the whole spec (not a partial
/// selection's) to its next phase. Returns what moved and, when a rotation has a phase left, the
/// graph to plan it with.
pub async fn advance(graph: &Arc<Graph>, plan: &Plan) -> Result<(Vec<Moved>, Option<Arc<Graph>>), RotationError> {
    let mut moved = Vec::new();
    for r in plan.rotations.iter().filter(|r| !r.partial) {
        let fail = |error: String| RotationError { ca: r.ca.clone(), error };
        let store = CaStore::new(&r.store);
        match r.phase.next() {
            Some(next) => {
                // A phase 1 that wrote no CA file (no certificate has a ca_path) has not made the
                // new CA yet: phase 2 needs it. Otherwise its key is not touched here.
                let made = store.next().read_cert().map_err(|e| fail(e.to_string()))?.is_some();
                if let (false, Some(of)) = (made, rotation_of(graph, &r.ca)) {
                    let spec = of.spec.clone();
                    tokio::task::spawn_blocking(move || ensure_next_ca(&spec))
                        .await
                        .map_err(|e| fail(format!("CA task failed: {e}")))?
                        .map_err(|e| fail(e.to_string()))?;
                }
                store.record_phase(next).map_err(|e| fail(e.to_string()))?;
                moved.push(Moved::Next { ca: r.ca.clone(), phase: next });
            }
            None => {
                let archive = store.finish_rotation().map_err(|e| fail(e.to_string()))?;
                moved.push(Moved::Finished { ca: r.ca.clone(), archive });
            }
        }
    }
    let going_on: Vec<&str> = moved.iter().filter_map(|m| if let Moved::Next { ca, .. } = m { Some(ca.as_str()) } else { None }).collect();
    if going_on.is_empty() {
        return Ok((moved, None));
    }
    let mut next = Arc::unwrap_or_clone(Arc::clone(graph));
    for inst in &mut next.instances {
        for ca in &going_on {
            inst.desired.reload_ca(ca);
        }
    }
    Ok((moved, Some(Arc::new(next))))
}

/// The rotation of CA `ca` as one of its certificates in `graph` knows it.
fn rotation_of(graph: &Graph, ca: &str) -> Option<RotationOf> {
    graph.instances.iter().filter_map(|i| i.desired.ca_rotation()).find(|of| of.ca == ca)
}
