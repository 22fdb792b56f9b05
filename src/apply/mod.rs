//! Executing a plan: hosts in parallel (at most `parallelism` at once), each host's instances one
//! at a time in dependency order; every change re-reads its instance's state right before acting
//! (a plan can be stale); a failure skips everything that depends on it while the rest of the run
//! goes on. Progress goes to a [`Reporter`]; the result is an [`ApplyReport`], partial or not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::graph::{Graph, InstanceId};
use crate::plan::planner::{Connections, probe};
use crate::plan::{Action, Plan};
use crate::transport::SharedTransport;

/// How a failure because the host could not be read at plan time begins.
pub const HOST_UNREADABLE: &str = "host could not be read";

/// Knobs for a run.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Hosts worked on at the same time.
    pub parallelism: usize,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self { parallelism: 10 }
    }
}

/// How one instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "kebab-case")]
pub enum Outcome {
    /// Changed as planned.
    Done(String),
    /// Nothing to do (planned so, or found so when re-checked).
    Unchanged(String),
    /// Tried and failed; the message says why.
    Failed(String),
    /// Not tried because something it depends on failed.
    Skipped(String),
}

/// One instance's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceResult {
    /// Which resource on which host.
    pub id: InstanceId,
    /// The planned action.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
}

/// What a run did, failed and skipped, in graph order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Every instance's result.
    pub results: Vec<InstanceResult>,
}

impl ApplyReport {
    /// No failures and no skips.
    pub fn success(&self) -> bool {
        self.results.iter().all(|r| matches!(r.outcome, Outcome::Done(_) | Outcome::Unchanged(_)))
    }

    /// Results whose outcome matches `pick`.
    pub fn count(&self, pick: fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| pick(&r.outcome)).count()
    }
}

/// Receives progress while a plan is applied. Implemented by the CLI (progress bars, logs).
pub trait Reporter: Send + Sync {
    /// An instance's change is about to start.
    fn started(&self, id: &InstanceId, action: Action);
    /// An instance finished (any outcome).
    fn finished(&self, id: &InstanceId, outcome: &Outcome);
}

/// A reporter that ignores everything.
pub struct Silent;

impl Reporter for Silent {
    fn started(&self, _: &InstanceId, _: Action) {}
    fn finished(&self, _: &InstanceId, _: &Outcome) {}
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Ok,
    NotOk,
}

/// Applies `plan` to the hosts of `graph`.
pub async fn apply(
    graph: &Arc<Graph>,
    plan: &Plan,
    connections: &Connections,
    options: ApplyOptions,
    reporter: Arc<dyn Reporter>,
) -> ApplyReport {
    let n = graph.instances.len();
    let planned: BTreeMap<usize, (Action, String)> = plan.changes().map(|c| (c.instance, (c.action, c.reason.clone()))).collect();
    let host_errors: BTreeMap<&str, &str> = plan.errors.iter().map(|e| (e.host.as_str(), e.error.as_str())).collect();
    let mut state = vec![State::Pending; n];
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut busy_hosts: BTreeSet<String> = BTreeSet::new();
    let mut tasks: tokio::task::JoinSet<(usize, Outcome)> = tokio::task::JoinSet::new();
    let parallelism = options.parallelism.max(1);

    loop {
        // Settle everything that needs no remote work, until nothing more settles.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for i in 0..n {
                if state[i] != State::Pending {
                    continue;
                }
                let inst = &graph.instances[i];
                if let Some(failed_dep) = graph.deps[i].iter().find(|&&d| state[d] == State::NotOk) {
                    let why = format!("{} did not complete", graph.instances[*failed_dep].id);
                    finish(&mut state, &mut outcomes, &*reporter, graph, i, Outcome::Skipped(why), false);
                    progressed = true;
                    continue;
                }
                if let Some(err) = host_errors.get(inst.id.host.as_str()) {
                    let why = format!("{HOST_UNREADABLE}: {err}");
                    finish(&mut state, &mut outcomes, &*reporter, graph, i, Outcome::Failed(why), false);
                    progressed = true;
                    continue;
                }
                if !graph.deps[i].iter().all(|&d| state[d] == State::Ok) {
                    continue;
                }
                match planned.get(&i) {
                    None => {
                        let o = Outcome::Skipped("not in the plan".into());
                        finish(&mut state, &mut outcomes, &*reporter, graph, i, o, false);
                        progressed = true;
                    }
                    Some((Action::NoOp, reason)) => {
                        let o = Outcome::Unchanged(reason.clone());
                        finish(&mut state, &mut outcomes, &*reporter, graph, i, o, true);
                        progressed = true;
                    }
                    Some((Action::Conflict, reason)) => {
                        let o = Outcome::Failed(reason.clone());
                        finish(&mut state, &mut outcomes, &*reporter, graph, i, o, false);
                        progressed = true;
                    }
                    Some(_) => {}
                }
            }
        }

        // Start ready changes on idle hosts, within the parallelism bound.
        for i in 0..n {
            if busy_hosts.len() >= parallelism {
                break;
            }
            if state[i] != State::Pending || !graph.deps[i].iter().all(|&d| state[d] == State::Ok) {
                continue;
            }
            let host = graph.instances[i].id.host.clone();
            if busy_hosts.contains(&host) {
                continue;
            }
            let Some(Ok(transport)) = connections.get(&host).cloned() else {
                let o = Outcome::Failed(format!("{host}: not connected"));
                finish(&mut state, &mut outcomes, &*reporter, graph, i, o, false);
                continue;
            };
            let action = planned.get(&i).map_or(Action::NoOp, |p| p.0);
            reporter.started(&graph.instances[i].id, action);
            state[i] = State::Running;
            busy_hosts.insert(host);
            let graph = Arc::clone(graph);
            tasks.spawn(async move {
                let outcome = apply_instance(&graph, i, transport).await;
                (i, outcome)
            });
        }

        let Some(joined) = tasks.join_next().await else { break };
        match joined {
            Ok((i, outcome)) => {
                busy_hosts.remove(&graph.instances[i].id.host);
                let ok = matches!(outcome, Outcome::Done(_) | Outcome::Unchanged(_));
                finish(&mut state, &mut outcomes, &*reporter, graph, i, outcome, ok);
            }
            Err(e) => {
                // A panicked task cannot be attributed; report it on every running instance.
                for i in 0..n {
                    if state[i] == State::Running {
                        busy_hosts.remove(&graph.instances[i].id.host);
                        let o = Outcome::Failed(format!("internal error: {e}"));
                        finish(&mut state, &mut outcomes, &*reporter, graph, i, o, false);
                    }
                }
            }
        }
    }

    let results = (0..n)
        .map(|i| InstanceResult {
            id: graph.instances[i].id.clone(),
            action: planned.get(&i).map_or(Action::NoOp, |p| p.0),
            outcome: outcomes[i].clone().unwrap_or_else(|| Outcome::Skipped("never became ready".into())),
        })
        .collect();
    ApplyReport { results }
}

fn finish(
    state: &mut [State],
    outcomes: &mut [Option<Outcome>],
    reporter: &dyn Reporter,
    graph: &Graph,
    i: usize,
    outcome: Outcome,
    ok: bool,
) {
    state[i] = if ok { State::Ok } else { State::NotOk };
    reporter.finished(&graph.instances[i].id, &outcome);
    outcomes[i] = Some(outcome);
}

/// Re-reads one instance, re-decides, and acts on the fresh decision.
async fn apply_instance(graph: &Graph, i: usize, transport: SharedTransport) -> Outcome {
    let inst = &graph.instances[i];
    let facts = match probe(graph, &[i], transport.as_ref()).await {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("re-reading state: {e}")),
    };
    let decision = inst.desired.diff(&facts);
    match decision.action {
        Action::NoOp => return Outcome::Unchanged(format!("already up to date when re-checked ({})", decision.reason)),
        Action::Conflict => return Outcome::Failed(decision.reason),
        _ => {}
    }
    match inst.desired.apply(transport.as_ref(), &decision).await {
        Ok(()) => Outcome::Done(decision.reason),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
