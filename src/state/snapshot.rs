//! Local copies of cluster snapshots (`<state_dir>/snapshots/<cluster>/`): written only once
//! their sha256 matches the one the member's host computed, privately (0600 in a 0700 folder)
//! and atomically, so the folder never holds a partial or corrupt copy.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Stores `bytes` as `dir/name` if their sha256 is `sha256`; returns the path.
pub fn store(dir: &Path, name: &str, bytes: &[u8], sha256: &str) -> Result<PathBuf, String> {
    let got = hex::encode(Sha256::digest(bytes));
    if !got.eq_ignore_ascii_case(sha256) {
        return Err(format!("the copy of {name} has sha256 {got}, the host computed {sha256}: not kept"));
    }
    // The state dir first (its .gitignore), then the snapshots folder inside it.
    if let Some(state_dir) = dir.parent().and_then(Path::parent) {
        super::ensure_state_dir(state_dir).map_err(|e| format!("creating {}: {e}", state_dir.display()))?;
    }
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let path = dir.join(name);
    super::write_atomic(&path, bytes, 0o600).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_copy_only_when_its_digest_matches() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".cairn/snapshots/etcd.cluster.members");
        let sum = hex::encode(Sha256::digest(b"db"));
        let path = store(&dir, "a.db", b"db", &sum).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"db");
        assert!(tmp.path().join(".cairn/.gitignore").exists(), "the state dir made with its .gitignore");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = store(&dir, "b.db", b"other", &sum).unwrap_err();
        assert!(err.contains("not kept"), "{err}");
        assert!(!dir.join("b.db").exists());
    }
}
