//! The planner: probes every host once (in parallel), diffs each instance purely, and fetches
//! the old content of changed text files in one more batched read per host to show diffs.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Change, HostError, Plan, textdiff};
use crate::graph::Graph;
use crate::resource::{ContentChange, Decision, HostFacts, ProbeRequest};
use crate::transport::{SharedTransport, TransportError, read_files};

/// Connections to hosts, by host name. A host whose connection failed has its error instead.
pub type Connections = BTreeMap<String, Result<SharedTransport, String>>;

/// Reads every host in `graph` and decides what each instance needs.
pub async fn plan(graph: &Arc<Graph>, connections: &Connections) -> Plan {
    let mut tasks = tokio::task::JoinSet::new();
    for host in graph.hosts.keys() {
        let graph = Arc::clone(graph);
        let host = host.clone();
        let conn = connections.get(&host).cloned();
        tasks.spawn(async move {
            let result = match conn {
                Some(Ok(t)) => plan_host(&graph, &host, t.as_ref()).await.map_err(|e| e.to_string()),
                Some(Err(e)) => Err(e),
                None => Err(format!("{host}: no connection")),
            };
            (host, result)
        });
    }
    let mut plan = Plan::for_graph(graph);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((host, Ok(changes))) => {
                plan.hosts.insert(host, changes);
            }
            Ok((host, Err(error))) => plan.errors.push(HostError { host, error }),
            Err(e) => plan.errors.push(HostError { host: "?".into(), error: format!("planner task failed: {e}") }),
        }
    }
    plan.errors.sort_by(|a, b| a.host.cmp(&b.host));
    plan
}

/// Reads one host (one probe, plus one read for diffs) and plans its instances.
pub async fn plan_host(graph: &Graph, host: &str, transport: &dyn crate::transport::Transport) -> Result<Vec<Change>, TransportError> {
    let order = graph.host_order(host);
    let facts = probe(graph, &order, transport).await?;
    // Old contents for diffs, fetched together in one command.
    let wanted: Vec<String> = order
        .iter()
        .filter(|&&i| !graph.instances[i].desired.sensitive())
        .map(|&i| decide(graph, i, &facts))
        .filter(|d| d.action.is_change())
        .filter_map(|d| match d.content {
            Some(ContentChange::FetchOld { path }) => Some(path),
            _ => None,
        })
        .collect();
    let old: BTreeMap<String, Vec<u8>> = if wanted.is_empty() {
        BTreeMap::new()
    } else {
        let contents = read_files(transport, &wanted).await?;
        wanted.into_iter().zip(contents).filter_map(|(p, c)| c.map(|c| (p, c))).collect()
    };
    Ok(plan_from_facts(graph, host, &facts, &old))
}

/// Plans one host's instances from what its probe found and the old contents of changed files.
/// Pure: the plan-rendering snapshot tests feed it made-up facts.
pub fn plan_from_facts(graph: &Graph, host: &str, facts: &HostFacts, old: &BTreeMap<String, Vec<u8>>) -> Vec<Change> {
    graph
        .host_order(host)
        .into_iter()
        .map(|i| {
            let decision = decide(graph, i, facts);
            let disruptive = graph.instances[i].desired.disrupts(facts, &decision);
            let mut request = ProbeRequest::default();
            graph.instances[i].desired.add_to_probe(&mut request);
            Change { disruptive, observed: facts.describe(&request), ..change_for(graph, i, decision, old) }
        })
        .collect()
}

/// An instance's decision, adjusted for dependencies on its host that will change (a unit whose
/// `restart_on` resource changes will restart).
fn decide(graph: &Graph, i: usize, facts: &HostFacts) -> Decision {
    let inst = &graph.instances[i];
    let d = inst.desired.diff(facts);
    if inst.desired.restart_triggers().is_empty() {
        return d;
    }
    let changing: Vec<crate::spec::ResourceId> = graph.deps[i]
        .iter()
        .map(|&j| &graph.instances[j])
        .filter(|dep| dep.id.host == inst.id.host && dep.desired.diff(facts).action.is_change())
        .map(|dep| dep.id.resource.clone())
        .collect();
    inst.desired.with_changed_deps(d, &changing, true)
}

/// Runs the probe for the given instances and, meanwhile, gets ready locally what their diff
/// needs (a binary's archive, fetched once per run however many hosts wait for it).
pub async fn probe(graph: &Graph, instances: &[usize], transport: &dyn crate::transport::Transport) -> Result<HostFacts, TransportError> {
    let mut request = ProbeRequest::default();
    for &i in instances {
        graph.instances[i].desired.add_to_probe(&mut request);
    }
    // The host is read while the local artifacts are fetched.
    let prepare = async {
        for &i in instances {
            graph.instances[i].desired.prepare().await;
        }
    };
    let (facts, ()) = tokio::join!(request.run(transport), prepare);
    facts
}

fn change_for(graph: &Graph, i: usize, d: Decision, old: &BTreeMap<String, Vec<u8>>) -> Change {
    let inst = &graph.instances[i];
    let sensitive = inst.desired.sensitive();
    let diff = match (&d.content, inst.desired.new_text()) {
        (_, None) => None,
        (Some(ContentChange::FromEmpty), Some(new)) => Some(textdiff::unified(&inst.desired.target(), &inst.id.host, b"", new)),
        (Some(ContentChange::FetchOld { path }), Some(new)) => old.get(path).map(|o| textdiff::unified(path, &inst.id.host, o, new)),
        (Some(ContentChange::Text { old }), Some(new)) => {
            Some(textdiff::unified(&inst.desired.target(), &inst.id.host, old.as_bytes(), new))
        }
        (None, _) => None,
    };
    let waits_for =
        inst.dep_reasons.iter().filter_map(|(dep, why)| graph.instances.get(*dep).map(|d| format!("waits for {}: {why}", d.id))).collect();
    Change {
        id: inst.id.clone(),
        instance: i,
        action: d.action,
        reason: d.reason,
        target: inst.desired.target(),
        attrs: d.attrs,
        diff,
        sensitive,
        disruptive: false,
        waits_for,
        observed: Vec::new(),
    }
}
