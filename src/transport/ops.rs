//! Host-side operations every transport gets for free, built only on [`Transport::run`]: atomic
//! file writes (temp file in the same directory, owner and mode set, fsync, rename) and reading
//! many files in one command. The scripts are fixed (`write.sh` and `read.sh` beside this file,
//! compiled in with `include_str!`); paths and values travel as arguments.

use std::path::Path;

use super::{Stdin, Transport, TransportError, argv};

/// Owner, group and mode for a file written on a host. `None` keeps the default (root, 0600 from
/// `mktemp`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAttrs {
    /// Octal mode, e.g. `0644`.
    pub mode: Option<u32>,
    /// Owner user name.
    pub owner: Option<String>,
    /// Group name.
    pub group: Option<String>,
}

/// Writes stdin atomically to `$1` with mode `$2` and owner `$3:$4` once exactly `$5` bytes
/// arrived (temp file beside it, fsync, rename; a failure or a short input leaves the
/// destination as it was). See `write.sh`.
const WRITE_SCRIPT: &str = include_str!("write.sh");

/// Prints, for each argument, `-` if it is not a readable regular file, else its size on a line
/// followed by exactly that many bytes (`read.sh`).
const READ_SCRIPT: &str = include_str!("read.sh");

/// Where the bytes of an atomic write come from.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// In memory.
    Bytes(&'a [u8]),
    /// A local file, streamed.
    File(&'a Path),
}

/// Writes `content` to `path` on the host atomically with `attrs` applied before the rename.
pub async fn write_file_atomic(
    transport: &dyn Transport,
    path: &str,
    content: Content<'_>,
    attrs: &FileAttrs,
) -> Result<(), TransportError> {
    let mode = attrs.mode.map(|m| format!("{m:04o}")).unwrap_or_default();
    let owner = attrs.owner.clone().unwrap_or_default();
    let group = attrs.group.clone().unwrap_or_default();
    let (owner, group) = match (owner.is_empty(), group.is_empty()) {
        (false, true) => (owner, "root".to_string()),
        (true, false) => ("root".to_string(), group),
        _ => (owner, group),
    };
    let (stdin, size) = match content {
        Content::Bytes(b) => (Stdin::Bytes(b), b.len() as u64),
        Content::File(p) => {
            let size = tokio::fs::metadata(p).await.map_err(|e| TransportError::Remote {
                host: transport.host().to_string(),
                operation: format!("write {path}"),
                detail: format!("reading {}: {e}", p.display()),
            })?;
            (Stdin::File(p), size.len())
        }
    };
    let args = argv(&["sh", "-c", WRITE_SCRIPT, "cairn-write", path, &mode, &owner, &group, &size.to_string()]);
    super::run_ok(transport, &args, stdin, &format!("write {path}")).await.map(|_| ())
}

/// Reads many files with one command. `None` for a path that is missing or not a regular file.
pub async fn read_files(transport: &dyn Transport, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, TransportError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = argv(&["sh", "-c", READ_SCRIPT, "cairn-read"]);
    args.extend(paths.iter().cloned());
    let out = transport.run(&args, Stdin::Null).await?;
    let bad = |detail: String| TransportError::Remote {
        host: transport.host().to_string(),
        operation: format!("read {} file(s)", paths.len()),
        detail,
    };
    if !out.success() {
        return Err(bad(out.error_text()));
    }
    parse_read_output(&out.stdout, paths.len()).map_err(bad)
}

/// Parses [`READ_SCRIPT`]'s output: `count` records of `-\n` or `SIZE\n<bytes>`.
fn parse_read_output(mut data: &[u8], count: usize) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        let nl = data.iter().position(|b| *b == b'\n').ok_or("output ended early (a file changed while read?)")?;
        let header = std::str::from_utf8(&data[..nl]).map_err(|_| "unreadable size header")?;
        data = &data[nl + 1..];
        if header == "-" {
            files.push(None);
            continue;
        }
        let size: usize = header.trim().parse().map_err(|_| format!("bad size header {header:?}"))?;
        if data.len() < size {
            return Err("output ended early (a file shrank while read?)".to_string());
        }
        files.push(Some(data[..size].to_vec()));
        data = &data[size..];
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mixed_records() {
        let out = b"3\nabc-\n0\n2\n\n\xff";
        let files = parse_read_output(out, 4).unwrap();
        assert_eq!(files, vec![Some(b"abc".to_vec()), None, Some(Vec::new()), Some(b"\n\xff".to_vec())]);
    }

    /// Runs `write.sh` here with `input` on stdin, announcing `size` bytes; with `hung_up` its
    /// stdout and stderr are closed first, as when the connection died.
    fn write_here(dest: &Path, input: &[u8], size: usize, hung_up: bool) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", WRITE_SCRIPT, "cairn-write"])
            .arg(dest)
            .args(["", "", "", &size.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if hung_up {
            drop(child.stdout.take());
            drop(child.stderr.take());
        }
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn a_write_whose_input_ends_early_leaves_the_destination_whole() {
        // What a killed cairn or a dropped connection looks like on the host: stdin just ends.
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        std::fs::write(&dest, "old\n").unwrap();
        for (cut, hung_up) in [(0, false), (3, false), (3, true)] {
            let out = write_here(&dest, &b"new content\n"[..cut], 12, hung_up);
            assert!(!out.status.success());
            if !hung_up {
                let said = String::from_utf8_lossy(&out.stderr);
                assert_eq!(said.trim(), format!("input ended after {cut} of 12 bytes; {} left as it was", dest.display()));
            }
            assert_eq!(std::fs::read(&dest).unwrap(), b"old\n");
            // Also when saying why fails (SIGPIPE): the temp file is removed.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left (hung up: {hung_up})");
        }
        assert!(write_here(&dest, b"new content\n", 12, false).status.success());
        assert_eq!(std::fs::read(&dest).unwrap(), b"new content\n");
    }

    #[test]
    fn short_output_is_an_error() {
        assert!(parse_read_output(b"10\nabc", 1).is_err());
        assert!(parse_read_output(b"", 1).is_err());
    }
}
