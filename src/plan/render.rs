//! Plan views: human text (grouped by host, optionally coloured) and stable JSON. Pure functions
//! of a [`Plan`]; the CLI decides where they go.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Change, FORMAT_VERSION, Plan, Summary};

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
            Action::Check => "34",
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
pub fn text(plan: &Plan, opts: TextOptions) -> String {
    let paint = Paint(opts.color);
    let mut out = String::new();
    // Checks run only when something is applied: in a plan without changes they are as quiet
    // as unchanged instances.
    let quiet = |a: Action| a == Action::NoOp || (a == Action::Check && !plan.has_changes());
    for (host, changes) in &plan.hosts {
        let shown: Vec<&Change> = changes.iter().filter(|c| opts.verbose || !quiet(c.action)).collect();
        if shown.is_empty() {
            continue;
        }
        let address = plan.addresses.get(host).map(|a| format!(" ({a})")).unwrap_or_default();
        let _ = writeln!(out, "{}", paint.bold(&format!("{host}{address}")));
        for c in shown {
            render_change(&mut out, c, opts, &paint);
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

/// The drift view: per host, each instance that differs from the spec and how; then one line.
pub fn drift_text(drift: &Plan, opts: TextOptions) -> String {
    let mut out = String::new();
    let text = text(drift, TextOptions { verbose: false, ..opts });
    let body = text.rsplit_once("\n\n").map_or("", |(body, _)| body);
    let differing = drift.changes().count();
    if differing == 0 && drift.errors.is_empty() {
        return "No drift: every host matches the spec.\n".to_string();
    }
    if !body.is_empty() {
        out.push_str(body);
        out.push_str("\n\n");
    }
    let _ = writeln!(
        out,
        "Drift: {differing} resource instance{} on {} host{} differ{} from the spec.",
        plural(differing),
        drift.hosts.len(),
        plural(drift.hosts.len()),
        if differing == 1 { "s" } else { "" }
    );
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
    if s.check > 0 {
        let _ = write!(line, "; {} check{} will run", s.check, plural(s.check));
    }
    line.push('.');
    line
}

fn render_change(out: &mut String, c: &Change, opts: TextOptions, paint: &Paint) {
    let symbol = if c.action == Action::NoOp { "=" } else { c.action.symbol() };
    let head = format!("{symbol} {}", c.id.resource);
    let _ = writeln!(out, "  {}  {}", paint.action(c.action, &head), paint.dim(&c.target));
    let _ = writeln!(out, "      {}", c.reason);
    if opts.verbose {
        for line in &c.waits_for {
            let _ = writeln!(out, "      {}", paint.dim(line));
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

/// Why a saved plan was refused: per host and resource, what the plan saw and what is there now.
pub fn moved_text(moved: &[super::saved::Moved]) -> String {
    let mut out = String::from("Changed since the plan was made:\n");
    for m in moved {
        let what = if m.resource.is_empty() { m.host.clone() } else { format!("{}  {}", m.host, m.resource) };
        let _ = writeln!(out, "  {what}");
        for line in &m.before {
            let _ = writeln!(out, "      before: {line}");
        }
        for line in &m.now {
            let _ = writeln!(out, "      now:    {line}");
        }
    }
    out
}
