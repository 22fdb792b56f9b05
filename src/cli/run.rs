//! `cairn run INSTANCE OPERATION [KEY=VALUE …]`: a runbook operation of a cluster (a snapshot
//! now, compaction, defrag, clearing an alarm), planned into steps per member host, shown,
//! approved (or saved with `-o` and applied later with `cairn apply PLAN`), and run under the
//! same per-host locks as `apply`. `--list` shows the operations and their inputs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{ExitStatus, PlanFormat, RunArgs, RunLocks, SpecArg, Ui, confirm, load_graph, print_plan, with_connections_locked};
use crate::graph::Graph;
use crate::plan::{Plan, planner, saved};
use crate::resource::cluster::operations::{OperationDef, OperationRequest, check_inputs};
use crate::spec::ResourceId;

/// `cairn run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunCommand {
    /// The cluster: a module instance that has one (`etcd`) or its id (`etcd.cluster.members`).
    #[arg(value_name = "INSTANCE")]
    pub instance: String,
    /// The operation (`cairn run INSTANCE --list` lists them).
    #[arg(value_name = "OPERATION", required_unless_present = "list")]
    pub operation: Option<String>,
    /// The operation's inputs.
    #[arg(value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// List the cluster's operations with their inputs, and exit.
    #[arg(long)]
    pub list: bool,
    /// Save the operation's plan here instead of running it (`cairn apply FILE` runs it).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The spec file.
    #[command(flatten)]
    pub spec: SpecArg,
    /// Confirmation, parallelism and lock waiting.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The cluster `instance` names in `graph`, with its driver's operations.
pub(super) fn resolve(graph: &Graph, instance: &str) -> Result<(ResourceId, &'static [OperationDef]), String> {
    let mut clusters: Vec<(&ResourceId, &'static [OperationDef])> = Vec::new();
    for inst in &graph.instances {
        if let Some(m) = inst.desired.member()
            && !clusters.iter().any(|(id, _)| **id == inst.id.resource)
        {
            clusters.push((&inst.id.resource, m.driver.get().operations()));
        }
    }
    let named: Vec<&(&ResourceId, &'static [OperationDef])> =
        clusters.iter().filter(|(id, _)| id.to_string() == instance || id.to_string().starts_with(&format!("{instance}."))).collect();
    let all = || clusters.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>().join(", ");
    match named.as_slice() {
        [(id, ops)] => Ok(((*id).clone(), ops)),
        [] if clusters.is_empty() => {
            Err(format!("the spec has no cluster: `cairn run` runs a cluster's operations, and `{instance}` is none"))
        }
        [] => Err(format!("no cluster is named `{instance}`; the spec's clusters: {}", all())),
        _ => Err(format!(
            "`{instance}` has several clusters; name one: {}",
            named.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The `--list` text.
pub(super) fn list_text(id: &ResourceId, ops: &[OperationDef]) -> String {
    let mut out = format!("Operations of {id} (cairn run INSTANCE OPERATION [KEY=VALUE ...]):\n");
    for op in ops {
        out.push_str(&format!("  {:<10} {}\n", op.name, op.description));
        for i in op.inputs {
            let need = if i.required { "required" } else { "optional" };
            out.push_str(&format!("  {:<10}   {}=<{}> ({need}): {}\n", "", i.name, i.kind.name(), i.description));
        }
    }
    out
}

/// The request `KEY=VALUE` arguments make, checked against the operation's definition.
pub(super) fn request(id: &ResourceId, ops: &[OperationDef], name: &str, inputs: &[String]) -> Result<OperationRequest, Vec<String>> {
    let Some(def) = ops.iter().find(|o| o.name == name) else {
        let names: Vec<&str> = ops.iter().map(|o| o.name).collect();
        return Err(vec![format!("{id} has no operation `{name}`; it has: {}", names.join(", "))]);
    };
    let mut given = BTreeMap::new();
    let mut errors = Vec::new();
    for pair in inputs {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                given.insert(k.to_string(), v.to_string());
            }
            _ => errors.push(format!("`{pair}`: write inputs as KEY=VALUE")),
        }
    }
    if let Err(more) = check_inputs(def, &given) {
        errors.extend(more);
    }
    // A local file an input names is read now: its digest goes into the plan (and a saved plan),
    // and the apply checks the file still has it.
    let local_sha256 = given.get("snapshot").and_then(|p| file_sha256(std::path::Path::new(p)));
    if errors.is_empty() {
        Ok(OperationRequest { cluster: id.to_string(), name: name.to_string(), inputs: given, local_sha256 })
    } else {
        Err(errors)
    }
}

/// The sha256 of a regular local file, `None` when there is none at `path`.
fn file_sha256(path: &std::path::Path) -> Option<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).ok().filter(|f| f.metadata().is_ok_and(|m| m.is_file()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(hex::encode(hasher.finalize()))
}

/// `graph` planning only `request`'s steps.
pub(super) fn with_operation(graph: Arc<Graph>, request: Option<&OperationRequest>) -> Arc<Graph> {
    match request {
        None => graph,
        Some(r) => {
            let mut g = Arc::unwrap_or_clone(graph);
            g.operation = Some(r.clone());
            Arc::new(g)
        }
    }
}

/// `cairn run`.
pub(super) async fn run(ui: &Ui, args: RunCommand) -> ExitStatus {
    let spec_path = args.spec.path();
    let Some((spec, graph)) = load_graph(ui, &spec_path, &args.spec.var_inputs(), &[], &[]) else { return ExitStatus::Error };
    let (id, ops) = match resolve(&graph, &args.instance) {
        Ok(found) => found,
        Err(e) => {
            ui.error(&e);
            return ExitStatus::Error;
        }
    };
    if args.list {
        print!("{}", list_text(&id, ops));
        return ExitStatus::Success;
    }
    let name = args.operation.clone().unwrap_or_default();
    let request = match request(&id, ops, &name, &args.inputs) {
        Ok(r) => r,
        Err(errors) => {
            ui.error(&errors.join("\n"));
            return ExitStatus::Error;
        }
    };
    if args.out.is_none() && !args.run.auto_approve && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        ui.error("stdin is not a terminal, so cairn cannot ask for confirmation; pass --auto-approve to run without asking");
        return ExitStatus::Error;
    }
    let graph = with_operation(graph, Some(&request));
    let (graph, spec_ref, spec_path, request) = (&graph, &spec, &spec_path, &request);
    let locks = RunLocks::new(&spec_path.display().to_string(), args.run.lock_timeout);
    let held = &locks;
    let out = args.out.clone();
    let auto_approve = args.run.auto_approve;
    with_connections_locked(ui, &spec, graph, Some(&locks), |conns| async move {
        let Some(plan) = held.plan(ui, graph, &conns).await else { return ExitStatus::Error };
        print_plan(ui, &plan, PlanFormat::Text);
        if let Some(out) = &out {
            let spec_ref = match saved::SpecRef::with_secrets(spec_ref, spec_path) {
                Ok(r) => r,
                Err(e) => {
                    ui.error(&e.to_string());
                    return ExitStatus::Error;
                }
            };
            let mut saved = saved::SavedPlan::new(plan.clone(), spec_ref, &[], &[]);
            saved.operation = Some(request.clone());
            if let Err(e) = saved.write(out) {
                ui.error(&e.to_string());
                return ExitStatus::Error;
            }
            eprintln!("Saved the plan of `{}` to {}; run exactly it with `cairn apply {}`.", request.name, out.display(), out.display());
            return if plan.has_errors() { ExitStatus::Error } else { ExitStatus::Success };
        }
        if plan.has_errors() {
            ui.error(&format!("`{}` cannot run now; the plan above says why", request.name));
            return ExitStatus::Error;
        }
        if !auto_approve && !confirm() {
            eprintln!("Run cancelled; nothing was changed.");
            return ExitStatus::Error;
        }
        carry_out(ui, graph, &plan, &conns).await
    })
    .await
}

/// Runs an operation's plan (shown and agreed to) and prints the report.
pub(super) async fn carry_out(ui: &Ui, graph: &Arc<Graph>, plan: &Plan, conns: &planner::Connections) -> ExitStatus {
    let reporter = Arc::new(super::progress::Progress::new(graph, plan));
    let report = crate::apply::run_operation(graph, plan, conns, reporter.clone()).await;
    reporter.finish();
    print!("{}", super::progress::report_text(&report, ui.color, super::progress::RunKind::Run));
    if report.success() { ExitStatus::Success } else { ExitStatus::Error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::cluster::operations::ETCD_OPERATIONS;

    #[test]
    fn inputs_come_as_key_value_pairs_checked_by_the_operation() {
        let id = ResourceId::new(crate::spec::Kind::Cluster, "members");
        let r = request(&id, ETCD_OPERATIONS, "compact", &["revision=7".into()]).unwrap();
        assert_eq!(r.inputs.get("revision").map(String::as_str), Some("7"));
        assert_eq!(request(&id, ETCD_OPERATIONS, "compact", &["7".into()]).unwrap_err(), vec!["`7`: write inputs as KEY=VALUE"]);
        let unknown = request(&id, ETCD_OPERATIONS, "defragment", &[]).unwrap_err();
        assert_eq!(
            unknown,
            vec!["cluster.members has no operation `defragment`; it has: snapshot, compact, defrag, restore, copy-backups, disarm"]
        );
        let listed = list_text(&id, ETCD_OPERATIONS);
        assert!(
            listed.contains("  compact    compact the key space's history") && listed.contains("revision=<int> (optional)"),
            "{listed}"
        );
    }
}
