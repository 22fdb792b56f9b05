//! `cert`: a certificate, its private key and (optionally) the CA certificate on a host, issued
//! by a `ca` kept on the machine running cairn.
//!
//! A certificate is kept while it is signed by the current CA, has exactly the wanted SANs,
//! usages, subject and key type, matches its private key and does not expire within
//! `renew_before`; otherwise it is reissued with a new key, and the plan says why. The key check
//! never moves the key: the probe derives the public key on the host (`openssl pkey -pubout`)
//! and it is compared here with the certificate's.
//!
//! Keys are generated here, on the machine running cairn (rcgen), signed with the CA and written
//! to the host over the transport's stdin into a 0600 temp file chowned before the rename. That
//! needs nothing on the host (no openssl to apply), keeps one code path for every key type, and
//! the key only ever travels inside the SSH channel; it never appears in plans, errors or logs.
//! The CA is read at plan time (certificate only) and created, when missing, by the first apply
//! that needs it (see [`crate::state::pki`]).

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::batch::Staged;
use super::ca::{
    CertInfo, Issued, LeafRequest, LoadedCa, San, SecretPem, inspect, issue, issued_by, same_public_key, spki_of_public_key_pem,
};
use super::probe::ProbeError;
use super::removal::Claims;
use super::{
    Action, ApplyError, AttrChange, Decision, HostFacts, KeyFact, PathFact, PathKind, ProbeRequest, Reason, Replacing, ResourceKind,
    fix_attrs,
};
use crate::hash::sha256_hex;
use crate::spec::{CaSource, CaSpec, CertSpec, Diagnostic, Duration, Kind, ResourceId, TemplateText, Usage, check_san, san_error};
use crate::state::manifest::Owned;
use crate::state::pki::{CaFiles, CaStore};
use crate::transport::{Content, FileAttrs, FileWrite, Transport, argv, write_file_atomic};

/// The attribute of a creation that lists the folders it makes (recorded in the manifest, so
/// `destroy` removes them).
const ATTR_FOLDERS: &str = "folders";

/// Mode of the private key file.
pub const KEY_MODE: u32 = 0o600;
/// Mode of the certificate and CA certificate files.
pub const CERT_MODE: u32 = 0o644;

/// The CA certificate as found at plan time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCert {
    /// PEM text, as stored (and as written to `ca_path`).
    pub pem: String,
    /// DER, for signature checks.
    pub der: Vec<u8>,
}

/// A certificate as it should be on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCert {
    /// The issuing CA's spec.
    pub ca: Box<CaSpec>,
    /// The CA's certificate when the plan was made; `None`: the CA does not exist yet.
    pub ca_cert: Option<CaCert>,
    /// What the certificate must say.
    pub leaf: LeafRequest,
    /// Reissue when expiring sooner than this.
    pub renew_before: Duration,
    /// Certificate path.
    pub cert_path: String,
    /// Key path.
    pub key_path: String,
    /// CA certificate path.
    pub ca_path: Option<String>,
    /// Owner of the files.
    pub owner: Option<String>,
    /// Group of the files.
    pub group: Option<String>,
    /// `--replace ca.NAME` names this certificate's CA: a new CA replaces it at apply, and this
    /// certificate is issued by the new one.
    pub replace_ca: bool,
}

impl DesiredCert {
    /// Renders a `[cert.*]` table for one host and reads its CA's certificate (never its key).
    pub fn from_spec(
        spec: &CertSpec,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut one = |t: &TemplateText, errors: &mut Vec<Diagnostic>| render(t).map_err(|e| errors.push(e)).ok();
        let common_name = one(&spec.common_name, &mut errors);
        let cert_path = one(&spec.cert_path, &mut errors);
        let key_path = one(&spec.key_path, &mut errors);
        let ca_path = spec.ca_path.as_ref().map(|p| one(p, &mut errors));
        let mut sans = Vec::new();
        for t in &spec.sans {
            let Some(rendered) = one(t, &mut errors) else { continue };
            // A template may render to several names separated by commas (a list input joined),
            // or to nothing; a literal is one name.
            let templated = t.text.contains("{{") || t.text.contains("{%");
            let values: Vec<&str> =
                if templated { rendered.split(',').map(str::trim).filter(|v| !v.is_empty()).collect() } else { vec![rendered.as_str()] };
            for value in values {
                match check_san(value) {
                    Ok(()) => {
                        let san = San::parse(value);
                        if !sans.contains(&san) {
                            sans.push(san);
                        }
                    }
                    Err(why) => errors.push(san_error(&t.span, value, &format!("rendered from `{}`: {why}", t.text), None)),
                }
            }
        }
        sans.sort();
        let Some(ca) = spec.issuer.clone() else {
            errors.push(
                Diagnostic::at(&spec.ca.span, format!("`{}` is not a defined CA", spec.ca.value))
                    .with_help("define it in a [ca.NAME] table"),
            );
            return Err(errors);
        };
        let ca_cert = match read_ca_cert(&ca) {
            Ok(c) => c,
            Err(why) => {
                errors.push(
                    Diagnostic::at(&ca.span, format!("CA {} cannot be used: {why}", ca.name))
                        .with_help("fix or remove the CA's files; a generated CA is re-created when its directory is absent"),
                );
                None
            }
        };
        for (t, rendered) in [
            (Some(&spec.cert_path), cert_path.as_ref()),
            (Some(&spec.key_path), key_path.as_ref()),
            (spec.ca_path.as_ref(), ca_path.as_ref().and_then(Option::as_ref)),
        ] {
            if let (Some(t), Some(p)) = (t, rendered)
                && !p.starts_with('/')
            {
                errors.push(
                    Diagnostic::at(&t.span, format!("{} rendered to `{p}`, which is not an absolute path", t.name))
                        .with_help("paths on hosts must start with `/`"),
                );
            }
        }
        match (common_name, cert_path, key_path, ca_path) {
            (Some(common_name), Some(cert_path), Some(key_path), ca_path) if errors.is_empty() => Ok(Self {
                leaf: LeafRequest {
                    common_name,
                    subject: spec.subject.clone(),
                    sans,
                    usages: spec.usages.clone(),
                    validity: spec.validity,
                    key: spec.key.unwrap_or(ca.key),
                },
                ca,
                ca_cert,
                renew_before: spec.renew_before,
                cert_path,
                key_path,
                ca_path: ca_path.flatten(),
                owner: spec.owner.as_ref().map(|o| o.value.clone()),
                group: spec.group.as_ref().map(|g| g.value.clone()),
                replace_ca: false,
            }),
            _ => Err(errors),
        }
    }

    /// Decides what to do at time `now` (seconds since the epoch). Pure.
    pub fn diff_at(&self, facts: &HostFacts, now: i64) -> Decision {
        let name = &self.ca.name;
        if let Some(conflict) = self.path_in_the_way(facts) {
            return conflict;
        }
        let cert_fact = facts.path(&self.cert_path);
        if self.replace_ca {
            let (action, before) = match cert_fact {
                None => (Action::Create, None),
                Some(_) => (Action::Replace, Some(self.leaf.sans.iter().cloned().collect::<BTreeSet<San>>())),
            };
            let mut d = self.issue_decision(action, String::new(), before.as_ref());
            d.reason = Reason::Replace(Replacing::NewCa { ca: name.clone() });
            return d;
        }
        let Some(ca) = &self.ca_cert else {
            if let (Some(_), Some(Ok(_)), CaSource::Store { dir }) =
                (cert_fact, facts.certs.get(&self.cert_path).map(|t| inspect(t)), &self.ca.source)
            {
                // A certificate is there, its CA is not: the state dir was lost, or this is
                // another checkout. Making a new CA would reissue everything, silently.
                return Decision::new(Action::Conflict, Reason::CaNotInStateDir { ca: name.clone(), store: dir.display().to_string() });
            }
            let action = if cert_fact.is_none() { Action::Create } else { Action::Replace };
            return self.issue_decision(
                action,
                format!("CA {name} will be created; the certificate will be issued by the new CA {name}"),
                None,
            );
        };
        let Some(cert_fact) = cert_fact else {
            return self.issue_decision(Action::Create, "certificate does not exist".to_string(), None);
        };
        let mut reasons: Vec<String> = Vec::new();
        if cert_fact.kind == PathKind::Symlink {
            reasons.push("certificate is a symbolic link".into());
        }
        let info = match facts.certs.get(&self.cert_path).map(|text| inspect(text)) {
            Some(Ok(info)) => Some(info),
            Some(Err(why)) => {
                reasons.push(format!("certificate {why}"));
                None
            }
            None => {
                reasons.push("certificate cannot be read".into());
                None
            }
        };
        let Some(info) = info else {
            return self.issue_decision(Action::Replace, reasons.join(", "), None);
        };
        let key_unchecked = self.reissue_reasons(facts, ca, &info, now, &mut reasons);
        if !reasons.is_empty() {
            let mut d = self.issue_decision(Action::Replace, reasons.join(", "), Some(&info.sans));
            let wanted_usages: BTreeSet<Usage> = self.leaf.usages.iter().copied().collect();
            if info.usages != wanted_usages {
                d.attrs.push(AttrChange::new("usages", Some(join(&info.usages)), Some(join(&wanted_usages))));
            }
            return d;
        }
        if let Some(update) = self.attr_update(facts, ca, cert_fact) {
            return update;
        }
        let until = OffsetDateTime::from_unix_timestamp(info.not_after).map(|t| t.date().to_string()).unwrap_or_default();
        let mut reason = format!("certificate valid until {until}, issued by CA {name}, matching its key, SANs and usages");
        if key_unchecked {
            reason = format!(
                "certificate valid until {until}, issued by CA {name}, SANs and usages match (key not checked: no openssl on the host)"
            );
        }
        Decision::noop(reason)
    }

    /// A directory or special file where one of the files goes: a conflict.
    fn path_in_the_way(&self, facts: &HostFacts) -> Option<Decision> {
        let paths = [("cert_path", Some(&self.cert_path)), ("key_path", Some(&self.key_path)), ("ca_path", self.ca_path.as_ref())];
        paths.into_iter().find_map(|(what, path)| {
            let path = path?;
            let f = facts.path(path).filter(|f| matches!(f.kind, PathKind::Dir | PathKind::Other))?;
            Some(Decision::new(Action::Conflict, format!("{what} {path} is {}; cairn will not remove it", f.kind.describe())))
        })
    }

    /// Why the readable certificate `info` on the host must be issued again (pushed onto
    /// `reasons`); returns whether the key could not be checked (no openssl there).
    fn reissue_reasons(&self, facts: &HostFacts, ca: &CaCert, info: &CertInfo, now: i64, reasons: &mut Vec<String>) -> bool {
        let key_fact = facts.path(&self.key_path);
        if !issued_by(&info.der, &ca.der) {
            reasons.push("signed by another CA".into());
        }
        let mut key_unchecked = false;
        match (key_fact, facts.keys.get(&self.key_path)) {
            (None, _) => reasons.push("key file is missing".into()),
            (Some(k), _) if k.kind == PathKind::Symlink => reasons.push("key is a symbolic link".into()),
            (Some(_), Some(KeyFact::PublicKey(pem))) => {
                if !spki_of_public_key_pem(pem).is_some_and(|spki| same_public_key(&spki, &info.spki)) {
                    reasons.push("key does not match".into());
                }
            }
            (Some(_), Some(KeyFact::NoOpenssl)) => key_unchecked = true,
            (Some(_), Some(KeyFact::Unreadable) | None) => reasons.push("key cannot be read".into()),
        }
        let wanted_sans: BTreeSet<San> = self.leaf.sans.iter().cloned().collect();
        for san in wanted_sans.difference(&info.sans) {
            reasons.push(format!("SAN {san} missing"));
        }
        for san in info.sans.difference(&wanted_sans) {
            reasons.push(format!("SAN {san} not wanted"));
        }
        let wanted_usages: BTreeSet<Usage> = self.leaf.usages.iter().copied().collect();
        for u in wanted_usages.difference(&info.usages) {
            reasons.push(format!("usage {u} missing"));
        }
        for u in info.usages.difference(&wanted_usages) {
            reasons.push(format!("usage {u} not wanted"));
        }
        if info.common_name.as_deref() != Some(self.leaf.common_name.as_str()) {
            reasons.push(format!("common name is {}, not {}", info.common_name.as_deref().unwrap_or("(none)"), self.leaf.common_name));
        }
        let wanted_subject: Vec<(String, String)> =
            self.leaf.subject.fields().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if info.subject != wanted_subject {
            reasons.push("subject differs".into());
        }
        if info.key != Some(self.leaf.key) {
            reasons.push(format!("key type is {}, not {}", info.key.map_or("another", |k| k.as_str()), self.leaf.key));
        }
        let left = info.not_after - now;
        if left < self.renew_before.secs {
            reasons.push(if left <= 0 { format!("expired {} ago", span_words(-left)) } else { format!("expires in {}", span_words(left)) });
        }
        key_unchecked
    }

    /// For a good certificate: the update its files' attributes or the CA file need, if any.
    fn attr_update(&self, facts: &HostFacts, ca: &CaCert, cert_fact: &PathFact) -> Option<Decision> {
        let name = &self.ca.name;
        let key_fact = facts.path(&self.key_path);
        let ca_fact = self.ca_path.as_deref().and_then(|p| facts.path(p));
        let mut attrs = Vec::new();
        self.file_attrs("key", KEY_MODE, key_fact, &mut attrs);
        self.file_attrs("cert", CERT_MODE, Some(cert_fact), &mut attrs);
        if let Some(ca_path) = &self.ca_path {
            match ca_fact {
                None => attrs.push(AttrChange::new("ca content", None, Some(format!("CA {name} certificate")))),
                Some(f) => {
                    if f.kind == PathKind::Symlink || f.sha256.as_deref() != Some(sha256_hex(ca.pem.as_bytes()).as_str()) {
                        attrs.push(AttrChange::new(
                            "ca content",
                            Some(format!("{ca_path} differs")),
                            Some(format!("CA {name} certificate")),
                        ));
                    } else {
                        self.file_attrs("ca", CERT_MODE, Some(f), &mut attrs);
                    }
                }
            }
        }
        if attrs.is_empty() {
            return None;
        }
        let reason = attrs
            .iter()
            .map(|a| match a.name.as_str() {
                "ca content" if a.before.is_none() => "CA certificate file is missing".to_string(),
                "ca content" => "CA certificate file differs".to_string(),
                other => format!("{other} differs"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = Decision::new(Action::Update, reason);
        d.attrs = attrs;
        Some(d)
    }

    fn issue_decision(&self, action: Action, reason: String, before_sans: Option<&BTreeSet<San>>) -> Decision {
        let mut d = Decision::new(action, reason);
        let wanted: BTreeSet<San> = self.leaf.sans.iter().cloned().collect();
        if before_sans != Some(&wanted) {
            d.attrs.push(AttrChange::new("sans", before_sans.map(join), Some(join(&wanted))));
        }
        if action == Action::Create {
            d.attrs.push(AttrChange::new("key", None, Some(format!("{} (new, mode {KEY_MODE:04o})", self.leaf.key))));
            d.attrs.push(AttrChange::new("validity", None, Some(self.leaf.validity.to_string())));
        } else {
            d.attrs.push(AttrChange::new("key", Some("(replaced)".into()), Some(format!("{} (new)", self.leaf.key))));
        }
        d
    }

    fn file_attrs(&self, file: &str, mode: u32, fact: Option<&PathFact>, out: &mut Vec<AttrChange>) {
        let Some(fact) = fact else { return };
        for a in super::attr_changes(fact, mode, self.owner.as_deref(), self.group.as_deref()) {
            out.push(AttrChange { name: format!("{file} {}", a.name), ..a });
        }
    }

    /// Every folder above its files (not `/`), shallowest first: what `mkdir -p` may make.
    fn folders(&self) -> Vec<String> {
        let mut folders: Vec<String> = [Some(&self.cert_path), Some(&self.key_path), self.ca_path.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|p| std::path::Path::new(p).ancestors().skip(1).map(|a| a.display().to_string()).collect::<Vec<_>>())
            .filter(|a| !a.is_empty() && a != "/")
            .collect();
        folders.sort_by_key(|f| (f.matches('/').count(), f.clone()));
        folders.dedup();
        folders
    }

    fn file_path(&self, file: &str) -> Option<&str> {
        match file {
            "key" => Some(&self.key_path),
            "cert" => Some(&self.cert_path),
            "ca" => self.ca_path.as_deref(),
            _ => None,
        }
    }

    fn attrs(&self, mode: u32) -> FileAttrs {
        FileAttrs { mode: Some(mode), owner: self.owner.clone(), group: self.group.clone() }
    }

    /// The CA, created first when it does not exist (generated CAs only); for `--replace ca.NAME`,
    /// the CA the plan saw is retired first (once, whichever certificate comes first).
    async fn load_ca(&self) -> Result<LoadedCa, ApplyError> {
        let ca = self.ca.clone();
        let retire = self.replace_ca.then(|| self.ca_cert.as_ref().map(|c| c.pem.clone())).flatten();
        let joined = tokio::task::spawn_blocking(move || {
            if let (Some(old), CaSource::Store { dir }) = (&retire, &ca.source) {
                CaStore::new(dir).retire(old).map_err(|e| UnusableCa { ca: ca.name.clone(), error: CaError::Store(e.to_string()) })?;
            }
            ensure_ca(&ca)
        })
        .await;
        joined.map_err(|e| ApplyError::Failed(format!("CA task failed: {e}")))?.map_err(|e| ApplyError::Failed(e.to_string()))
    }

    /// Issues a new certificate (and makes the CA, the first time) and stages the directories
    /// and the files that carry it: the key first, so its content is never visible to anyone
    /// else (its temp file is 0600 and chowned before the rename) and a half-done apply is seen
    /// next time as a mismatch.
    async fn issue_staged(&self) -> Result<Staged, ApplyError> {
        let ca = self.load_ca().await?;
        let req = self.leaf.clone();
        let ca_pem = ca.cert_pem.clone();
        let issued: Issued = tokio::task::spawn_blocking(move || issue(&ca, &req, OffsetDateTime::now_utc()))
            .await
            .map_err(|e| ApplyError::Failed(format!("signing task failed: {e}")))?
            .map_err(|e| ApplyError::Failed(format!("issuing the certificate: {e}")))?;
        let mut dirs: Vec<String> = [Some(&self.cert_path), Some(&self.key_path), self.ca_path.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| std::path::Path::new(p).parent().map(|d| d.display().to_string()))
            .filter(|d| d != "/")
            .collect();
        dirs.sort();
        dirs.dedup();
        let mut commands = Vec::new();
        if !dirs.is_empty() {
            let mut cmd = argv(&["mkdir", "-p", "--"]);
            cmd.extend(dirs);
            commands.push(cmd);
        }
        let write = |path: &str, content: &[u8], mode: u32| FileWrite {
            path: path.to_string(),
            content: content.to_vec(),
            attrs: self.attrs(mode),
        };
        let mut files = vec![
            write(&self.key_path, issued.key_pem.expose_bytes(), KEY_MODE),
            write(&self.cert_path, issued.cert_pem.as_bytes(), CERT_MODE),
        ];
        if let Some(ca_path) = &self.ca_path {
            files.push(write(ca_path, ca_pem.as_bytes(), CERT_MODE));
        }
        Ok(Staged { commands, files, daemon_reload: false })
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredCert {
    fn kind(&self) -> Kind {
        Kind::Cert
    }

    /// Key material: never shown.
    fn sensitive(&self) -> bool {
        true
    }

    /// The certificate, its key and the CA file it writes.
    fn owned(&self, _created: bool) -> Option<Owned> {
        Some(super::file::owned_files(self.paths().into_iter().chain(self.ca_path.as_deref()).map(|p| (p, None))))
    }

    /// With the folders its creation made ([`ATTR_FOLDERS`] of the decision carried out).
    fn owned_after(&self, created: bool, planned: &[AttrChange]) -> Option<Owned> {
        let mut owned = self.owned(created)?;
        if let (true, Owned::Files(files)) = (created, &mut owned) {
            let made = planned.iter().find(|a| a.name == ATTR_FOLDERS).and_then(|a| a.after.as_deref());
            files.dirs = made.map(|m| m.split(", ").map(str::to_string).collect()).unwrap_or_default();
        }
        Some(owned)
    }

    /// Its files and the CA file it writes (shared by the certificates of one CA).
    fn claim(&self, id: &ResourceId, claims: &mut Claims) {
        claims.add_paths(id, self.paths().into_iter().chain(self.ca_path.as_deref()));
    }

    fn requires_users(&self) -> Vec<&str> {
        self.owner.iter().chain(&self.group).map(String::as_str).collect()
    }

    fn replaceable(&self) -> bool {
        true
    }

    /// Issued again with a new key by the same CA.
    fn replaced(&self, decision: Decision) -> Decision {
        let same_sans: BTreeSet<San> = self.leaf.sans.iter().cloned().collect();
        let mut d = self.issue_decision(Action::Replace, String::new(), Some(&same_sans));
        d.reason = Reason::Replace(Replacing::Reissue);
        d.attrs.extend(decision.attrs.into_iter().filter(|a| a.name == "usages"));
        d
    }

    /// Only a CA cairn generates is replaced (an imported one is replaced by replacing its files).
    fn replace_ca(&mut self, name: &str) -> bool {
        if self.ca.name != name || !matches!(self.ca.source, CaSource::Store { .. }) {
            return false;
        }
        self.replace_ca = true;
        true
    }

    /// The host paths this instance owns (the CA certificate file may be shared by the
    /// certificates of one CA, so it is not claimed).
    fn paths(&self) -> Vec<&str> {
        vec![self.cert_path.as_str(), self.key_path.as_str()]
    }

    /// What the probe must gather: stat + text of the certificate, stat + derived public key of
    /// the key (never its content or hash), stat + hash of the CA file.
    fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.paths.insert(self.cert_path.clone());
        probe.certs.insert(self.cert_path.clone());
        probe.keys.insert(self.key_path.clone());
        if let Some(p) = &self.ca_path {
            probe.paths.insert(p.clone());
        }
        probe.paths.extend(self.folders());
    }

    /// Decides what to do now; a creation also says which folders it makes.
    fn diff(&self, facts: &HostFacts) -> Decision {
        let mut d = self.diff_at(facts, OffsetDateTime::now_utc().unix_timestamp());
        let missing: Vec<String> = self.folders().into_iter().filter(|f| facts.path(f).is_none()).collect();
        if d.action == Action::Create && !missing.is_empty() {
            d.attrs.push(AttrChange::new(ATTR_FOLDERS, None, Some(missing.join(", "))));
        }
        d
    }

    /// Carries out a decision made by [`DesiredCert::diff`].
    /// A new or replaced certificate is issued here, then written with the wave's files.
    async fn stage(&self, decision: &Decision) -> Result<Option<Staged>, ApplyError> {
        match decision.action {
            Action::Create | Action::Replace => self.issue_staged().await.map(Some),
            _ => Ok(None),
        }
    }

    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<(), ApplyError> {
        if let Some(staged) = self.stage(decision).await? {
            return super::batch::run_alone(transport, &staged).await;
        }
        let mut ca_pem: Option<String> = None;
        for file in ["key", "cert", "ca"] {
            let Some(path) = self.file_path(file) else { continue };
            let mine: Vec<AttrChange> = decision
                .attrs
                .iter()
                .filter_map(|a| {
                    a.name.strip_prefix(file).and_then(|n| n.strip_prefix(' ')).map(|n| AttrChange { name: n.to_string(), ..a.clone() })
                })
                .collect();
            if mine.iter().any(|a| a.name == "content") {
                if ca_pem.is_none() {
                    // The certificate the diff compared with; the CA key is not needed for this.
                    ca_pem = match &self.ca_cert {
                        Some(c) => Some(c.pem.clone()),
                        None => Some(self.load_ca().await?.cert_pem.clone()),
                    };
                }
                let pem = ca_pem.as_deref().unwrap_or_default();
                write_file_atomic(transport, path, Content::Bytes(pem.as_bytes()), &self.attrs(CERT_MODE)).await?;
            } else if !mine.is_empty() {
                fix_attrs(transport, path, &mine).await?;
            }
        }
        Ok(())
    }
}

/// Reads one `C` line of the probe (tag split off): a line of a certificate file's text,
/// `TEXT<TAB>PATH`, appended to that file's text.
pub fn parse_cert_line(certs: &mut BTreeMap<String, String>, rest: &str, line: &str) -> Result<(), ProbeError> {
    let (text, path) = rest.split_once('\t').ok_or_else(|| ProbeError::unexpected("certificate line", line))?;
    let cert = certs.entry(path.to_string()).or_default();
    cert.push_str(text);
    cert.push('\n');
    Ok(())
}

/// Reads one `K` line of the probe (tag split off): a line of the public key derived from a key
/// file, `TEXT<TAB>PATH`, or `!noopenssl` / `!unreadable` for that file.
pub fn parse_key_line(keys: &mut BTreeMap<String, KeyFact>, rest: &str, line: &str) -> Result<(), ProbeError> {
    let (text, path) = rest.split_once('\t').ok_or_else(|| ProbeError::unexpected("key line", line))?;
    let fact = match text {
        "!noopenssl" => KeyFact::NoOpenssl,
        "!unreadable" => KeyFact::Unreadable,
        _ => {
            let entry = keys.entry(path.to_string()).or_insert_with(|| KeyFact::PublicKey(String::new()));
            if let KeyFact::PublicKey(pem) = entry {
                pem.push_str(text);
                pem.push('\n');
            }
            return Ok(());
        }
    };
    keys.insert(path.to_string(), fact);
    Ok(())
}

/// Why a CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The local CA store failed (reading, generating or storing it).
    #[error("{0}")]
    Store(String),
    /// An imported CA's file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The certificate does not parse.
    #[error("its certificate {0}")]
    Certificate(String),
    /// The certificate is no CA's.
    #[error("its certificate is not a CA certificate (no basicConstraints CA:TRUE)")]
    NotCa,
    /// The key cannot sign with the certificate (unreadable, or not the certificate's).
    #[error("{0}")]
    Key(String),
}

/// A CA that cannot be made ready to sign: which, and why.
#[derive(Debug, thiserror::Error)]
#[error("CA {ca}: {error}")]
pub struct UnusableCa {
    /// The CA's name.
    pub ca: String,
    /// Why.
    pub error: CaError,
}

/// The CA certificate as the plan needs it (never the key): `None` for a generated CA that does
/// not exist yet. An imported CA's key is checked against its certificate here already.
pub fn read_ca_cert(ca: &CaSpec) -> Result<Option<CaCert>, CaError> {
    let pem = match &ca.source {
        CaSource::Store { dir } => CaStore::new(dir).read_cert().map_err(|e| CaError::Store(e.to_string()))?,
        CaSource::Imported { cert_file, .. } => {
            Some(std::fs::read_to_string(cert_file).map_err(|error| CaError::Read { path: cert_file.display().to_string(), error })?)
        }
    };
    let Some(pem) = pem else { return Ok(None) };
    let info = inspect(&pem).map_err(|e| CaError::Certificate(e.to_string()))?;
    if !info.is_ca {
        return Err(CaError::NotCa);
    }
    if let CaSource::Imported { key_file, .. } = &ca.source
        && !std::fs::read(key_file).is_ok_and(|k| crate::state::sealed::is_sealed(&k))
    {
        // An imported pair is the user's own files: check now that the key fits, rather than at
        // the first apply. (A generated CA's key, or an age-encrypted one, is only read to sign.)
        ensure_ca(ca).map_err(|unusable| unusable.error)?;
    }
    Ok(Some(CaCert { pem, der: info.der }))
}

/// The CA ready to sign, generating and storing it first when it is a generated CA that does
/// not exist yet. Blocking (key generation, files).
pub fn ensure_ca(ca: &CaSpec) -> Result<LoadedCa, UnusableCa> {
    let unusable = |error| UnusableCa { ca: ca.name.clone(), error };
    let files = match &ca.source {
        CaSource::Store { dir } => {
            let store = CaStore::new(dir).sealed_to(&ca.age_recipients);
            let generate = || {
                let made = super::ca::generate_ca(ca, OffsetDateTime::now_utc()).map_err(|e| format!("generating CA {}: {e}", ca.name))?;
                Ok(CaFiles { cert_pem: made.cert_pem, key_pem: made.key_pem.expose_str().to_string() })
            };
            store.ensure(generate).map_err(|e| unusable(CaError::Store(e.to_string())))?.0
        }
        CaSource::Imported { cert_file, key_file } => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).map_err(|error| unusable(CaError::Read { path: p.display().to_string(), error }))
            };
            CaFiles {
                cert_pem: read(cert_file)?,
                key_pem: crate::state::sealed::read_key_file(key_file).map_err(|e| unusable(CaError::Store(e.to_string())))?,
            }
        }
    };
    LoadedCa::new(files.cert_pem, &SecretPem::new(files.key_pem)).map_err(|e| unusable(CaError::Key(e.to_string())))
}

fn join<T: std::fmt::Display>(items: &BTreeSet<T>) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// "12 days", "5 hours", "1 day".
fn span_words(secs: i64) -> String {
    let (n, unit) = if secs >= 86_400 { (secs / 86_400, "day") } else { ((secs / 3_600).max(1), "hour") };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::super::ca::tests::{ca_spec, leaf, loaded};
    use super::super::ca::{Issued, generate_ca, issue};
    use super::*;
    use crate::spec::{KeyType, Subject};

    const NOW: i64 = 1_800_000_000;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    struct Fixture {
        ca: Issued,
        desired: DesiredCert,
    }

    fn fixture() -> Fixture {
        let ca = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now()).unwrap();
        let der = inspect(&ca.cert_pem).unwrap().der;
        let desired = DesiredCert {
            ca: Box::new(ca_spec("etcd", KeyType::EcdsaP256)),
            ca_cert: Some(CaCert { pem: ca.cert_pem.clone(), der }),
            leaf: leaf(&["10.0.0.241", "127.0.0.1", "localhost"], &[Usage::Client, Usage::Server]),
            renew_before: Duration::parse("30d").unwrap(),
            cert_path: "/etc/etcd/pki/server.pem".into(),
            key_path: "/etc/etcd/pki/server-key.pem".into(),
            ca_path: Some("/etc/etcd/pki/ca.pem".into()),
            owner: Some("etcd".into()),
            group: None,
            replace_ca: false,
        };
        Fixture { ca, desired }
    }

    fn fact(mode: u32, sha: Option<String>) -> PathFact {
        PathFact { kind: PathKind::File, mode, owner: "etcd".into(), group: "etcd".into(), size: 1, mtime: 0, sha256: sha }
    }

    /// What a host holding `issued` (issued for `d`) would report.
    fn facts_for(d: &DesiredCert, issued: &Issued, ca_pem: &str) -> HostFacts {
        let mut f = HostFacts::default();
        f.paths.insert(d.cert_path.clone(), fact(0o644, None));
        f.paths.insert(d.key_path.clone(), fact(0o600, None));
        f.paths.insert("/etc/etcd/pki/ca.pem".into(), fact(0o644, Some(sha256_hex(ca_pem.as_bytes()))));
        f.certs.insert(d.cert_path.clone(), issued.cert_pem.clone());
        let pair = rcgen::KeyPair::from_pem(issued.key_pem.expose_str()).unwrap();
        f.keys.insert(d.key_path.clone(), KeyFact::PublicKey(pair.public_key_pem()));
        f
    }

    fn issue_for(fx: &Fixture, req: &LeafRequest, at: OffsetDateTime) -> Issued {
        issue(&loaded(&fx.ca), req, at).unwrap()
    }

    fn good(fx: &Fixture) -> (Issued, HostFacts) {
        let issued = issue_for(fx, &fx.desired.leaf, now());
        let facts = facts_for(&fx.desired, &issued, &fx.ca.cert_pem);
        (issued, facts)
    }

    #[test]
    fn a_good_certificate_is_kept() {
        let fx = fixture();
        let (_, facts) = good(&fx);
        let d = fx.desired.diff_at(&facts, NOW + 86_400);
        assert_eq!(d.action, Action::NoOp, "{}", d.reason);
        assert!(d.reason.to_string().starts_with("certificate valid until 2037-"), "{}", d.reason);
        assert!(d.reason.to_string().contains("issued by CA etcd"));
    }

    #[test]
    fn a_missing_san_is_named() {
        let mut fx = fixture();
        let (_, facts) = good(&fx);
        fx.desired.leaf.sans.push(San::parse("10.0.0.244"));
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Replace, "SAN 10.0.0.244 missing"));
        assert_eq!(d.attrs[0].name, "sans");
        assert_eq!(d.attrs[0].after.as_deref(), Some("10.0.0.241, 10.0.0.244, 127.0.0.1, localhost"));
    }

    #[test]
    fn an_extra_san_is_named() {
        let mut fx = fixture();
        let (_, facts) = good(&fx);
        fx.desired.leaf.sans.retain(|s| s.to_string() != "localhost");
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Replace, "SAN localhost not wanted"));
    }

    #[test]
    fn a_usage_change_is_named() {
        let mut fx = fixture();
        let (_, facts) = good(&fx);
        fx.desired.leaf.usages = vec![Usage::Server];
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Replace, "usage client not wanted"));
        let mut fx2 = fixture();
        fx2.desired.leaf.usages = vec![Usage::Server];
        let (_, facts) = good(&fx2);
        fx2.desired.leaf.usages = vec![Usage::Client, Usage::Server];
        assert_eq!(fx2.desired.diff_at(&facts, NOW).reason.to_string(), "usage client missing");
    }

    #[test]
    fn expiring_within_renew_before_is_reissued() {
        let fx = fixture();
        let mut req = fx.desired.leaf.clone();
        req.validity = Duration::parse("40d").unwrap();
        let issued = issue_for(&fx, &req, now());
        let facts = facts_for(&fx.desired, &issued, &fx.ca.cert_pem);
        // Not yet due: 40 days left, renew_before 30 days.
        assert_eq!(fx.desired.diff_at(&facts, NOW).action, Action::NoOp);
        // 28 days later: 12 days left.
        let d = fx.desired.diff_at(&facts, NOW + 28 * 86_400);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Replace, "expires in 12 days"));
        let d = fx.desired.diff_at(&facts, NOW + 43 * 86_400);
        assert_eq!(d.reason.to_string(), "expired 3 days ago");
    }

    #[test]
    fn a_certificate_of_another_ca_is_reissued() {
        let fx = fixture();
        let other = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now()).unwrap();
        let issued = issue(&loaded(&other), &fx.desired.leaf, now()).unwrap();
        let facts = facts_for(&fx.desired, &issued, &fx.ca.cert_pem);
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Replace, "signed by another CA"));
    }

    #[test]
    fn a_key_that_does_not_match_is_reissued() {
        let fx = fixture();
        let (_, mut facts) = good(&fx);
        let stranger = rcgen::KeyPair::generate().unwrap();
        facts.keys.insert(fx.desired.key_path.clone(), KeyFact::PublicKey(stranger.public_key_pem()));
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Replace, "key does not match"));
        facts.keys.insert(fx.desired.key_path.clone(), KeyFact::Unreadable);
        assert_eq!(fx.desired.diff_at(&facts, NOW).reason.to_string(), "key cannot be read");
        // No openssl on the host: the key cannot be checked, which is said, and not a reason to churn.
        facts.keys.insert(fx.desired.key_path.clone(), KeyFact::NoOpenssl);
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!(d.action, Action::NoOp);
        assert!(d.reason.to_string().contains("key not checked"));
    }

    #[test]
    fn missing_files_are_named() {
        let fx = fixture();
        let d = fx.desired.diff_at(&HostFacts::default(), NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Create, "certificate does not exist"));
        let (_, mut facts) = good(&fx);
        facts.paths.remove(&fx.desired.key_path);
        facts.keys.remove(&fx.desired.key_path);
        assert_eq!(fx.desired.diff_at(&facts, NOW).reason.to_string(), "key file is missing");
        let (_, mut facts) = good(&fx);
        facts.paths.remove("/etc/etcd/pki/ca.pem");
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "CA certificate file is missing"));
    }

    #[test]
    fn garbage_at_the_certificate_path_is_reissued() {
        let fx = fixture();
        let (_, mut facts) = good(&fx);
        facts.certs.insert(fx.desired.cert_path.clone(), "hello\n".into());
        assert_eq!(fx.desired.diff_at(&facts, NOW).reason.to_string(), "certificate contains no CERTIFICATE block");
    }

    #[test]
    fn a_missing_ca_will_be_created() {
        let mut fx = fixture();
        fx.desired.ca_cert = None;
        let d = fx.desired.diff_at(&HostFacts::default(), NOW);
        assert_eq!(
            (d.action, d.reason.to_string().as_str()),
            (Action::Create, "CA etcd will be created; the certificate will be issued by the new CA etcd")
        );
        // A certificate that cannot be read is replaced by the new CA's.
        let (_, mut facts) = good(&fx);
        facts.certs.insert(fx.desired.cert_path.clone(), "hello\n".into());
        assert_eq!(fx.desired.diff_at(&facts, NOW).action, Action::Replace);
    }

    #[test]
    fn a_certificate_whose_ca_is_not_in_the_state_dir_is_refused_unless_replaced() {
        let mut fx = fixture();
        fx.desired.ca_cert = None;
        let (_, facts) = good(&fx);
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!(d.action, Action::Conflict);
        assert!(matches!(&d.reason, Reason::CaNotInStateDir { ca, .. } if ca == "etcd"), "{:?}", d.reason);
        assert!(fx.desired.replace_ca("etcd"));
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason), (Action::Replace, Reason::Replace(Replacing::NewCa { ca: "etcd".into() })));
    }

    #[test]
    fn drifted_modes_are_fixed_without_reissuing() {
        let fx = fixture();
        let (_, mut facts) = good(&fx);
        facts.paths.insert(fx.desired.key_path.clone(), PathFact { owner: "root".into(), ..fact(0o644, None) });
        let d = fx.desired.diff_at(&facts, NOW);
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "key mode differs, key owner differs"));
        facts.paths.insert("/etc/etcd/pki/ca.pem".into(), fact(0o644, Some("0".repeat(64))));
        facts.paths.insert(fx.desired.key_path.clone(), fact(0o600, None));
        assert_eq!(fx.desired.diff_at(&facts, NOW).reason.to_string(), "CA certificate file differs");
    }

    #[test]
    fn subject_common_name_and_key_type_changes_are_named() {
        let mut fx = fixture();
        let (_, facts) = good(&fx);
        fx.desired.leaf.common_name = "etcd-2".into();
        fx.desired.leaf.subject = Subject { organization: Some("etcd".into()), ..Subject::default() };
        fx.desired.leaf.key = KeyType::Ed25519;
        assert_eq!(
            fx.desired.diff_at(&facts, NOW).reason.to_string(),
            "common name is etcd-1, not etcd-2, subject differs, key type is ecdsa-p256, not ed25519"
        );
    }

    #[test]
    fn a_directory_in_the_way_is_a_conflict() {
        let fx = fixture();
        let mut facts = HostFacts::default();
        facts.paths.insert(fx.desired.cert_path.clone(), PathFact { kind: PathKind::Dir, ..fact(0o755, None) });
        assert_eq!(fx.desired.diff_at(&facts, NOW).action, Action::Conflict);
    }

    #[test]
    fn decisions_never_carry_key_material() {
        let fx = fixture();
        let (issued, facts) = good(&fx);
        let mut d = fx.desired.clone();
        d.leaf.sans.push(San::parse("10.0.0.9"));
        let decision = d.diff_at(&facts, NOW);
        let shown = format!("{decision:?} {:?} {issued:?}", d);
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn an_imported_ca_is_loaded_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let made = generate_ca(&ca_spec("ext", KeyType::Rsa2048), now()).unwrap();
        std::fs::write(tmp.path().join("ca.pem"), &made.cert_pem).unwrap();
        std::fs::write(tmp.path().join("ca-key.pem"), made.key_pem.expose_bytes()).unwrap();
        let mut spec = ca_spec("ext", KeyType::Rsa2048);
        spec.source = CaSource::Imported { cert_file: tmp.path().join("ca.pem"), key_file: tmp.path().join("ca-key.pem") };
        assert_eq!(read_ca_cert(&spec).unwrap().unwrap().pem, made.cert_pem);
        assert_eq!(ensure_ca(&spec).unwrap().cert_pem, made.cert_pem);
        // An imported CA is never written.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
        // A key that is not the certificate's is refused, without printing it.
        let other = generate_ca(&ca_spec("x", KeyType::EcdsaP256), now()).unwrap();
        std::fs::write(tmp.path().join("ca-key.pem"), other.key_pem.expose_bytes()).unwrap();
        let err = ensure_ca(&spec).unwrap_err();
        assert_eq!(err.to_string(), "CA ext: the CA key does not belong to the CA certificate");
        // Reported when planning already.
        assert_eq!(read_ca_cert(&spec).unwrap_err().to_string(), "the CA key does not belong to the CA certificate");
    }

    #[test]
    fn a_generated_ca_is_created_in_its_store_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = ca_spec("etcd", KeyType::EcdsaP256);
        spec.source = CaSource::Store { dir: tmp.path().join("pki/etcd") };
        assert_eq!(read_ca_cert(&spec).unwrap(), None);
        let first = ensure_ca(&spec).unwrap();
        let second = ensure_ca(&spec).unwrap();
        assert_eq!(first.cert_pem, second.cert_pem);
        assert_eq!(read_ca_cert(&spec).unwrap().unwrap().pem, first.cert_pem);
    }
}
