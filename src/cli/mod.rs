//! The command line: clap commands, colour choice, progress, exit codes. The only layer that
//! prints: the plan on stdout, progress and logs on stderr. Exit codes are decided in
//! [`ExitStatus`] and documented in `docs/cli.md`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod completions;
mod connect;
mod download;
pub mod lab;
pub mod module;
mod progress;
mod run;
pub mod schema;

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::apply::{ApplyOptions, Outcome};
use crate::graph::Graph;
use crate::plan::render::{self, TextOptions};
use crate::plan::{Plan, planner, saved};
use crate::spec::{self, Spec};
use crate::state::host;

/// Declarative infrastructure as code for clustered services.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
pub struct Cli {
    /// When to colour output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// More detail: unchanged resources and why, dependency reasons, connection statistics.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `-f SPEC`, `--var` and `--var-file`, shared by commands that read a spec.
#[derive(Debug, Clone, clap::Args)]
pub struct SpecArg {
    /// The spec file [default: cairn.toml].
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    pub file: Option<PathBuf>,
    /// Set a variable, overriding [vars], CAIRN_VAR_* and --var-file (repeatable; a later one
    /// wins). A string, unless [vars] gives the name another type (then TOML of that type).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variables from a TOML file of `NAME = value` lines, overriding [vars] and CAIRN_VAR_*
    /// (repeatable; a later file wins).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

impl SpecArg {
    /// The spec path: `-f`, else `cairn.toml`.
    pub fn path(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SPEC))
    }

    /// `--var`, `--var-file` and the `CAIRN_VAR_*` environment variables (those that are not
    /// UTF-8 are skipped).
    pub fn var_inputs(&self) -> spec::VarInputs {
        let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        spec::VarInputs { env: Vec::new(), files: self.var_files.clone(), flags: self.vars.clone() }.with_env(env)
    }
}

/// The spec read when no `-f` is given, in the current directory.
const DEFAULT_SPEC: &str = "cairn.toml";

/// `--host NAME`, shared by commands that can be limited to some hosts.
#[derive(Debug, Clone, clap::Args)]
pub struct HostsArg {
    /// Only these hosts (repeatable).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
}

/// `--host NAME` and `--target ID`, shared by commands that can be limited to some hosts and
/// resources.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// `--host`.
    #[command(flatten)]
    pub host: HostsArg,
    /// Only these resources, `kind.name` (repeatable).
    #[arg(long = "target", value_name = "ID")]
    pub targets: Vec<String>,
    /// Leave out these resources, `kind.name`, and what depends on them (repeatable).
    #[arg(long = "exclude", value_name = "ID")]
    pub exclude: Vec<String>,
    /// Make this resource again even when it is in order: a file rewritten, a unit restarted, a
    /// certificate reissued (`ca.NAME`: a new CA and every certificate it issued); `ID[HOST]` on
    /// one host, e.g. `etcd.cluster.members[node3]` (repeatable).
    #[arg(long = "replace", value_name = "ID[HOST]")]
    pub replace: Vec<String>,
    /// Let disruptive changes of a degraded cluster through the quorum guard (risks its quorum).
    #[arg(long)]
    pub allow_degraded: bool,
}

/// What `plan` and `apply` (and a saved plan) change about a graph: `--exclude`, `--replace`,
/// `--allow-degraded`.
#[derive(Debug, Clone, Copy)]
struct RunOptions<'a> {
    exclude: &'a [String],
    replace: &'a [String],
    allow_degraded: bool,
}

/// The graph with the run options applied; an unknown or impossible `--exclude`/`--replace` is
/// an error, reported here.
fn with_run_options(ui: &Ui, graph: Arc<Graph>, options: RunOptions<'_>) -> Option<Arc<Graph>> {
    match run_options(graph, options) {
        Ok((g, with_them)) => {
            if !with_them.is_empty() {
                let names: Vec<String> = with_them.iter().map(ToString::to_string).collect();
                ui.warn(&format!("--exclude also leaves out what depends on it: {}", names.join(", ")));
            }
            Some(g)
        }
        Err(e) => {
            ui.error(&e);
            None
        }
    }
}

/// The graph with the run options, and what `--exclude` left out besides what it names.
fn run_options(graph: Arc<Graph>, options: RunOptions<'_>) -> Result<(Arc<Graph>, Vec<spec::ResourceId>), String> {
    let RunOptions { exclude, replace, allow_degraded } = options;
    if replace.is_empty() && exclude.is_empty() && !allow_degraded {
        return Ok((graph, Vec::new()));
    }
    let (mut g, with_them) = Arc::unwrap_or_clone(graph).exclude(exclude).map_err(|e| e.to_string())?;
    for r in replace {
        mark_replace(&mut g, r)?;
    }
    g.allow_degraded = allow_degraded;
    Ok((Arc::new(g), with_them))
}

/// Marks what `--replace R` names (`ID`, `ID[HOST]`, `ca.NAME`) to be made again.
fn mark_replace(g: &mut Graph, r: &str) -> Result<(), String> {
    let (id, host) = match r.strip_suffix(']').and_then(|x| x.split_once('[')) {
        Some((id, host)) => (id, Some(host)),
        None => (r, None),
    };
    let Some(resource) = spec::ResourceId::parse(id) else {
        return Err(format!("--replace {r}: write it as ID or ID[HOST], e.g. file.motd, unit.web[node1], ca.etcd"));
    };
    if resource.kind == spec::Kind::Ca {
        // A module's CA `INSTANCE.ca.NAME` is the CA `INSTANCE.NAME`.
        let ca = resource.to_string().replacen("ca.", "", 1);
        let ca = ca.as_str();
        if host.is_some() {
            return Err(format!("--replace {r}: a CA is replaced for every host at once; write --replace {id}"));
        }
        let mut certs = 0;
        for inst in &mut g.instances {
            if inst.desired.replace_ca(ca) {
                certs += 1;
            }
        }
        if certs == 0 {
            return Err(format!(
                "--replace {r}: no certificate in this selection is issued by a CA {ca} that cairn generates \
                 (an imported CA is replaced by replacing its files)"
            ));
        }
        return Ok(());
    }
    let picked: Vec<usize> = (0..g.instances.len())
        .filter(|&i| g.instances[i].id.resource == resource && host.is_none_or(|h| g.instances[i].id.host == h))
        .collect();
    if picked.is_empty() {
        return Err(match host {
            Some(h) => format!("--replace {r}: the spec has no {resource} on {h} (in this selection)"),
            None => format!("--replace {r}: the spec has no {resource} (in this selection)"),
        });
    }
    for i in picked {
        let inst = &mut g.instances[i];
        if inst.desired.member().is_some() {
            if host.is_none() {
                return Err(format!("--replace {r}: name the cluster member to replace, e.g. --replace {resource}[{}]", inst.id.host));
            }
            g.replace.insert(inst.id.clone());
        } else if inst.desired.replaceable() {
            inst.replace = true;
        } else {
            return Err(format!(
                "--replace {r}: a {} cannot be made again this way (--replace makes again a file, a running unit, a cert, \
                 a binary, a ca.NAME, or a cluster member)",
                inst.desired.kind()
            ));
        }
    }
    Ok(())
}

/// Flags of the commands that change hosts (`apply`, `destroy`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RunArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// How many hosts are worked on at once.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub parallelism: usize,
    /// How long to wait for another apply's lock on a host (e.g. 30s, 2m); 0 fails at once.
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = parse_wait)]
    pub lock_timeout: std::time::Duration,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, type-check, render templates and build the graph; touches no host.
    Validate {
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
    },
    /// Read the hosts and print what would change.
    Plan {
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
        /// Print the plan as JSON (docs/plan-json.md); the same as `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// How to print the plan: text, json, or markdown (a compact view for a pull-request
        /// comment, diffs folded).
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<PlanFormat>,
        /// Exit 0 when nothing would change, 2 when something would, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// `--host` and `--target`.
        #[command(flatten)]
        select: SelectArgs,
        /// Also save the plan to FILE (mode 0600) for `cairn show` and `cairn apply FILE`.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Report only what differs from the spec, per host and resource (for scheduled jobs):
    /// exit 0 clean, 2 drift, 1 error.
    Drift {
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
        /// Print the drift as JSON (the `plan --json` schema, differing instances only).
        #[arg(long)]
        json: bool,
        /// `--host` and `--target`.
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Run the spec's checks now on their hosts, changing nothing: exit 0 when every check
    /// passes, 1 otherwise.
    Check {
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
        /// `--host`.
        #[command(flatten)]
        host: HostsArg,
    },
    /// Print a saved plan (`cairn plan -o FILE`) without touching any host.
    Show {
        /// The plan file.
        #[arg(value_name = "PLAN")]
        plan: PathBuf,
        /// Print it as JSON (the same schema as `plan --json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// How to print it: text, json, or markdown.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<PlanFormat>,
    },
    /// Plan, show the plan, ask for confirmation, and apply it; or apply a saved plan exactly.
    Apply {
        /// A saved plan (`cairn plan -o FILE`): applied as it is, without a prompt, after checking
        /// that neither the spec nor the hosts changed since it was made.
        #[arg(value_name = "PLAN")]
        plan: Option<PathBuf>,
        /// The spec file (with a saved plan: the spec it was made from, by default).
        #[command(flatten)]
        spec: SpecArg,
        /// Confirmation, parallelism and lock waiting.
        #[command(flatten)]
        run: RunArgs,
        /// `--host` and `--target`.
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Remove everything the spec manages on its hosts, as each host's manifest records it:
    /// plan the removals, show them, ask, apply.
    Destroy {
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
        /// Confirmation, parallelism and lock waiting.
        #[command(flatten)]
        run: RunArgs,
        /// `--host`.
        #[command(flatten)]
        select: HostsArg,
    },
    /// Remove a host's apply lock left by a run that was killed; without HOST, every stale lock
    /// on the spec's hosts (live ones are named and kept).
    Unlock {
        /// The host (as named in the spec); without it, every host of the spec.
        #[arg(value_name = "HOST")]
        host: Option<String>,
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
    },
    /// Print the resource graph.
    Graph {
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Local Debian test hosts (systemd-nspawn containers with sshd on a private bridge).
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Run a cluster's runbook operation (snapshot, compact, defrag, disarm): planned into steps
    /// per member, shown, approved, run under the apply locks; `--list` lists them.
    Run(run::RunCommand),
    /// Reusable modules (`modules/<name>/module.toml`).
    #[command(subcommand)]
    Module(module::ModuleCommand),
    /// Print a shell completion script: `cairn completions bash > /etc/bash_completion.d/cairn`.
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of a spec file, for editors with a TOML language server (taplo, Even
    /// Better TOML): `cairn schema > spec.schema.json` (docs/spec.schema.json is the same).
    Schema,
    /// Print the man page cairn(1) in roff (`cairn man | man -l -`), or write one page per
    /// command into a folder.
    Man {
        /// Write cairn.1 and cairn-COMMAND.1 pages into this existing folder instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `30s`, `2m`, `1h` or plain seconds ([`spec::duration::parse_wait`]).
fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    spec::duration::parse_wait(text).ok_or_else(|| format!("`{text}` is not a duration; write e.g. 30s, 2m or 1h"))
}

/// `plan --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// For people at a terminal.
    Text,
    /// The versioned JSON schema of docs/plan-json.md.
    Json,
    /// For a pull-request comment (GitHub-flavoured markdown, diffs folded).
    Markdown,
}

impl PlanFormat {
    /// `--format`, or json for `--json`, or text.
    fn pick(format: Option<PlanFormat>, json: bool) -> PlanFormat {
        format.unwrap_or(if json { PlanFormat::Json } else { PlanFormat::Text })
    }
}

/// `graph --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// How a command ended; mapped to the process exit code in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success (for `plan --detailed-exitcode`: no changes).
    Success,
    /// 1: an error (bad spec, unreachable host, failed apply, refused confirmation).
    Error,
    /// 2: `plan --detailed-exitcode` found changes.
    Changes,
    /// 130: interrupted.
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::Error => 1,
            ExitStatus::Changes => 2,
            ExitStatus::Interrupted => 130,
        })
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if let Command::Lab(cmd) = cli.command {
        return lab::run(cmd);
    }
    if let Command::Module(cmd) = cli.command {
        return module::run(cmd);
    }
    if let Command::Completions { shell } = cli.command {
        return completions::run_completions(shell);
    }
    if let Command::Schema = cli.command {
        return schema::run_schema();
    }
    if let Command::Man { dir } = &cli.command {
        return completions::run_man(dir.as_deref());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitStatus::Error.into();
        }
    };
    runtime.block_on(run(cli)).into()
}

/// Logs go to stderr, warnings only unless `CAIRN_LOG` (a `tracing` filter) asks for more.
/// `-v` is about the plan view, not logs: debug lines would interleave with the plan.
fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("cairn=warn"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).with_ansi(ansi).try_init();
}

struct Ui {
    color: bool,
    verbose: bool,
}

impl Ui {
    fn new(cli: &Cli) -> Self {
        let color = match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal(),
        };
        Self { color, verbose: cli.verbose }
    }

    fn text_options(&self) -> TextOptions {
        TextOptions { color: self.color, verbose: self.verbose }
    }

    fn error(&self, msg: &str) {
        let prefix = if self.color && std::io::stderr().is_terminal() { "\x1b[31merror:\x1b[0m" } else { "error:" };
        eprintln!("{prefix} {msg}");
    }

    fn warn(&self, msg: &str) {
        let prefix = if self.color && std::io::stderr().is_terminal() { "\x1b[33mwarning:\x1b[0m" } else { "warning:" };
        eprintln!("{prefix} {msg}");
    }
}

async fn run(cli: Cli) -> ExitStatus {
    let ui = Ui::new(&cli);
    download::install();
    match cli.command {
        Command::Validate { spec } => validate(&ui, &spec),
        Command::Graph { spec, format } => graph(&ui, &spec, format),
        // Handled before the runtime starts.
        Command::Lab(_) | Command::Module(_) | Command::Completions { .. } | Command::Schema | Command::Man { .. } => ExitStatus::Error,
        Command::Show { plan, json, format } => show(&ui, &plan, PlanFormat::pick(format, json)),
        Command::Run(args) => run::run(&ui, args).await,
        Command::Check { spec, host: HostsArg { hosts } } => {
            let Some((spec, graph)) = load_graph(&ui, &spec.path(), &spec.var_inputs(), &hosts, &[]) else { return ExitStatus::Error };
            let (ui, graph) = (&ui, &graph);
            with_connections(ui, &spec, graph, |conns| async move {
                let report = crate::apply::run_checks(graph, &conns).await;
                print!("{}", progress::checks_text(&report, ui.color));
                if report.success() { ExitStatus::Success } else { ExitStatus::Error }
            })
            .await
        }
        Command::Drift { spec, json, select: SelectArgs { host: HostsArg { hosts }, targets, exclude, .. } } => {
            let Some((spec, graph)) = load_graph(&ui, &spec.path(), &spec.var_inputs(), &hosts, &targets) else { return ExitStatus::Error };
            let options = RunOptions { exclude: &exclude, replace: &[], allow_degraded: false };
            let Some(graph) = with_run_options(&ui, graph, options) else { return ExitStatus::Error };
            let (ui, graph) = (&ui, &graph);
            with_connections(ui, &spec, graph, |conns| async move {
                let drift = planner::plan(graph, &conns).await.drift_only();
                if json {
                    print!("{}", render::json(&drift));
                } else {
                    print!("{}", render::drift_text(&drift, ui.text_options()));
                }
                if drift.has_errors() {
                    ExitStatus::Error
                } else if drift.has_changes() {
                    ExitStatus::Changes
                } else {
                    ExitStatus::Success
                }
            })
            .await
        }
        Command::Plan {
            spec: spec_arg,
            json,
            format,
            detailed_exitcode,
            select: SelectArgs { host: HostsArg { hosts }, targets, exclude, replace, allow_degraded },
            out,
        } => {
            let format = PlanFormat::pick(format, json);
            let spec_path = spec_arg.path();
            let Some((spec, graph)) = load_graph(&ui, &spec_path, &spec_arg.var_inputs(), &hosts, &targets) else {
                return ExitStatus::Error;
            };
            let options = RunOptions { exclude: &exclude, replace: &replace, allow_degraded };
            let Some(graph) = with_run_options(&ui, graph, options) else { return ExitStatus::Error };
            let (ui, graph, spec_ref) = (&ui, &graph, &spec);
            with_connections(ui, &spec, graph, |conns| async move {
                let plan = planner::plan(graph, &conns).await;
                print_plan(ui, &plan, format);
                if let Some(out) = &out {
                    let spec_ref = match saved::SpecRef::with_secrets(spec_ref, &spec_path) {
                        Ok(r) => r,
                        Err(e) => {
                            ui.error(&e.to_string());
                            return ExitStatus::Error;
                        }
                    };
                    let mut saved = saved::SavedPlan::new(plan.clone(), spec_ref, &hosts, &targets);
                    saved.replace.clone_from(&replace);
                    saved.exclude.clone_from(&exclude);
                    saved.allow_degraded = allow_degraded;
                    if let Err(e) = saved.write(out) {
                        ui.error(&e.to_string());
                        return ExitStatus::Error;
                    }
                    if format == PlanFormat::Text {
                        eprintln!("Saved the plan to {}; apply exactly it with `cairn apply {}`.", out.display(), out.display());
                    }
                }
                if plan.has_errors() {
                    ui.error(&blocked_summary(&plan));
                    ExitStatus::Error
                } else if detailed_exitcode && plan.has_changes() {
                    ExitStatus::Changes
                } else {
                    ExitStatus::Success
                }
            })
            .await
        }
        Command::Unlock { host: Some(host), spec } => unlock(&ui, &spec, &host).await,
        Command::Unlock { host: None, spec } => unlock_stale(&ui, &spec).await,
        Command::Destroy { spec: spec_arg, run, select: HostsArg { hosts } } => {
            let spec_path = spec_arg.path();
            let Some((spec, graph)) = load_graph(&ui, &spec_path, &spec_arg.var_inputs(), &hosts, &[]) else { return ExitStatus::Error };
            let graph = Arc::new(Arc::unwrap_or_clone(graph).for_destroy());
            let local: Vec<&str> =
                graph.hosts.values().filter(|h| h.transport == spec::TransportKind::Local).map(|h| h.name.as_str()).collect();
            if !local.is_empty() {
                eprintln!("note: {} reached with transport = \"local\" keep no manifest; nothing is removed there.", local.join(", "));
            }
            plan_and_apply(&ui, &spec, &graph, progress::RunKind::Destroy, &spec_path, run).await
        }
        Command::Apply { plan: Some(plan_file), spec, run, .. } => apply_saved(&ui, &plan_file, &spec, run).await,
        Command::Apply {
            plan: None,
            spec: spec_arg,
            run,
            select: SelectArgs { host: HostsArg { hosts }, targets, exclude, replace, allow_degraded },
        } => {
            let spec_path = spec_arg.path();
            let Some((spec, graph)) = load_graph(&ui, &spec_path, &spec_arg.var_inputs(), &hosts, &targets) else {
                return ExitStatus::Error;
            };
            let options = RunOptions { exclude: &exclude, replace: &replace, allow_degraded };
            let Some(graph) = with_run_options(&ui, graph, options) else { return ExitStatus::Error };
            plan_and_apply(&ui, &spec, &graph, progress::RunKind::Apply, &spec_path, run).await
        }
    }
}

/// `apply` and `destroy`: lock the hosts, plan, print the plan, ask (unless `--auto-approve`),
/// apply, record what the spec now manages on each host.
/// `kind` says which of the two it is (and names the command in messages).
async fn plan_and_apply(ui: &Ui, spec: &Spec, graph: &Arc<Graph>, kind: progress::RunKind, spec_path: &Path, run: RunArgs) -> ExitStatus {
    let verb = kind.verb();
    if !run.auto_approve && !std::io::stdin().is_terminal() {
        ui.error(&format!("stdin is not a terminal, so cairn cannot ask for confirmation; pass --auto-approve to {verb} without asking"));
        return ExitStatus::Error;
    }
    let locks = RunLocks::new(&spec_path.display().to_string(), run.lock_timeout);
    let held = &locks;
    with_connections_locked(ui, spec, graph, Some(&locks), |conns| async move {
        let Some(plan) = held.plan(ui, graph, &conns).await else { return ExitStatus::Error };
        print_plan(ui, &plan, PlanFormat::Text);
        if !plan.has_changes() {
            let recorded = record_unchanged(ui, graph, &plan, &conns, held).await;
            return if plan.has_errors() || !recorded { ExitStatus::Error } else { ExitStatus::Success };
        }
        if !run.auto_approve && !confirm() {
            let mut word = verb.to_string();
            word[..1].make_ascii_uppercase();
            eprintln!("{word} cancelled; nothing was changed.");
            return ExitStatus::Error;
        }
        carry_out(ui, graph, &plan, &conns, run.parallelism, kind, held).await
    })
    .await
}

/// Applies `plan` (already shown and agreed to), records what the spec now manages on each
/// host, and prints the report.
async fn carry_out(
    ui: &Ui,
    graph: &Arc<Graph>,
    plan: &Plan,
    conns: &planner::Connections,
    parallelism: usize,
    kind: progress::RunKind,
    locks: &RunLocks,
) -> ExitStatus {
    if let Some(status) = refuse_protected(ui, plan) {
        return status;
    }
    let (mut graph, mut plan) = (Arc::clone(graph), plan.clone());
    loop {
        let reporter = Arc::new(progress::Progress::new(&graph, &plan));
        // Unless a CA rotation goes on with another phase, the manifests are the last write.
        let release_locks = plan.rotations.is_empty().then(|| locks.id().to_string());
        let report = crate::apply::apply(&graph, &plan, conns, ApplyOptions { parallelism, release_locks }, reporter.clone()).await;
        locks.forget(&report.released);
        reporter.finish();
        let recorded = report_unrecorded(ui, &report.unrecorded);
        print!("{}", progress::report_text(&report, ui.color, kind));
        if !(report.success() && recorded) {
            return ExitStatus::Error;
        }
        // A CA rotation goes on with its next phase once this one is done on every host.
        let next = match crate::apply::rotation::advance(&graph, &plan).await {
            Ok((moved, next)) => {
                for m in &moved {
                    println!("\n{}", rotation_moved_text(m));
                }
                next
            }
            Err(e) => {
                ui.error(&e.to_string());
                return ExitStatus::Error;
            }
        };
        let Some(next) = next else { return ExitStatus::Success };
        graph = next;
        plan = planner::plan(&graph, conns).await;
        println!();
        print_plan(ui, &plan, PlanFormat::Text);
        if plan.has_errors() {
            ui.error(&blocked_summary(&plan));
            return ExitStatus::Error;
        }
        if let Some(status) = refuse_protected(ui, &plan) {
            return status;
        }
    }
}

/// What moving a CA rotation on did, in a sentence.
fn rotation_moved_text(m: &crate::apply::rotation::Moved) -> String {
    use crate::apply::rotation::Moved;
    match m {
        Moved::Next { ca, phase } => format!(
            "CA rotation {ca}: phase {} of 3 is done on every host; phase {} of 3 follows (recorded in the state dir: \
             an interrupted apply goes on from it).",
            phase.number() - 1,
            phase.number()
        ),
        Moved::Finished { ca, archive } => format!(
            "CA rotation {ca} complete: every certificate is issued by the new CA {ca}, which the CA files trust alone; \
             the old CA is archived in {}.",
            archive.display()
        ),
    }
}

/// A plan that would remove or replace a `prevent_destroy` resource is not applied at all.
fn refuse_protected(ui: &Ui, plan: &Plan) -> Option<ExitStatus> {
    let protected: Vec<String> = plan.protected().map(|c| format!("  {}: {}", c.id, c.reason)).collect();
    if protected.is_empty() {
        return None;
    }
    ui.error(&format!("nothing was applied: the plan would remove or replace protected resources\n{}", protected.join("\n")));
    Some(ExitStatus::Error)
}

/// One line for stderr when a plan cannot be applied (the reasons are in the plan itself).
fn blocked_summary(plan: &Plan) -> String {
    let blocked = plan.summary().conflict;
    let unread = plan.errors.len();
    let mut parts = Vec::new();
    if blocked > 0 {
        parts.push(format!("{blocked} blocked resource{} (`!`)", if blocked == 1 { "" } else { "s" }));
    }
    if unread > 0 {
        parts.push(format!("{unread} host{} that could not be read", if unread == 1 { "" } else { "s" }));
    }
    format!("the plan cannot be applied: {}; the plan above says why", parts.join(" and "))
}

/// Records what the spec manages on each host after an apply that found nothing to change;
/// returns whether every host's record was written.
async fn record_unchanged(ui: &Ui, graph: &Graph, plan: &Plan, conns: &planner::Connections, locks: &RunLocks) -> bool {
    let recorded = crate::apply::record_unchanged(graph, plan, conns, Some(locks.id())).await;
    locks.forget(&recorded.released);
    report_unrecorded(ui, &recorded.failed)
}

/// Tells which hosts' manifests could not be written; returns whether all were.
fn report_unrecorded(ui: &Ui, unrecorded: &[(String, String)]) -> bool {
    for (host, e) in unrecorded {
        ui.error(&format!("cannot record what the spec manages on {host}: {e}; the next apply records it again"));
    }
    unrecorded.is_empty()
}

/// `cairn show PLAN`.
fn show(ui: &Ui, path: &Path, format: PlanFormat) -> ExitStatus {
    match saved::SavedPlan::read(path) {
        Ok(saved) => {
            if format == PlanFormat::Text {
                println!("Saved plan {} (spec {}, cairn {}):\n", path.display(), saved.spec.path, saved.cairn_version);
            }
            print_plan(ui, &saved.plan, format);
            ExitStatus::Success
        }
        Err(e) => {
            ui.error(&e.to_string());
            ExitStatus::Error
        }
    }
}

/// `cairn apply PLAN`: the saved plan, exactly, or nothing when the spec or the hosts moved.
async fn apply_saved(ui: &Ui, plan_file: &Path, spec_arg: &SpecArg, run: RunArgs) -> ExitStatus {
    let saved = match saved::SavedPlan::read(plan_file) {
        Ok(s) => s,
        Err(e) => {
            ui.error(&e.to_string());
            return ExitStatus::Error;
        }
    };
    let spec_path = spec_arg.file.clone().unwrap_or_else(|| PathBuf::from(&saved.spec.path));
    let Some((spec, graph)) = load_graph(ui, &spec_path, &spec_arg.var_inputs(), &saved.hosts, &saved.targets) else {
        return ExitStatus::Error;
    };
    let options = RunOptions { exclude: &saved.exclude, replace: &saved.replace, allow_degraded: saved.allow_degraded };
    let Some(graph) = with_run_options(ui, graph, options) else { return ExitStatus::Error };
    let graph = run::with_operation(graph, saved.operation.as_ref());
    let now = match saved::SpecRef::with_secrets(&spec, &spec_path) {
        Ok(now) => now,
        Err(e) => {
            ui.error(&e.to_string());
            return ExitStatus::Error;
        }
    };
    let spec_moved = now.digest != saved.spec.digest;
    if spec_moved {
        let changed = saved.spec.changed_files(&now);
        let what = if changed.is_empty() { String::new() } else { format!(": {}", changed.join(", ")) };
        ui.error(&format!(
            "{} was made from another version of the spec (digest {} then, {} now in {}){what}; nothing was applied. \
             Make a new plan with `cairn plan -o {}` and review it.",
            plan_file.display(),
            short(&saved.spec.digest),
            short(&now.digest),
            spec_path.display(),
            plan_file.display()
        ));
    }
    let vars_moved = saved.spec.vars.as_ref().map(|v| v.changed(&spec.vars)).unwrap_or_default();
    if !vars_moved.is_empty() {
        ui.error(&format!(
            "{} was made with other variables: {}; nothing was applied. Give the same --var, --var-file and CAIRN_VAR_* \
             values as the plan had, or make a new plan with `cairn plan -o {}` and review it.",
            plan_file.display(),
            vars_moved.join(", "),
            plan_file.display()
        ));
    }
    let secrets_moved = saved.spec.changed_secrets(&now);
    if !secrets_moved.is_empty() {
        ui.error(&format!(
            "{} was made with other secrets: {}; nothing was applied. Give the secrets the values they had (and keep the state dir: its digest.key \
             made the plan's digests), or make a new plan with `cairn plan -o {}` and review it.",
            plan_file.display(),
            secrets_moved.join(", "),
            plan_file.display()
        ));
    }
    if spec_moved || !vars_moved.is_empty() || !secrets_moved.is_empty() {
        return ExitStatus::Error;
    }
    let (ui, graph, saved) = (ui, &graph, &saved);
    let locks = RunLocks::new(&spec_path.display().to_string(), run.lock_timeout);
    let held = &locks;
    with_connections_locked(ui, &spec, graph, Some(&locks), |conns| async move {
        let Some(now) = held.plan(ui, graph, &conns).await else { return ExitStatus::Error };
        let moved = saved::compare(&saved.plan, &now);
        if !moved.is_empty() {
            eprint!("{}", render::moved_text(&moved));
            ui.error(&format!(
                "the hosts changed since {} was made; nothing was applied. Make a new plan with `cairn plan -o {}` and review it.",
                plan_file.display(),
                plan_file.display()
            ));
            return ExitStatus::Error;
        }
        print_plan(ui, &now, PlanFormat::Text);
        if saved.operation.is_some() {
            return if now.has_errors() { ExitStatus::Error } else { run::carry_out(ui, graph, &now, &conns).await };
        }
        if !now.has_changes() {
            return if record_unchanged(ui, graph, &now, &conns, held).await { ExitStatus::Success } else { ExitStatus::Error };
        }
        carry_out(ui, graph, &now, &conns, run.parallelism, progress::RunKind::Apply, held).await
    })
    .await
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn confirm() -> bool {
    print!("\nApply these changes? Only 'yes' will be accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

fn print_plan(ui: &Ui, plan: &Plan, format: PlanFormat) {
    match format {
        PlanFormat::Text => print!("{}", render::text(plan, ui.text_options())),
        PlanFormat::Json => print!("{}", render::json(plan)),
        PlanFormat::Markdown => print!("{}", render::markdown(plan)),
    }
    // A lost state dir: one line per CA, naming the hosts that carry its certificates.
    let mut lost: std::collections::BTreeMap<(&str, &str), Vec<&str>> = std::collections::BTreeMap::new();
    for c in plan.changes() {
        if let crate::resource::Reason::CaNotInStateDir { ca, store } = &c.reason {
            let hosts = lost.entry((ca, store)).or_default();
            if !hosts.contains(&c.id.host.as_str()) {
                hosts.push(&c.id.host);
            }
        }
    }
    for ((ca, store), hosts) in lost {
        ui.error(&format!(
            "CA {ca} is not in the state dir ({store} is missing), but {} carr{} certificates from a CA of that name; \
             nothing is reissued. Restore the state dir from its backup, or pass --replace ca.{ca} for a new CA",
            hosts.join(", "),
            if hosts.len() == 1 { "ies" } else { "y" }
        ));
    }
    // --allow-degraded lets the quorum guard's held changes through: say so, every time.
    for cluster in plan.clusters.iter().filter(|c| c.summary.health == crate::resource::cluster::ClusterHealth::Degraded) {
        // Without the flag such a change would be held (a conflict).
        if plan.changes().any(|c| c.id.resource == cluster.unit && c.disruptive && c.action.is_change()) {
            ui.warn(&format!(
                "--allow-degraded: {} is degraded and this plan disrupts it anyway; one more member lost while it runs costs \
                 the cluster its quorum",
                render::cluster_headline(cluster)
            ));
        }
    }
}

/// Connects to every host of the graph (in parallel), runs `body`, and closes every connection
/// afterwards, also on Ctrl-C, so no ssh process outlives cairn.
async fn with_connections<F, Fut>(ui: &Ui, spec: &Spec, graph: &Arc<Graph>, body: F) -> ExitStatus
where
    F: FnOnce(planner::Connections) -> Fut,
    Fut: std::future::Future<Output = ExitStatus>,
{
    with_connections_locked(ui, spec, graph, None, body).await
}

/// This run's apply locks on the hosts it touches: its holder record, how long to wait for
/// another run's lock, and the hosts locked so far. The plan's probe takes them
/// ([`RunLocks::plan`]); the manifest writes release them when nothing follows
/// ([`RunLocks::forget`]); whatever is still held is released at the end, also on Ctrl-C.
#[derive(Clone)]
struct RunLocks {
    me: host::LockHolder,
    /// How long to wait for a lock someone else holds.
    timeout: std::time::Duration,
    held: Arc<std::sync::Mutex<Vec<crate::transport::SharedTransport>>>,
}

impl RunLocks {
    fn new(spec: &str, timeout: std::time::Duration) -> Self {
        Self { me: host::LockHolder::for_this_process(spec), timeout, held: Arc::default() }
    }

    /// The locks' id.
    fn id(&self) -> &str {
        &self.me.id
    }

    fn with_held<T>(&self, f: impl FnOnce(&mut Vec<crate::transport::SharedTransport>) -> T) -> T {
        // Every change is one push, retain or clear: a panic elsewhere cannot leave it half-done.
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut held)
    }

    /// The hosts locked now.
    fn held(&self) -> Vec<crate::transport::SharedTransport> {
        self.with_held(|h| h.clone())
    }

    /// Forgets the locks already released on `hosts` (with their manifests).
    fn forget(&self, hosts: &[String]) {
        self.with_held(|h| h.retain(|t| !hosts.iter().any(|r| r == t.host())));
    }

    /// Plans under the locks: every host's lock is taken by its probe, all at once (no round
    /// trip more than the plan, however many hosts). When another run holds one, the locks
    /// taken are given back and taken again in host order (two applies never wait on each other
    /// in a circle), retrying for the timeout while another run holds one; the hosts are then
    /// read again. `None` (said on stderr, nothing applied) when the locks cannot be had.
    async fn plan(&self, ui: &Ui, graph: &Arc<Graph>, conns: &planner::Connections) -> Option<Plan> {
        match self.plan_locked(graph, conns).await {
            Ok(plan) => Some(plan),
            Err(message) => {
                ui.error(&message);
                None
            }
        }
    }

    async fn plan_locked(&self, graph: &Arc<Graph>, conns: &planner::Connections) -> Result<Plan, String> {
        let lockable = lockable(graph, conns);
        let record = host::lock_record(&self.me);
        let records = lockable.iter().map(|(name, _)| ((*name).clone(), record.clone())).collect();
        let (plan, taken) = planner::plan_locking(graph, conns, &records).await;
        let mut all = true;
        for (name, t) in &lockable {
            if taken.get(*name) == Some(&crate::resource::probe::LockTaken::Acquired) {
                self.with_held(|h| h.push(Arc::clone(t)));
            } else {
                all = false;
            }
        }
        if all {
            return Ok(plan);
        }
        // Whatever stays is this run's, and the ordered attempt that follows takes it again.
        unlock_all(&self.held(), &self.me).await;
        self.with_held(Vec::clear);
        self.take_in_order(&lockable).await?;
        Ok(planner::plan(graph, conns).await)
    }

    /// Takes the locks one host after the other, in host order, waiting up to the timeout while
    /// another run holds one.
    async fn take_in_order(&self, lockable: &[(&String, &crate::transport::SharedTransport)]) -> Result<(), String> {
        let deadline = std::time::Instant::now() + self.timeout;
        for (name, t) in lockable {
            loop {
                match try_lock(t.as_ref(), &self.me).await {
                    Ok(host::LockAttempt::Acquired) => {
                        self.with_held(|h| h.push(Arc::clone(t)));
                        break;
                    }
                    Ok(host::LockAttempt::Held(holder)) => {
                        if std::time::Instant::now() < deadline {
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                            continue;
                        }
                        return Err(held_message(name, holder, self.timeout));
                    }
                    Err(e) => return Err(format!("cannot take the apply lock: {e}")),
                }
            }
        }
        Ok(())
    }
}

/// Tries once to take `transport`'s lock for `me`: a probe that asks for nothing else (the one
/// place the lock is taken, `probe.sh`).
async fn try_lock(
    transport: &dyn crate::transport::Transport,
    me: &host::LockHolder,
) -> Result<host::LockAttempt, crate::transport::TransportError> {
    let request = crate::resource::ProbeRequest { lock: Some(host::lock_record(me)), ..Default::default() };
    Ok(match request.run(transport).await?.lock {
        Some(crate::resource::probe::LockTaken::Acquired) => host::LockAttempt::Acquired,
        Some(crate::resource::probe::LockTaken::Held(record)) => host::LockAttempt::Held(serde_json::from_str(&record).ok()),
        None => host::LockAttempt::Held(None),
    })
}

/// The hosts an apply locks, in host order: every reachable SSH host. An unreachable host is
/// reported by the plan and not touched, so it needs no lock; `transport = "local"` hosts are
/// this machine (often several of them, and cairn may not be root): they take no lock.
fn lockable<'c>(graph: &Graph, conns: &'c planner::Connections) -> Vec<(&'c String, &'c crate::transport::SharedTransport)> {
    conns
        .iter()
        .filter_map(|(name, conn)| conn.as_ref().ok().map(|t| (name, t)))
        .filter(|(name, _)| !graph.hosts.get(*name).is_some_and(|h| h.transport == crate::spec::TransportKind::Local))
        .collect()
}

/// Why `name`'s lock could not be had, and what to do.
fn held_message(name: &str, holder: Option<host::LockHolder>, timeout: std::time::Duration) -> String {
    let waited = if timeout.is_zero() { String::new() } else { format!(" after waiting {} s", timeout.as_secs()) };
    match holder {
        Some(h) if h.is_stale() => format!(
            "{name} is locked by {}, but that run is gone (stale lock); nothing was applied. \
             Check that no apply is running, then break it with `cairn unlock {name}`",
            h.describe()
        ),
        Some(h) => format!(
            "{name} is locked by another apply: {}{waited}; nothing was applied. \
             Wait for it to finish, or pass --lock-timeout 2m to wait",
            h.describe()
        ),
        None => format!("{name} is locked ({}, holder unreadable){waited}; nothing was applied", host::LOCK_PATH),
    }
}

/// [`with_connections`], releasing the `locks` still held after `body` ran (also on Ctrl-C);
/// `body` takes them with its plan ([`RunLocks::plan`]).
async fn with_connections_locked<F, Fut>(ui: &Ui, spec: &Spec, graph: &Arc<Graph>, locks: Option<&RunLocks>, body: F) -> ExitStatus
where
    F: FnOnce(planner::Connections) -> Fut,
    Fut: std::future::Future<Output = ExitStatus>,
{
    for warning in connect::warnings(spec, graph) {
        ui.error(&warning);
    }
    let (conns, _control_dir) = connect::connect_all(spec, graph).await;
    let status = tokio::select! {
        status = body(conns.clone()) => status,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nInterrupted; closing connections.");
            if let Some(locks) = locks {
                release_locks(ui, &locks.held(), &locks.me).await;
            }
            crate::transport::ssh::close_all_masters().await;
            ExitStatus::Interrupted
        }
    };
    if let Some(locks) = locks {
        release_locks(ui, &locks.held(), &locks.me).await;
    }
    if ui.verbose {
        for (host, conn) in &conns {
            if let Ok(t) = conn {
                let s = t.stats();
                eprintln!("{host}: {} connection(s), {} remote command(s)", s.connections(), s.commands());
            }
        }
    }
    connect::close_all(&conns).await;
    status
}

/// Releases `locked` on every host at once; returns the hosts where that failed, sorted.
async fn unlock_all(
    locked: &[crate::transport::SharedTransport],
    me: &host::LockHolder,
) -> Vec<(String, crate::transport::TransportError)> {
    let mut releases = tokio::task::JoinSet::new();
    for t in locked {
        let (t, id) = (Arc::clone(t), me.id.clone());
        releases.spawn(async move { (t.host().to_string(), host::unlock(t.as_ref(), Some(&id)).await) });
    }
    let mut failed = Vec::new();
    while let Some(joined) = releases.join_next().await {
        if let Ok((host, Err(e))) = joined {
            failed.push((host, e));
        }
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    failed
}

/// Releases this run's locks, all at once. A lock that cannot be released (the connection died)
/// stays on its host: said on stderr with the way out, since the next apply there will refuse to
/// start.
async fn release_locks(ui: &Ui, locked: &[crate::transport::SharedTransport], me: &host::LockHolder) {
    for (host, e) in unlock_all(locked, me).await {
        ui.error(&format!(
            "{host}: its apply lock stays on the host ({e}); the next apply there reports it as a stale lock, \
             and `cairn unlock {host}` removes it"
        ));
    }
}

/// `cairn unlock HOST`.
async fn unlock(ui: &Ui, spec_arg: &SpecArg, name: &str) -> ExitStatus {
    let Some((spec, graph)) = load_graph(ui, &spec_arg.path(), &spec_arg.var_inputs(), &[name.to_string()], &[]) else {
        return ExitStatus::Error;
    };
    let graph = &graph;
    with_connections(ui, &spec, graph, |conns| async move {
        let Some(Ok(t)) = conns.get(name) else {
            let why = conns.get(name).and_then(|c| c.as_ref().err().map(ToString::to_string)).unwrap_or_else(|| "not in the spec".into());
            ui.error(&format!("cannot unlock {name}: {why}"));
            return ExitStatus::Error;
        };
        match host::read_lock(t.as_ref()).await {
            Ok(Some(h)) if !h.is_stale() && h.machine == host::machine_name() => {
                ui.error(&format!("{name} is locked by a run that is still going: {}; stop it first", h.describe()));
                return ExitStatus::Error;
            }
            Ok(_) => {}
            Err(e) => {
                ui.error(&e.to_string());
                return ExitStatus::Error;
            }
        }
        match host::unlock(t.as_ref(), None).await {
            Ok(Some(h)) => {
                println!("Removed the lock on {name} held by {}.", h.describe());
                ExitStatus::Success
            }
            Ok(None) => {
                println!("{name} was not locked.");
                ExitStatus::Success
            }
            Err(e) => {
                ui.error(&e.to_string());
                ExitStatus::Error
            }
        }
    })
    .await
}

/// `cairn unlock` without a host: every host of the spec, one line each; a lock is removed only
/// when its run is known to be gone (taken on this machine by a process that no longer exists).
/// Exit 1 when a lock was kept or a host could not be read.
async fn unlock_stale(ui: &Ui, spec_arg: &SpecArg) -> ExitStatus {
    let Some((spec, graph)) = load_graph(ui, &spec_arg.path(), &spec_arg.var_inputs(), &[], &[]) else { return ExitStatus::Error };
    let graph = &graph;
    with_connections(ui, &spec, graph, |conns| async move {
        let mut kept: Vec<&str> = Vec::new();
        let mut elsewhere = false;
        let mut unreached: Vec<&str> = Vec::new();
        for (name, conn) in &conns {
            if graph.hosts.get(name).is_some_and(|h| h.transport == crate::spec::TransportKind::Local) {
                println!("{name}: no lock (transport = \"local\" hosts take none)");
                continue;
            }
            let t = match conn {
                Ok(t) => t,
                Err(e) => {
                    println!("{name}: cannot be reached: {e}");
                    unreached.push(name);
                    continue;
                }
            };
            let state = match host::lock_state(t.as_ref()).await {
                Ok(state) => state,
                Err(e) => {
                    println!("{name}: cannot read its lock: {e}");
                    unreached.push(name);
                    continue;
                }
            };
            match state {
                host::LockState::Free => println!("{name}: no lock"),
                host::LockState::Unreadable => {
                    println!("{name}: locked ({}, holder unreadable): not removed", host::LOCK_PATH);
                    kept.push(name);
                }
                host::LockState::Held(h) if h.is_stale() => match host::unlock(t.as_ref(), Some(&h.id)).await {
                    Ok(Some(_)) => println!("{name}: released the stale lock of {}", h.describe()),
                    Ok(None) => {
                        println!("{name}: the lock changed while it was being released: not removed");
                        kept.push(name);
                    }
                    Err(e) => {
                        println!("{name}: cannot release its lock: {e}");
                        unreached.push(name);
                    }
                },
                host::LockState::Held(h) if h.machine == host::machine_name() => {
                    println!("{name}: held by {} (live, not removed)", h.describe());
                    kept.push(name);
                }
                host::LockState::Held(h) => {
                    println!("{name}: held by {} (taken on {}, which cannot be checked from here; not removed)", h.describe(), h.machine);
                    elsewhere = true;
                    kept.push(name);
                }
            }
        }
        let mut problems = Vec::new();
        if !kept.is_empty() {
            let hint = if elsewhere { "; `cairn unlock HOST` removes a lock once you know its run is gone" } else { "" };
            problems.push(format!("not removed: {} (stop the runs that hold them first{hint})", kept.join(", ")));
        }
        if !unreached.is_empty() {
            problems.push(format!("could not be reached or read: {}", unreached.join(", ")));
        }
        if problems.is_empty() {
            ExitStatus::Success
        } else {
            ui.error(&problems.join("; "));
            ExitStatus::Error
        }
    })
    .await
}

fn load_spec(ui: &Ui, path: &Path, vars: &spec::VarInputs) -> Option<Spec> {
    if path == Path::new(DEFAULT_SPEC) && !path.exists() {
        let here = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into());
        ui.error(&format!("no spec here: cairn looked for `{DEFAULT_SPEC}` in {here}; name the spec with `-f PATH`"));
        return None;
    }
    match spec::load_with_vars(path, vars) {
        Ok((spec, warnings)) => {
            for warning in warnings {
                ui.warn(&warning);
            }
            Some(spec)
        }
        Err(e) => {
            eprint!("{}", e.diagnostics.render(&e.sources));
            let _ = ui;
            None
        }
    }
}

fn load_graph(ui: &Ui, path: &Path, vars: &spec::VarInputs, hosts: &[String], targets: &[String]) -> Option<(Spec, Arc<Graph>)> {
    let spec = load_spec(ui, path, vars)?;
    match Graph::build(&spec) {
        Ok(graph) => match graph.restrict(hosts, targets) {
            Ok(g) => Some((spec, Arc::new(g))),
            Err(e) => {
                ui.error(&e.to_string());
                None
            }
        },
        Err(diags) => {
            eprint!("{}", diags.render(&spec.sources));
            None
        }
    }
}

fn validate(ui: &Ui, spec_arg: &SpecArg) -> ExitStatus {
    let path = &spec_arg.path();
    let Some((spec, graph)) = load_graph(ui, path, &spec_arg.var_inputs(), &[], &[]) else { return ExitStatus::Error };
    println!(
        "{} is valid: {} resource{}, {} instance{} on {} host{}, {} wave{}.",
        path.display(),
        spec.resources.len(),
        if spec.resources.len() == 1 { "" } else { "s" },
        graph.instances.len(),
        if graph.instances.len() == 1 { "" } else { "s" },
        graph.busy_hosts().len(),
        if graph.busy_hosts().len() == 1 { "" } else { "s" },
        graph.waves().len(),
        if graph.waves().len() == 1 { "" } else { "s" },
    );
    if let Some(tracked) = tracked_state_files(&spec.state_dir) {
        ui.warn(&format!(
            "{tracked} file(s) of the state dir {} are tracked by git: it holds CA private keys. \
             Remove them from the repository (`git rm -r --cached {}`) and rotate any CA whose key was committed",
            spec.state_dir.display(),
            spec.state_dir.display()
        ));
    }
    ExitStatus::Success
}

/// How many files of `state_dir` git tracks, when it is inside a git work tree and tracks any.
fn tracked_state_files(state_dir: &Path) -> Option<usize> {
    if !state_dir.is_dir() {
        return None;
    }
    let out = std::process::Command::new("git").arg("-C").arg(state_dir).args(["ls-files", "--", "."]).output().ok()?;
    let count = String::from_utf8_lossy(&out.stdout).lines().count();
    (out.status.success() && count > 0).then_some(count)
}

fn graph(ui: &Ui, spec_arg: &SpecArg, format: GraphFormat) -> ExitStatus {
    let Some((_, graph)) = load_graph(ui, &spec_arg.path(), &spec_arg.var_inputs(), &[], &[]) else { return ExitStatus::Error };
    match format {
        GraphFormat::Dot => print!("{}", graph.to_dot()),
        GraphFormat::Mermaid => print!("{}", graph.to_mermaid()),
    }
    ExitStatus::Success
}

/// Counts outcomes for the final report.
pub(crate) fn is_done(o: &Outcome) -> bool {
    o.is_done()
}
