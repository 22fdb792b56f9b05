//! Apply progress on stderr: an indicatif bar when stderr is a terminal, one line per finished
//! change otherwise (CI logs). And the final report's text.

use std::fmt::Write as _;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use std::collections::BTreeMap;

use crate::apply::{ApplyReport, Outcome, Reporter};
use crate::graph::{Graph, InstanceId};
use crate::plan::{Action, Plan};

/// How the failure of an instance whose host could not be read at plan time is told.
const HOST_UNREADABLE: &str = "host could not be read";

/// Shows apply progress.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// The clusters' services: a restart of a member says what its gates saw (who led, the
    /// version it reports now).
    cluster_units: Vec<crate::spec::ResourceId>,
}

impl Progress {
    /// A progress display sized for the changes in `plan`.
    pub fn new(_graph: &Graph, plan: &Plan) -> Self {
        let total = plan.changes().filter(|c| c.action.is_change()).count() as u64;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { bar, cluster_units: plan.clusters.iter().map(|k| k.unit.clone()).collect() }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Reporter for Progress {
    fn started(&self, id: &InstanceId, action: Action) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} {id}", action.symbol()));
        }
    }

    fn finished(&self, id: &InstanceId, outcome: &Outcome) {
        match outcome {
            Outcome::Done(what) => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                // A membership step says what it did (ids, where the old data went), a member's
                // restart what its gates saw.
                if id.resource.kind == crate::spec::Kind::Cluster || self.cluster_units.contains(&id.resource) {
                    self.line(format!("done     {id}: {what}"));
                } else {
                    self.line(format!("done     {id}"));
                }
            }
            Outcome::DoneAfterRetry(what) => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                self.line(format!("done     {id}: {what}"));
            }
            Outcome::Failed(why) => self.line(format!("FAILED   {id}: {why}")),
            Outcome::HostUnreadable(err) => self.line(format!("FAILED   {id}: {HOST_UNREADABLE}: {err}")),
            Outcome::Skipped(why) => self.line(format!("skipped  {id}: {why}")),
            Outcome::Unchanged(_) => {}
            Outcome::Passed(why) => self.line(format!("passed   {id}: {why}")),
        }
    }
}

/// Which command's report it is: an apply changes, a destroy removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `cairn apply`.
    Apply,
    /// `cairn destroy`.
    Destroy,
    /// `cairn run`.
    Run,
}

impl RunKind {
    /// The command's name, for messages ("apply").
    pub fn verb(self) -> &'static str {
        match self {
            RunKind::Apply => "apply",
            RunKind::Destroy => "destroy",
            RunKind::Run => "run",
        }
    }
}

/// The final report: failures and skips in full (a host that could not be reached is one line,
/// not one per resource), then counts ("Apply complete: 3 changed, …", "Destroy complete: 3
/// removed, …").
pub fn report_text(report: &ApplyReport, color: bool, kind: RunKind) -> String {
    let mut out = String::from("\n");
    let red = |s: &str| if color { format!("\x1b[31m{s}\x1b[0m") } else { s.to_string() };
    let mut unreachable: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for r in &report.results {
        if let Outcome::HostUnreadable(err) = &r.outcome {
            unreachable.entry(r.id.host.as_str()).or_insert((err.as_str(), 0)).1 += 1;
        }
    }
    for r in &report.results {
        if unreachable.contains_key(r.id.host.as_str()) {
            continue;
        }
        match &r.outcome {
            Outcome::Failed(why) => {
                let _ = writeln!(out, "{} {}: {why}", red("failed: "), r.id);
            }
            Outcome::Skipped(why) => {
                let _ = writeln!(out, "skipped: {}: {why}", r.id);
            }
            _ => {}
        }
    }
    for (host, (why, _)) in &unreachable {
        let total = report.results.iter().filter(|r| r.id.host == *host).count();
        let _ = writeln!(out, "{} {host} (none of its {total} resources applied): {HOST_UNREADABLE}: {why}", red("failed: "));
    }
    let done = report.count(super::is_done);
    let failed = report.count(|o| matches!(o, Outcome::Failed(_) | Outcome::HostUnreadable(_)));
    let skipped = report.count(|o| matches!(o, Outcome::Skipped(_)));
    let unchanged = report.count(|o| matches!(o, Outcome::Unchanged(_)));
    let passed = report.count(|o| matches!(o, Outcome::Passed(_)));
    let checks = if passed > 0 { format!(", {passed} check{} passed", if passed == 1 { "" } else { "s" }) } else { String::new() };
    let (run, changed) = match kind {
        RunKind::Apply => ("Apply", "changed"),
        RunKind::Destroy => ("Destroy", "removed"),
        RunKind::Run => ("Run", "done"),
    };
    let verdict = if report.success() { "complete" } else { "failed" };
    let _ = writeln!(out, "{run} {verdict}: {done} {changed}, {unchanged} unchanged, {failed} failed, {skipped} skipped{checks}.");
    out
}

/// `cairn check`'s report: one line per check, then counts ("Checks: 2 passed, 1 failed.").
pub fn checks_text(report: &ApplyReport, color: bool) -> String {
    let red = |s: &str| if color { format!("\x1b[31m{s}\x1b[0m") } else { s.to_string() };
    let mut out = String::new();
    for r in &report.results {
        let _ = match &r.outcome {
            Outcome::Passed(why) => writeln!(out, "passed  {}: {why}", r.id),
            Outcome::HostUnreadable(err) => writeln!(out, "{}  {}: {HOST_UNREADABLE}: {err}", red("FAILED"), r.id),
            Outcome::Failed(why) | Outcome::Skipped(why) | Outcome::Done(why) | Outcome::DoneAfterRetry(why) | Outcome::Unchanged(why) => {
                writeln!(out, "{}  {}: {why}", red("FAILED"), r.id)
            }
        };
    }
    if report.results.is_empty() {
        out.push_str("No checks: the spec has none on these hosts.\n");
        return out;
    }
    let passed = report.count(|o| matches!(o, Outcome::Passed(_)));
    let _ = writeln!(out, "Checks: {passed} passed, {} failed.", report.results.len() - passed);
    out
}
