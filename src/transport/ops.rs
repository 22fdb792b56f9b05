//! Host-side operations every transport gets for free, built only on [`Transport::run`]: atomic
//! file writes (temp file in the same directory, owner and mode set, fsync, rename), one at a
//! time or many in one command (one tar archive, staged in new directories beside the
//! destinations), and reading many files in one command. The scripts are fixed
//! (`write.sh`, `write-batch.sh` and `read.sh` beside this file, compiled in with
//! `include_str!`); paths and values travel as arguments, contents on stdin.

use std::path::{Path, PathBuf};

use super::{Stdin, StdinPart, Transport, TransportError, argv};

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

/// Writes many files atomically in one command, forking no process per file: arguments are a
/// random token, then `DEST MODE OWNER GROUP` per file; stdin the size of a tar archive of the
/// files at their staged names, the archive, and a line `end`; one fsync pass for the staged
/// files and one for the directories; prints `ok` or `fail REASON` per file. See
/// `write-batch.sh`.
const WRITE_BATCH_SCRIPT: &str = include_str!("write-batch.sh");

/// Runs groups of already-quoted command lines, each group until one fails; prints `ok` or
/// `fail REASON` per group. See `run-batch.sh`.
const RUN_BATCH_SCRIPT: &str = include_str!("run-batch.sh");

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
    let mut args = argv(&["sh", "-c", WRITE_SCRIPT, "cairn-write"]);
    args.extend(write_args(path, attrs));
    args.push(size.to_string());
    super::run_ok(transport, &args, stdin, &format!("write {path}")).await.map(|_| ())
}

/// The `DEST MODE OWNER GROUP` arguments of a write: an owner without a group (or the reverse)
/// gets root for the other, as `chown` needs both.
fn write_args(path: &str, attrs: &FileAttrs) -> [String; 4] {
    let mode = attrs.mode.map(|m| format!("{m:04o}")).unwrap_or_default();
    let owner = attrs.owner.clone().unwrap_or_default();
    let group = attrs.group.clone().unwrap_or_default();
    let (owner, group) = match (owner.is_empty(), group.is_empty()) {
        (false, true) => (owner, "root".to_string()),
        (true, false) => ("root".to_string(), group),
        _ => (owner, group),
    };
    [path.to_string(), mode, owner, group]
}

/// One file of a batched write ([`write_files_atomic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    /// Absolute destination path.
    pub path: String,
    /// The exact bytes.
    pub content: FileContent,
    /// Owner, group and mode set before the file becomes visible.
    pub attrs: FileAttrs,
}

/// What a batched write's file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// These bytes (a rendered file, a certificate, a unit).
    Bytes(Vec<u8>),
    /// This local file, streamed into the archive as it goes out, never held in memory (a
    /// binary from cairn's download cache).
    Local(PathBuf),
}

impl From<Vec<u8>> for FileContent {
    fn from(bytes: Vec<u8>) -> Self {
        FileContent::Bytes(bytes)
    }
}

/// Writes every file of `files` atomically with one command (see [`write_file_atomic`] for one),
/// each staged in a new 0700 directory beside its destination and renamed over it, with one
/// fsync pass for all the files and one for their directories. A file that cannot be written
/// leaves its destination as it was and does not stop the others: the result has one entry per
/// file, in order, `Err` with what the host said. The outer `Err` is for a batch that did not
/// run (or ended half-way).
pub async fn write_files_atomic(transport: &dyn Transport, files: &[FileWrite]) -> Result<Vec<Result<(), String>>, TransportError> {
    // What cannot go into the archive fails here, alone; the rest goes in batches in which no
    // destination appears twice (each has one staged name), in order, so the last write wins.
    let mut results: Vec<Option<Result<(), String>>> = files.iter().map(|f| unsendable(f).map(Err)).collect();
    let mut batch: Vec<usize> = Vec::new();
    let sendable: Vec<usize> = (0..files.len()).filter(|&i| results[i].is_none()).collect();
    for (n, &i) in sendable.iter().enumerate() {
        batch.push(i);
        let next = sendable.get(n + 1).map(|&j| files[j].path.as_str());
        if next.is_none_or(|p| batch.iter().any(|&k| files[k].path == p)) {
            let written = write_batch(transport, &batch.iter().map(|&k| &files[k]).collect::<Vec<_>>()).await?;
            for (&k, r) in batch.iter().zip(written) {
                results[k] = Some(r);
            }
            batch.clear();
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err("not written".to_string()))).collect())
}

/// The first `.`, `..` or empty component of absolute `path` (`//`, a `/` at the end), if any:
/// a path without one is the one name of its file, which the probe, the manifest and the
/// batched write compare (and tar names the same). `/` itself has none.
pub fn odd_component(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return None;
    }
    rest.split('/').find(|c| c.is_empty() || *c == "." || *c == "..")
}

/// Why `file` cannot be one of a batch, if it cannot: its path must be plain (absolute, no `.`,
/// `..` or empty component: tar refuses `..` and names the others differently) and its mode a
/// permission mode.
fn unsendable(file: &FileWrite) -> Option<String> {
    let path = &file.path;
    if !path.starts_with('/') || odd_component(path).is_some() || path.contains(['\n', '\t', '\0']) {
        return Some(format!("cannot write {path:?}: only a plain absolute path (no `.`, `..` or `//`) can be written"));
    }
    if let FileContent::Local(local) = &file.content {
        match std::fs::metadata(local) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Some(format!("cannot send {}: not a regular file", local.display())),
            Err(e) => return Some(format!("cannot send {}: {e}", local.display())),
        }
    }
    match file.attrs.mode {
        Some(mode) if mode > 0o7777 => Some(format!("mode {mode:04o} is not a permission mode")),
        _ => None,
    }
}

/// Runs `write-batch.sh` once for `files` (non-empty, plain paths, each destination once): its
/// stdin is the size of a tar archive of the files at their staged names, the archive, then
/// `end`.
async fn write_batch(transport: &dyn Transport, files: &[&FileWrite]) -> Result<Vec<Result<(), String>>, TransportError> {
    // A batch that stops half-way (a full disk) names its file when it has one.
    let operation = match files {
        [one] => format!("write {}", one.path),
        _ => format!("write {} file(s)", files.len()),
    };
    let fail = |detail: String| TransportError::Remote { host: transport.host().to_string(), operation: operation.clone(), detail };
    // Random per call: the staging directories are new (the script refuses one that exists),
    // and the archive names them before the script runs.
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).map_err(|e| fail(format!("no random token for the staging directories: {e}")))?;
    let token = hex::encode(random);
    let archive = stage_archive(files, &token).map_err(|e| fail(format!("building the archive: {e}")))?;
    let mut args = argv(&["sh", "-c", WRITE_BATCH_SCRIPT, "cairn-write-batch", &token]);
    for f in files {
        args.extend(write_args(&f.path, &f.attrs));
    }
    let size = format!("{}\n", archive.len());
    let mut stdin = vec![StdinPart::Bytes(size.as_bytes())];
    stdin.extend(archive.parts.iter().map(ArchivePart::as_stdin));
    // The script renames nothing unless the input ends with this line.
    stdin.push(StdinPart::Bytes(b"end\n"));
    let out = super::run_ok(transport, &args, Stdin::Parts(&stdin), &operation).await?;
    parse_answers(&out.stdout, files.len()).map_err(fail)
}

/// A tar archive as bytes and local files, in order: the files' contents are streamed when the
/// archive is sent, so a batch carrying binaries costs no memory for them.
#[derive(Debug, Default)]
struct Archive {
    parts: Vec<ArchivePart>,
}

/// One run of an [`Archive`]: headers, padding and in-memory contents, or a local file's bytes.
#[derive(Debug)]
enum ArchivePart {
    Bytes(Vec<u8>),
    File { path: PathBuf, len: u64 },
}

impl ArchivePart {
    fn as_stdin(&self) -> StdinPart<'_> {
        match self {
            ArchivePart::Bytes(b) => StdinPart::Bytes(b),
            ArchivePart::File { path, len } => StdinPart::File { path, len: *len },
        }
    }
}

impl Archive {
    /// Its size in bytes.
    fn len(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| match p {
                ArchivePart::Bytes(b) => b.len() as u64,
                ArchivePart::File { len, .. } => *len,
            })
            .sum()
    }

    /// Appends bytes, to the last part when it is bytes too.
    fn push_bytes(&mut self, bytes: &[u8]) {
        match self.parts.last_mut() {
            Some(ArchivePart::Bytes(last)) => last.extend_from_slice(bytes),
            _ => self.parts.push(ArchivePart::Bytes(bytes.to_vec())),
        }
    }
}

/// The tar archive of `files`, each at `DIR/.cairn-tmp.TOKEN/BASENAME` relative to `/`, a
/// regular file owned by root with its mode (0600 when none is given, as a temp file is made).
/// Long names get GNU long-name entries. A local file's size is taken now; if it is not the
/// same when it is sent, the send fails ([`StdinPart::File`]).
fn stage_archive(files: &[&FileWrite], token: &str) -> std::io::Result<Archive> {
    let mut archive = Archive::default();
    // Each entry's header (and long-name entry) as the builder writes it, taken out before the
    // data: the data goes in as its own part, then the zeros that pad it to 512 bytes.
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        let (dir, base) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
        let name = format!("{}/.cairn-tmp.{token}/{base}", dir.trim_start_matches('/'));
        let len = match &f.content {
            FileContent::Bytes(b) => b.len() as u64,
            FileContent::Local(path) => {
                std::fs::metadata(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?.len()
            }
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(len);
        header.set_mode(f.attrs.mode.unwrap_or(0o600));
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder.append_data(&mut header, name.trim_start_matches('/'), std::io::empty())?;
        archive.push_bytes(&std::mem::take(builder.get_mut()));
        match &f.content {
            FileContent::Bytes(b) => archive.push_bytes(b),
            FileContent::Local(path) => archive.parts.push(ArchivePart::File { path: path.clone(), len }),
        }
        let pad = (512 - len % 512) % 512;
        archive.push_bytes(&vec![0; pad as usize]);
    }
    // The end of the archive: what the builder writes when it finishes.
    archive.push_bytes(&builder.into_inner()?);
    Ok(archive)
}

/// Runs many short commands in one round trip: each group's argvs in order (stdin closed) until
/// one fails, the groups independently of each other. One result per group, in order: `Err`
/// names the command that failed and what it said. The outer `Err` is for a batch that did not
/// run. For commands with no input and little output (mkdir, chmod, useradd), not for streams.
pub async fn run_batched(transport: &dyn Transport, groups: &[Vec<Vec<String>>]) -> Result<Vec<Result<(), String>>, TransportError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = argv(&["sh", "-c", RUN_BATCH_SCRIPT, "cairn-run-batch"]);
    for group in groups {
        args.push(group.len().to_string());
        args.extend(group.iter().map(|cmd| super::quote_argv(cmd)));
    }
    let operation = format!("run {} command group(s)", groups.len());
    let out = super::run_ok(transport, &args, Stdin::Null, &operation).await?;
    parse_answers(&out.stdout, groups.len()).map_err(|detail| TransportError::Remote {
        host: transport.host().to_string(),
        operation,
        detail,
    })
}

/// Parses the answers of `write-batch.sh` and `run-batch.sh`: one `ok` or `fail REASON` line
/// per file or group.
fn parse_answers(data: &[u8], count: usize) -> Result<Vec<Result<(), String>>, String> {
    let text = String::from_utf8_lossy(data);
    let results: Vec<Result<(), String>> = text
        .lines()
        .map(|line| match line.strip_prefix("fail ") {
            Some(reason) => Err(reason.trim().to_string()),
            None if line == "ok" => Ok(()),
            None => Err(format!("unexpected answer {line:?}")),
        })
        .collect();
    if results.len() != count {
        return Err(format!("answered for {} of {count} file(s)", results.len()));
    }
    Ok(results)
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
        let args = [dest.display().to_string(), String::new(), String::new(), String::new(), size.to_string()];
        run_script_here(WRITE_SCRIPT, "cairn-write", &args, input, hung_up)
    }

    /// Runs the shell program `script` here as `$0` `name` with `args`, `input` on stdin; with
    /// `hung_up` its stdout and stderr are closed first, as when the connection died.
    fn run_script_here(script: &str, name: &str, args: &[String], input: &[u8], hung_up: bool) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", script, name])
            .args(args)
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
    fn parses_write_answers_per_file() {
        let got = parse_answers(b"ok\nfail chown: invalid user\nok\n", 3).unwrap();
        assert_eq!(got, vec![Ok(()), Err("chown: invalid user".to_string()), Ok(())]);
        assert!(parse_answers(b"ok\n", 2).is_err(), "a missing answer fails the batch");
    }

    #[tokio::test]
    async fn batched_write_writes_each_file_and_reports_failures_alone() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::transport::LocalTransport::new("local");
        let at = |name: &str| dir.path().join(name).display().to_string();
        let file = |path: String, content: &[u8], mode: u32| FileWrite {
            path,
            content: content.to_vec().into(),
            attrs: FileAttrs { mode: Some(mode), owner: None, group: None },
        };
        let files = vec![file(at("a"), b"it's $(x)\n\xff", 0o600), file(at("missing/b"), b"never", 0o644), file(at("c d"), b"", 0o640)];
        let results = write_files_atomic(&t, &files).await.unwrap();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(results[1].as_ref().is_err_and(|e| e.contains("no directory")), "{results:?}");
        assert_eq!(std::fs::read(at("a")).unwrap(), b"it's $(x)\n\xff");
        assert_eq!(std::fs::read(at("c d")).unwrap(), b"");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(at("a")).unwrap().permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no temp file is left behind: {left:?}");
    }

    /// The names left in `dir` that a write must not leave: its temp files and staging dirs.
    fn leftovers(dir: &Path) -> Vec<String> {
        let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.starts_with(".cairn-tmp.")).collect()
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn batched_write_of_many_files_in_two_dirs_is_one_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("one")).unwrap();
        std::fs::create_dir(dir.path().join("two")).unwrap();
        // Old contents to be replaced, in both dirs.
        std::fs::write(dir.path().join("one/f0"), "old").unwrap();
        std::fs::write(dir.path().join("two/f1"), "old").unwrap();
        let t = crate::transport::LocalTransport::new("local");
        let long = "n".repeat(120);
        let files: Vec<FileWrite> = (0..40)
            .map(|i| FileWrite {
                // A name beyond the 100 bytes of a plain tar header too.
                path: dir
                    .path()
                    .join(if i % 2 == 0 { "one" } else { "two" })
                    .join(format!("f{i}{}", if i == 7 { &long } else { "" }))
                    .display()
                    .to_string(),
                content: format!("content {i}\n").repeat(i * 50).into_bytes().into(),
                attrs: FileAttrs { mode: (i % 3 == 0).then_some(0o644), owner: None, group: None },
            })
            .collect();
        let results = write_files_atomic(&t, &files).await.unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        for (i, f) in files.iter().enumerate() {
            assert_eq!(FileContent::Bytes(std::fs::read(&f.path).unwrap()), f.content, "{}", f.path);
            assert_eq!(mode_of(Path::new(&f.path)), if i % 3 == 0 { 0o644 } else { 0o600 }, "{}", f.path);
        }
        assert_eq!(t.stats().commands(), 1);
        assert_eq!(std::fs::read_dir(dir.path().join("one")).unwrap().count(), 20);
        assert!(leftovers(&dir.path().join("one")).is_empty() && leftovers(&dir.path().join("two")).is_empty());
    }

    #[tokio::test]
    async fn batched_write_sets_owner_and_mode_and_fails_only_the_file_of_an_unknown_owner() {
        use std::os::unix::fs::MetadataExt;
        if !nix_is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let t = crate::transport::LocalTransport::new("local");
        let file = |path: String, mode: Option<u32>, owner: Option<&str>, group: Option<&str>| FileWrite {
            path,
            content: b"x".to_vec().into(),
            attrs: FileAttrs { mode, owner: owner.map(str::to_string), group: group.map(str::to_string) },
        };
        let files = vec![
            file(at("owned"), Some(0o640), Some("nobody"), Some("nogroup")),
            file(at("setuid"), Some(0o4755), Some("nobody"), None),
            file(at("group-only"), None, None, Some("nogroup")),
            file(at("nobody-knows"), Some(0o644), Some("no-such-user-here"), None),
            file(at("plain"), None, None, None),
        ];
        std::fs::write(at("nobody-knows"), "old").unwrap();
        let results = write_files_atomic(&t, &files).await.unwrap();
        assert!(results.iter().enumerate().all(|(i, r)| r.is_ok() == (i != 3)), "{results:?}");
        assert!(results[3].as_ref().is_err_and(|e| e.contains("no-such-user-here")), "{results:?}");
        assert_eq!(std::fs::read(at("nobody-knows")).unwrap(), b"old");
        let nobody = std::fs::metadata(at("owned")).unwrap();
        assert_eq!((mode_of(Path::new(&at("owned"))), nobody.uid() != 0, nobody.gid() != 0), (0o640, true, true));
        // chown clears setuid: the mode is set again after it, as before.
        let setuid = std::fs::metadata(at("setuid")).unwrap();
        assert_eq!((mode_of(Path::new(&at("setuid"))), setuid.uid() == nobody.uid(), setuid.gid()), (0o4755, true, 0));
        let group_only = std::fs::metadata(at("group-only")).unwrap();
        assert_eq!((mode_of(Path::new(&at("group-only"))), group_only.uid(), group_only.gid()), (0o600, 0, nobody.gid()));
        assert_eq!(mode_of(Path::new(&at("plain"))), 0o600);
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    }

    fn nix_is_root() -> bool {
        std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n")
    }

    #[tokio::test]
    async fn batched_write_fails_alone_a_directory_a_missing_dir_and_an_odd_path() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        std::fs::create_dir(at("a-dir")).unwrap();
        std::fs::write(at("a-dir/inside"), "kept").unwrap();
        let t = crate::transport::LocalTransport::new("local");
        let file = |path: String, content: &[u8]| FileWrite { path, content: content.to_vec().into(), attrs: FileAttrs::default() };
        let files = vec![
            file(at("first"), b"1"),
            file(at("a-dir"), b"never"),
            file(at("no/such/dir/x"), b"never"),
            file(format!("{}/../escape", at("a-dir")), b"never"),
            file(at("last"), b"2"),
            // The same destination twice: written in order, the last wins.
            file(at("first"), b"3"),
        ];
        let results = write_files_atomic(&t, &files).await.unwrap();
        assert!(results[0].is_ok() && results[4].is_ok() && results[5].is_ok(), "{results:?}");
        assert!(results[1].as_ref().is_err_and(|e| e == &format!("{} is a directory", at("a-dir"))), "{results:?}");
        assert!(results[2].as_ref().is_err_and(|e| e == &format!("no directory {}", at("no/such/dir"))), "{results:?}");
        assert!(results[3].as_ref().is_err_and(|e| e.contains("plain absolute path")), "{results:?}");
        assert_eq!(std::fs::read(at("first")).unwrap(), b"3");
        assert_eq!(std::fs::read(at("last")).unwrap(), b"2");
        assert_eq!(std::fs::read(at("a-dir/inside")).unwrap(), b"kept");
        assert!(!Path::new(&at("escape")).exists() && !Path::new(&at("no")).exists(), "tar made no directory");
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
        assert_eq!(t.stats().commands(), 2, "a destination seen again starts a second batch");
    }

    impl Archive {
        /// The whole archive in memory, local files read.
        fn to_bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            for part in &self.parts {
                match part {
                    ArchivePart::Bytes(b) => out.extend_from_slice(b),
                    ArchivePart::File { path, .. } => out.extend(std::fs::read(path).unwrap()),
                }
            }
            out
        }
    }

    #[test]
    fn an_archive_with_local_files_is_the_one_tar_builds_from_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("etcd");
        let big: Vec<u8> = (0..70_001u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&local, &big).unwrap();
        let long = "n".repeat(120);
        let as_local = |path: &str| FileWrite {
            path: path.into(),
            content: FileContent::Local(local.clone()),
            attrs: FileAttrs { mode: Some(0o755), ..Default::default() },
        };
        let as_bytes = |path: &str, b: &[u8]| FileWrite {
            path: path.into(),
            content: b.to_vec().into(),
            attrs: FileAttrs { mode: Some(0o755), ..Default::default() },
        };
        let streamed = [
            as_bytes("/etc/a.conf", b"a\n"),
            as_local("/usr/local/bin/etcd"),
            as_local(&format!("/opt/{long}/etcd")),
            as_bytes("/etc/b", b""),
        ];
        let in_memory = [
            as_bytes("/etc/a.conf", b"a\n"),
            as_bytes("/usr/local/bin/etcd", &big),
            as_bytes(&format!("/opt/{long}/etcd"), &big),
            as_bytes("/etc/b", b""),
        ];
        let build = |files: &[FileWrite]| stage_archive(&files.iter().collect::<Vec<_>>(), "0123456789abcdef").unwrap();
        let (streamed, in_memory) = (build(&streamed), build(&in_memory));
        assert_eq!(
            streamed.parts.iter().filter(|p| matches!(p, ArchivePart::File { .. })).count(),
            2,
            "the binary is never read into memory"
        );
        assert_eq!(streamed.len(), in_memory.len());
        assert_eq!(streamed.to_bytes(), in_memory.to_bytes());
        let bytes = in_memory.to_bytes();
        let mut read = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = read.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names[1], "usr/local/bin/.cairn-tmp.0123456789abcdef/etcd");
        assert_eq!(names[2], format!("opt/{long}/.cairn-tmp.0123456789abcdef/etcd"));
    }

    #[tokio::test]
    async fn a_batch_streams_a_local_file_and_refuses_one_that_changed_size() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("cache-etcd");
        std::fs::write(&local, vec![7u8; 5000]).unwrap();
        let t = crate::transport::LocalTransport::new("local");
        let at = |name: &str| dir.path().join(name).display().to_string();
        let files = vec![
            FileWrite {
                path: at("etcd"),
                content: FileContent::Local(local.clone()),
                attrs: FileAttrs { mode: Some(0o755), ..Default::default() },
            },
            FileWrite { path: at("etcd.conf"), content: b"name: one\n".to_vec().into(), attrs: FileAttrs::default() },
            FileWrite { path: at("gone"), content: FileContent::Local(dir.path().join("no-such-file")), attrs: FileAttrs::default() },
        ];
        let results = write_files_atomic(&t, &files).await.unwrap();
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert!(results[2].as_ref().is_err_and(|e| e.contains("no-such-file")), "{results:?}");
        assert_eq!(std::fs::read(at("etcd")).unwrap(), vec![7u8; 5000]);
        assert_eq!(mode_of(Path::new(&at("etcd"))), 0o755);
        assert_eq!(std::fs::read(at("etcd.conf")).unwrap(), b"name: one\n");
        assert_eq!(t.stats().commands(), 1);
        // A local file that is not the size the archive was built with fails the feed: nothing
        // after it would be where the archive says.
        let mut sink = Vec::new();
        let part = [StdinPart::File { path: &local, len: 4999 }];
        let err = crate::transport::feed_parts(&mut sink, &part).await.unwrap_err();
        assert!(err.to_string().contains("changed while it was sent"), "{err}");
        let part = [StdinPart::File { path: &local, len: 5001 }];
        assert!(crate::transport::feed_parts(&mut Vec::new(), &part).await.is_err());
    }

    #[test]
    fn a_batch_whose_input_is_cut_off_renames_nothing_and_leaves_no_staging_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let names = ["a", "b", "sub/c", "sub/d"];
        let dests: Vec<String> = names.iter().map(|n| dir.path().join(n).display().to_string()).collect();
        for d in &dests {
            std::fs::write(d, "old").unwrap();
        }
        let files: Vec<FileWrite> =
            dests.iter().map(|d| FileWrite { path: d.clone(), content: vec![b'n'; 3000].into(), attrs: FileAttrs::default() }).collect();
        let refs: Vec<&FileWrite> = files.iter().collect();
        let token = "0123456789abcdef";
        let archive = stage_archive(&refs, token).unwrap().to_bytes();
        let mut input = format!("{}\n", archive.len()).into_bytes();
        input.extend_from_slice(&archive);
        input.extend_from_slice(b"end\n");
        // Cut in a size line, in a header, at a member boundary (tar accepts that), in a
        // member's data, in the archive's end blocks, and just before `end`; then hung up.
        let header = format!("{}\n", archive.len()).len();
        let cuts = [0, 2, header + 100, header + 512 + 3072, header + 700, header + archive.len() - 10, input.len() - 4, input.len() - 1];
        for (n, cut) in cuts.into_iter().enumerate() {
            let hung_up = n == cuts.len() - 1;
            let args: Vec<String> =
                std::iter::once(token.to_string()).chain(refs.iter().flat_map(|f| write_args(&f.path, &f.attrs))).collect();
            let out = run_script_here(WRITE_BATCH_SCRIPT, "cairn-write-batch", &args, &input[..cut], hung_up);
            assert!(!out.status.success(), "cut at {cut}");
            assert!(out.stdout.is_empty(), "cut at {cut}: {}", String::from_utf8_lossy(&out.stdout));
            if !hung_up {
                let said = String::from_utf8_lossy(&out.stderr);
                assert!(said.trim_end().ends_with("nothing renamed"), "cut at {cut}: {said}");
            }
            for d in &dests {
                assert_eq!(std::fs::read(d).unwrap(), b"old", "cut at {cut}: {d}");
            }
            assert!(leftovers(dir.path()).is_empty() && leftovers(&dir.path().join("sub")).is_empty(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn batched_commands_stop_per_group_and_survive_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::transport::LocalTransport::new("local");
        let odd = dir.path().join("it's $(x)").display().to_string();
        let groups = vec![
            vec![argv(&["mkdir", "--", &odd]), argv(&["chmod", "0750", "--", &odd])],
            vec![argv(&["false"]), argv(&["touch", "--", &format!("{odd}/never")])],
            vec![argv(&["test", "-d", &odd])],
        ];
        let results = run_batched(&t, &groups).await.unwrap();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(results[1].as_ref().is_err_and(|e| e.starts_with("`false` failed")), "{results:?}");
        assert!(!std::path::Path::new(&odd).join("never").exists(), "a group stops at its first failure");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&odd).unwrap().permissions().mode() & 0o777, 0o750);
        assert_eq!(t.stats().commands(), 1);
    }

    #[test]
    fn short_output_is_an_error() {
        assert!(parse_read_output(b"10\nabc", 1).is_err());
        assert!(parse_read_output(b"", 1).is_err());
    }
}
