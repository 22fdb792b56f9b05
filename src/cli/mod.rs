//! The command line: clap commands, colour choice, progress, exit codes. The only layer that
//! prints: the plan on stdout, progress and logs on stderr. Exit codes are decided in
//! [`ExitStatus`] and documented in `docs/cli.md`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod connect;
mod download;
pub mod lab;
pub mod module;
mod progress;

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::apply::{ApplyOptions, Outcome};
use crate::graph::Graph;
use crate::plan::render::{self, TextOptions};
use crate::plan::{Plan, planner};
use crate::spec::{self, Spec};

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

/// `-f SPEC`, shared by commands that read a spec.
#[derive(Debug, Clone, clap::Args)]
pub struct SpecArg {
    /// The spec file.
    #[arg(short = 'f', long = "file", default_value = "cairn.toml", value_name = "SPEC")]
    pub file: PathBuf,
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
        /// Print the plan as JSON (docs/plan-json.md).
        #[arg(long)]
        json: bool,
        /// Exit 0 when nothing would change, 2 when something would, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Only these hosts (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Only these resources, `kind.name` (repeatable).
        #[arg(long = "target", value_name = "ID")]
        targets: Vec<String>,
    },
    /// Plan, show the plan, ask for confirmation, and apply it.
    Apply {
        /// The spec file.
        #[command(flatten)]
        spec: SpecArg,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// How many hosts are worked on at once.
        #[arg(long, default_value_t = 10, value_name = "N")]
        parallelism: usize,
        /// Only these hosts (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Only these resources, `kind.name` (repeatable).
        #[arg(long = "target", value_name = "ID")]
        targets: Vec<String>,
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
    /// Reusable modules (`modules/<name>/module.toml`).
    #[command(subcommand)]
    Module(module::ModuleCommand),
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
    init_logging(cli.verbose);
    if let Command::Lab(cmd) = cli.command {
        return lab::run(cmd);
    }
    if let Command::Module(cmd) = cli.command {
        return module::run(cmd);
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

fn init_logging(verbose: bool) {
    let default = if verbose { "cairn=debug" } else { "cairn=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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
}

async fn run(cli: Cli) -> ExitStatus {
    let ui = Ui::new(&cli);
    download::install();
    match cli.command {
        Command::Validate { spec } => validate(&ui, &spec.file),
        Command::Graph { spec, format } => graph(&ui, &spec.file, format),
        Command::Lab(_) | Command::Module(_) => ExitStatus::Error, // handled before the runtime starts
        Command::Plan { spec, json, detailed_exitcode, hosts, targets } => {
            let Some((spec, graph)) = load_graph(&ui, &spec.file, &hosts, &targets) else { return ExitStatus::Error };
            let (ui, graph) = (&ui, &graph);
            with_connections(ui, &spec, graph, |conns| async move {
                let plan = planner::plan(graph, &conns).await;
                print_plan(ui, &plan, graph, json);
                if plan.has_errors() {
                    ExitStatus::Error
                } else if detailed_exitcode && plan.has_changes() {
                    ExitStatus::Changes
                } else {
                    ExitStatus::Success
                }
            })
            .await
        }
        Command::Apply { spec, auto_approve, parallelism, hosts, targets } => {
            let Some((spec, graph)) = load_graph(&ui, &spec.file, &hosts, &targets) else { return ExitStatus::Error };
            if !auto_approve && !std::io::stdin().is_terminal() {
                ui.error("stdin is not a terminal, so cairn cannot ask for confirmation; pass --auto-approve to apply without asking");
                return ExitStatus::Error;
            }
            let (ui, graph) = (&ui, &graph);
            with_connections(ui, &spec, graph, |conns| async move {
                let plan = planner::plan(graph, &conns).await;
                print_plan(ui, &plan, graph, false);
                if !plan.has_changes() {
                    return if plan.has_errors() { ExitStatus::Error } else { ExitStatus::Success };
                }
                if !auto_approve && !confirm() {
                    eprintln!("Apply cancelled; nothing was changed.");
                    return ExitStatus::Error;
                }
                let reporter = Arc::new(progress::Progress::new(graph, &plan));
                let report = crate::apply::apply(graph, &plan, &conns, ApplyOptions { parallelism }, reporter.clone()).await;
                reporter.finish();
                print!("{}", progress::report_text(&report, ui.color));
                if report.success() { ExitStatus::Success } else { ExitStatus::Error }
            })
            .await
        }
    }
}

fn confirm() -> bool {
    print!("\nApply these changes? Only 'yes' will be accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

fn print_plan(ui: &Ui, plan: &Plan, graph: &Graph, json: bool) {
    if json {
        print!("{}", render::json(plan));
    } else {
        print!("{}", render::text(plan, graph, ui.text_options()));
    }
}

/// Connects to every host of the graph (in parallel), runs `body`, and closes every connection
/// afterwards, also on Ctrl-C, so no ssh process outlives cairn.
async fn with_connections<F, Fut>(ui: &Ui, spec: &Spec, graph: &Arc<Graph>, body: F) -> ExitStatus
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
            crate::transport::ssh::close_all_masters().await;
            ExitStatus::Interrupted
        }
    };
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

fn load_spec(ui: &Ui, path: &Path) -> Option<Spec> {
    match spec::load(path) {
        Ok(spec) => Some(spec),
        Err(e) => {
            eprint!("{}", e.diagnostics.render(&e.sources));
            let _ = ui;
            None
        }
    }
}

fn load_graph(ui: &Ui, path: &Path, hosts: &[String], targets: &[String]) -> Option<(Spec, Arc<Graph>)> {
    let spec = load_spec(ui, path)?;
    match Graph::build(&spec) {
        Ok(graph) => match graph.restrict(hosts, targets) {
            Ok(g) => Some((spec, Arc::new(g))),
            Err(msg) => {
                ui.error(&msg);
                None
            }
        },
        Err(diags) => {
            eprint!("{}", diags.render(&spec.sources));
            None
        }
    }
}

fn validate(ui: &Ui, path: &Path) -> ExitStatus {
    let Some((spec, graph)) = load_graph(ui, path, &[], &[]) else { return ExitStatus::Error };
    println!(
        "{} is valid: {} resource{}, {} instance{} on {} host{}, {} wave{}.",
        path.display(),
        spec.resources.len(),
        if spec.resources.len() == 1 { "" } else { "s" },
        graph.instances.len(),
        if graph.instances.len() == 1 { "" } else { "s" },
        graph.hosts.len(),
        if graph.hosts.len() == 1 { "" } else { "s" },
        graph.waves().len(),
        if graph.waves().len() == 1 { "" } else { "s" },
    );
    ExitStatus::Success
}

fn graph(ui: &Ui, path: &Path, format: GraphFormat) -> ExitStatus {
    let Some((_, graph)) = load_graph(ui, path, &[], &[]) else { return ExitStatus::Error };
    match format {
        GraphFormat::Dot => print!("{}", graph.to_dot()),
        GraphFormat::Mermaid => print!("{}", graph.to_mermaid()),
    }
    ExitStatus::Success
}

/// Counts outcomes for the final report.
pub(crate) fn is_done(o: &Outcome) -> bool {
    matches!(o, Outcome::Done(_))
}
