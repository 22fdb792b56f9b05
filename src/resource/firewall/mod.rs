//! `firewall`: rules in the one nftables table cairn owns, `inet cairn` (chain `input`, policy
//! accept, rules evaluated in order). Tables other than cairn's are never touched.
//!
//! Instance model: every firewall resource on a host renders into that one table, so the table is
//! a host-wide object. After the graph has rendered every instance, [`link`] gives each firewall
//! instance the rules of all firewall resources on its host (in spec order). The first of them on
//! the host *writes* the table: its diff compares the whole desired table with the observed one
//! and its apply replaces the whole table in one `nft -f` transaction. The others are no-ops that
//! say which instance writes their rules (and the graph makes them wait for it, so `--target` of
//! any of them brings the writer along). One plan entry and one write per host, whatever the
//! number of firewall resources.
//!
//! Drift is shown as a unified diff of canonical rule text ([`nft`]); a rule set that would cut
//! cairn's own SSH session is refused at plan time ([`lockout`]).

pub mod lockout;
pub mod nft;

use super::removal::{Claims, Orphan, Removal};
use super::{Action, Applied, ApplyError, ContentChange, Decision, HostFacts, ProbeRequest, ResourceKind, run_checked};
use crate::spec::Kind;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::firewall::{FirewallRule, parse_cidr};
use crate::spec::model::TemplateText;
use crate::spec::{FirewallSpec, ResourceId};
use crate::state::manifest::{Owned, OwnedFirewall};
use crate::transport::{Stdin, Transport, argv};

/// What the probe learned for firewalls on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallFacts {
    /// `$SSH_CONNECTION` of cairn's session on the host, when known.
    pub ssh_connection: Option<String>,
    /// cairn's table.
    pub table: NftTable,
}

impl Default for FirewallFacts {
    fn default() -> Self {
        Self { ssh_connection: None, table: NftTable::Error("the probe said nothing about nft".to_string()) }
    }
}

/// What `nft -j list table inet cairn` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftTable {
    /// The table does not exist.
    Missing,
    /// `nft` is not installed.
    NoNft,
    /// nft failed otherwise (the message).
    Error(String),
    /// The table, as nft's JSON.
    Json(String),
}

/// A firewall line of the probe's output that cairn does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeLineError {
    /// A `FWNFT` line with an unknown report.
    #[error("unexpected nft report {report:?}")]
    NftReport {
        /// The line after its tag.
        report: String,
    },
    /// A tag that is not a firewall line's.
    #[error("unexpected firewall probe line {tag:?}")]
    Tag {
        /// The tag.
        tag: String,
    },
}

impl FirewallFacts {
    /// Reads one of the probe's firewall lines (`FWSSH` or `FWNFT`, tag already split off).
    pub fn parse_line(&mut self, tag: &str, rest: &str) -> Result<(), ProbeLineError> {
        match tag {
            "FWSSH" => {
                let s = rest.trim();
                self.ssh_connection = (!s.is_empty()).then(|| s.to_string());
            }
            "FWNFT" => {
                let (what, detail) = rest.split_once('\t').unwrap_or((rest, ""));
                self.table = match what {
                    "json" => NftTable::Json(detail.to_string()),
                    "no-nft" => NftTable::NoNft,
                    "error" if detail.contains("No such file or directory") => NftTable::Missing,
                    "error" => NftTable::Error(detail.trim().to_string()),
                    _ => return Err(ProbeLineError::NftReport { report: rest.to_string() }),
                };
            }
            _ => return Err(ProbeLineError::Tag { tag: tag.to_string() }),
        }
        Ok(())
    }
}

/// One firewall resource on one host, with the host's whole table once linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFirewall {
    /// This resource's rules.
    pub rules: Vec<FirewallRule>,
    /// This resource's id (set by [`link`]).
    pub resource: String,
    /// Every firewall resource on the host with its rules, in spec order (set by [`link`]).
    pub sections: Vec<(String, Vec<FirewallRule>)>,
    /// The instance on this host that writes the table, when it is not this one.
    pub written_by: Option<ResourceId>,
    /// The SSH port cairn uses for the host; `None` for local hosts (no session to protect).
    pub ssh_port: Option<u16>,
    /// The whole desired table in canonical text (what is written).
    pub text: String,
}

impl DesiredFirewall {
    /// The resource's part; [`link`] completes it with the rest of the host. Templated `from`
    /// entries are rendered for the host here: each gives a comma-separated list of addresses or
    /// networks, checked after rendering.
    pub fn from_spec(
        spec: &FirewallSpec,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut rules = spec.rules.clone();
        let mut errors = Vec::new();
        for rule in &mut rules {
            for t in std::mem::take(&mut rule.from_templates) {
                let rendered = match render(&t) {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                let mut any = false;
                for item in rendered.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    any = true;
                    match parse_cidr(item) {
                        Ok(c) if rule.from.contains(&c) => {}
                        Ok(c) => rule.from.push(c),
                        Err(e) => errors.push(
                            Diagnostic::at(&t.span, format!("`{item}` (rendered from `{}`) is not a valid address or network", t.text))
                                .with_label(e.problem)
                                .with_help(
                                    "the template must render to addresses or networks separated by commas: \"10.0.0.1,10.0.0.0/24\"",
                                ),
                        ),
                    }
                }
                if !any {
                    errors.push(
                        Diagnostic::at(&t.span, format!("`{}` renders to no address", t.text))
                            .with_label("matches no source")
                            .with_help("the template must render to addresses or networks separated by commas"),
                    );
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let sections = vec![(String::new(), rules.clone())];
        Ok(Self { rules, resource: String::new(), text: nft::desired_text(&sections), sections, written_by: None, ssh_port: None })
    }

    /// Decides what to do given what the probe found. Pure.
    pub fn diff_at(&self, facts: Option<&FirewallFacts>) -> Decision {
        let Some(facts) = facts else {
            return Decision::new(Action::Conflict, "the host probe did not report the firewall");
        };
        if let Some(port) = self.ssh_port {
            let session = facts.ssh_connection.as_deref().and_then(lockout::SshSession::parse);
            let (client, port) = session.map_or((None, port), |s| (Some(s.client), s.port));
            if let Some(lock) = lockout::check(&self.sections, client, port)
                && (self.written_by.is_none() || lock.resource == self.resource)
            {
                return Decision::new(Action::Conflict, lock.reason);
            }
        }
        if let Some(writer) = &self.written_by {
            return Decision::noop(format!("its rules are written into table {} by {writer}", nft::TABLE));
        }
        let old = match &facts.table {
            NftTable::NoNft => return Decision::new(Action::Conflict, "nft is not installed on the host; install the nftables package"),
            NftTable::Error(e) => return Decision::new(Action::Conflict, format!("cannot read table {}: {e}", nft::TABLE)),
            NftTable::Missing => {
                let mut d = Decision::new(Action::Create, "table does not exist");
                d.content = Some(ContentChange::Text { old: String::new() });
                return d;
            }
            NftTable::Json(json) => match nft::observed_text(json) {
                Ok(text) => text,
                Err(e) => return Decision::new(Action::Conflict, format!("cannot understand `nft -j` output: {e}")),
            },
        };
        if old == self.text {
            return Decision::noop("rules match");
        }
        let (add, remove) = line_counts(&old, &self.text);
        let mut counts = Vec::new();
        if add > 0 {
            counts.push(format!("{add} to add"));
        }
        if remove > 0 {
            counts.push(format!("{remove} to remove"));
        }
        let reason = if counts.is_empty() { "rules differ".to_string() } else { format!("rules differ ({})", counts.join(", ")) };
        let mut d = Decision::new(Action::Update, reason);
        d.content = Some(ContentChange::Text { old });
        d
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredFirewall {
    fn kind(&self) -> Kind {
        Kind::Firewall
    }

    fn new_text(&self) -> Option<&[u8]> {
        Some(self.text.as_bytes())
    }

    fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.firewall = true;
    }

    fn diff(&self, facts: &HostFacts) -> Decision {
        self.diff_at(facts.firewall.as_ref())
    }

    fn owned(&self, _created: bool) -> Option<Owned> {
        Some(Owned::Firewall(OwnedFirewall {}))
    }

    fn claim(&self, id: &ResourceId, claims: &mut Claims) {
        claims.firewall.get_or_insert_with(|| id.to_string());
    }

    fn written_by(&self) -> Option<&ResourceId> {
        self.written_by.as_ref()
    }

    /// What the plan names as the target.
    fn target(&self) -> String {
        format!("table {}", nft::TABLE)
    }

    /// Replaces the whole table in one `nft -f` transaction (only the writing instance acts).
    async fn apply(&self, transport: &dyn Transport, _decision: &Decision) -> Result<Applied, ApplyError> {
        if self.written_by.is_some() {
            return Ok(Applied::plain());
        }
        let script = nft::ruleset(&self.text);
        let out = transport.run(&argv(&["nft", "-f", "-"]), Stdin::Bytes(script.as_bytes())).await?;
        if out.success() {
            Ok(Applied::plain())
        } else {
            Err(ApplyError::Failed(format!("`nft -f -` refused the rules for table {}: {}", nft::TABLE, out.error_text())))
        }
    }
}

/// Lines only in `new` (to add) and only in `old` (to remove), as multisets.
fn line_counts(old: &str, new: &str) -> (usize, usize) {
    let mut remaining: Vec<&str> = old.lines().collect();
    let mut add = 0;
    for line in new.lines() {
        match remaining.iter().position(|l| *l == line) {
            Some(i) => {
                remaining.swap_remove(i);
            }
            None => add += 1,
        }
    }
    (add, remaining.len())
}

/// Gives every firewall instance the rules of all firewall resources on its host and picks the
/// writer (the first on the host). `items` are (host, SSH port or `None` for local hosts, resource,
/// desired), in host then spec order.
pub fn link(items: &mut [(&str, Option<u16>, &ResourceId, &mut DesiredFirewall)]) {
    let mut by_host: std::collections::BTreeMap<&str, Vec<(String, Vec<FirewallRule>)>> = std::collections::BTreeMap::new();
    let mut writer: std::collections::BTreeMap<&str, ResourceId> = std::collections::BTreeMap::new();
    for (host, _, id, fw) in items.iter() {
        by_host.entry(host).or_default().push((id.to_string(), fw.rules.clone()));
        writer.entry(host).or_insert_with(|| (*id).clone());
    }
    for (host, port, id, fw) in items.iter_mut() {
        let sections = by_host.get(*host).cloned().unwrap_or_default();
        fw.resource = id.to_string();
        fw.text = nft::desired_text(&sections);
        fw.sections = sections;
        fw.written_by = writer.get(*host).filter(|w| *w != *id).cloned();
        fw.ssh_port = *port;
    }
}

/// The table leaves when no firewall resource remains on the host; while one does, its rewrite
/// drops the rules of those that left.
#[async_trait::async_trait]
impl Removal for OwnedFirewall {
    fn rank(&self) -> u8 {
        1
    }

    fn add_to_probe(&self, orphan: &Orphan, probe: &mut ProbeRequest) {
        if orphan.firewall_remains.is_none() {
            probe.firewall = true;
        }
    }

    fn diff(&self, orphan: &Orphan, facts: &HostFacts) -> Decision {
        if let Some(writer) = &orphan.firewall_remains {
            return Decision::noop(format!("its rules leave the table that {writer} rewrites"));
        }
        match facts.firewall.as_ref().map(|f| &f.table) {
            Some(NftTable::Json(_)) => Decision::new(Action::Delete, format!("drop table {} (no firewall resource remains)", nft::TABLE)),
            Some(NftTable::Error(e)) => Decision::new(Action::Conflict, format!("cannot read the table: {e}")),
            _ => Decision::noop("already absent"),
        }
    }

    async fn apply(&self, _orphan: &Orphan, transport: &dyn Transport, _decision: &Decision) -> Result<(), ApplyError> {
        let mut cmd = argv(&["nft", "delete", "table"]);
        cmd.extend(nft::TABLE.split(' ').map(str::to_string));
        run_checked(transport, &cmd).await
    }

    fn target(&self, _paths: &[&str]) -> String {
        format!("table {}", nft::TABLE)
    }
}

#[cfg(test)]
mod tests;
