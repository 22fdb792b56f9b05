//! Saved plans (`cairn plan -o FILE`): the plan, what was observed for each instance, the digest
//! of the spec it came from and the selection (`--host`/`--target`) it was made for. Written 0600
//! and atomically; read back by `cairn show` and `cairn apply FILE`, which re-reads the hosts and
//! refuses the plan when anything it depends on moved ([`compare`]).
//!
//! A plan file holds what the text and JSON views hold, plus the observed-state lines; sensitive
//! content never enters a plan, and keys still to be made are made at apply time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{FORMAT_VERSION, Plan};
use crate::hash::sha256_hex;
use crate::spec::Spec;

/// Why a plan file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// The plan could not be turned into JSON.
    #[error("cannot encode the plan: {source}")]
    Encode {
        /// serde's error.
        source: serde_json::Error,
    },
    /// The plan file could not be written.
    #[error("cannot write the plan to {}: {source}", .path.display())]
    Write {
        /// The plan file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The plan file could not be read.
    #[error("cannot read the plan file {}: {source}", .path.display())]
    Read {
        /// The plan file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{} is not a cairn plan file (write one with `cairn plan -o FILE`): {source}", .path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// serde's error.
        source: serde_json::Error,
    },
    /// The file is JSON without the plan file's `format` field.
    #[error("{} is not a cairn plan file (write one with `cairn plan -o FILE`)", .path.display())]
    NotAPlan {
        /// The file.
        path: PathBuf,
    },
    /// The plan was written by another version of cairn.
    #[error(
        "{} was written by cairn {version}; this is cairn {}: make the plan again with this version",
        .path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    OtherVersion {
        /// The plan file.
        path: PathBuf,
        /// The version that wrote it (`?` when it does not say).
        version: String,
    },
    /// The key of the digests of secrets could not be read or made.
    #[error("cannot read or make the digest key {}: {source}", .path.display())]
    DigestKey {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file says it is a plan of this version but does not hold one.
    #[error("{} is a damaged plan file: {source}", .path.display())]
    Damaged {
        /// The plan file.
        path: PathBuf,
        /// serde's error.
        source: serde_json::Error,
    },
}

/// The `format` field of every plan file.
pub const MAGIC: &str = "cairn-plan";

/// A plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Always [`MAGIC`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: String,
    /// The cairn that wrote it (a plan is applied by the same version only).
    pub cairn_version: String,
    /// When it was made, seconds since the epoch.
    pub created: u64,
    /// The spec it was made from.
    pub spec: SpecRef,
    /// `--host` of the plan (empty: every host).
    pub hosts: Vec<String>,
    /// `--target` of the plan (empty: every resource).
    pub targets: Vec<String>,
    /// `--replace` of the plan.
    #[serde(default)]
    pub replace: Vec<String>,
    /// `--exclude` of the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `--allow-degraded` of the plan.
    #[serde(default)]
    pub allow_degraded: bool,
    /// `cairn run`'s operation, when the plan is one's (`apply` runs its steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<crate::resource::cluster::operations::OperationRequest>,
    /// The plan itself.
    pub plan: Plan,
}

/// Which spec a plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecRef {
    /// The spec path as given to `plan -f`.
    pub path: String,
    /// [`spec_digest`] of the spec (its files, modules and templates).
    pub digest: String,
    /// sha256 of each of those files, by path relative to the spec's folder, so a refusal can
    /// name what changed (absent in plans of earlier versions).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The variables the plan was made with (absent in plans of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vars: Option<VarDigests>,
    /// Each secret the spec read (`file.token.content`) as an HMAC-SHA256 under the state dir's
    /// digest key ([`crate::state::digest_key`]), never the value nor a plain hash of it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// The variables a plan was made with, after `--var`, `--var-file` and `CAIRN_VAR_*` were merged
/// over `[vars]`: each name with a salted sha256 of its value, never the value. The salt is new
/// for each plan, so equal values in two plans do not look alike and no precomputed table reverses
/// a digest (a value that can be guessed can still be confirmed by guessing: keep secrets out of
/// variables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VarDigests {
    /// Random, hex.
    pub salt: String,
    /// Digest of each variable's value, by name.
    pub digests: BTreeMap<String, String>,
}

impl VarDigests {
    /// The digests of `vars` with a fresh salt.
    pub fn new(vars: &BTreeMap<String, serde_json::Value>) -> Self {
        let mut salt = [0u8; 16];
        if getrandom::fill(&mut salt).is_err() {
            // No randomness: the digests are still digests, only comparable across plans.
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            salt = nanos.to_le_bytes();
        }
        Self::with_salt(vars, &hex::encode(salt))
    }

    fn with_salt(vars: &BTreeMap<String, serde_json::Value>, salt: &str) -> Self {
        let digests = vars.iter().map(|(name, value)| (name.clone(), var_digest(salt, name, value))).collect();
        Self { salt: salt.to_string(), digests }
    }

    /// How the variables `now` differ from these, one entry per name ("`region` differs");
    /// empty when they are the same.
    pub fn changed(&self, now: &BTreeMap<String, serde_json::Value>) -> Vec<String> {
        let now = Self::with_salt(now, &self.salt);
        named_changes(&self.digests, &now.digests, ["was set then and is not now", "has another value", "is set now and was not then"])
    }
}

/// sha256 over the salt, the name and the value (as JSON), each length-prefixed. serde_json keeps
/// a table's keys sorted (its `preserve_order` feature is off), so the order a table was written
/// in does not change its digest.
fn var_digest(salt: &str, name: &str, value: &serde_json::Value) -> String {
    let value = value.to_string();
    let mut h = Sha256::new();
    for part in [salt, name, value.as_str()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

impl SpecRef {
    /// The spec at `spec_path`, as loaded.
    pub fn of(spec: &Spec, spec_path: &Path) -> Self {
        let files = spec_files(spec, spec_path).into_iter().map(|(path, text)| (path, sha256_hex(text.as_bytes()))).collect();
        Self {
            path: spec_path.display().to_string(),
            digest: spec_digest(spec, spec_path),
            files,
            vars: Some(VarDigests::new(&spec.vars)),
            secrets: BTreeMap::new(),
        }
    }

    /// [`SpecRef::of`] with the keyed digests of the spec's secrets (the digest key is made in the
    /// state dir when there are secrets and it has none yet).
    pub fn with_secrets(spec: &Spec, spec_path: &Path) -> Result<Self, SavedPlanError> {
        let mut me = Self::of(spec, spec_path);
        let secrets = spec.secrets();
        if secrets.is_empty() {
            return Ok(me);
        }
        let key = crate::state::digest_key(&spec.state_dir)
            .map_err(|source| SavedPlanError::DigestKey { path: spec.state_dir.join(crate::state::DIGEST_KEY_FILE), source })?;
        me.secrets = secrets
            .into_iter()
            .map(|(field, s)| {
                let digest = crate::hash::hmac_sha256_hex(&key, &[field.as_bytes(), s.value.expose()]);
                (field, digest)
            })
            .collect();
        Ok(me)
    }

    /// Which secrets differ from `now`, one entry per field ("`file.token.content` has another
    /// value"); empty when they agree.
    pub fn changed_secrets(&self, now: &SpecRef) -> Vec<String> {
        named_changes(
            &self.secrets,
            &now.secrets,
            ["was read from a secret then and is not now", "has another value", "is read from a secret now and was not then"],
        )
    }

    /// What differs from `now`, one entry per file ("templates/motd.j2 changed"); empty when
    /// the digests agree, or when this plan recorded no files.
    pub fn changed_files(&self, now: &SpecRef) -> Vec<String> {
        if self.files.is_empty() {
            return Vec::new();
        }
        entry_changes(&self.files, &now.files)
            .into_iter()
            .map(|(path, change)| match change {
                Entry::Gone => format!("{path} removed"),
                Entry::Differs => format!("{path} changed"),
                Entry::New => format!("{path} added"),
            })
            .collect()
    }
}

/// How one entry of a name → digest map moved.
enum Entry {
    /// In the old map only.
    Gone,
    /// In both, with another digest.
    Differs,
    /// In the new map only.
    New,
}

/// [`entry_changes`] as "`NAME` WORDS", with the words for a gone, a differing and a new entry.
fn named_changes(then: &BTreeMap<String, String>, now: &BTreeMap<String, String>, [gone, differs, new]: [&str; 3]) -> Vec<String> {
    entry_changes(then, now)
        .into_iter()
        .map(|(name, change)| {
            let words = match change {
                Entry::Gone => gone,
                Entry::Differs => differs,
                Entry::New => new,
            };
            format!("`{name}` {words}")
        })
        .collect()
}

/// What differs between two name → digest maps: the old map's names in order, then the new ones.
fn entry_changes<'a>(then: &'a BTreeMap<String, String>, now: &'a BTreeMap<String, String>) -> Vec<(&'a str, Entry)> {
    let mut changes: Vec<(&str, Entry)> = then
        .iter()
        .filter_map(|(name, digest)| match now.get(name) {
            None => Some((name.as_str(), Entry::Gone)),
            Some(d) if d != digest => Some((name.as_str(), Entry::Differs)),
            Some(_) => None,
        })
        .collect();
    changes.extend(now.keys().filter(|n| !then.contains_key(*n)).map(|n| (n.as_str(), Entry::New)));
    changes
}

/// sha256 over every file the spec was read from (spec files, modules, templates), each named by
/// its path relative to the spec's folder, so two checkouts of one commit agree.
pub fn spec_digest(spec: &Spec, spec_path: &Path) -> String {
    let mut h = Sha256::new();
    for (path, text) in spec_files(spec, spec_path) {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Every file the spec was read from with its text, by path relative to the spec's folder,
/// sorted.
fn spec_files<'s>(spec: &'s Spec, spec_path: &Path) -> Vec<(String, &'s str)> {
    // `cairn.toml` alone has the parent "", which canonicalize refuses: it is the current folder.
    let base = spec_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let mut files: Vec<(String, &str)> = spec
        .sources
        .files()
        .map(|(path, text)| {
            let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            (pathdiff(&abs, &base), text)
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// `path` relative to `base` (with `..` steps), or as it is when they share nothing.
fn pathdiff(path: &Path, base: &Path) -> String {
    let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return path.display().to_string();
    }
    let mut parts: Vec<String> = b[common..].iter().map(|_| "..".to_string()).collect();
    parts.extend(p[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    parts.join("/")
}

impl SavedPlan {
    /// A plan file for `plan`, made from `spec` ([`SpecRef::of`]).
    pub fn new(plan: Plan, spec: SpecRef, hosts: &[String], targets: &[String]) -> Self {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self {
            format: MAGIC.to_string(),
            format_version: FORMAT_VERSION.to_string(),
            cairn_version: env!("CARGO_PKG_VERSION").to_string(),
            created,
            spec,
            hosts: hosts.to_vec(),
            targets: targets.to_vec(),
            replace: Vec::new(),
            exclude: Vec::new(),
            allow_degraded: false,
            operation: None,
            plan,
        }
    }

    /// Writes it to `path`: mode 0600, atomically.
    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|source| SavedPlanError::Encode { source })?;
        json.push(b'\n');
        crate::state::write_atomic(path, &json, 0o600).map_err(|source| SavedPlanError::Write { path: path.to_path_buf(), source })
    }

    /// Reads a plan file, refusing anything that is not one, or one from another cairn.
    pub fn read(path: &Path) -> Result<Self, SavedPlanError> {
        let bytes = std::fs::read(path).map_err(|source| SavedPlanError::Read { path: path.to_path_buf(), source })?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| SavedPlanError::NotJson { path: path.to_path_buf(), source })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(MAGIC) {
            return Err(SavedPlanError::NotAPlan { path: path.to_path_buf() });
        }
        let version = value.get("cairn_version").and_then(|v| v.as_str()).unwrap_or("?");
        if version != env!("CARGO_PKG_VERSION") {
            return Err(SavedPlanError::OtherVersion { path: path.to_path_buf(), version: version.to_string() });
        }
        serde_json::from_value(value).map_err(|source| SavedPlanError::Damaged { path: path.to_path_buf(), source })
    }
}

/// One thing that differs between a saved plan and the hosts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The host.
    pub host: String,
    /// The resource id (empty for the host as a whole).
    pub resource: String,
    /// What the saved plan saw or decided.
    pub before: Vec<String>,
    /// What is there or decided now.
    pub now: Vec<String>,
}

/// What differs between the `saved` plan and `now` (a fresh plan of the same spec and
/// selection): observed facts first; then, with the same facts, any decision (a time-dependent
/// reason such as a certificate's expiry). Empty: `now` does exactly what `saved` said.
pub fn compare(saved: &Plan, now: &Plan) -> Vec<Moved> {
    let mut moved = Vec::new();
    for e in &now.errors {
        moved.push(Moved { host: e.host.clone(), resource: String::new(), before: vec!["readable".into()], now: vec![e.error.clone()] });
    }
    for (host, changes) in &saved.hosts {
        let Some(current) = now.hosts.get(host) else {
            if !now.errors.iter().any(|e| &e.host == host) {
                moved.push(Moved {
                    host: host.to_string(),
                    resource: String::new(),
                    before: vec!["planned".into()],
                    now: vec!["not in the plan any more".into()],
                });
            }
            continue;
        };
        // A cluster's operation has several steps on one host under one id: the k-th of an id
        // is compared with the k-th of that id.
        let nth = |list: &[super::Change], upto: usize| list[..upto].iter().filter(|x| x.id == list[upto].id).count();
        for (k, c) in changes.iter().enumerate() {
            let resource = c.id.resource.to_string();
            let rank = nth(changes, k);
            let Some(n) = current.iter().filter(|n| n.id == c.id).nth(rank) else {
                moved.push(Moved {
                    host: host.to_string(),
                    resource,
                    before: vec![c.action.describe().into()],
                    now: vec!["no longer in the spec".into()],
                });
                continue;
            };
            if n.observed != c.observed {
                let before: Vec<String> = c.observed.iter().filter(|l| !n.observed.contains(l)).cloned().collect();
                let after: Vec<String> = n.observed.iter().filter(|l| !c.observed.contains(l)).cloned().collect();
                moved.push(Moved { host: host.to_string(), resource, before, now: after });
            } else if n.decision() != c.decision() {
                moved.push(Moved {
                    host: host.to_string(),
                    resource,
                    before: vec![format!("{}: {}", c.action.describe(), c.reason)],
                    now: vec![format!("{}: {}", n.action.describe(), n.reason)],
                });
            }
        }
        for (_, n) in current.iter().enumerate().filter(|(k, n)| changes.iter().filter(|c| c.id == n.id).count() <= nth(current, *k)) {
            moved.push(Moved {
                host: host.to_string(),
                resource: n.id.resource.to_string(),
                before: vec!["not in the plan".into()],
                now: vec![format!("{}: {}", n.action.describe(), n.reason)],
            });
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_recorded_by_salted_digest_and_compared_by_name() {
        let vars = |pairs: &[(&str, serde_json::Value)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let then: BTreeMap<String, serde_json::Value> = vars(&[("region", "eu".into()), ("token", "s3cret".into()), ("port", 2379.into())]);
        let saved = VarDigests::new(&then);
        let json = serde_json::to_string(&saved).unwrap();
        assert!(!json.contains("s3cret") && !json.contains("\"eu\"") && !json.contains("2379"), "{json}");
        assert!(!json.contains(&crate::hash::sha256_hex(b"s3cret")), "no plain digest of a value");
        assert_ne!(saved.digests, VarDigests::new(&then).digests, "a new salt per plan");
        assert!(saved.changed(&then).is_empty());
        let now = vars(&[("region", "us".into()), ("port", 2379.into()), ("debug", true.into())]);
        assert_eq!(
            saved.changed(&now),
            vec!["`region` has another value", "`token` was set then and is not now", "`debug` is set now and was not then"]
        );
        // A table written in another order is the same value.
        let table = |text: &str| vars(&[("t", serde_json::from_str::<serde_json::Value>(text).unwrap())]);
        assert!(VarDigests::new(&table(r#"{"a": 1, "b": 2}"#)).changed(&table(r#"{"b": 2, "a": 1}"#)).is_empty());
        // The type is part of the value.
        assert_eq!(
            saved.changed(&vars(&[("region", "eu".into()), ("token", "s3cret".into()), ("port", "2379".into())])),
            vec!["`port` has another value"]
        );
    }

    #[test]
    fn read_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let p = path.display();
        let err = SavedPlan::read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read the plan file {p}: ")), "{err}");
        std::fs::write(&path, "not json").unwrap();
        let err = SavedPlan::read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{p} is not a cairn plan file (write one with `cairn plan -o FILE`): ")), "{err}");
        std::fs::write(&path, "{}").unwrap();
        let err = SavedPlan::read(&path).unwrap_err().to_string();
        assert_eq!(err, format!("{p} is not a cairn plan file (write one with `cairn plan -o FILE`)"));
        std::fs::write(&path, r#"{"format": "cairn-plan", "cairn_version": "0.0.1"}"#).unwrap();
        let err = SavedPlan::read(&path).unwrap_err().to_string();
        let ours = env!("CARGO_PKG_VERSION");
        assert_eq!(err, format!("{p} was written by cairn 0.0.1; this is cairn {ours}: make the plan again with this version"));
        std::fs::write(&path, format!(r#"{{"format": "cairn-plan", "cairn_version": "{ours}"}}"#)).unwrap();
        let err = SavedPlan::read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{p} is a damaged plan file: ")), "{err}");
    }
}
