//! The local CA store: `<state_dir>/pki/<ca>/ca.pem` and `ca-key.pem` on the machine running
//! cairn (directory 0700, key 0600). Reading the certificate never touches the key. A missing CA
//! is created at most once, even by concurrent appliers: it is written into a private temporary
//! directory beside the store and renamed into place, and a loser of that race uses the winner's.
//! Knows nothing of cryptography: the caller supplies the generator. A store sealed to age
//! recipients keeps the key as `ca-key.pem.age` instead ([`super::sealed`]).
//!
//! A CA rotation keeps the CA that replaces the current one in `<ca>.next/` beside it, with the
//! phase the rotation reached in its `rotation-phase` file. When the last phase is done the current
//! CA is archived (`.<ca>.retired-<unix time>/`, kept, not deleted) and the next one takes its
//! place; a crash in the middle of that is finished by the next read.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::sealed::{self, IdentitySource, Sealing};

/// The CA certificate's file name in a store.
pub const CERT_FILE: &str = "ca.pem";
/// The CA key's file name in a store.
pub const KEY_FILE: &str = "ca-key.pem";
/// The CA key's file name in a store sealed with age.
pub const SEALED_KEY_FILE: &str = "ca-key.pem.age";

/// The file in a next CA's store that records the phase a rotation reached.
pub const PHASE_FILE: &str = "rotation-phase";

/// Where a CA rotation stands: what every certificate of the CA must look like until the phase
/// is done everywhere. The phases run in this order, each on every host before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationPhase {
    /// 1: the CA files trust both the current CA and the new one; certificates stay as they are.
    Trust,
    /// 2: every certificate is issued again by the new CA; the CA files still trust both.
    Reissue,
    /// 3: the CA files trust the new CA alone; then the old CA is archived.
    Retire,
}

impl RotationPhase {
    /// Its number, 1 to 3.
    pub fn number(self) -> u8 {
        match self {
            RotationPhase::Trust => 1,
            RotationPhase::Reissue => 2,
            RotationPhase::Retire => 3,
        }
    }

    /// The phase after this one (`None` after the last).
    pub fn next(self) -> Option<RotationPhase> {
        match self {
            RotationPhase::Trust => Some(RotationPhase::Reissue),
            RotationPhase::Reissue => Some(RotationPhase::Retire),
            RotationPhase::Retire => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RotationPhase::Trust => "trust",
            RotationPhase::Reissue => "reissue",
            RotationPhase::Retire => "retire",
        }
    }
}

/// What the phase file says: a phase, or that the rotation is complete and only the swap of the
/// two stores is left.
const DONE: &str = "done";

/// A failure of the local store. Messages name paths, never key content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store is there but unusable (half-written, wrong permissions).
    #[error("{0}")]
    Broken(String),
    /// The generator failed (its error, as the caller made it).
    #[error(transparent)]
    Generate(Box<dyn std::error::Error + Send + Sync>),
    /// The key could not be sealed or unsealed with age.
    #[error(transparent)]
    Sealed(#[from] super::sealed::SealError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// One CA's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaStore {
    dir: PathBuf,
    sealing: Sealing,
}

/// A CA's certificate (PEM) and key (PEM) as read from or written to a store. `Debug` redacts
/// the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Key PEM; never print it.
    pub key_pem: String,
}

impl std::fmt::Debug for CaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFiles").field("cert_pem", &self.cert_pem).field("key_pem", &"[redacted]").finish()
    }
}

/// Serialises CA creation inside this process (the rename makes it safe across processes; the
/// lock only avoids generating keys that would be thrown away).
static CREATE: Mutex<()> = Mutex::new(());

impl CaStore {
    /// The store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), sealing: Sealing::default() }
    }

    /// A new key is written encrypted to these age recipients (none: in plain text).
    pub fn sealed_to(mut self, recipients: &[String]) -> Self {
        self.sealing.recipients = recipients.to_vec();
        self
    }

    /// Where the identities to read a sealed key come from (default: the environment).
    pub fn with_identity(mut self, identity: IdentitySource) -> Self {
        self.sealing.identity = identity;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// Path of the key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Path of the key when it is sealed with age.
    pub fn sealed_key_path(&self) -> PathBuf {
        self.dir.join(SEALED_KEY_FILE)
    }

    /// The CA certificate, or `None` when the CA does not exist yet. Never reads the key.
    pub fn read_cert(&self) -> Result<Option<String>, StoreError> {
        let path = self.cert_path();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(key) = [self.key_path(), self.sealed_key_path()].into_iter().find(|k| k.exists()) {
                    return Err(StoreError::Broken(format!(
                        "{} exists without {}: move the directory away to start a new CA",
                        key.display(),
                        path.display()
                    )));
                }
                Ok(None)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Certificate and key, or `None` when the CA does not exist. Refuses a key readable by
    /// others than the owner. A sealed key is decrypted (which needs an identity); a plain one
    /// in a store that should be sealed is refused.
    pub fn read(&self) -> Result<Option<CaFiles>, StoreError> {
        let Some(cert_pem) = self.read_cert()? else { return Ok(None) };
        let key_path = self.key_path();
        let sealed_path = self.sealed_key_path();
        if !key_path.exists() && sealed_path.exists() {
            let bytes = fs::read(&sealed_path).map_err(io(&sealed_path))?;
            let key_pem = sealed::unseal(&sealed_path, &bytes, &self.sealing.identity)?;
            return Ok(Some(CaFiles { cert_pem, key_pem }));
        }
        if !self.sealing.recipients.is_empty() && key_path.exists() {
            return Err(StoreError::Broken(sealed::plain_key_in_sealed_store(&key_path, &sealed_path)));
        }
        let meta = fs::metadata(&key_path).map_err(io(&key_path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(StoreError::Broken(format!(
                "{} is readable by others (mode {:04o}); run `chmod 600` on it",
                key_path.display(),
                meta.permissions().mode() & 0o7777
            )));
        }
        let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        Ok(Some(CaFiles { cert_pem, key_pem }))
    }

    /// The CA, created with `generate` first if it does not exist. Returns the CA and whether it
    /// was created by this call.
    pub fn ensure(
        &self,
        generate: impl FnOnce() -> Result<CaFiles, Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<(CaFiles, bool), StoreError> {
        let _guard = CREATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ca) = self.read()? {
            return Ok((ca, false));
        }
        let files = generate().map_err(StoreError::Generate)?;
        match self.install(&files) {
            Ok(()) => Ok((files, true)),
            // Someone else created it meanwhile: theirs wins.
            Err(_) if self.cert_path().exists() => {
                self.read()?.map(|ca| (ca, false)).ok_or_else(|| StoreError::Broken("the CA vanished".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// `--replace ca.NAME`: when the store still holds the CA whose certificate is `old_cert_pem`,
    /// moves it aside to `.<ca>.retired-<unix time>` beside the store (kept, not deleted), so
    /// [`CaStore::ensure`] makes a new one. A store holding another CA (already replaced by this
    /// run) or none is left as it is. Returns whether it moved the CA.
    pub fn retire(&self, old_cert_pem: &str) -> Result<bool, StoreError> {
        let _guard = CREATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.read_cert()?.as_deref() != Some(old_cert_pem) {
            return Ok(false);
        }
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "ca".into());
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let aside = self.dir.with_file_name(format!(".{name}.retired-{secs}"));
        fs::rename(&self.dir, &aside).map_err(io(&aside))?;
        Ok(true)
    }

    /// The store of the CA that replaces this one during a rotation (`<ca>.next` beside it).
    pub fn next(&self) -> CaStore {
        CaStore::new(self.dir.with_file_name(format!("{}.next", self.name())))
    }

    fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "ca".into())
    }

    /// The phase a rotation of this CA reached, `None` when none is in progress. A next CA without
    /// a phase file was made by phase 1 before it recorded anything: phase 1. A rotation whose
    /// last step (the swap) was interrupted is finished here.
    pub fn rotation_phase(&self) -> Result<Option<RotationPhase>, StoreError> {
        let next = self.next();
        let path = next.dir.join(PHASE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(next.read_cert()?.map(|_| RotationPhase::Trust));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        match text.trim() {
            "trust" => Ok(Some(RotationPhase::Trust)),
            "reissue" => Ok(Some(RotationPhase::Reissue)),
            "retire" => Ok(Some(RotationPhase::Retire)),
            DONE => {
                self.swap_in_next()?;
                Ok(None)
            }
            other => Err(StoreError::Broken(format!(
                "{} says `{other}`, not trust, reissue or retire: write the phase the rotation reached",
                path.display()
            ))),
        }
    }

    /// Records that a rotation reached `phase` (the next CA must exist).
    pub fn record_phase(&self, phase: RotationPhase) -> Result<(), StoreError> {
        let path = self.next().dir.join(PHASE_FILE);
        super::write_atomic(&path, format!("{}\n", phase.as_str()).as_bytes(), 0o600).map_err(io(&path))
    }

    /// Ends a rotation whose last phase is done everywhere: the current CA is archived beside the
    /// store (`.<ca>.retired-<unix time>`) and the next one takes its place. Returns the archive.
    pub fn finish_rotation(&self) -> Result<PathBuf, StoreError> {
        let path = self.next().dir.join(PHASE_FILE);
        super::write_atomic(&path, format!("{DONE}\n").as_bytes(), 0o600).map_err(io(&path))?;
        self.swap_in_next()
    }

    /// The swap of a finished rotation, from wherever an interrupted one stopped.
    fn swap_in_next(&self) -> Result<PathBuf, StoreError> {
        let _guard = CREATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = self.next();
        let mut archive = self.dir.with_file_name(format!(".{}.retired", self.name()));
        if self.dir.exists() {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            archive = self.dir.with_file_name(format!(".{}.retired-{secs}", self.name()));
            fs::rename(&self.dir, &archive).map_err(io(&archive))?;
        }
        fs::rename(&next.dir, &self.dir).map_err(io(&self.dir))?;
        let phase = self.dir.join(PHASE_FILE);
        fs::remove_file(&phase).map_err(io(&phase))?;
        Ok(archive)
    }

    /// Writes `files` into a new temporary directory (0700; key 0600, created with that mode)
    /// beside the store, then renames it into place. Fails if the store exists with content.
    fn install(&self, files: &CaFiles) -> Result<(), StoreError> {
        let parent = self.dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // The store is `<state_dir>/pki/<ca>`: the state dir is made first, with its .gitignore.
        if let Some(state_dir) = parent.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            super::ensure_state_dir(state_dir).map_err(io(state_dir))?;
        }
        fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io(parent))?;
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "ca".into());
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).map_err(|e| StoreError::Broken(format!("no randomness: {e}")))?;
        let tmp = parent.join(format!(".{name}.tmp-{}", hex::encode(suffix)));
        fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(io(&tmp))?;
        let result = (|| {
            // mode() only applies under the umask; set the directory's mode exactly.
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).map_err(io(&tmp))?;
            if self.sealing.recipients.is_empty() {
                write_new(&tmp.join(KEY_FILE), files.key_pem.as_bytes(), 0o600)?;
            } else {
                let armored = sealed::seal_checked(&files.key_pem, &self.sealing, &self.sealed_key_path())?;
                write_new(&tmp.join(SEALED_KEY_FILE), armored.as_bytes(), 0o600)?;
            }
            write_new(&tmp.join(CERT_FILE), files.cert_pem.as_bytes(), 0o644)?;
            // An existing empty directory (made by hand) is replaced; one with content is not.
            fs::rename(&tmp, &self.dir).map_err(io(&self.dir))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }
}

/// Creates a new file with `mode` from the start (so a key is never readable by others), writes
/// and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: u8) -> CaFiles {
        CaFiles { cert_pem: format!("cert {n}\n"), key_pem: format!("-----BEGIN PRIVATE KEY-----\nkey {n}\n") }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_once_with_private_modes_then_reloads() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join(".cairn/pki/etcd"));
        assert_eq!(store.read_cert().unwrap(), None);
        let (ca, created) = store.ensure(|| Ok(files(1))).unwrap();
        assert!(created);
        assert_eq!(ca, files(1));
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.key_path()), 0o600);
        assert_eq!(mode(&store.cert_path()), 0o644);
        // Reloaded, not regenerated.
        let (again, created) = store.ensure(|| Err("must not generate".into())).unwrap();
        assert!(!created);
        assert_eq!(again, files(1));
        assert_eq!(store.read_cert().unwrap().as_deref(), Some("cert 1\n"));
        // No temporary directories left behind.
        assert_eq!(fs::read_dir(tmp.path().join(".cairn/pki")).unwrap().count(), 1);
    }

    #[test]
    fn a_new_state_dir_is_private_and_ignored_by_git() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join(".cairn/pki/etcd"));
        store.ensure(|| Ok(files(1))).unwrap();
        let state = tmp.path().join(".cairn");
        assert_eq!(mode(&state), 0o700);
        let ignore = fs::read_to_string(state.join(".gitignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
        // A state dir that exists is left as it is: no .gitignore is added to it.
        let mine = tmp.path().join("mine");
        fs::create_dir_all(&mine).unwrap();
        CaStore::new(mine.join("pki/web")).ensure(|| Ok(files(2))).unwrap();
        assert!(!mine.join(".gitignore").exists());
    }

    #[test]
    fn debug_redacts_the_key() {
        assert!(!format!("{:?}", files(1)).contains("PRIVATE KEY"));
    }

    #[test]
    fn concurrent_creators_agree_on_one_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki/etcd");
        let handles: Vec<_> = (0..4u8)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || CaStore::new(dir).ensure(|| Ok(files(i))).unwrap().0)
            })
            .collect();
        let got: Vec<CaFiles> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(got.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_loose_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join("etcd"));
        store.ensure(|| Ok(files(1))).unwrap();
        fs::set_permissions(store.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.read().unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
        assert!(!err.contains("key 1"));
    }

    #[test]
    fn a_key_without_certificate_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join("etcd"));
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.key_path(), "k").unwrap();
        assert!(matches!(store.read_cert(), Err(StoreError::Broken(_))));
    }

    #[test]
    fn a_rotation_records_its_phases_then_archives_the_old_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join(".cairn/pki/etcd"));
        store.ensure(|| Ok(files(1))).unwrap();
        assert_eq!(store.rotation_phase().unwrap(), None);
        assert_eq!(store.next().dir(), tmp.path().join(".cairn/pki/etcd.next"));
        store.next().ensure(|| Ok(files(2))).unwrap();
        // Made by phase 1, nothing recorded yet: phase 1.
        assert_eq!(store.rotation_phase().unwrap(), Some(RotationPhase::Trust));
        store.record_phase(RotationPhase::Reissue).unwrap();
        assert_eq!(store.rotation_phase().unwrap(), Some(RotationPhase::Reissue));
        store.record_phase(RotationPhase::Retire).unwrap();
        assert_eq!(mode(&store.next().dir().join(PHASE_FILE)), 0o600);
        let archive = store.finish_rotation().unwrap();
        assert_eq!(store.read().unwrap().unwrap(), files(2));
        assert_eq!(CaStore::new(&archive).read().unwrap().unwrap(), files(1));
        assert!(archive.file_name().unwrap().to_string_lossy().starts_with(".etcd.retired-"));
        assert_eq!(store.rotation_phase().unwrap(), None);
        assert!(!store.dir().join(PHASE_FILE).exists() && !store.next().dir().exists());
    }

    #[test]
    fn an_interrupted_swap_is_finished_by_the_next_read() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join("pki/etcd"));
        store.ensure(|| Ok(files(1))).unwrap();
        store.next().ensure(|| Ok(files(2))).unwrap();
        // The rotation was marked done, then the process died before the swap.
        fs::write(store.next().dir().join(PHASE_FILE), "done\n").unwrap();
        assert_eq!(store.rotation_phase().unwrap(), None);
        assert_eq!(store.read().unwrap().unwrap(), files(2));
        // A phase file that makes no sense is reported, naming the file.
        store.next().ensure(|| Ok(files(3))).unwrap();
        fs::write(store.next().dir().join(PHASE_FILE), "halfway\n").unwrap();
        let err = store.rotation_phase().unwrap_err().to_string();
        assert!(err.contains("rotation-phase says `halfway`"), "{err}");
    }

    #[test]
    fn generator_failure_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join("etcd"));
        assert_eq!(store.ensure(|| Err("no".into())).unwrap_err().to_string(), "no");
        assert!(!store.dir().exists());
    }
}
