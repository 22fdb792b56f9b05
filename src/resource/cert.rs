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
    Action, Applied, ApplyError, AttrChange, Decision, HostFacts, KeyFact, PathFact, PathKind, ProbeRequest, Reason, Replacing,
    ResourceKind, fix_attrs,
};
use crate::hash::sha256_hex;
use crate::spec::{CaSource, CaSpec, CertSpec, Diagnostic, Duration, Kind, ResourceId, TemplateText, Usage, check_san, san_error};
use crate::state::manifest::Owned;
use crate::state::pki::{CaFiles, CaStore, RotationPhase};
use crate::transport::{Content, FileAttrs, FileWrite, Transport, argv, write_file_atomic};

/// The attribute of a creation that lists the folders it makes (recorded in the manifest, so
/// `destroy` removes them).
const ATTR_FOLDERS: &str = "folders";

/// The attribute of a decision that changes the CA file (`ca_path`): the file `ca`, its
/// `content` (see [`DesiredCert::apply`], which splits attribute names so). A service that reads
/// the CA file only when it starts must restart for it ([`ResourceKind::picked_up_live`]).
const ATTR_CA_CONTENT: &str = "ca content";

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

/// A rotation of the certificate's CA, as the plan found it in the state dir (or as
/// `--replace ca.NAME` starts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRotation {
    /// The phase every certificate of the CA is in until it is done on every host.
    pub phase: RotationPhase,
    /// The new CA's certificate; `None` until phase 1 makes it (at apply).
    pub next: Option<CaCert>,
    /// Why a rotation starts without `--replace`: the spec asks for another key type or subject
    /// than the CA in the state dir has.
    pub cause: Option<String>,
}

impl RotationOf {
    /// The CA's store in the state dir (a rotation is of a generated CA).
    pub fn store(&self) -> Option<&std::path::Path> {
        match &self.spec.source {
            CaSource::Store { dir } => Some(dir),
            CaSource::Imported { .. } => None,
        }
    }
}

/// A certificate's share of a CA rotation, for the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationOf {
    /// The CA's name.
    pub ca: String,
    /// The phase.
    pub phase: RotationPhase,
    /// Whether the new CA exists already (made by phase 1's first apply).
    pub started: bool,
    /// Why it starts, when the spec asked for it by changing the CA ([`CaRotation::cause`]).
    pub cause: Option<String>,
    /// The CA's spec.
    pub spec: CaSpec,
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
    /// A phased rotation of the CA in progress (or starting, by `--replace ca.NAME`).
    pub rotation: Option<CaRotation>,
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
        let rotation = match read_rotation(&ca) {
            Ok(r) => r,
            Err(why) => {
                errors.push(
                    Diagnostic::at(&ca.span, format!("CA {}'s rotation cannot be read: {why}", ca.name))
                        .with_help("fix the state dir's files of the rotation (see `cairn apply --replace`)"),
                );
                None
            }
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
        // A spec asking for another key type or subject than the CA has: a rotation to a new one.
        let rotation = rotation.or_else(|| {
            let cause = ca_cert.as_ref().and_then(|current| spec_differs_from(&ca, current))?;
            Some(CaRotation { phase: RotationPhase::Trust, next: None, cause: Some(cause) })
        });
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
                rotation,
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
        let signer = match self.signer(ca) {
            Ok(signer) => signer,
            Err(conflict) => return conflict,
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
        let key_unchecked = self.reissue_reasons(facts, signer, &info, now, &mut reasons);
        if !reasons.is_empty() {
            let mut d = self.issue_decision(Action::Replace, reasons.join(", "), Some(&info.sans));
            if let Some(r) = &self.rotation
                && r.phase >= RotationPhase::Reissue
                && issued_by(&info.der, &ca.der)
            {
                // Issued by the CA being rotated out: this phase's work, whatever else differs.
                d.reason = Reason::Rotation { ca: name.clone(), phase: r.phase };
            }
            let wanted_usages: BTreeSet<Usage> = self.leaf.usages.iter().copied().collect();
            if info.usages != wanted_usages {
                d.attrs.push(AttrChange::new("usages", Some(join(&info.usages)), Some(join(&wanted_usages))));
            }
            return d;
        }
        if let Some(update) = self.attr_update(facts, cert_fact) {
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

    /// The CA that must have issued the certificate: the current one, or during a rotation's
    /// phases 2 and 3 the new one (a conflict when the state dir lost it).
    fn signer<'a>(&'a self, current: &'a CaCert) -> Result<&'a CaCert, Decision> {
        match &self.rotation {
            None => Ok(current),
            Some(r) if r.phase == RotationPhase::Trust => Ok(current),
            Some(CaRotation { next: Some(next), .. }) => Ok(next),
            Some(r) => Err(Decision::new(
                Action::Conflict,
                format!(
                    "CA rotation {}, phase {} of 3: the new CA is missing from the state dir; restore the state dir from its backup",
                    self.ca.name,
                    r.phase.number()
                ),
            )),
        }
    }

    /// What the CA file must hold: the current CA; during a rotation, both CAs (phases 1 and 2)
    /// or the new one alone (phase 3). `None` while the new CA is still to be made (by phase 1).
    fn trusted_pem(&self) -> Option<String> {
        let current = self.ca_cert.as_ref()?;
        match &self.rotation {
            None => Some(current.pem.clone()),
            Some(CaRotation { next: None, .. }) => None,
            Some(CaRotation { phase: RotationPhase::Retire, next: Some(next), .. }) => Some(next.pem.clone()),
            Some(CaRotation { next: Some(next), .. }) => Some(bundle(&current.pem, &next.pem)),
        }
    }

    /// Whether the CA file on the host is not what it must hold (or is missing).
    fn ca_file_differs(&self, facts: &HostFacts) -> bool {
        let Some(path) = &self.ca_path else { return false };
        let trusted = self.trusted_pem();
        match facts.path(path) {
            None => true,
            Some(f) => {
                f.kind == PathKind::Symlink || trusted.is_none_or(|t| f.sha256.as_deref() != Some(sha256_hex(t.as_bytes()).as_str()))
            }
        }
    }

    /// How the plan names what the CA file will hold.
    fn trusted_words(&self) -> String {
        let name = &self.ca.name;
        match self.rotation.as_ref().map(|r| r.phase) {
            None => format!("CA {name} certificate"),
            Some(RotationPhase::Trust | RotationPhase::Reissue) => format!("CA {name} and the new CA {name} (both certificates)"),
            Some(RotationPhase::Retire) => format!("the new CA {name} alone"),
        }
    }

    /// For a good certificate: the update its files' attributes or the CA file need, if any.
    fn attr_update(&self, facts: &HostFacts, cert_fact: &PathFact) -> Option<Decision> {
        let name = &self.ca.name;
        let trusted = self.trusted_pem();
        let mut ca_differs = false;
        let key_fact = facts.path(&self.key_path);
        let ca_fact = self.ca_path.as_deref().and_then(|p| facts.path(p));
        let mut attrs = Vec::new();
        self.file_attrs("key", KEY_MODE, key_fact, &mut attrs);
        self.file_attrs("cert", CERT_MODE, Some(cert_fact), &mut attrs);
        if let Some(ca_path) = &self.ca_path {
            match ca_fact {
                None => attrs.push(AttrChange::new(ATTR_CA_CONTENT, None, Some(self.trusted_words()))),
                Some(f) => {
                    let same = trusted.as_ref().is_some_and(|t| f.sha256.as_deref() == Some(sha256_hex(t.as_bytes()).as_str()));
                    if f.kind == PathKind::Symlink || !same {
                        ca_differs = true;
                        let before = match self.rotation.as_ref().map(|r| r.phase) {
                            Some(RotationPhase::Trust) => format!("CA {name} certificate"),
                            Some(RotationPhase::Retire) => format!("CA {name} and the new CA {name}"),
                            _ => format!("{ca_path} differs"),
                        };
                        attrs.push(AttrChange::new(ATTR_CA_CONTENT, Some(before), Some(self.trusted_words())));
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
                ATTR_CA_CONTENT if a.before.is_none() => "CA certificate file is missing".to_string(),
                ATTR_CA_CONTENT => "CA certificate file differs".to_string(),
                other => format!("{other} differs"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = Decision::new(Action::Update, reason);
        if let (Some(r), true) = (&self.rotation, ca_differs || ca_fact.is_none() && self.ca_path.is_some()) {
            d.reason = Reason::Rotation { ca: name.clone(), phase: r.phase };
        }
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

    /// The CA that signs: the current one (made first when it does not exist), or during a
    /// rotation's phases 2 and 3 the new one.
    async fn load_signer(&self) -> Result<LoadedCa, ApplyError> {
        match &self.rotation {
            Some(r) if r.phase >= RotationPhase::Reissue => self.load_next_ca().await,
            _ => self.load_ca().await,
        }
    }

    /// The rotation's new CA, made by the first certificate of phase 1 that needs it.
    async fn load_next_ca(&self) -> Result<LoadedCa, ApplyError> {
        let ca = (*self.ca).clone();
        let joined = tokio::task::spawn_blocking(move || ensure_next_ca(&ca)).await;
        joined.map_err(|e| ApplyError::Failed(format!("CA task failed: {e}")))?.map_err(|e| ApplyError::Failed(e.to_string()))
    }

    /// What the CA file gets at apply ([`DesiredCert::trusted_pem`], the new CA made if need be).
    async fn trusted_pem_now(&self, signer: Option<&LoadedCa>) -> Result<String, ApplyError> {
        if let Some(pem) = self.trusted_pem() {
            return Ok(pem);
        }
        match (&self.rotation, &self.ca_cert) {
            (Some(_), Some(current)) => Ok(bundle(&current.pem, &self.load_next_ca().await?.cert_pem)),
            _ => match signer {
                Some(ca) => Ok(ca.cert_pem.clone()),
                None => Ok(self.load_ca().await?.cert_pem.clone()),
            },
        }
    }

    /// Issues a new certificate (and makes the CA, the first time) and stages the directories
    /// and the files that carry it: the key first, so its content is never visible to anyone
    /// else (its temp file is 0600 and chowned before the rename) and a half-done apply is seen
    /// next time as a mismatch.
    /// The CA file is written when it is new or differs (`write_ca`): rewriting it unchanged would
    /// look like a change of trust to a service that reads it only when it starts.
    async fn issue_staged(&self, write_ca: bool) -> Result<Staged, ApplyError> {
        let ca = self.load_signer().await?;
        let req = self.leaf.clone();
        let ca_pem = if self.replace_ca { ca.cert_pem.clone() } else { self.trusted_pem_now(Some(&ca)).await? };
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
            content: content.to_vec().into(),
            attrs: self.attrs(mode),
        };
        let mut files = vec![
            write(&self.key_path, issued.key_pem.expose_bytes(), KEY_MODE),
            write(&self.cert_path, issued.cert_pem.as_bytes(), CERT_MODE),
        ];
        if let Some(ca_path) = self.ca_path.as_ref().filter(|_| write_ca) {
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
        d.attrs.extend(decision.attrs.into_iter().filter(|a| a.name == "usages" || a.name == ATTR_CA_CONTENT));
        d
    }

    /// Only a CA cairn generates is replaced (an imported one is replaced by replacing its files).
    /// A CA in the state dir is rotated in phases (a rotation in progress goes on where it
    /// stands); without one there is nothing to rotate from: a new CA replaces whatever the
    /// hosts trust.
    fn replace_ca(&mut self, name: &str) -> bool {
        if self.ca.name != name || !matches!(self.ca.source, CaSource::Store { .. }) {
            return false;
        }
        if self.ca_cert.is_none() {
            self.replace_ca = true;
        } else if self.rotation.is_none() {
            self.rotation = Some(CaRotation { phase: RotationPhase::Trust, next: None, cause: None });
        }
        true
    }

    fn ca_rotation(&self) -> Option<RotationOf> {
        let (r, CaSource::Store { .. }) = (self.rotation.as_ref()?, &self.ca.source) else { return None };
        Some(RotationOf {
            ca: self.ca.name.clone(),
            phase: r.phase,
            started: r.next.is_some(),
            cause: r.cause.clone(),
            spec: (*self.ca).clone(),
        })
    }

    fn reload_ca(&mut self, name: &str) -> bool {
        if self.ca.name != name {
            return false;
        }
        // Errors were reported when the plan read them; a store that broke since fails the apply.
        self.rotation = read_rotation(&self.ca).ok().flatten();
        self.ca_cert = read_ca_cert(&self.ca).ok().flatten();
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

    /// A certificate issued again whose CA file stays as it is: a service that re-reads its
    /// certificate on each connection (etcd does, see the module's README) needs no restart.
    fn picked_up_live(&self, action: Action, attrs: &[AttrChange]) -> bool {
        matches!(action, Action::Replace | Action::Update) && !attrs.iter().any(|a| a.name == ATTR_CA_CONTENT)
    }

    /// Its CA file: what such a service reads only when it starts.
    fn restart_paths_when_reloaded(&self) -> Vec<&str> {
        self.ca_path.iter().map(String::as_str).collect()
    }

    /// Decides what to do now; a creation also says which folders it makes, a reissue whether
    /// the CA file changes with it.
    fn diff(&self, facts: &HostFacts) -> Decision {
        let mut d = self.diff_at(facts, OffsetDateTime::now_utc().unix_timestamp());
        if d.action == Action::Replace && !d.attrs.iter().any(|a| a.name == ATTR_CA_CONTENT) && self.ca_file_differs(facts) {
            d.attrs.push(AttrChange::new(ATTR_CA_CONTENT, Some("differs".into()), Some(self.trusted_words())));
        }
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
            Action::Create | Action::Replace => {
                let write_ca = decision.action == Action::Create || decision.attrs.iter().any(|a| a.name == ATTR_CA_CONTENT);
                self.issue_staged(write_ca).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError> {
        if let Some(staged) = self.stage(decision).await? {
            return super::batch::run_alone(transport, &staged).await.map(|()| Applied::plain());
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
                    // What the diff compared with; the CA key is not needed for this.
                    ca_pem = Some(self.trusted_pem_now(None).await?);
                }
                let pem = ca_pem.as_deref().unwrap_or_default();
                write_file_atomic(transport, path, Content::Bytes(pem.as_bytes()), &self.attrs(CERT_MODE)).await?;
            } else if !mine.is_empty() {
                fix_attrs(transport, path, &mine).await?;
            }
        }
        Ok(Applied::plain())
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

/// The new CA of a rotation of the generated CA `ca`, made (from the spec as it is now: a
/// changed key type or subject takes effect here) when it does not exist. Blocking.
pub fn ensure_next_ca(ca: &CaSpec) -> Result<LoadedCa, UnusableCa> {
    let CaSource::Store { dir } = &ca.source else {
        return Err(UnusableCa { ca: ca.name.clone(), error: CaError::Store("an imported CA is rotated by replacing its files".into()) });
    };
    let mut next = ca.clone();
    next.source = CaSource::Store { dir: CaStore::new(dir).next().dir().to_path_buf() };
    ensure_ca(&next)
}

/// Where a rotation of `ca` stands in the state dir (generated CAs only).
pub fn read_rotation(ca: &CaSpec) -> Result<Option<CaRotation>, CaError> {
    let CaSource::Store { dir } = &ca.source else { return Ok(None) };
    let store = CaStore::new(dir);
    let Some(phase) = store.rotation_phase().map_err(|e| CaError::Store(e.to_string()))? else { return Ok(None) };
    let next = match store.next().read_cert().map_err(|e| CaError::Store(e.to_string()))? {
        Some(pem) => {
            let info = inspect(&pem).map_err(|e| CaError::Certificate(format!("(the new CA's) {e}")))?;
            Some(CaCert { pem, der: info.der })
        }
        None => None,
    };
    Ok(Some(CaRotation { phase, next, cause: None }))
}

/// How the spec's generated CA differs from the CA in the state dir, when it asks for another key
/// type or subject (which only a new CA can have: a rotation to it). An imported CA is the user's.
fn spec_differs_from(ca: &CaSpec, current: &CaCert) -> Option<String> {
    if !matches!(ca.source, CaSource::Store { .. }) {
        return None;
    }
    let info = inspect(&current.pem).ok()?;
    let mut differs = Vec::new();
    if info.key != Some(ca.key) {
        differs.push(format!("key type {} (the CA's is {})", ca.key, info.key.map_or("another", |k| k.as_str())));
    }
    let wanted: Vec<(String, String)> = ca.subject.fields().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if info.common_name.as_deref() != Some(ca.common_name.as_str()) || info.subject != wanted {
        differs.push("another subject".to_string());
    }
    (!differs.is_empty()).then(|| format!("the spec asks for {}", differs.join(" and ")))
}

/// The CA file of a rotation's phases 1 and 2: both certificates, the current one first.
fn bundle(current: &str, next: &str) -> String {
    let mut both = current.to_string();
    if !both.ends_with('\n') {
        both.push('\n');
    }
    both.push_str(next);
    both
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
            rotation: None,
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

    fn cert_of(ca: &Issued) -> CaCert {
        CaCert { pem: ca.cert_pem.clone(), der: inspect(&ca.cert_pem).unwrap().der }
    }

    fn rotation_at(d: &mut DesiredCert, phase: RotationPhase, next: Option<&Issued>) {
        d.rotation = Some(CaRotation { phase, next: next.map(cert_of), cause: None });
    }

    #[test]
    fn a_rotation_takes_every_certificate_through_three_phases() {
        let mut fx = fixture();
        let next = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now()).unwrap();
        let both = bundle(&fx.ca.cert_pem, &next.cert_pem);
        let (_, on_old) = good(&fx);
        let rotated = |phase| Reason::Rotation { ca: "etcd".into(), phase };

        // Phase 1, before the new CA exists: the CA file gets both, the certificate stays.
        rotation_at(&mut fx.desired, RotationPhase::Trust, None);
        let d = fx.desired.diff_at(&on_old, NOW);
        assert_eq!((d.action, &d.reason), (Action::Update, &rotated(RotationPhase::Trust)));
        assert_eq!(
            d.attrs.iter().map(|a| (a.name.as_str(), a.after.as_deref())).collect::<Vec<_>>(),
            [(ATTR_CA_CONTENT, Some("CA etcd and the new CA etcd (both certificates)"))]
        );
        rotation_at(&mut fx.desired, RotationPhase::Trust, Some(&next));
        assert_eq!(fx.desired.diff_at(&on_old, NOW).action, Action::Update);
        let old_cert_trusting_both = {
            let mut f = on_old.clone();
            f.paths.get_mut("/etc/etcd/pki/ca.pem").unwrap().sha256 = Some(sha256_hex(both.as_bytes()));
            f
        };
        assert_eq!(fx.desired.diff_at(&old_cert_trusting_both, NOW).action, Action::NoOp);

        // Phase 2: a certificate of the old CA is issued again by the new one.
        rotation_at(&mut fx.desired, RotationPhase::Reissue, Some(&next));
        let d = fx.desired.diff_at(&old_cert_trusting_both, NOW);
        assert_eq!((d.action, &d.reason), (Action::Replace, &rotated(RotationPhase::Reissue)));
        assert!(d.reason.to_string().contains("phase 2 of 3: issued again by the new CA etcd"), "{}", d.reason);
        let reissued = issue(&loaded(&next), &fx.desired.leaf, now()).unwrap();
        let new_cert_trusting_both = facts_for(&fx.desired, &reissued, &both);
        assert_eq!(fx.desired.diff_at(&new_cert_trusting_both, NOW).action, Action::NoOp);

        // Phase 3: the CA file trusts the new CA alone.
        rotation_at(&mut fx.desired, RotationPhase::Retire, Some(&next));
        let d = fx.desired.diff_at(&new_cert_trusting_both, NOW);
        assert_eq!((d.action, &d.reason), (Action::Update, &rotated(RotationPhase::Retire)));
        assert_eq!(fx.desired.trusted_pem().as_deref(), Some(next.cert_pem.as_str()));
        let done = facts_for(&fx.desired, &reissued, &next.cert_pem);
        assert_eq!(fx.desired.diff_at(&done, NOW).action, Action::NoOp);
        // A certificate still of the old CA in phase 3 (a host added meanwhile) is reissued too.
        assert_eq!(fx.desired.diff_at(&on_old, NOW).reason, rotated(RotationPhase::Retire));
    }

    #[test]
    fn a_reissue_says_whether_the_ca_file_changes_and_only_then_needs_a_restart() {
        let mut fx = fixture();
        let (_, facts) = good(&fx);
        fx.desired.leaf.sans.push(San::parse("10.0.0.244"));
        let d = fx.desired.diff(&facts);
        assert_eq!(d.action, Action::Replace);
        assert!(!d.attrs.iter().any(|a| a.name == ATTR_CA_CONTENT), "{:?}", d.attrs);
        assert!(fx.desired.picked_up_live(d.action, &d.attrs), "a new leaf is read on the next connection");
        let mut stale_ca = facts.clone();
        stale_ca.paths.get_mut("/etc/etcd/pki/ca.pem").unwrap().sha256 = Some("0".repeat(64));
        let d = fx.desired.diff(&stale_ca);
        assert!(d.attrs.iter().any(|a| a.name == ATTR_CA_CONTENT), "{:?}", d.attrs);
        assert!(!fx.desired.picked_up_live(d.action, &d.attrs), "a changed CA file is read only at start");
        assert_eq!(fx.desired.restart_paths_when_reloaded(), ["/etc/etcd/pki/ca.pem"]);
        assert!(!fx.desired.picked_up_live(Action::Create, &[]));
    }

    #[test]
    fn replacing_a_ca_in_the_state_dir_starts_a_rotation_and_one_without_is_a_cut_over() {
        let mut fx = fixture();
        let tmp = tempfile::tempdir().unwrap();
        fx.desired.ca.source = CaSource::Store { dir: tmp.path().join("pki/etcd") };
        assert!(!fx.desired.replace_ca("web"));
        assert!(fx.desired.replace_ca("etcd"));
        assert_eq!(fx.desired.rotation, Some(CaRotation { phase: RotationPhase::Trust, next: None, cause: None }));
        assert!(!fx.desired.replace_ca);
        let of = fx.desired.ca_rotation().unwrap();
        assert_eq!((of.ca.as_str(), of.phase, of.started), ("etcd", RotationPhase::Trust, false));
        fx.desired.rotation = None;
        fx.desired.ca_cert = None;
        assert!(fx.desired.replace_ca("etcd"));
        assert!(fx.desired.replace_ca && fx.desired.rotation.is_none());
    }

    #[test]
    fn a_spec_asking_for_another_key_type_or_subject_rotates_the_ca() {
        let mut spec = ca_spec("etcd", KeyType::EcdsaP256);
        let current = cert_of(&generate_ca(&spec, now()).unwrap());
        assert_eq!(spec_differs_from(&spec, &current), None, "a CA made from the spec matches it");
        spec.subject = Subject::default();
        let mut other = spec.clone();
        other.key = KeyType::Ed25519;
        let current = cert_of(&generate_ca(&spec, now()).unwrap());
        assert_eq!(spec_differs_from(&spec, &current), None);
        assert_eq!(spec_differs_from(&other, &current).as_deref(), Some("the spec asks for key type ed25519 (the CA's is ecdsa-p256)"));
        other.key = KeyType::EcdsaP256;
        other.common_name = "etcd-2".into();
        assert_eq!(spec_differs_from(&other, &current).as_deref(), Some("the spec asks for another subject"));
        other.source = CaSource::Imported { cert_file: "ca.pem".into(), key_file: "ca-key.pem".into() };
        assert_eq!(spec_differs_from(&other, &current), None, "an imported CA is the user's");
    }

    #[test]
    fn a_rotation_is_read_from_the_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = ca_spec("etcd", KeyType::EcdsaP256);
        spec.source = CaSource::Store { dir: tmp.path().join("pki/etcd") };
        let current = ensure_ca(&spec).unwrap();
        assert_eq!(read_rotation(&spec).unwrap(), None);
        let next = ensure_next_ca(&spec).unwrap();
        assert_ne!(next.cert_pem, current.cert_pem);
        let r = read_rotation(&spec).unwrap().unwrap();
        assert_eq!((r.phase, r.next.map(|n| n.pem)), (RotationPhase::Trust, Some(next.cert_pem.clone())));
        let store = CaStore::new(tmp.path().join("pki/etcd"));
        store.record_phase(RotationPhase::Retire).unwrap();
        assert_eq!(read_rotation(&spec).unwrap().unwrap().phase, RotationPhase::Retire);
        store.finish_rotation().unwrap();
        assert_eq!(read_rotation(&spec).unwrap(), None);
        assert_eq!(read_ca_cert(&spec).unwrap().unwrap().pem, next.cert_pem);
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
