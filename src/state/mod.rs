//! State cairn keeps. Locally, beside the spec (`state_dir`, default `.cairn/`): the PKI store of
//! generated certificate authorities ([`pki`]), and saved plans wherever `-o` puts them. On each
//! host, under `/var/lib/cairn/`: the manifest of what a spec manages there and the apply lock
//! ([`host`]).

pub mod host;
pub mod manifest;
pub mod pki;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

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
