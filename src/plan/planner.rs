//! The planner: probes every host once (in parallel; the probe also brings the old content of
//! changed text files for the diffs, and can take the apply lock), and diffs each instance
//! purely. The
//! probe also reads the host's manifests ([`crate::state::manifest`]): what this spec managed
//! there and no longer has becomes a removal (read with one more probe, only when there is
//! one), and a path another spec manages blocks the instance that wants it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::render::SENSITIVE;
use super::{Action, Change, HostError, Plan, Subject, textdiff};
use crate::graph::Graph;
use crate::resource::probe::{LockTaken, UnreadableManifest};
use crate::resource::removal::{Claims, Orphan};
use crate::resource::{ContentChange, Decision, HostFacts, ProbeRequest, Reason};
use crate::state::manifest::{Manifest, Owned};
use crate::transport::{SharedTransport, TransportError, read_files};

/// Connections to hosts, by host name. A host whose connection failed has its error instead.
pub type Connections = BTreeMap<String, Result<SharedTransport, Unreachable>>;

/// Why a host could not be connected to, as the transport said it (its whole cause chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// Why a host could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No connection.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    /// The graph has the host but no connection was opened for it.
    #[error("{0}: no connection")]
    NotConnected(String),
    /// Reading the host failed.
    #[error(transparent)]
    Read(#[from] TransportError),
    /// Another run holds the host's apply lock (taken with the probe): nothing was read.
    #[error("{0}: another run holds its apply lock")]
    Locked(String),
    /// This spec's manifest on the host cannot be read: removals cannot be planned.
    #[error(
        "{host}: cannot read what spec `{spec}` manages there: {error}; fix the file or delete it (cairn then stops removing what \
         the spec drops, until the next apply writes it again)"
    )]
    Manifest {
        /// The host.
        host: String,
        /// The spec's name.
        spec: String,
        /// What is wrong with the file.
        error: UnreadableManifest,
    },
}

/// Reads every host in `graph` and decides what each instance needs.
pub async fn plan(graph: &Arc<Graph>, connections: &Connections) -> Plan {
    plan_locking(graph, connections, &BTreeMap::new()).await.0
}

/// [`plan`], taking the apply lock of each host in `locks` (its holder record) with the same
/// command as its probe, so a locked apply's plan costs no round trip more than a plan. Also
/// returns what became of each lock asked for; a host whose lock another run holds is read no
/// further, and the plan is only worth keeping when every lock was acquired. A host missing
/// from the answer did not answer: whether its lock was taken is unknown.
pub async fn plan_locking(
    graph: &Arc<Graph>,
    connections: &Connections,
    locks: &BTreeMap<String, String>,
) -> (Plan, BTreeMap<String, LockTaken>) {
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for host in graph.hosts.keys() {
        let graph = Arc::clone(graph);
        let host = host.clone();
        let conn = connections.get(&host).cloned();
        let lock = locks.get(&host).cloned();
        tasks.spawn(async move {
            let (taken, result) = match conn {
                Some(Ok(t)) => plan_host_facts(&graph, &host, t.as_ref(), lock).await,
                Some(Err(e)) => (None, Err(PlanError::from(e))),
                None => (None, Err(PlanError::NotConnected(host.clone()))),
            };
            (host, taken, result)
        });
    }
    let mut plan = Plan::for_graph(graph);
    let mut facts = BTreeMap::new();
    let mut taken = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((host, lock, result)) => {
                if let Some(lock) = lock {
                    taken.insert(host.clone(), lock);
                }
                match result {
                    Ok((changes, manifest, host_facts)) => {
                        if keeps_manifest(graph, &host) {
                            plan.manifests.insert(host.clone(), manifest);
                        }
                        plan.hosts.insert(host.clone(), changes);
                        facts.insert(host, host_facts);
                    }
                    Err(error) => plan.errors.push(HostError { host, error: error.to_string() }),
                }
            }
            Err(e) => plan.errors.push(HostError { host: "?".into(), error: format!("planner task failed: {e}") }),
        }
    }
    plan.errors.sort_by(|a, b| a.host.cmp(&b.host));
    super::clusters::plan_clusters(graph, &facts, &mut plan);
    plan_rotations(graph, &mut plan);
    plan.read = Some(super::PlanRead { at: started, facts });
    (plan, taken)
}

/// Gathers the CA rotations the graph's certificates are in, with how much of the phase is left.
fn plan_rotations(graph: &Graph, plan: &mut Plan) {
    let mut rotations: BTreeMap<String, super::RotationPlan> = BTreeMap::new();
    for inst in &graph.instances {
        let Some(of) = inst.desired.ca_rotation() else { continue };
        let r = rotations.entry(of.ca.clone()).or_insert_with(|| super::RotationPlan {
            ca: of.ca.clone(),
            phase: of.phase,
            started: of.started,
            because: of.cause.clone(),
            certificates: Vec::new(),
            changes: 0,
            partial: graph.partial,
            store: of.store().map(std::path::Path::to_path_buf).unwrap_or_default(),
        });
        r.certificates.push(inst.id.to_string());
        let changed =
            plan.hosts.get(&inst.id.host).and_then(|cs| cs.iter().find(|c| c.id == inst.id)).is_some_and(|c| c.action.is_change());
        if changed {
            r.changes += 1;
        }
    }
    plan.rotations = rotations.into_values().collect();
}

/// Whether `host` keeps manifests: hosts reached over ssh. `transport = "local"` is this machine,
/// often several hosts at once and maybe without root, so, as with locks, it keeps none.
pub fn keeps_manifest(graph: &Graph, host: &str) -> bool {
    graph.hosts.get(host).is_some_and(|h| h.transport == crate::spec::TransportKind::Ssh)
}

/// The result of planning one host: its changes, this spec's manifest as found there, and what
/// the probe found (the cluster pass merges the members' views of their clusters).
type HostPlan = Result<(Vec<Change>, Option<Manifest>, HostFacts), PlanError>;

/// Reads one host (one probe that also brings the old contents of changed text files for the
/// diffs and takes the lock when `lock` is given, one more when something is to be removed) and
/// plans its instances. Also says what became of the lock.
async fn plan_host_facts(
    graph: &Graph,
    host: &str,
    transport: &dyn crate::transport::Transport,
    lock: Option<String>,
) -> (Option<LockTaken>, HostPlan) {
    let order = graph.host_order(host);
    let base = ProbeRequest { manifests: keeps_manifest(graph, host), lock, ..ProbeRequest::default() };
    let mut facts = match probe_with(graph, &order, transport, base, true).await {
        Ok(facts) => facts,
        Err(e) => return (None, Err(e.into())),
    };
    let taken = facts.lock.take();
    if let Some(LockTaken::Held(_)) = taken {
        return (taken, Err(PlanError::Locked(host.to_string())));
    }
    (taken, plan_from_probe(graph, host, &order, transport, facts).await)
}

/// Plans one host from its probe: reads what removals need and the old contents the probe did
/// not bring (a host without `tar`), then diffs.
async fn plan_from_probe(
    graph: &Graph,
    host: &str,
    order: &[usize],
    transport: &dyn crate::transport::Transport,
    mut facts: HostFacts,
) -> HostPlan {
    let manifest = own_manifest(graph, host, &facts)?;
    let orphans = orphans(graph, host, &facts);
    if !orphans.is_empty() {
        let mut request = ProbeRequest::default();
        for o in &orphans {
            o.add_to_probe(&mut request);
        }
        facts.absorb(request.run(transport).await?);
    }
    // Old contents for diffs: brought by the probe, the rest fetched together in one command.
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
    let mut old: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut missing = Vec::new();
    for path in wanted {
        match facts.old_texts.remove(&path) {
            Some(content) => {
                old.insert(path, content);
            }
            None => missing.push(path),
        }
    }
    facts.old_texts.clear();
    if !missing.is_empty() {
        let contents = read_files(transport, &missing).await?;
        old.extend(missing.into_iter().zip(contents).filter_map(|(p, c)| c.map(|c| (p, c))));
    }
    let changes = plan_changes(graph, host, &facts, &old, orphans);
    Ok((changes, manifest, facts))
}

/// This spec's manifest on the host; one that cannot be read stops the host's plan (removals
/// cannot be planned without it).
fn own_manifest(graph: &Graph, host: &str, facts: &HostFacts) -> Result<Option<Manifest>, PlanError> {
    match facts.manifests.get(&graph.spec_name) {
        None => Ok(None),
        Some(Ok(m)) => Ok(Some(m.clone())),
        Some(Err(error)) => Err(PlanError::Manifest { host: host.to_string(), spec: graph.spec_name.clone(), error: error.clone() }),
    }
}

/// What the spec claims on `host`.
fn claims(graph: &Graph, host: &str) -> Claims {
    let mut claims = Claims::default();
    for i in graph.host_order(host) {
        let inst = &graph.instances[i];
        inst.desired.claim(&inst.id.resource, &mut claims);
    }
    claims
}

/// The entries of this spec's manifest on `host` that the spec no longer has, in the order they
/// are removed. None under a `--target` selection, which plans only what it names.
pub fn orphans(graph: &Graph, host: &str, facts: &HostFacts) -> Vec<Orphan> {
    let Some(Ok(manifest)) = facts.manifests.get(&graph.spec_name) else { return Vec::new() };
    if !graph.removals {
        return Vec::new();
    }
    let ids: std::collections::BTreeSet<String> =
        graph.instances.iter().filter(|i| i.id.host == host).map(|i| i.id.resource.to_string()).collect();
    let claims = claims(graph, host);
    let mut orphans: Vec<Orphan> =
        manifest.resources.iter().filter(|m| !ids.contains(&m.id)).map(|m| Orphan::new(m.clone(), &claims)).collect();
    orphans.sort_by_key(Orphan::order_key);
    orphans
}

/// Another spec on the host that manages one of the paths (or the unit) `i` wants, if any.
fn owned_elsewhere(graph: &Graph, i: usize, facts: &HostFacts) -> Option<Reason> {
    let inst = &graph.instances[i];
    let mut mine = Claims::default();
    inst.desired.claim(&inst.id.resource, &mut mine);
    let my_paths = inst.desired.paths();
    for (spec, manifest) in &facts.manifests {
        let Ok(manifest) = manifest else { continue };
        if *spec == graph.spec_name {
            continue;
        }
        for entry in &manifest.resources {
            let unit = match &entry.owns {
                Owned::Unit(u) if u.file.is_some() => mine.units.get(&u.name).map(|_| u.name.as_str()),
                _ => None,
            };
            let path = entry.owns.paths().into_iter().find(|p| my_paths.contains(p));
            if let Some(what) = path.or(unit) {
                return Some(Reason::OwnedElsewhere {
                    what: what.to_string(),
                    spec: spec.clone(),
                    resource: entry.id.clone(),
                    manifest: Manifest::path_for(spec),
                });
            }
        }
    }
    None
}

/// Plans one host's instances from what its probe found and the old contents of changed files.
/// Pure: the plan-rendering snapshot tests feed it made-up facts.
pub fn plan_from_facts(graph: &Graph, host: &str, facts: &HostFacts, old: &BTreeMap<String, Vec<u8>>) -> Vec<Change> {
    plan_changes(graph, host, facts, old, orphans(graph, host, facts))
}

/// Plans every host of `facts` from what its probe found, the cluster pass included (no diffs
/// of old contents). Pure: tests feed it made-up facts.
pub fn plan_from_all_facts(graph: &Graph, facts: &BTreeMap<String, HostFacts>) -> Plan {
    let mut plan = Plan::for_graph(graph);
    for (host, f) in facts {
        plan.hosts.insert(host.clone(), plan_from_facts(graph, host, f, &BTreeMap::new()));
    }
    super::clusters::plan_clusters(graph, facts, &mut plan);
    plan_rotations(graph, &mut plan);
    plan
}

/// [`plan_from_facts`] with the host's removals already known.
fn plan_changes(graph: &Graph, host: &str, facts: &HostFacts, old: &BTreeMap<String, Vec<u8>>, orphans: Vec<Orphan>) -> Vec<Change> {
    let removals = orphans.into_iter().map(|orphan| {
        let mut decision = orphan.diff(facts);
        if let Reason::Removal { destroy, .. } = &mut decision.reason {
            *destroy = graph.destroy;
        }
        let mut request = ProbeRequest::default();
        orphan.add_to_probe(&mut request);
        let target = orphan.target();
        Change {
            id: crate::graph::InstanceId { resource: orphan.id(), host: host.to_string() },
            subject: Subject::Removal(Box::new(orphan)),
            action: decision.action,
            reason: decision.reason,
            target,
            attrs: decision.attrs,
            diff: None,
            sensitive: false,
            disruptive: false,
            waits_for: Vec::new(),
            observed: facts.describe(&request),
        }
    });
    let instances = graph.host_order(host).into_iter().map(|i| {
        let mut decision = decide(graph, i, facts);
        if let Some(why) = owned_elsewhere(graph, i, facts) {
            decision = Decision::new(Action::Conflict, why);
        }
        let disruptive = graph.instances[i].desired.disrupts(facts, &decision);
        let mut request = ProbeRequest::default();
        graph.instances[i].desired.add_to_probe(&mut request);
        let observed = facts.describe_redacted(&request, graph.instances[i].desired.sensitive());
        Change { disruptive, observed, ..change_for(graph, i, decision, old) }
    });
    removals.chain(instances).collect()
}

/// An instance's decision, adjusted for dependencies on its host that will change (a unit whose
/// `restart_on` resource changes will restart).
fn decide(graph: &Graph, i: usize, facts: &HostFacts) -> Decision {
    let inst = &graph.instances[i];
    let d = inst.decide(facts);
    if inst.desired.restart_triggers().is_empty() {
        return d;
    }
    let changing: Vec<crate::spec::ResourceId> = graph.deps[i]
        .iter()
        .map(|&j| &graph.instances[j])
        .filter(|dep| dep.id.host == inst.id.host)
        .filter(|dep| {
            let d = dep.decide(facts);
            d.action.is_change() && !(inst.desired.reloads().contains(&dep.id.resource) && dep.desired.picked_up_live(d.action, &d.attrs))
        })
        .map(|dep| dep.id.resource.clone())
        .collect();
    inst.desired.with_changed_deps(d, &changing, true)
}

/// Runs the probe for the given instances and, meanwhile, gets ready locally what their diff
/// needs (a binary's archive, fetched once per run however many hosts wait for it).
pub async fn probe(graph: &Graph, instances: &[usize], transport: &dyn crate::transport::Transport) -> Result<HostFacts, TransportError> {
    probe_with(graph, instances, transport, ProbeRequest::default(), false).await
}

/// [`probe`] with what `base` asks for besides (manifests, a lock), and the old contents of
/// changed text files when `diffs` is set.
async fn probe_with(
    graph: &Graph,
    instances: &[usize],
    transport: &dyn crate::transport::Transport,
    base: ProbeRequest,
    diffs: bool,
) -> Result<HostFacts, TransportError> {
    let mut request = base;
    for &i in instances {
        graph.instances[i].desired.add_to_probe(&mut request);
    }
    if !diffs {
        request.old_texts.clear();
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
    // A digest of sensitive content never enters the plan (saved plan files included).
    let mut attrs = d.attrs;
    if sensitive {
        for a in attrs.iter_mut().filter(|a| a.digest) {
            a.before = a.before.as_ref().map(|_| SENSITIVE.to_string());
            a.after = a.after.as_ref().map(|_| SENSITIVE.to_string());
        }
    }
    let waits_for =
        inst.dep_reasons.iter().filter_map(|(dep, why)| graph.instances.get(*dep).map(|d| format!("waits for {}: {why}", d.id))).collect();
    Change {
        id: inst.id.clone(),
        subject: Subject::Instance(i),
        action: d.action,
        reason: d.reason,
        target: inst.desired.target(),
        attrs,
        diff,
        sensitive,
        disruptive: false,
        waits_for,
        observed: Vec::new(),
    }
}
