//! Plan views: human text (grouped by host, optionally coloured), stable JSON, and compact
//! GitHub-flavoured markdown for a pull-request comment. Pure functions of a [`Plan`]; the CLI
//! decides where they go. The words of every [`Reason`] are made here (its `Display`).

use std::fmt::{self, Write as _};

use serde::Serialize;

use super::{Action, Change, ClusterPlan, FORMAT_VERSION, Plan, Summary};
use crate::resource::cluster::membership::{ClusterHealth, ReplaceWhy};
use crate::resource::cluster::operations::{self, OperationStep};
use crate::resource::cluster::{ClusterProblem, MemberStep};
use crate::resource::{Protected, Reason, Replacing};
use crate::state::pki::RotationPhase;

/// How every removal's reason begins.
const REMOVED: &str = "no longer in the spec";

/// How the quorum guard's refusal begins.
const DEGRADED: &str = "held by the quorum guard";

impl fmt::Display for MemberStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const JOIN: &str = "add as learner → start → caught up → promote";
        match self {
            MemberStep::Decided => f.write_str("decided with the whole cluster"),
            MemberStep::Voter { leader: true } => f.write_str("voting member, healthy, leader"),
            MemberStep::Voter { leader: false } => f.write_str("voting member, healthy"),
            MemberStep::Forming => f.write_str("new cluster: the members start together"),
            MemberStep::Down => f.write_str("not answering, data kept: starting its service brings it back"),
            MemberStep::Join { stale_data: false } => write!(f, "{JOIN} (host added to the spec)"),
            MemberStep::Join { stale_data: true } => write!(f, "set its old data aside → {JOIN} (host added to the spec)"),
            MemberStep::Resume { started: true, .. } => f.write_str("learner: caught up → promote (a join that did not finish)"),
            MemberStep::Resume { started: false, id } => {
                write!(f, "added as {id:x} but never started: start → caught up → promote (a join that did not finish)")
            }
            MemberStep::Replace { id, why: ReplaceWhy::EmptyDataDir } => {
                write!(f, "replace: unhealthy and its data dir is empty → remove old id {id:x} → {JOIN}")
            }
            MemberStep::Replace { id, why: ReplaceWhy::Asked } => {
                write!(f, "replace (--replace): stop → set its data aside → remove old id {id:x} → {JOIN}")
            }
            MemberStep::Remove { id, leader, host_in_spec, .. } => {
                let lead = if *leader { "move leadership away (it leads) → " } else { "" };
                let stop = if *host_in_spec {
                    " → stop and disable its service → keep its data dir aside"
                } else {
                    " (its host is not in the spec: stop it there by hand)"
                };
                write!(f, "{lead}remove {id:x}{stop} (host left the spec)")
            }
        }
    }
}

impl fmt::Display for ClusterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterProblem::MemberDown { member } => write!(f, "member {member} does not answer"),
            ClusterProblem::LearnerBehind { member } => write!(f, "learner {member} has not caught up"),
            ClusterProblem::CutOff { member } => write!(f, "member {member} answers but follows no leader (cut off from its peers)"),
            ClusterProblem::NoLeader => f.write_str("no leader"),
            ClusterProblem::SplitLeaders { leaders } => write!(f, "members follow {leaders} different leaders"),
            ClusterProblem::Alarm { member, alarm } => write!(f, "alarm {alarm} on {member}"),
        }
    }
}

/// How a reason of something `prevent_destroy` protects begins.
const PROTECTED: &str = "protected by prevent_destroy";

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Found { text } => f.write_str(text),
            Reason::OnlyIgnoredDrift { ignored } => write!(f, "matches the spec apart from drift it ignores ({})", ignored.join(", ")),
            Reason::DriftIgnoring { differs, ignored } => {
                let differs: Vec<String> = differs.iter().map(|d| format!("{d} differs")).collect();
                write!(f, "{} (ignoring {})", differs.join(", "), ignored.join(", "))
            }
            Reason::Removal { destroy, detail } => write!(f, "{}; {detail}", if *destroy { "destroy" } else { REMOVED }),
            Reason::Protected(Protected::Removal { detail }) => write!(
                f,
                "{PROTECTED}: removing it would {detail}; keep it in the spec, \
                 or apply it once with prevent_destroy = false before removing it"
            ),
            Reason::Protected(Protected::Replacement { because }) => write!(
                f,
                "{PROTECTED}: the plan would replace it ({because}); replace it by hand, or set prevent_destroy = false for this apply"
            ),
            Reason::Member(step) => write!(f, "{step}"),
            Reason::ClusterDegraded { cluster, problems } => {
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{DEGRADED}: {cluster} is degraded ({}); heal it first (the plan starts stopped members and replaces failed \
                     ones), or pass --allow-degraded to risk it",
                    problems.join("; ")
                )
            }
            Reason::UpgradeRefused { cluster, why } => write!(f, "refused upgrade path for {cluster}: {why}"),
            Reason::Operation { cluster, step, kept_in, .. } => match step {
                OperationStep::SafetySnapshot => write!(
                    f,
                    "snapshot of {cluster}'s data before it is replaced: verified, kept in {}",
                    kept_in.as_deref().unwrap_or("the snapshot dir")
                ),
                OperationStep::Snapshot => write!(
                    f,
                    "snapshot of {cluster} now: verified (snapshot status), kept in {}",
                    kept_in.as_deref().unwrap_or("the snapshot dir")
                ),
                OperationStep::Compact { revision } => write!(f, "compact {cluster}'s history up to revision {revision} (cluster-wide)"),
                // The sizes move with every write: shown beside (`operation_detail`), not part of
                // the decision a saved plan must still agree on.
                OperationStep::Defrag { member, leader, .. } => write!(
                    f,
                    "defragment member {member} ({}); the cluster must answer again before the next member",
                    if *leader { "leader, last" } else { "follower" },
                ),
                OperationStep::Disarm { alarms } => write!(f, "clear {} (the space is there)", alarms.join(", ")),
                OperationStep::Upload { source, path } => match source {
                    operations::SnapshotSource::Local { path: from, sha256 } => write!(
                        f,
                        "copy {from} (sha256 {}) to {path}, check its sha256 and `snapshot status` there",
                        sha256.get(..12).unwrap_or(sha256)
                    ),
                    operations::SnapshotSource::Host { host, path: from } if from == path => {
                        write!(f, "check {from} on {host} (`snapshot status`)")
                    }
                    operations::SnapshotSource::Host { host, path: from } => {
                        write!(f, "copy {from} from {host} to {path}, check its sha256 and `snapshot status` there")
                    }
                },
                OperationStep::CopyBackups { member, from_dir, to_host, to_dir } => {
                    write!(f, "copy member {member}'s snapshots in {from_dir} to {to_host}:{to_dir} (those not there yet, sha256 checked)")
                }
                OperationStep::Stop { member } => write!(f, "stop member {member} (every member stops before any is restored)"),
                OperationStep::Restore { member, path, token, .. } => write!(
                    f,
                    "restore member {member}'s data dir from {path} (cluster token {token}, the member list of the spec); its old data kept aside"
                ),
                OperationStep::StartAll { hosts } => {
                    write!(f, "start every member at once ({}), then the cluster must be healthy", hosts.join(", "))
                }
            },
            Reason::OperationRefused { operation, cluster, why } => write!(f, "`{operation}` on {cluster} refused: {why}"),
            Reason::SnapshotFirst { cluster, upgrade, membership, rotation, dir, copied } => {
                let mut before: Vec<String> = upgrade.iter().map(|to| format!("the upgrade to {to}")).collect();
                if *membership {
                    before.push("the membership changes".to_string());
                }
                before.extend(rotation.iter().map(|ca| format!("the rotation of CA {ca}")));
                write!(
                    f,
                    "snapshot of {cluster} before {}: verified (snapshot status), kept in {dir}{}",
                    before.join(" and "),
                    if *copied { " and copied to the state dir (sha256 checked)" } else { " (no local copy: snapshot_copy is off)" }
                )
            }
            Reason::WouldLoseQuorum { member, voters, healthy } => write!(
                f,
                "refused: removing member {member} would leave {healthy} healthy of {voters} voting members, below the quorum of {}; \
                 heal or replace the sick members first",
                crate::resource::cluster::membership::quorum(*voters)
            ),
            Reason::CaNotInStateDir { ca, store } => write!(
                f,
                "the certificate here was issued by a CA {ca}, which is not in the state dir ({store} is missing): \
                 restore the state dir from its backup, or pass --replace ca.{ca} to make a new CA and reissue every \
                 certificate it issued"
            ),
            Reason::Rotation { ca, phase } => {
                let n = phase.number();
                match phase {
                    RotationPhase::Trust => write!(
                        f,
                        "CA rotation {ca}, phase {n} of 3: the CA file trusts both the current CA {ca} and the new one; \
                         the certificate stays"
                    ),
                    RotationPhase::Reissue => {
                        write!(f, "CA rotation {ca}, phase {n} of 3: issued again by the new CA {ca} (the CA file still trusts both)")
                    }
                    RotationPhase::Retire => write!(f, "CA rotation {ca}, phase {n} of 3: the CA file trusts the new CA {ca} alone"),
                }
            }
            Reason::Replace(replacing) => match replacing {
                Replacing::Rewrite => f.write_str("--replace: written again"),
                Replacing::Restart => f.write_str("--replace: restarted"),
                Replacing::Reissue => f.write_str("--replace: issued again with a new key"),
                Replacing::Reinstall => f.write_str("--replace: downloaded and installed again"),
                Replacing::NewCa { ca } => write!(
                    f,
                    "--replace ca.{ca}: a new CA {ca} replaces the current one (a cut-over: what trusts only the old CA \
                     stops trusting this certificate); the certificate will be issued by the new CA"
                ),
            },
            Reason::OwnedElsewhere { what, spec, resource, manifest } => write!(
                f,
                "{what} is managed by spec `{spec}` ({resource} there, in {manifest}); two specs must not manage one path: \
                 remove it from one of them (`cairn destroy` there removes everything that spec manages), \
                 or, if both are this spec run from two folders, give it one `name = \"...\"`"
            ),
        }
    }
}

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
    for cluster in &plan.clusters {
        render_cluster(&mut out, plan, cluster, opts, &paint);
    }
    for rotation in &plan.rotations {
        let mut lines = rotation_lines(rotation).into_iter();
        if let Some(head) = lines.next() {
            let _ = writeln!(out, "{}", paint.bold(&head));
        }
        for line in lines {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
    }
    for (host, changes) in &plan.hosts {
        let shown: Vec<&Change> = changes.iter().filter(|c| !is_member(plan, c) && (opts.verbose || !quiet(plan, c.action))).collect();
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
    let _ = writeln!(out, "{}", headline(plan, &s));
    out
}

/// Whether `c` is a cluster member's step (shown in its cluster's section, not its host's).
fn is_member(plan: &Plan, c: &Change) -> bool {
    plan.clusters.iter().any(|k| k.owns(c))
}

/// The head line of a cluster: "etcd cluster etcd.cluster.members: 3 voting members, healthy,
/// leader node2 (3.4.23)".
pub fn cluster_headline(cluster: &ClusterPlan) -> String {
    let s = &cluster.summary;
    let state = match s.health {
        ClusterHealth::Forming => return format!("{} cluster {}: new, formed by this apply", cluster.driver, cluster.id),
        ClusterHealth::Down => return format!("{} cluster {}: no member answers", cluster.driver, cluster.id),
        ClusterHealth::Healthy => "healthy".to_string(),
        ClusterHealth::Degraded => {
            let problems: Vec<String> = s.problems.iter().map(ToString::to_string).collect();
            format!("DEGRADED ({})", problems.join("; "))
        }
    };
    let mut line = format!("{} cluster {}: {} voting member{}", cluster.driver, cluster.id, s.voters, plural(s.voters));
    if s.learners > 0 {
        let _ = write!(line, " and {} learner{}", s.learners, plural(s.learners));
    }
    let _ = write!(line, ", {state}");
    if let Some(leader) = &s.leader {
        let _ = write!(line, ", leader {leader}");
    }
    if !s.versions.is_empty() {
        let _ = write!(line, " ({})", s.versions.join(", "));
    }
    if let Some(v) = &s.cluster_version {
        let _ = write!(line, ", cluster version {v}");
    }
    line
}

/// A cluster's section: its head line and each member's step, when anything is to be done, the
/// cluster is degraded, or the view is verbose.
fn render_cluster(out: &mut String, plan: &Plan, cluster: &ClusterPlan, opts: TextOptions, paint: &Paint) {
    let steps = plan.cluster_steps(cluster);
    let busy =
        steps.iter().any(|c| c.action != Action::NoOp) || cluster.summary.health == ClusterHealth::Degraded || cluster.upgrade.is_some();
    if !busy && !opts.verbose {
        return;
    }
    let _ = writeln!(out, "{}", paint.bold(&cluster_headline(cluster)));
    for c in steps.into_iter().filter(|c| opts.verbose || c.action != Action::NoOp) {
        let symbol = if c.action == Action::NoOp { "=" } else { c.action.symbol() };
        let head = format!("{symbol} {}", cluster_step_name(c));
        let _ = writeln!(out, "  {}  {}", paint.action(c.action, &format!("{head:<20}")), c.reason);
        if let Some(detail) = operation_detail(c) {
            let _ = writeln!(out, "  {:<22}{}", "", paint.dim(&detail));
        }
    }
    for line in upgrade_lines(cluster) {
        let _ = writeln!(out, "  {line}");
    }
    out.push('\n');
}

/// What an operation's step found that may move before it runs (a database's size now).
fn operation_detail(c: &Change) -> Option<String> {
    match &c.reason {
        Reason::Operation { step: OperationStep::Defrag { db_size, in_use, .. }, .. } => {
            Some(format!("database {db_size} bytes now, {in_use} in use"))
        }
        _ => None,
    }
}

/// How a cluster's step is named in its section: `snapshot`, or `member NAME`.
fn cluster_step_name(c: &Change) -> String {
    match c.subject {
        super::Subject::Snapshot(_) => "snapshot".to_string(),
        super::Subject::Upgrade(_) => "upgrade".to_string(),
        super::Subject::Operation(_) => match &c.reason {
            Reason::Operation { step: OperationStep::Defrag { member, .. }, .. } => format!("defrag {member}"),
            Reason::Operation { step: OperationStep::Compact { .. }, .. } => "compact".to_string(),
            Reason::Operation { step: OperationStep::Disarm { .. }, .. } => "disarm".to_string(),
            Reason::Operation { step: OperationStep::Upload { .. }, .. } => "upload".to_string(),
            Reason::Operation { step: OperationStep::CopyBackups { member, .. }, .. } => format!("copy {member}"),
            Reason::Operation { step: OperationStep::Stop { member }, .. } => format!("stop {member}"),
            Reason::Operation { step: OperationStep::Restore { member, .. }, .. } => format!("restore {member}"),
            Reason::Operation { step: OperationStep::StartAll { .. }, .. } => "start all".to_string(),
            _ => c.target.split(' ').next().unwrap_or("operation").to_string(),
        },
        _ => format!("member {}", c.target.rsplit(' ').next().unwrap_or(&c.target)),
    }
}

/// The upgrade of a cluster, in the order it runs: "upgrade 3.4.23 → 3.5.16, one member at a
/// time, …" and one line per member.
fn upgrade_lines(cluster: &ClusterPlan) -> Vec<String> {
    let Some(u) = &cluster.upgrade else { return Vec::new() };
    let mut from: Vec<&str> = u.steps.iter().map(|s| s.from.as_str()).collect();
    from.sort_unstable();
    from.dedup();
    let mut lines = vec![format!(
        "upgrade {} → {}: one member at a time, followers first and the leader last, each restarted only while the cluster is \
         healthy and done when it reports {} and the cluster is healthy again",
        from.join(", "),
        u.to,
        u.to
    )];
    for (n, s) in u.steps.iter().enumerate() {
        let role = if s.leader { "leader, last" } else { "follower" };
        let who = if s.member == s.host { s.member.clone() } else { format!("{} on {}", s.member, s.host) };
        lines.push(format!("  {}. {who} ({role}): {} → {}", n + 1, s.from, u.to));
    }
    lines
}

/// A CA rotation's head line, then one line per phase saying where it stands.
fn rotation_lines(r: &super::RotationPlan) -> Vec<String> {
    let ca = &r.ca;
    let hosts: std::collections::BTreeSet<&str> = r.certificates.iter().filter_map(|c| c.rsplit_once(" on ").map(|(_, h)| h)).collect();
    let because = r.because.as_ref().map(|b| format!(" ({b})")).unwrap_or_default();
    let mut lines = vec![format!(
        "CA rotation {ca}{because}: {} certificate{} on {} host{}, in 3 phases, each done on every host before the next \
         (the restarts a phase causes follow their units' `rolling`)",
        r.certificates.len(),
        plural(r.certificates.len()),
        hosts.len(),
        plural(hosts.len())
    )];
    let phases = [
        (
            RotationPhase::Trust,
            format!(
                "trust both: every CA file holds the current CA {ca} and {}",
                if r.started { format!("the new CA {ca}") } else { format!("a new CA {ca}, made now in the state dir") }
            ),
        ),
        (RotationPhase::Reissue, format!("reissue: every certificate of CA {ca} is issued again, with a new key, by the new CA")),
        (
            RotationPhase::Retire,
            "retire: every CA file holds the new CA alone; the old CA is archived in the state dir (not deleted)".to_string(),
        ),
    ];
    for (phase, what) in phases {
        let state = match phase.cmp(&r.phase) {
            std::cmp::Ordering::Less => "done".to_string(),
            std::cmp::Ordering::Equal if r.changes == 0 => "done on every host; recorded by this apply".to_string(),
            std::cmp::Ordering::Equal => format!("now: {} change{} below", r.changes, plural(r.changes)),
            std::cmp::Ordering::Greater if r.partial => "not in this apply (it covers part of the spec)".to_string(),
            std::cmp::Ordering::Greater => "next, in this apply".to_string(),
        };
        lines.push(format!("{}. {what} — {state}", phase.number()));
    }
    if r.partial {
        lines.push(format!(
            "this apply selects part of the spec: the rotation stays at phase {} until an apply of the whole spec",
            r.phase.number()
        ));
    }
    lines
}

/// The summary sentence of the text and markdown views, or "No changes." when there is nothing to do.
fn headline(plan: &Plan, s: &Summary) -> String {
    if !plan.has_changes() && !plan.has_errors() {
        format!(
            "No changes. {} resource instance{} on {} host{} match the spec.",
            s.unchanged,
            plural(s.unchanged),
            plan.hosts.len(),
            plural(plan.hosts.len())
        )
    } else {
        summary_line(s)
    }
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

/// Checks run only when something is applied: in a plan without changes they are as quiet as
/// unchanged instances.
fn quiet(plan: &Plan, a: Action) -> bool {
    a == Action::NoOp || (a == Action::Check && !plan.has_changes())
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
        let (before, after) = if c.sensitive && a.digest {
            (SENSITIVE.to_string(), SENSITIVE.to_string())
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

/// The pull-request view: GitHub-flavoured markdown, compact. A heading, the summary in bold,
/// each unreadable host as a quoted error, then per host one bullet per change with its attribute
/// changes nested and its diff folded in a `<details>` block. Like the text view, unchanged
/// instances are not listed, checks are quiet when nothing changes, dependency reasons are left
/// out and sensitive content is shown as `(sensitive)`. Every piece of text from the plan is
/// escaped, so a reason, target or diff cannot inject markup into the comment.
pub fn markdown(plan: &Plan) -> String {
    let mut blocks = vec!["### cairn plan".to_string(), format!("**{}**", headline(plan, &plan.summary()))];
    for e in &plan.errors {
        // One line per error (a line break inside a quote could start a list or a heading);
        // transport errors already name the host.
        let lines: Vec<String> = e.error.lines().map(str::trim).filter(|l| !l.is_empty()).map(md_escape).collect();
        blocks.push(format!("> **error:** {}", lines.join("<br>")));
    }
    for cluster in &plan.clusters {
        let steps: Vec<&Change> = plan.cluster_steps(cluster).into_iter().filter(|c| c.action != Action::NoOp).collect();
        if steps.is_empty() && cluster.summary.health != ClusterHealth::Degraded && cluster.upgrade.is_none() {
            continue;
        }
        let mut items: Vec<String> = steps.iter().copied().map(markdown_change).collect();
        items.extend(upgrade_lines(cluster).iter().map(|l| match l.strip_prefix("  ") {
            Some(member) => format!("  - {}", md_escape(member.trim_start())),
            None => format!("- {}", md_escape(l)),
        }));
        blocks.push(format!("#### {}\n\n{}", md_escape(&cluster_headline(cluster)), items.join("\n")));
    }
    for rotation in &plan.rotations {
        let mut lines = rotation_lines(rotation).into_iter();
        let head = lines.next().unwrap_or_default();
        let items: Vec<String> = lines.map(|l| format!("- {}", md_escape(&l))).collect();
        blocks.push(format!("#### {}\n\n{}", md_escape(&head), items.join("\n")));
    }
    for (host, changes) in &plan.hosts {
        let shown: Vec<&Change> = changes.iter().filter(|c| !is_member(plan, c) && !quiet(plan, c.action)).collect();
        if shown.is_empty() {
            continue;
        }
        let address = plan.addresses.get(host).map(|a| format!(" ({})", md_escape(a))).unwrap_or_default();
        let items: Vec<String> = shown.iter().copied().map(markdown_change).collect();
        // A folded diff makes the list loose anyway (blank lines inside its item): then a blank
        // line between items too, so no renderer can read the next item into the details block.
        let separator = if shown.iter().any(|c| shown_diff(c).is_some()) { "\n\n" } else { "\n" };
        blocks.push(format!("#### {}{address}\n\n{}", md_escape(host), items.join(separator)));
    }
    let mut out = blocks.join("\n\n");
    out.push('\n');
    out
}

/// One change as a list item (no trailing newline): symbol, resource, target and reason, then
/// nested attribute changes and the folded diff, indented to stay inside the item.
fn markdown_change(c: &Change) -> String {
    let mut out = format!("- {} **{}**", code_span(c.action.symbol()), md_escape(&c.id.resource.to_string()));
    if !c.target.is_empty() {
        let _ = write!(out, " {}", code_span(&c.target));
    }
    let reason = c.reason.to_string();
    if !reason.is_empty() {
        let _ = write!(out, " — {}", md_escape(&reason));
    }
    if c.disruptive {
        out.push_str(" _(disruptive)_");
    }
    for a in &c.attrs {
        let (before, after) = if c.sensitive && a.digest {
            (SENSITIVE, SENSITIVE)
        } else {
            (a.before.as_deref().unwrap_or(ABSENT), a.after.as_deref().unwrap_or(ABSENT))
        };
        let _ = write!(out, "\n  - {}: {} → {}", md_escape(&a.name), md_escape(before), md_escape(after));
    }
    if c.sensitive && c.action.is_change() {
        let _ = write!(out, "\n  - content: {SENSITIVE}");
    }
    if let Some(diff) = shown_diff(c) {
        // Longer than any backtick run in the diff, so no line of it can close the fence.
        let fence = "`".repeat((longest_backtick_run(diff) + 1).max(3));
        let _ = write!(out, "\n\n  <details><summary>diff of {}</summary>\n\n  {fence}diff", html_escape(&c.target));
        for line in diff.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = write!(out, "\n  {line}");
            }
        }
        let _ = write!(out, "\n  {fence}\n  </details>");
    }
    out
}

/// The diff the markdown view shows: a sensitive change carries none; should one slip in, it is
/// still not shown.
fn shown_diff(c: &Change) -> Option<&str> {
    c.diff.as_deref().filter(|_| !c.sensitive)
}

const ABSENT: &str = "(absent)";

/// Text from the plan as literal markdown: backslash before every character markdown could
/// read as markup, line breaks flattened to spaces.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '<' | '>' | '|' | '[' | ']' | '~' | '#' | '&' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

/// `s` as an inline code span, delimited by one more backtick than its longest backtick run.
fn code_span(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    // Markdown strips one space from each end when both have one: pad so a backtick at an end
    // does not merge with the fence and leading/trailing spaces survive.
    let pad = s.starts_with('`') || s.ends_with('`') || (s.starts_with(' ') && s.ends_with(' ') && !s.trim().is_empty());
    if pad { format!("{fence} {s} {fence}") } else { format!("{fence}{s}{fence}") }
}

/// The length of the longest run of backticks in `s`.
fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Text inside raw HTML (the `<summary>` of a details block), where markdown escapes do not apply.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    has_changes: bool,
    summary: Summary,
    changes: Vec<JsonChange<'a>>,
    errors: &'a [super::HostError],
    /// Every cluster's state (health, problems, leader, member list); its members' steps are
    /// in `changes` (kind `cluster`).
    clusters: &'a [ClusterPlan],
    /// The CA rotations in progress; their certificates' changes are in `changes`.
    rotations: &'a [super::RotationPlan],
}

#[derive(Serialize)]
struct JsonChange<'a> {
    host: &'a str,
    resource: String,
    kind: &'static str,
    action: Action,
    reason: String,
    target: &'a str,
    attributes: Vec<JsonAttr>,
    diff: Option<&'a str>,
    sensitive: bool,
    /// A cluster's own step that is not a member's: `snapshot` or `member-removal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_step: Option<&'static str>,
}

#[derive(Serialize)]
struct JsonAttr {
    name: String,
    before: Option<String>,
    after: Option<String>,
}

/// What sensitive content (and any digest of it) reads in every view.
pub(super) const SENSITIVE: &str = "(sensitive)";

/// The JSON view (`docs/plan-json.md`), pretty-printed, ending in a newline.
pub fn json(plan: &Plan) -> String {
    let changes = plan
        .changes()
        .map(|c| JsonChange {
            host: &c.id.host,
            resource: c.id.resource.to_string(),
            kind: c.id.resource.kind.as_str(),
            action: c.action,
            reason: c.reason.to_string(),
            target: &c.target,
            attributes: c
                .attrs
                .iter()
                .map(|a| {
                    let redact = c.sensitive && a.digest;
                    JsonAttr {
                        name: a.name.clone(),
                        before: if redact { Some(SENSITIVE.into()) } else { a.before.clone() },
                        after: if redact { Some(SENSITIVE.into()) } else { a.after.clone() },
                    }
                })
                .collect(),
            diff: if c.sensitive { None } else { c.diff.as_deref() },
            sensitive: c.sensitive,
            cluster_step: match c.subject {
                super::Subject::Snapshot(_) => Some("snapshot"),
                super::Subject::MemberRemoval(_) => Some("member-removal"),
                super::Subject::Upgrade(_) => Some("upgrade"),
                super::Subject::Operation(_) => Some("operation"),
                super::Subject::Instance(_) | super::Subject::Removal(_) | super::Subject::Saved => None,
            },
        })
        .collect();
    let view = JsonPlan {
        format_version: FORMAT_VERSION,
        has_changes: plan.has_changes(),
        summary: plan.summary(),
        changes,
        errors: &plan.errors,
        clusters: &plan.clusters,
        rotations: &plan.rotations,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_outlast_backtick_runs() {
        assert_eq!(code_span("/etc/demo/motd"), "`/etc/demo/motd`");
        assert_eq!(code_span("a`b``c"), "```a`b``c```");
        assert_eq!(code_span("`x"), "`` `x ``");
        assert_eq!(code_span(" x "), "`  x  `");
        assert_eq!(code_span("a\nb"), "`a b`");
    }

    #[test]
    fn markdown_escapes_cover_markup_characters() {
        assert_eq!(md_escape("a*b_c`d<e>f|g[h]i\\j~k#l&m"), "a\\*b\\_c\\`d\\<e\\>f\\|g\\[h\\]i\\\\j\\~k\\#l\\&m");
        assert_eq!(md_escape("two\nlines"), "two lines");
        assert_eq!(html_escape("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }

    #[test]
    fn longest_backtick_run_counts_consecutive_backticks() {
        assert_eq!(longest_backtick_run("no ticks"), 0);
        assert_eq!(longest_backtick_run("` `` ````x`"), 4);
    }
}
