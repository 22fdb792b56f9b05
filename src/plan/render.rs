//! Plan views: human text (grouped by host, optionally coloured) and stable JSON. Pure functions
//! of a [`Plan`]; the CLI decides where they go.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Change, FORMAT_VERSION, Plan, Summary};
use crate::graph::Graph;

/// How to draw the text view.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// ANSI colours.
    pub color: bool,
    /// Also list unchanged instances and why, and dependency reasons.
    pub verbose: bool,
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.0 { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }
    fn action(&self, a: Action, text: &str) -> String {
        let code = match a {
            Action::Create => "32",
            Action::Update => "33",
            Action::Delete | Action::Conflict => "31",
            Action::Replace => "35",
            Action::Restart => "36",
            Action::NoOp => "2",
        };
        self.wrap(code, text)
    }
    fn bold(&self, text: &str) -> String {
        self.wrap("1", text)
    }
    fn dim(&self, text: &str) -> String {
        self.wrap("2", text)
    }
}

/// The human view of a plan.
pub fn text(plan: &Plan, graph: &Graph, opts: TextOptions) -> String {
    let paint = Paint(opts.color);
    let mut out = String::new();
    for (host, changes) in &plan.hosts {
        let shown: Vec<&Change> = changes.iter().filter(|c| opts.verbose || c.action != Action::NoOp).collect();
        if shown.is_empty() {
            continue;
        }
        let address = graph.hosts.get(host).map(|h| format!(" ({})", h.address)).unwrap_or_default();
        let _ = writeln!(out, "{}", paint.bold(&format!("{host}{address}")));
        for c in shown {
            render_change(&mut out, c, graph, opts, &paint);
        }
        out.push('\n');
    }
    for e in &plan.errors {
        // Transport errors already name the host.
        let _ = writeln!(out, "{} {}", paint.action(Action::Conflict, "error:"), e.error);
    }
    if !plan.errors.is_empty() {
        out.push('\n');
    }
    let s = plan.summary();
    if !plan.has_changes() && !plan.has_errors() {
        let _ = writeln!(
            out,
            "No changes. {} resource instance{} on {} host{} match the spec.",
            s.unchanged,
            plural(s.unchanged),
            plan.hosts.len(),
            plural(plan.hosts.len())
        );
    } else {
        let _ = writeln!(out, "{}", summary_line(&s));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// "Plan: 3 to create, 1 to change, 0 to delete." plus replace/restart/conflict counts when any.
pub fn summary_line(s: &Summary) -> String {
    let mut line = format!("Plan: {} to create, {} to change, {} to delete", s.create, s.update, s.delete);
    if s.replace > 0 {
        let _ = write!(line, ", {} to replace", s.replace);
    }
    if s.restart > 0 {
        let _ = write!(line, ", {} to restart", s.restart);
    }
    if s.conflict > 0 {
        let _ = write!(line, ", {} blocked", s.conflict);
    }
    line.push('.');
    line
}

fn render_change(out: &mut String, c: &Change, graph: &Graph, opts: TextOptions, paint: &Paint) {
    let symbol = if c.action == Action::NoOp { "=" } else { c.action.symbol() };
    let head = format!("{symbol} {}", c.id.resource);
    let _ = writeln!(out, "  {}  {}", paint.action(c.action, &head), paint.dim(&c.target));
    let _ = writeln!(out, "      {}", c.reason);
    if opts.verbose
        && let Some(inst) = graph.instances.get(c.instance)
    {
        for (dep, why) in &inst.dep_reasons {
            if let Some(d) = graph.instances.get(*dep) {
                let _ = writeln!(out, "      {}", paint.dim(&format!("waits for {}: {why}", d.id)));
            }
        }
    }
    if c.action == Action::NoOp {
        return;
    }
    for a in &c.attrs {
        let (before, after) = if c.sensitive && a.name == "sha256" {
            ("(sensitive)".to_string(), "(sensitive)".to_string())
        } else {
            (a.before.clone().unwrap_or_else(|| "(none)".into()), a.after.clone().unwrap_or_else(|| "(none)".into()))
        };
        let _ = writeln!(out, "      {}: {before} → {after}", a.name);
    }
    if c.sensitive && c.action.is_change() {
        let _ = writeln!(out, "      content: (sensitive)");
    }
    if let Some(diff) = &c.diff {
        for line in diff.lines() {
            let colored = match line.as_bytes().first() {
                _ if line.starts_with("+++") || line.starts_with("---") => paint.bold(line),
                Some(b'+') => paint.wrap("32", line),
                Some(b'-') => paint.wrap("31", line),
                Some(b'@') => paint.wrap("36", line),
                _ => line.to_string(),
            };
            let _ = writeln!(out, "      {colored}");
        }
    }
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    has_changes: bool,
    summary: Summary,
    changes: Vec<JsonChange<'a>>,
    errors: &'a [super::HostError],
}

#[derive(Serialize)]
struct JsonChange<'a> {
    host: &'a str,
    resource: String,
    kind: &'static str,
    action: Action,
    reason: &'a str,
    target: &'a str,
    attributes: Vec<JsonAttr>,
    diff: Option<&'a str>,
    sensitive: bool,
}

#[derive(Serialize)]
struct JsonAttr {
    name: String,
    before: Option<String>,
    after: Option<String>,
}

const SENSITIVE: &str = "(sensitive)";

/// The JSON view (`docs/plan-json.md`), pretty-printed, ending in a newline.
pub fn json(plan: &Plan) -> String {
    let changes = plan
        .changes()
        .map(|c| JsonChange {
            host: &c.id.host,
            resource: c.id.resource.to_string(),
            kind: c.id.resource.kind.as_str(),
            action: c.action,
            reason: &c.reason,
            target: &c.target,
            attributes: c
                .attrs
                .iter()
                .map(|a| {
                    let redact = c.sensitive && a.name == "sha256";
                    JsonAttr {
                        name: a.name.clone(),
                        before: if redact { Some(SENSITIVE.into()) } else { a.before.clone() },
                        after: if redact { Some(SENSITIVE.into()) } else { a.after.clone() },
                    }
                })
                .collect(),
            diff: if c.sensitive { None } else { c.diff.as_deref() },
            sensitive: c.sensitive,
        })
        .collect();
    let view = JsonPlan {
        format_version: FORMAT_VERSION,
        has_changes: plan.has_changes(),
        summary: plan.summary(),
        changes,
        errors: &plan.errors,
    };
    let mut s = serde_json::to_string_pretty(&view).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
