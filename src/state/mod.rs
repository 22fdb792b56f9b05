//! State cairn keeps. Locally, beside the spec (`state_dir`, default `.cairn/`): the PKI store of
//! generated certificate authorities ([`pki`]; their keys optionally age-encrypted, [`sealed`]), and saved plans wherever `-o` puts them. On each
//! host, under `/var/lib/cairn/`: the manifest of what a spec manages there and the apply lock
//! ([`host`]).

pub mod host;
pub mod manifest;
pub mod pki;
pub mod sealed;
pub mod snapshot;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// What cairn writes into a state dir it creates: nothing in it belongs in version control (it
/// holds CA private keys).
const STATE_GITIGNORE: &str = "# cairn's local state (CA private keys, download cache): never commit it.\n*\n";

/// Makes sure the local state dir exists; when cairn creates it, it is 0700 and gets a
/// `.gitignore` that ignores everything in it, so `git add .` beside the spec cannot publish a CA
/// key. An existing directory is left as it is.
pub fn ensure_state_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => write_atomic(&dir.join(".gitignore"), STATE_GITIGNORE.as_bytes(), 0o644),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Its parent is missing too (a nested state_dir): create the parents, then it.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            ensure_state_dir(dir)
        }
        Err(e) => Err(e),
    }
}

/// The file in the state dir holding the key of saved plans' keyed digests.
pub const DIGEST_KEY_FILE: &str = "digest.key";

/// The key a saved plan's digests of secrets are made with (`<state_dir>/digest.key`, 32 random
/// bytes, 0600), made on first use. A plan file alone then confirms no guess of a secret; applying
/// it needs the same state dir.
pub fn digest_key(dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dir.join(DIGEST_KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if !key.is_empty() => return Ok(key),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    ensure_state_dir(dir)?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(format!("no randomness for the digest key: {e}")))?;
    // Two runs making the key at once: the first one's key stays.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path),
        Err(e) => Err(e),
    }
}

/// Writes a local file atomically: a temporary file in the same directory, created with `mode`
/// (so a private file is never readable by others, not even for a moment), synced, renamed.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_digest_key_is_made_once_private_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".cairn");
        let key = digest_key(&dir).unwrap();
        assert_eq!(key.len(), 32);
        let mode = std::fs::metadata(dir.join(DIGEST_KEY_FILE)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert!(dir.join(".gitignore").exists(), "a state dir made for the key is ignored by git");
        assert_eq!(digest_key(&dir).unwrap(), key, "the same key on the next run");
    }
}
