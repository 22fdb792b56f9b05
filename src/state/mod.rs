//! State cairn keeps. Locally, beside the spec (`state_dir`, default `.cairn/`): the PKI store of
//! generated certificate authorities ([`pki`]), and saved plans wherever `-o` puts them. On each
//! host, under `/var/lib/cairn/`: the manifest of what a spec manages there and the apply lock
//! ([`host`]).

pub mod host;
pub mod manifest;
pub mod pki;
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
