//! Encryption at rest of CA private keys in the age format (<https://age-encryption.org/v1>).
//!
//! A CA whose spec lists `age_recipients` has its key written as `ca-key.pem.age` (ASCII armour,
//! encrypted to every recipient) instead of a plain `ca-key.pem`. Decrypting needs an identity,
//! looked for only when a key must be used to sign (at apply time; creating a sealed CA checks
//! that the new key opens again, so it needs one too): the content of [`IDENTITY_ENV`] and/or the
//! file named by [`IDENTITY_FILE_ENV`], in the format `age-keygen` writes. Recipients are X25519
//! public keys (`age1…`). Which format a store holds is decided by its files, not the spec: a
//! sealed key is read whatever the spec says; a plain key is refused once the spec asks for
//! sealing (see [`plain_key_in_sealed_store`]).
//!
//! Nothing here prints or returns key material in an error: messages name files, environment
//! variables and line numbers only.

use std::path::{Path, PathBuf};

/// The environment variable holding age identities themselves (`AGE-SECRET-KEY-1…` lines).
pub const IDENTITY_ENV: &str = "CAIRN_AGE_IDENTITY";
/// The environment variable naming a file of age identities (`~` expanded).
pub const IDENTITY_FILE_ENV: &str = "CAIRN_AGE_IDENTITY_FILE";

/// How a sealed file starts: the ASCII armour or the binary header.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const BINARY_BEGIN: &[u8] = b"age-encryption.org/";

/// What to do about age when a store writes or reads a key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sealing {
    /// Recipients a new key is encrypted to; empty: written in plain text.
    pub recipients: Vec<String>,
    /// Where identities come from when a sealed key must be read.
    pub identity: IdentitySource,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing").field("recipients", &self.recipients).field("identity", &self.identity).finish()
    }
}

/// Where age identities come from.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum IdentitySource {
    /// [`IDENTITY_ENV`] and [`IDENTITY_FILE_ENV`], read when needed.
    #[default]
    Environment,
    /// Identities given directly (tests, embedding). `Debug` redacts them.
    Text(String),
}

impl std::fmt::Debug for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentitySource::Environment => f.write_str("Environment"),
            IdentitySource::Text(_) => f.write_str("Text([redacted])"),
        }
    }
}

/// A failure to seal or unseal. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A sealed key must be read and no identity is configured.
    #[error(
        "{path} is encrypted with age and no identity is given: set {IDENTITY_FILE_ENV} to your age identity file (as age-keygen wrote it), or {IDENTITY_ENV} to its content, and run again"
    )]
    NoIdentity {
        /// The sealed file.
        path: PathBuf,
    },
    /// The identities could not be read.
    #[error("{from}: {why}")]
    BadIdentity {
        /// Where they came from (`$CAIRN_AGE_IDENTITY_FILE (PATH)` or `$CAIRN_AGE_IDENTITY`).
        from: String,
        /// Why (a line number, never the line).
        why: String,
    },
    /// None of the identities decrypts the file.
    #[error(
        "{path} cannot be decrypted with the identities from {from}: it was encrypted to other age recipients; give an identity whose public key is in `age_recipients` (age-keygen -y IDENTITY_FILE prints it)"
    )]
    NoMatchingIdentity {
        /// The sealed file.
        path: PathBuf,
        /// Where the identities came from.
        from: String,
    },
    /// The file is damaged or not an age file.
    #[error("{path} cannot be decrypted: {why}")]
    Damaged {
        /// The sealed file.
        path: PathBuf,
        /// age's reason.
        why: String,
    },
    /// A recipient is not usable (the loader checks them first, so this is unexpected).
    #[error("`{0}` is not an age recipient")]
    Recipient(String),
    /// Encryption failed.
    #[error("encrypting with age: {0}")]
    Encrypt(String),
    /// A key file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether `bytes` are an age file (armoured or binary).
pub fn is_sealed(bytes: &[u8]) -> bool {
    let text = bytes.trim_ascii_start();
    text.starts_with(ARMOR_BEGIN.as_bytes()) || text.starts_with(BINARY_BEGIN)
}

/// `plain` encrypted to every recipient, ASCII-armoured.
pub fn seal(plain: &[u8], recipients: &[String]) -> Result<String, SealError> {
    use std::io::Write;
    let parsed = recipients
        .iter()
        .map(|r| r.parse::<age::x25519::Recipient>().map_err(|_| SealError::Recipient(r.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient)).map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let encrypt = |out: &mut Vec<u8>| -> std::io::Result<()> {
        let armor = age::armor::ArmoredWriter::wrap_output(out, age::armor::Format::AsciiArmor)?;
        let mut writer = encryptor.wrap_output(armor)?;
        writer.write_all(plain)?;
        writer.finish()?.finish()?;
        Ok(())
    };
    encrypt(&mut out).map_err(|e| SealError::Encrypt(e.to_string()))?;
    String::from_utf8(out).map_err(|_| SealError::Encrypt("the armour is not text".into()))
}

/// `key_pem` sealed to the recipients of `sealing`, and checked to open again with its identities
/// before anything is stored: a CA key that nobody running cairn here could decrypt would be a
/// lost CA. So creating a sealed CA needs the identity too, like every signing. `path` is where
/// the sealed key will be (for messages).
pub fn seal_checked(key_pem: &str, sealing: &Sealing, path: &Path) -> Result<String, SealError> {
    let armored = seal(key_pem.as_bytes(), &sealing.recipients)?;
    if unseal(path, armored.as_bytes(), &sealing.identity)? != key_pem {
        return Err(SealError::Encrypt("the sealed key does not decrypt to itself".into()));
    }
    Ok(armored)
}

/// Identities and a phrase naming where they came from.
struct Identities {
    list: Vec<Box<dyn age::Identity + Send + Sync>>,
    from: String,
}

/// Parses identity text (`age-keygen` format: `#` comments, one `AGE-SECRET-KEY-1…` per line).
fn parse_identities(text: &str, from: &str, into: &mut Identities) -> Result<(), SealError> {
    let bad = |why: String| SealError::BadIdentity { from: from.to_string(), why };
    let file =
        age::IdentityFile::from_buffer(text.as_bytes()).map_err(|e| bad(e.to_string().replace("identity file contains", "contains")))?;
    let list = file.into_identities().map_err(|e| bad(e.to_string()))?;
    if list.is_empty() {
        return Err(bad("contains no age identity (expected a line AGE-SECRET-KEY-1…)".into()));
    }
    into.list.extend(list);
    Ok(())
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix('~'), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => PathBuf::from(home).join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// The identities of `source`; `Ok(None)` when none is configured.
fn identities(source: &IdentitySource) -> Result<Option<Identities>, SealError> {
    let mut ids = Identities { list: Vec::new(), from: String::new() };
    match source {
        IdentitySource::Text(text) => {
            ids.from = "the given identity".into();
            parse_identities(text, &ids.from.clone(), &mut ids)?;
        }
        IdentitySource::Environment => {
            let mut from = Vec::new();
            if let Some(file) = std::env::var_os(IDENTITY_FILE_ENV).filter(|v| !v.is_empty()) {
                let path = expand_home(&file.to_string_lossy());
                let what = format!("${IDENTITY_FILE_ENV} ({})", path.display());
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| SealError::BadIdentity { from: what.clone(), why: format!("cannot read it: {e}") })?;
                parse_identities(&text, &what, &mut ids)?;
                from.push(what);
            }
            if let Some(text) = std::env::var_os(IDENTITY_ENV).filter(|v| !v.is_empty()) {
                let what = format!("${IDENTITY_ENV}");
                parse_identities(&text.to_string_lossy(), &what, &mut ids)?;
                from.push(what);
            }
            if from.is_empty() {
                return Ok(None);
            }
            ids.from = from.join(" and ");
        }
    }
    Ok(Some(ids))
}

/// A key file given by the user (an imported CA's `key_file`): PEM as it is, or an age file
/// (armoured or binary), decrypted with the environment's identities.
pub fn read_key_file(path: &Path) -> Result<String, SealError> {
    let bytes = std::fs::read(path).map_err(|source| SealError::Read { path: path.to_path_buf(), source })?;
    if is_sealed(&bytes) {
        return unseal(path, &bytes, &IdentitySource::Environment);
    }
    String::from_utf8(bytes).map_err(|_| SealError::Damaged { path: path.to_path_buf(), why: "neither PEM text nor an age file".into() })
}

/// The refusal of a plain key in a store whose CA lists `age_recipients` (the spec asked for
/// encryption after the key was written): how to encrypt it by hand.
pub fn plain_key_in_sealed_store(plain: &Path, sealed: &Path) -> String {
    format!(
        "{} is not encrypted, but the CA's spec sets `age_recipients`: encrypt it with `age -a -r RECIPIENT… -o {} {}`, check that `age -d` gives it back, then delete the plain file (or remove `age_recipients` to keep it plain)",
        plain.display(),
        sealed.display(),
        plain.display()
    )
}

/// Decrypts the sealed file at `path` (content `sealed`) with the identities of `source`.
pub fn unseal(path: &Path, sealed: &[u8], source: &IdentitySource) -> Result<String, SealError> {
    use std::io::Read;
    let Some(ids) = identities(source)? else { return Err(SealError::NoIdentity { path: path.to_path_buf() }) };
    let damaged = |why: String| SealError::Damaged { path: path.to_path_buf(), why };
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(sealed)).map_err(|e| damaged(e.to_string()))?;
    let mut reader = match decryptor.decrypt(ids.list.iter().map(|i| i.as_ref() as &dyn age::Identity)) {
        Ok(reader) => reader,
        Err(age::DecryptError::NoMatchingKeys) => {
            return Err(SealError::NoMatchingIdentity { path: path.to_path_buf(), from: ids.from });
        }
        Err(e) => return Err(damaged(e.to_string())),
    };
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).map_err(|e| damaged(e.to_string()))?;
    String::from_utf8(plain).map_err(|_| damaged("the decrypted key is not text".into()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh identity and its recipient.
    pub(crate) fn keypair() -> (String, String) {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        (id.to_string().expose_secret().to_string(), id.to_public().to_string())
    }

    #[test]
    fn round_trip_to_several_recipients() {
        let (id_a, rec_a) = keypair();
        let (id_b, rec_b) = keypair();
        let sealed = seal(b"-----BEGIN PRIVATE KEY-----\nk\n", &[rec_a, rec_b]).unwrap();
        assert!(sealed.starts_with(ARMOR_BEGIN), "{sealed}");
        assert!(is_sealed(sealed.as_bytes()));
        assert!(!sealed.contains("PRIVATE KEY"));
        for id in [id_a, id_b] {
            let text = format!("# created: today\n# public key: x\n{id}\n");
            let plain = unseal(Path::new("k.age"), sealed.as_bytes(), &IdentitySource::Text(text)).unwrap();
            assert_eq!(plain, "-----BEGIN PRIVATE KEY-----\nk\n");
        }
        assert!(!is_sealed(b"-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn a_wrong_or_bad_identity_is_named_without_its_content() {
        let (_, rec) = keypair();
        let (other, _) = keypair();
        let sealed = seal(b"secret", &[rec]).unwrap();
        let err = unseal(Path::new("/s/ca-key.pem.age"), sealed.as_bytes(), &IdentitySource::Text(other.clone())).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SealError::NoMatchingIdentity { .. }), "{text}");
        assert!(text.starts_with("/s/ca-key.pem.age cannot be decrypted with the identities from the given identity"), "{text}");
        assert!(!text.contains(&other));
        let err = unseal(Path::new("k"), sealed.as_bytes(), &IdentitySource::Text("AGE-SECRET-KEY-1NOPE\n".into())).unwrap_err();
        assert_eq!(err.to_string(), "the given identity: contains non-identity data on line 1");
        let err = unseal(Path::new("k"), sealed.as_bytes(), &IdentitySource::Text("# only a comment\n".into())).unwrap_err();
        assert!(err.to_string().contains("contains no age identity"), "{err}");
        let err = unseal(Path::new("k"), b"garbage", &IdentitySource::Text(other)).unwrap_err();
        assert!(matches!(err, SealError::Damaged { .. }), "{err}");
    }

    #[test]
    fn debug_redacts_identities() {
        let (id, _) = keypair();
        assert!(!format!("{:?}", IdentitySource::Text(id.clone())).contains(&id));
    }

    mod store {
        use std::os::unix::fs::PermissionsExt;

        use super::*;
        use crate::resource::ca::tests::{ca_spec, leaf};
        use crate::resource::ca::{LoadedCa, SecretPem, generate_ca, inspect, issue, issued_by};
        use crate::spec::{KeyType, Usage};
        use crate::state::pki::{CaFiles, CaStore, StoreError};

        fn generate() -> Result<CaFiles, Box<dyn std::error::Error + Send + Sync>> {
            let made = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), time::OffsetDateTime::now_utc())?;
            Ok(CaFiles { cert_pem: made.cert_pem, key_pem: made.key_pem.expose_str().to_string() })
        }

        fn env_has_identity() -> bool {
            std::env::var_os(IDENTITY_ENV).is_some() || std::env::var_os(IDENTITY_FILE_ENV).is_some()
        }

        #[test]
        fn encrypt_store_load_sign() {
            let (id, rec) = keypair();
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join(".cairn/pki/etcd");
            let store = CaStore::new(&dir).sealed_to(std::slice::from_ref(&rec)).with_identity(IdentitySource::Text(id.clone()));
            let (made, created) = store.ensure(generate).unwrap();
            assert!(created);
            // Only the sealed key is on disk, private, and it holds no key in the clear.
            assert!(!store.key_path().exists());
            let on_disk = std::fs::read_to_string(store.sealed_key_path()).unwrap();
            assert!(on_disk.starts_with(ARMOR_BEGIN) && !on_disk.contains("PRIVATE KEY"), "{on_disk}");
            assert_eq!(std::fs::metadata(store.sealed_key_path()).unwrap().permissions().mode() & 0o777, 0o600);
            assert!(!format!("{store:?}").contains(&id));
            // The certificate is read without any identity (what `plan` does).
            assert_eq!(CaStore::new(&dir).read_cert().unwrap().as_deref(), Some(made.cert_pem.as_str()));
            // Loaded again from disk (not regenerated), it signs, and what it signs verifies.
            let reopened = CaStore::new(&dir).sealed_to(&[rec]).with_identity(IdentitySource::Text(id));
            let (again, created) = reopened.ensure(|| Err("must not generate".into())).unwrap();
            assert!(!created);
            assert_eq!(again, made);
            let ca = LoadedCa::new(again.cert_pem.clone(), &SecretPem::new(again.key_pem)).unwrap();
            let issued = issue(&ca, &leaf(&["127.0.0.1"], &[Usage::Server]), time::OffsetDateTime::now_utc()).unwrap();
            assert!(issued_by(&inspect(&issued.cert_pem).unwrap().der, &inspect(&again.cert_pem).unwrap().der));
        }

        #[test]
        fn a_sealed_key_needs_the_right_identity() {
            let (id, rec) = keypair();
            let (other, _) = keypair();
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("etcd");
            CaStore::new(&dir).sealed_to(&[rec]).with_identity(IdentitySource::Text(id)).ensure(generate).unwrap();
            let err = CaStore::new(&dir).with_identity(IdentitySource::Text(other.clone())).read().unwrap_err();
            assert!(matches!(err, StoreError::Sealed(SealError::NoMatchingIdentity { .. })), "{err}");
            let text = err.to_string();
            assert!(text.contains("ca-key.pem.age cannot be decrypted") && !text.contains(&other), "{text}");
            if !env_has_identity() {
                let err = CaStore::new(&dir).read().unwrap_err().to_string();
                assert!(err.contains("ca-key.pem.age is encrypted with age and no identity is given"), "{err}");
                assert!(err.contains("CAIRN_AGE_IDENTITY_FILE") && err.contains("CAIRN_AGE_IDENTITY "), "{err}");
            }
        }

        #[test]
        fn a_plain_store_keeps_working_and_is_not_sealed_behind_ones_back() {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("etcd");
            let (made, _) = CaStore::new(&dir).ensure(generate).unwrap();
            assert!(CaStore::new(&dir).key_path().exists());
            // No recipients: read as before, no identity asked for.
            assert_eq!(CaStore::new(&dir).with_identity(IdentitySource::Text(String::new())).read().unwrap(), Some(made));
            // Recipients added to the spec later: the plain key is refused, with what to do.
            let (_, rec) = keypair();
            let err = CaStore::new(&dir).sealed_to(&[rec]).read().unwrap_err().to_string();
            assert!(err.contains("ca-key.pem is not encrypted, but the CA's spec sets `age_recipients`: encrypt it with `age -a"), "{err}");
            assert!(!err.contains("PRIVATE KEY"));
        }

        #[test]
        fn an_imported_key_may_be_sealed() {
            let (_, rec) = keypair();
            let tmp = tempfile::tempdir().unwrap();
            let plain = tmp.path().join("ca-key.pem");
            std::fs::write(&plain, "-----BEGIN PRIVATE KEY-----\nk\n").unwrap();
            assert_eq!(read_key_file(&plain).unwrap(), "-----BEGIN PRIVATE KEY-----\nk\n");
            let sealed = tmp.path().join("ca-key.pem.age");
            std::fs::write(&sealed, seal(b"k", &[rec]).unwrap()).unwrap();
            if !env_has_identity() {
                assert!(matches!(read_key_file(&sealed), Err(SealError::NoIdentity { .. })));
            }
        }
    }
}
