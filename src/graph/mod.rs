//! The resource graph: one instance per (resource, host), with edges from explicit `after` and
//! implied ones (a path under a managed directory depends on it). Rejects cycles, each reported
//! on its own with every edge's origin (written `after`/`restart_on`, or the rule implying it),
//! orders instances deterministically into waves, and draws DOT/Mermaid pictures.
//! Knows nothing of kinds' internals beyond what [`Desired`] exposes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use crate::module::{Templater, host_context, module_context};
use crate::resource::Desired;
use crate::spec::{Diagnostic, Diagnostics, HostSpec, Located, ResourceId, Span, Spec};

/// A `--host`/`--target` selection that names something the spec does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// `--host` names no host of the spec.
    #[error("--host {host}: no such host in the spec (hosts: {})", .known.join(", "))]
    UnknownHost {
        /// The name given.
        host: String,
        /// The spec's hosts, sorted.
        known: Vec<String>,
    },
    /// `--target` names no resource of the spec.
    #[error("--target {target}: no such resource in the spec (write it as kind.name, e.g. file.motd)")]
    UnknownTarget {
        /// The name given.
        target: String,
    },
    /// `--exclude` names no resource of the spec (or none on the selected hosts).
    #[error("--exclude {exclude}: no such resource in the spec (write it as kind.name, e.g. file.motd)")]
    UnknownExclude {
        /// The name given.
        exclude: String,
    },
}

/// A resource on one host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId {
    /// The resource.
    pub resource: ResourceId,
    /// The host's name.
    pub host: String,
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.resource, self.host)
    }
}

/// One node of the graph.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Which resource on which host.
    pub id: InstanceId,
    /// What it should look like there.
    pub desired: Desired,
    /// The resource's table header, for errors.
    pub span: Span,
    /// Why each dependency exists ("after", "under dir.conf").
    pub dep_reasons: BTreeMap<usize, String>,
    /// `prevent_destroy = true`: a plan that would remove or replace it fails.
    pub prevent_destroy: bool,
    /// Attributes whose drift is not reported nor corrected.
    pub ignore: Vec<String>,
    /// `--replace`: made again even when it is in order ([`ResourceKind::replaced`]).
    ///
    /// [`ResourceKind::replaced`]: crate::resource::ResourceKind::replaced
    pub replace: bool,
}

impl Instance {
    /// What to do given what the probe found: the kind's pure diff, with the drift `ignore`
    /// accepts left out, and a replacement `prevent_destroy` forbids turned into a conflict.
    /// The planner and the executor both decide through this.
    pub fn decide(&self, facts: &crate::resource::HostFacts) -> crate::resource::Decision {
        use crate::resource::{Action, Decision, Protected, Reason};
        let mut decision = self.desired.diff(facts).ignoring(&self.ignore);
        if self.replace && matches!(decision.action, Action::NoOp | Action::Update) {
            decision = self.desired.replaced(decision);
        }
        if self.prevent_destroy && decision.action == Action::Replace {
            let because = Box::new(decision.reason);
            return Decision::new(Action::Conflict, Reason::Protected(Protected::Replacement { because }));
        }
        decision
    }
}

/// At most this many cycles are reported per group of resources that wait for each other.
const MAX_CYCLES: usize = 10;

/// A cycle's resources (`[a, b, …, a]`) rotated to start at its least, so one cycle found from
/// two places (or on two hosts) is one key.
fn canonical(cycle: &[ResourceId]) -> Vec<ResourceId> {
    let ring = &cycle[..cycle.len().saturating_sub(1)];
    let start = (0..ring.len()).min_by_key(|&i| &ring[i]).unwrap_or(0);
    ring[start..].iter().chain(&ring[..start]).cloned().collect()
}

/// Where an edge comes from, for cycle reports: written (`after`, `restart_on`,
/// `after_on_peers`, with where) or implied (by which rule).
#[derive(Debug, Clone, PartialEq, Eq)]
enum EdgeWhy {
    /// Written in `after`.
    After { target: ResourceId, span: Span },
    /// Written in a unit's `restart_on` (a dependency too).
    RestartOn { target: ResourceId, span: Span },
    /// Written in a cluster's `after_on_peers`.
    AfterOnPeers { target: ResourceId },
    /// Implied: a cluster member's service starts after its membership step.
    ClusterService { cluster: ResourceId },
    /// Implied: the path is inside a directory managed on the same host.
    InsideDir,
    /// Implied: that resource writes the host's firewall table, which holds these rules.
    FirewallTable,
    /// Implied: the owner or group `name` is created by that resource.
    User { name: String, by: ResourceId },
}

impl EdgeWhy {
    /// The span it was written at, when it was written.
    fn span(&self) -> Option<&Span> {
        match self {
            EdgeWhy::After { span, .. } | EdgeWhy::RestartOn { span, .. } => Some(span),
            _ => None,
        }
    }

    /// Where it comes from, as a cycle report says it: the key it is written in, or the rule
    /// that implies it.
    fn origin(&self) -> String {
        match self {
            EdgeWhy::After { .. } => "written in `after`".to_string(),
            EdgeWhy::RestartOn { .. } => "written in `restart_on`".to_string(),
            EdgeWhy::AfterOnPeers { .. } => "written in the cluster's `after_on_peers`".to_string(),
            implied => format!("implied, {implied}"),
        }
    }
}

impl fmt::Display for EdgeWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeWhy::After { target, .. } => write!(f, "`after` names {target}"),
            EdgeWhy::RestartOn { target, .. } => write!(f, "`restart_on` names {target}"),
            EdgeWhy::AfterOnPeers { target } => write!(f, "`after_on_peers` names {target} (on every member)"),
            EdgeWhy::ClusterService { cluster } => write!(f, "the service of {cluster}: it starts after the member's membership step"),
            EdgeWhy::InsideDir => f.write_str("its path is inside that directory"),
            EdgeWhy::FirewallTable => f.write_str("it writes the host's firewall table, which holds these rules"),
            EdgeWhy::User { name, by } => write!(f, "`{name}` is created by {by}"),
        }
    }
}

/// Instances and their dependencies, validated acyclic.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Every instance, sorted by host then by the resource's position in the spec.
    pub instances: Vec<Instance>,
    /// `deps[i]`: instances `i` must wait for.
    pub deps: Vec<BTreeSet<usize>>,
    /// `dependents[i]`: instances waiting for `i`.
    pub dependents: Vec<BTreeSet<usize>>,
    /// The hosts the plan reads, by name: every host of the spec (one without instances may
    /// still hold what the spec used to manage), or those a `--host` selection names.
    pub hosts: BTreeMap<String, HostSpec>,
    /// The spec's name: which manifest on each host is this spec's.
    pub spec_name: String,
    /// Whether the plan removes what the spec no longer has. Off for a `--target` selection,
    /// which plans only what it names.
    pub removals: bool,
    /// `cairn destroy`: no instances, and everything the hosts' manifests list is removed.
    pub destroy: bool,
    /// `--replace`: instances to replace even when they look in order (cluster members today).
    pub replace: BTreeSet<InstanceId>,
    /// `--allow-degraded`: the quorum guard lets disruptive changes of a degraded cluster through.
    pub allow_degraded: bool,
    /// `cairn run`: the runbook operation the plan is made of (only its steps).
    pub operation: Option<crate::resource::cluster::operations::OperationRequest>,
    /// A `--host`, `--target` or `--exclude` selection: part of the spec, so a CA rotation
    /// cannot move to its next phase (that needs every certificate of the CA done).
    pub partial: bool,
    /// Where each edge came from, while the graph is built (for cycle reports).
    edge_why: BTreeMap<(usize, usize), EdgeWhy>,
}

impl Graph {
    /// Renders every resource for every host it selects and links the instances. Every problem
    /// (template errors, duplicate paths, cycles) is reported at once.
    pub fn build(spec: &Spec) -> Result<Graph, Diagnostics> {
        Self::build_with(spec, &Templater::new())
    }

    /// [`Graph::build`] rendering with `templater` (to compare template settings).
    pub fn build_with(spec: &Spec, templater: &Templater) -> Result<Graph, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut graph = Graph { spec_name: spec.name.clone(), removals: true, hosts: spec.hosts.clone(), ..Graph::default() };
        let contexts: BTreeMap<&str, minijinja::Value> = spec.hosts.values().map(|h| (h.name.as_str(), host_context(spec, h))).collect();

        // Instances, host by host, in spec order.
        let mut order: Vec<(&str, usize, usize)> = Vec::new(); // (host, resource index, instance)
        let mut by_resource: BTreeMap<&ResourceId, Vec<usize>> = BTreeMap::new();
        let mut failed: Vec<(Diagnostic, Vec<&str>)> = Vec::new();
        for (ri, resource) in spec.resources.iter().enumerate() {
            for host in spec.hosts.values().filter(|h| selects(&resource.hosts, h)) {
                let scoped = resource.scope.as_ref().map(|scope| module_context(spec, host, scope));
                let ctx = scoped.as_ref().unwrap_or(&contexts[host.name.as_str()]);
                let mut render = |t: &crate::spec::TemplateText| {
                    let out = templater.render(t, ctx, &spec.sources)?;
                    crate::module::secret_leak(resource, t, &out).map_or(Ok(out), Err)
                };
                match Desired::from_spec(&resource.body, &mut render) {
                    Ok(desired) => {
                        let index = graph.instances.len();
                        graph.instances.push(Instance {
                            id: InstanceId { resource: resource.id.clone(), host: host.name.clone() },
                            desired,
                            span: resource.span.clone(),
                            dep_reasons: BTreeMap::new(),
                            prevent_destroy: resource.prevent_destroy,
                            ignore: resource.ignore.clone(),
                            replace: false,
                        });
                        order.push((host.name.as_str(), ri, index));
                        by_resource.entry(&resource.id).or_default().push(index);
                    }
                    Err(errs) => {
                        // The same error on several hosts is one problem, naming its hosts.
                        for e in errs {
                            match failed.iter_mut().find(|(seen, _)| *seen == e) {
                                Some((_, hosts)) => hosts.push(host.name.as_str()),
                                None => failed.push((e, vec![host.name.as_str()])),
                            }
                        }
                    }
                }
            }
        }
        for (mut e, hosts) in failed {
            let which = if hosts.len() == 1 { "host" } else { "hosts" };
            e.message = format!("{} on {which} {}", e.message, hosts.join(", "));
            diags.push(e);
        }
        // Sort instances by host then spec position, and renumber.
        order.sort();
        let renumber: BTreeMap<usize, usize> = order.iter().enumerate().map(|(new, (_, _, old))| (*old, new)).collect();
        let mut slots: Vec<Option<Instance>> = graph.instances.drain(..).map(Some).collect();
        graph.instances = order.iter().filter_map(|(_, _, old)| slots.get_mut(*old).and_then(Option::take)).collect();
        for list in by_resource.values_mut() {
            for i in list.iter_mut() {
                *i = renumber[i];
            }
        }
        let n = graph.instances.len();
        graph.deps = vec![BTreeSet::new(); n];
        graph.dependents = vec![BTreeSet::new(); n];

        crate::resource::link_instances(
            spec,
            graph.instances.iter_mut().map(|i| (i.id.host.as_str(), &i.id.resource, &mut i.desired)).collect(),
        );
        graph.check_duplicate_paths(&mut diags);

        // Explicit `after` edges: same host when the target is there, else every instance of it.
        for resource in &spec.resources {
            let Some(mine) = by_resource.get(&resource.id) else { continue };
            let restart_on: &[Located<ResourceId>] = match &resource.body {
                crate::spec::ResourceBody::Unit(u) => &u.restart_on,
                _ => &[],
            };
            for Located { value: target, span } in &resource.after {
                let Some(theirs) = by_resource.get(target) else { continue };
                let why = if restart_on.iter().any(|r| &r.span == span) {
                    EdgeWhy::RestartOn { target: target.clone(), span: span.clone() }
                } else {
                    EdgeWhy::After { target: target.clone(), span: span.clone() }
                };
                for &i in mine {
                    let host = &graph.instances[i].id.host;
                    let same_host: Vec<usize> = theirs.iter().copied().filter(|&j| &graph.instances[j].id.host == host).collect();
                    let targets = if same_host.is_empty() { theirs.clone() } else { same_host };
                    for j in targets {
                        graph.add_edge(i, j, why.clone());
                    }
                }
            }
        }
        graph.add_cluster_edges();
        graph.add_implied_edges();
        graph.add_user_edges();
        graph.set_restart_watches();
        graph.check_cycles(&mut diags);
        graph.edge_why.clear();
        diags.into_result(graph)
    }

    fn add_edge(&mut self, from: usize, to: usize, why: EdgeWhy) {
        if self.deps[from].insert(to) {
            self.dependents[to].insert(from);
            self.instances[from].dep_reasons.insert(to, why.to_string());
            self.edge_why.insert((from, to), why);
        }
    }

    /// A path under a directory managed on the same host depends on that directory.
    /// A cluster member's edges: its service (`unit`) on its host starts only after its
    /// membership step (a join adds the member before the service may start), and it waits for
    /// its `after_on_peers` resources on every host (the others' firewall must let it in). Also
    /// tells each member the systemd name of its service on its host.
    fn add_cluster_edges(&mut self) {
        let members: Vec<(usize, ResourceId, Vec<ResourceId>)> = self
            .instances
            .iter()
            .enumerate()
            .filter_map(|(i, inst)| inst.desired.member().map(|m| (i, m.unit.clone(), m.after_on_peers.clone())))
            .collect();
        for (i, unit, peers) in members {
            let host = self.instances[i].id.host.clone();
            let cluster = self.instances[i].id.resource.clone();
            for target in &peers {
                let theirs: Vec<usize> = (0..self.instances.len()).filter(|&j| &self.instances[j].id.resource == target).collect();
                for j in theirs {
                    self.add_edge(i, j, EdgeWhy::AfterOnPeers { target: target.clone() });
                }
            }
            let service = (0..self.instances.len()).find(|&u| self.instances[u].id.resource == unit && self.instances[u].id.host == host);
            if let Some(u) = service {
                self.add_edge(u, i, EdgeWhy::ClusterService { cluster: cluster.clone() });
                let name = self.instances[u].desired.systemd_unit().map(str::to_string);
                if let Some(m) = self.instances[i].desired.member_mut() {
                    m.service = name;
                }
            }
        }
    }

    fn add_implied_edges(&mut self) {
        let mut dirs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (i, inst) in self.instances.iter().enumerate() {
            if let Some(d) = inst.desired.managed_dir() {
                dirs.insert((inst.id.host.as_str(), d), i);
            }
        }
        let mut edges = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            for path in inst.desired.paths() {
                let mut parent = std::path::Path::new(path).parent();
                while let Some(p) = parent {
                    if let Some(&j) = p.to_str().and_then(|s| dirs.get(&(inst.id.host.as_str(), s)))
                        && j != i
                    {
                        edges.push((i, j, EdgeWhy::InsideDir));
                    }
                    parent = p.parent();
                }
            }
        }
        for (i, inst) in self.instances.iter().enumerate() {
            let Some(writer) = inst.desired.written_by() else { continue };
            if let Some(j) = self.instances.iter().position(|o| o.id.host == inst.id.host && &o.id.resource == writer) {
                edges.push((i, j, EdgeWhy::FirewallTable));
            }
        }
        for (i, j, why) in edges {
            self.add_edge(i, j, why);
        }
    }

    /// An instance whose owner or group is created by a `user` on the same host depends on it.
    fn add_user_edges(&mut self) {
        let mut providers: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (i, inst) in self.instances.iter().enumerate() {
            for name in inst.desired.provides_users() {
                providers.entry((inst.id.host.as_str(), name)).or_insert(i);
            }
        }
        let mut edges = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            for name in inst.desired.requires_users() {
                if let Some(&j) = providers.get(&(inst.id.host.as_str(), name))
                    && j != i
                {
                    edges.push((i, j, EdgeWhy::User { name: name.to_string(), by: self.instances[j].id.resource.clone() }));
                }
            }
        }
        for (i, j, why) in edges {
            self.add_edge(i, j, why);
        }
    }

    /// Gives each instance with restart triggers (a unit's `restart_on`) the paths those
    /// resources manage on its host, so a file newer than the running service is noticed.
    fn set_restart_watches(&mut self) {
        let mut watches: Vec<(usize, Vec<crate::resource::unit::WatchedPath>)> = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let triggers = inst.desired.restart_triggers();
            if triggers.is_empty() {
                continue;
            }
            let paths = self.deps[i]
                .iter()
                .map(|&j| &self.instances[j])
                .filter(|dep| dep.id.host == inst.id.host && triggers.contains(&dep.id.resource))
                .flat_map(|dep| {
                    // A certificate the service re-reads by itself restarts it only through its CA file.
                    let paths = if inst.desired.reloads().contains(&dep.id.resource) {
                        dep.desired.restart_paths_when_reloaded()
                    } else {
                        dep.desired.paths()
                    };
                    paths.into_iter().map(|p| crate::resource::unit::WatchedPath { by: dep.id.resource.clone(), path: p.to_string() })
                })
                .collect();
            watches.push((i, paths));
        }
        for (i, paths) in watches {
            self.instances[i].desired.watch_paths(paths);
        }
    }

    fn check_duplicate_paths(&self, diags: &mut Diagnostics) {
        let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        // (first claimant, second claimant, path) → hosts, so a clash on every host is one error.
        let mut clashes: BTreeMap<(usize, usize, &str), Vec<&str>> = BTreeMap::new();
        let mut first_of: BTreeMap<&ResourceId, usize> = BTreeMap::new();
        for (i, inst) in self.instances.iter().enumerate() {
            first_of.entry(&inst.id.resource).or_insert(i);
        }
        for (i, inst) in self.instances.iter().enumerate() {
            for path in inst.desired.paths() {
                match seen.get(&(inst.id.host.as_str(), path)) {
                    Some(&j) if self.instances[j].id.resource != inst.id.resource => {
                        let (a, b) = (first_of[&self.instances[j].id.resource], first_of[&inst.id.resource]);
                        clashes.entry((a.min(b), a.max(b), path)).or_default().push(&inst.id.host);
                    }
                    Some(_) => {}
                    None => {
                        seen.insert((inst.id.host.as_str(), path), i);
                    }
                }
            }
        }
        for ((a, b, path), hosts) in clashes {
            let (a, b) = (&self.instances[a], &self.instances[b]);
            diags.push(
                Diagnostic::at(&b.span, format!("{} and {} both manage {path} on {}", a.id.resource, b.id.resource, hosts.join(", ")))
                    .with_related(&a.span, format!("{} is declared here", a.id.resource))
                    .with_help("a path can be managed by one resource per host: remove one, or narrow their `hosts`"),
            );
        }
    }

    /// Reports every cycle on its own, in the direction of waiting (each member waits for the
    /// next), each edge with where it comes from. A cycle repeated on several hosts is reported
    /// once; at most [`MAX_CYCLES`] per strongly connected group.
    fn check_cycles(&self, diags: &mut Diagnostics) {
        let mut g: DiGraph<usize, ()> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..self.instances.len()).map(|i| g.add_node(i)).collect();
        for (i, deps) in self.deps.iter().enumerate() {
            for &j in deps {
                g.add_edge(nodes[i], nodes[j], ());
            }
        }
        let mut reported: BTreeSet<Vec<ResourceId>> = BTreeSet::new();
        for scc in tarjan_scc(&g) {
            let cyclic = scc.len() > 1 || scc.first().is_some_and(|&n| self.deps[g[n]].contains(&g[n]));
            if !cyclic {
                continue;
            }
            let members: BTreeSet<usize> = scc.iter().map(|&n| g[n]).collect();
            let mut found = 0;
            'starts: for &v in &members {
                for &w in self.deps[v].iter().filter(|&&w| w >= v && members.contains(&w)) {
                    let Some(back) = self.path_back(w, v, |x| x >= v && members.contains(&x)) else { continue };
                    let cycle: Vec<usize> = std::iter::once(v).chain(back).collect();
                    if !reported.insert(canonical(&cycle.iter().map(|&i| self.instances[i].id.resource.clone()).collect::<Vec<_>>())) {
                        continue;
                    }
                    diags.push(self.cycle_report(&cycle));
                    found += 1;
                    if found == MAX_CYCLES {
                        break 'starts;
                    }
                }
            }
        }
    }

    /// The shortest path of dependencies from `from` to `to` through `allowed` instances (both
    /// ends included; just `[to]` when they are the same).
    fn path_back(&self, from: usize, to: usize, allowed: impl Fn(usize) -> bool) -> Option<Vec<usize>> {
        let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(x) = queue.pop_front() {
            if x == to {
                let mut path = vec![x];
                let mut at = x;
                while let Some(&prev) = came_from.get(&at) {
                    path.push(prev);
                    at = prev;
                }
                path.reverse();
                return Some(path);
            }
            for &y in self.deps[x].iter().filter(|&&y| allowed(y)) {
                if seen.insert(y) {
                    came_from.insert(y, x);
                    queue.push_back(y);
                }
            }
        }
        None
    }

    /// One cycle `[a, b, …, a]` (each waits for the next) as an error: the chain, then each edge
    /// at the line that writes it, or, when implied, at the waiting resource with the rule.
    fn cycle_report(&self, cycle: &[usize]) -> Diagnostic {
        let name = |i: usize| self.instances[i].id.resource.to_string();
        let chain: Vec<String> = cycle.iter().map(|&i| name(i)).collect();
        let mut d =
            Diagnostic::at(&self.instances[cycle[0]].span, format!("dependency cycle: {} (each waits for the next)", chain.join(" → ")));
        let mut written: Vec<&str> = Vec::new();
        let mut implied = false;
        for pair in cycle.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let Some(why) = self.edge_why.get(&(a, b)) else { continue };
            let note = format!("{} waits for {}: {}", name(a), name(b), why.origin());
            d = d.with_related(why.span().unwrap_or(&self.instances[a].span), note);
            match why {
                EdgeWhy::After { .. } => written.push("`after`"),
                EdgeWhy::RestartOn { .. } => written.push("`restart_on`"),
                EdgeWhy::AfterOnPeers { .. } => written.push("`after_on_peers`"),
                _ => implied = true,
            }
        }
        written.dedup();
        let help = match (written.is_empty(), implied) {
            (false, false) => format!("break the cycle: remove one of the {} entries shown", written.join(" and ")),
            (false, true) => format!(
                "break the cycle: remove one of the {} entries shown, or change what implies the other edges",
                written.join(" and ")
            ),
            (true, _) => "break the cycle: change what implies these edges (none is written in the spec)".to_string(),
        };
        d.with_help(help)
    }

    /// Groups instances into waves: every instance's dependencies are in earlier waves. Each wave
    /// is sorted, so the order is the same on every run.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut remaining: Vec<usize> = self.deps.iter().map(BTreeSet::len).collect();
        let mut current: Vec<usize> = (0..self.instances.len()).filter(|&i| remaining[i] == 0).collect();
        let mut waves = Vec::new();
        while !current.is_empty() {
            let mut next = Vec::new();
            for &i in &current {
                for &d in &self.dependents[i] {
                    remaining[d] -= 1;
                    if remaining[d] == 0 {
                        next.push(d);
                    }
                }
            }
            next.sort_unstable();
            waves.push(std::mem::take(&mut current));
            current = next;
        }
        waves
    }

    /// Indices of instances on `host`, in dependency order.
    pub fn host_order(&self, host: &str) -> Vec<usize> {
        self.waves().into_iter().flatten().filter(|&i| self.instances[i].id.host == host).collect()
    }

    /// Names of the hosts that have at least one instance.
    pub fn busy_hosts(&self) -> Vec<&str> {
        self.hosts.keys().filter(|h| self.instances.iter().any(|i| &i.id.host == *h)).map(String::as_str).collect()
    }

    /// The graph in Graphviz DOT, one cluster per host.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph cairn {\n  rankdir=LR;\n  node [shape=box];\n");
        for (h, host) in self.busy_hosts().into_iter().enumerate() {
            out.push_str(&format!("  subgraph cluster_{h} {{\n    label={};\n", dot_quote(host)));
            for (i, inst) in self.instances.iter().enumerate().filter(|(_, x)| x.id.host == host) {
                out.push_str(&format!("    n{i} [label={}];\n", dot_quote(&inst.id.resource.to_string())));
            }
            out.push_str("  }\n");
        }
        for (i, deps) in self.deps.iter().enumerate() {
            for j in deps {
                out.push_str(&format!("  n{j} -> n{i};\n"));
            }
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid flowchart, one subgraph per host.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for host in self.busy_hosts() {
            out.push_str(&format!("  subgraph host_{}[\"{host}\"]\n", mermaid_id(host)));
            for (i, inst) in self.instances.iter().enumerate().filter(|(_, x)| x.id.host == host) {
                out.push_str(&format!("    n{i}[\"{}\"]\n", inst.id.resource));
            }
            out.push_str("  end\n");
        }
        for (i, deps) in self.deps.iter().enumerate() {
            for j in deps {
                out.push_str(&format!("  n{j} --> n{i}\n"));
            }
        }
        out
    }
}

fn selects(selectors: &[Located<crate::spec::Selector>], host: &HostSpec) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.value.matches(host))
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn mermaid_id(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

impl Graph {
    /// The graph of `cairn destroy`: the same hosts and spec name, no instances, so everything
    /// this spec's manifests list on those hosts is planned for removal.
    pub fn for_destroy(self) -> Graph {
        Graph { hosts: self.hosts, spec_name: self.spec_name, removals: true, destroy: true, ..Graph::default() }
    }

    /// Keeps only instances on `hosts` (all when empty) of `targets` (all when empty), plus
    /// everything they depend on. Errors when a name matches nothing.
    pub fn restrict(self, hosts: &[String], targets: &[String]) -> Result<Graph, GraphError> {
        if hosts.is_empty() && targets.is_empty() {
            return Ok(self);
        }
        for h in hosts {
            if !self.hosts.contains_key(h) {
                return Err(GraphError::UnknownHost { host: h.clone(), known: self.hosts.keys().cloned().collect() });
            }
        }
        for t in targets {
            if !self.instances.iter().any(|i| i.id.resource.to_string() == *t) {
                return Err(GraphError::UnknownTarget { target: t.clone() });
            }
        }
        let picked = |i: &Instance| {
            (hosts.is_empty() || hosts.contains(&i.id.host)) && (targets.is_empty() || targets.contains(&i.id.resource.to_string()))
        };
        let mut keep: BTreeSet<usize> = BTreeSet::new();
        let mut stack: Vec<usize> = (0..self.instances.len()).filter(|&i| picked(&self.instances[i])).collect();
        while let Some(i) = stack.pop() {
            if keep.insert(i) {
                stack.extend(self.deps[i].iter().copied());
            }
        }
        let mut g = Graph {
            spec_name: self.spec_name.clone(),
            removals: targets.is_empty(),
            partial: self.partial || !hosts.is_empty() || !targets.is_empty(),
            ..Graph::default()
        };
        if targets.is_empty() {
            g.hosts = self.hosts.iter().filter(|(name, _)| hosts.contains(name)).map(|(n, h)| (n.clone(), h.clone())).collect();
        }
        Ok(self.keep_only(&keep, g))
    }

    /// `--exclude`: leaves out every instance of `excludes` and everything that depends on them
    /// (nothing runs without what it waits for), and plans no removals (an excluded resource
    /// would look removed). Returns the graph and the dependents left out with them, sorted.
    pub fn exclude(self, excludes: &[String]) -> Result<(Graph, Vec<ResourceId>), GraphError> {
        if excludes.is_empty() {
            return Ok((self, Vec::new()));
        }
        for e in excludes {
            if !self.instances.iter().any(|i| i.id.resource.to_string() == *e) {
                return Err(GraphError::UnknownExclude { exclude: e.clone() });
            }
        }
        let mut out: BTreeSet<usize> = BTreeSet::new();
        let mut stack: Vec<usize> =
            (0..self.instances.len()).filter(|&i| excludes.contains(&self.instances[i].id.resource.to_string())).collect();
        while let Some(i) = stack.pop() {
            if out.insert(i) {
                stack.extend(self.dependents[i].iter().copied());
            }
        }
        let mut with_them: Vec<ResourceId> =
            out.iter().map(|&i| self.instances[i].id.resource.clone()).filter(|r| !excludes.contains(&r.to_string())).collect();
        with_them.sort();
        with_them.dedup();
        let keep: BTreeSet<usize> = (0..self.instances.len()).filter(|i| !out.contains(i)).collect();
        let g = Graph { spec_name: self.spec_name.clone(), hosts: self.hosts.clone(), removals: false, partial: true, ..Graph::default() };
        Ok((self.keep_only(&keep, g), with_them))
    }

    /// `g` with the instances `keep` of this graph (and their edges among them).
    fn keep_only(&self, keep: &BTreeSet<usize>, mut g: Graph) -> Graph {
        let renumber: BTreeMap<usize, usize> = keep.iter().enumerate().map(|(new, &old)| (old, new)).collect();
        for &old in keep {
            let mut inst = self.instances[old].clone();
            inst.dep_reasons = inst.dep_reasons.into_iter().filter_map(|(d, r)| renumber.get(&d).map(|&n| (n, r))).collect();
            g.hosts.entry(inst.id.host.clone()).or_insert_with(|| self.hosts[&inst.id.host].clone());
            g.instances.push(inst);
            g.deps.push(self.deps[old].iter().filter_map(|d| renumber.get(d).copied()).collect());
        }
        g.dependents = vec![BTreeSet::new(); g.instances.len()];
        for (i, deps) in g.deps.iter().enumerate() {
            for &d in deps {
                g.dependents[d].insert(i);
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_of_nothing_is_an_error_naming_it() {
        let err = Graph::default().restrict(&["db1".to_string()], &[]).unwrap_err();
        assert_eq!(err.to_string(), "--host db1: no such host in the spec (hosts: )");
        let err = Graph::default().restrict(&[], &["file.motd".to_string()]).unwrap_err();
        assert_eq!(err.to_string(), "--target file.motd: no such resource in the spec (write it as kind.name, e.g. file.motd)");
        let known = GraphError::UnknownHost { host: "x".into(), known: vec!["a".into(), "b".into()] };
        assert_eq!(known.to_string(), "--host x: no such host in the spec (hosts: a, b)");
    }
}
