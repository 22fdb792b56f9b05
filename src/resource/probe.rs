//! The host probe: one remote command per host that gathers what every resource on it needs
//! (for paths: type, mode, owner, group, size, mtime, and sha256 of regular files; for systemd
//! units one `systemctl show`; for accounts `getent passwd` and `getent group`), however many
//! resources there are. The request travels on stdin as `TAG<TAB>value` lines; the script is
//! fixed (`probe.sh` beside this file, compiled in), so nothing from the spec is ever pasted into
//! a shell command.

use std::collections::{BTreeMap, BTreeSet};

use crate::hash::sha256_hex;

use crate::state::manifest::{MANIFEST_DIR, Manifest, ManifestError};
use crate::transport::{Stdin, Transport, TransportError, argv};

/// Output of the probe that cannot be understood (a cut-off or foreign answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// A line of an unexpected shape.
    #[error("unexpected {what} {line:?}")]
    Unexpected {
        /// What the line was to be ("stat line").
        what: &'static str,
        /// The line.
        line: String,
    },
    /// A value that does not parse.
    #[error("bad {what} {value:?}")]
    Bad {
        /// Which value ("mode in").
        what: &'static str,
        /// The text around it.
        value: String,
    },
    /// No end marker: the output was cut off.
    #[error("probe output ended early")]
    EndedEarly,
    /// `systemctl show` failed on the host.
    #[error("systemctl show failed: {0}")]
    SystemctlShow(String),
    /// `systemctl show` answered for another number of units than asked.
    #[error("systemctl show reported {reported} unit(s) for {asked} asked")]
    UnitCount {
        /// Blocks reported.
        reported: usize,
        /// Units asked for.
        asked: usize,
    },
    /// A firewall line of the probe does not parse.
    #[error(transparent)]
    Firewall(#[from] super::firewall::ProbeLineError),
    /// A unit's properties do not parse.
    #[error("{name}: {source}")]
    Unit {
        /// The unit.
        name: String,
        /// What is wrong.
        source: Box<ProbeError>,
    },
}

impl ProbeError {
    /// A line of an unexpected shape.
    pub fn unexpected(what: &'static str, line: &str) -> Self {
        ProbeError::Unexpected { what, line: line.to_string() }
    }

    /// A value that does not parse.
    pub fn bad(what: &'static str, value: &str) -> Self {
        ProbeError::Bad { what, value: value.to_string() }
    }
}

/// A manifest file on the host that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {error}")]
pub struct UnreadableManifest {
    /// Its path on the host.
    pub path: String,
    /// Why.
    pub error: ManifestError,
}

/// What the probe must gather on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Paths to stat (and hash, when regular files).
    pub paths: BTreeSet<String>,
    /// systemd units for one `systemctl show`.
    pub units: BTreeSet<String>,
    /// User names for `getent passwd`.
    pub users: BTreeSet<String>,
    /// Group names for `getent group`.
    pub groups: BTreeSet<String>,
    /// Certificate files whose (public) PEM text is returned (tag `C`).
    pub certs: BTreeSet<String>,
    /// Private key files: stat'ed but never hashed nor read; only the public key derived on the
    /// host (`openssl pkey -pubout`) is returned (tag `K`).
    pub keys: BTreeSet<String>,
    /// Commands (argv) whose first line of output is an installed version (`binary`'s
    /// `version_command`). Each costs a few forks; they are optional and few.
    pub versions: BTreeSet<Vec<String>>,
    /// Commands (argv) whose whole stdout and exit status are returned (a cluster member's
    /// view of its cluster, e.g. `etcdctl member list -w json`). Each runs under `timeout 15`.
    pub queries: BTreeSet<Vec<String>>,
    /// Read cairn's nftables table and the SSH session's addresses (`FW` request line).
    pub firewall: bool,
    /// Read every spec's manifest of what cairn manages here (`M` request line).
    pub manifests: bool,
    /// Text files shown as diffs, with the sha256 cairn would write: the content of each whose
    /// sha256 differs comes back with the probe (`D` lines; one `tar` for all of them after the
    /// end marker), so a plan with changes needs no second read. Never a sensitive file.
    pub old_texts: BTreeMap<String, String>,
    /// A holder record (one line of JSON) to take the apply lock with before anything is read
    /// (`L` line); the probe reads nothing when another run holds it
    /// ([`HostFacts::lock`]).
    pub lock: Option<String>,
}

/// The type of a path on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (socket, device, fifo).
    Other,
}

impl PathKind {
    /// A word for messages.
    pub fn describe(self) -> &'static str {
        match self {
            PathKind::File => "a regular file",
            PathKind::Dir => "a directory",
            PathKind::Symlink => "a symbolic link",
            PathKind::Other => "a special file",
        }
    }
}

/// What the probe saw at one existing path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFact {
    /// Its type.
    pub kind: PathKind,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
    /// Owner user name (`UNKNOWN` if the uid has no name).
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// sha256 (hex) of a regular file's content.
    pub sha256: Option<String>,
}

/// Everything the probe learned about one host. A path absent from `paths` does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Existing paths.
    pub paths: BTreeMap<String, PathFact>,
    /// systemd units asked for, by name (every one asked for is here, loaded or not).
    pub units: BTreeMap<String, super::unit::UnitFact>,
    /// Existing users asked for.
    pub users: BTreeMap<String, super::user::UserFact>,
    /// Existing groups asked for.
    pub groups: BTreeMap<String, super::user::GroupFact>,
    /// First line printed by each version command that ran successfully.
    pub versions: BTreeMap<Vec<String>, String>,
    /// What each query command printed on stdout, with its exit status.
    pub queries: BTreeMap<Vec<String>, QueryOutput>,
    /// cairn's nftables table and SSH session, when asked for.
    pub firewall: Option<super::firewall::FirewallFacts>,
    /// Text of requested certificate files that are readable regular files.
    pub certs: BTreeMap<String, String>,
    /// What the host said about each requested key file that exists.
    pub keys: BTreeMap<String, KeyFact>,
    /// Every spec's manifest on the host by spec name (file stem), when asked for; a file that
    /// does not parse has the reason instead.
    pub manifests: BTreeMap<String, Result<Manifest, UnreadableManifest>>,
    /// The content of each requested text file whose sha256 differed
    /// ([`ProbeRequest::old_texts`]); a file missing here is read apart when needed.
    pub old_texts: BTreeMap<String, Vec<u8>>,
    /// What became of the lock the request asked to take; `None` when it asked for none.
    pub lock: Option<LockTaken>,
}

/// The apply lock the probe was asked to take ([`ProbeRequest::lock`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTaken {
    /// It is this run's now; the host was read under it.
    Acquired,
    /// Another run holds it (its record, as the lock file holds it); nothing else was read.
    Held(String),
}

/// A query command's result ([`ProbeRequest::queries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutput {
    /// Exit status (124: timed out; 127: not found).
    pub status: i32,
    /// Its standard output (standard error is dropped on the host).
    pub stdout: String,
}

/// The public side of a private key file, as derived on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFact {
    /// `openssl pkey -pubout` printed this PEM public key.
    PublicKey(String),
    /// The file is not a readable unencrypted private key.
    Unreadable,
    /// The host has no `openssl`: whether the key matches cannot be checked.
    NoOpenssl,
}

impl HostFacts {
    /// Adds what a later probe of the same host found.
    pub fn absorb(&mut self, more: HostFacts) {
        self.paths.extend(more.paths);
        self.units.extend(more.units);
        self.users.extend(more.users);
        self.groups.extend(more.groups);
        self.versions.extend(more.versions);
        self.queries.extend(more.queries);
        self.certs.extend(more.certs);
        self.keys.extend(more.keys);
        self.manifests.extend(more.manifests);
        self.old_texts.extend(more.old_texts);
        if more.lock.is_some() {
            self.lock = more.lock;
        }
        if more.firewall.is_some() {
            self.firewall = more.firewall;
        }
    }

    /// What is at `path`, or `None` if nothing is.
    pub fn path(&self, path: &str) -> Option<&PathFact> {
        self.paths.get(path)
    }

    /// What the probe saw of the things `request` asks for, one stable line each, for saved plans:
    /// equal lines mean the same observed state. Modification times and directory sizes are left
    /// out (they move whenever anything near them does; a plan that depended on them is caught by
    /// re-planning). Certificate and table contents appear as sha256 sums; private keys only as
    /// the sum of their public key.
    pub fn describe(&self, request: &ProbeRequest) -> Vec<String> {
        self.describe_redacted(request, false)
    }

    /// [`HostFacts::describe`] for an instance whose content is sensitive (`redact`): files'
    /// sha256 sums read `(sensitive)` — for a short secret, its hash is the secret. A change of
    /// such content between plan and apply still shows in the decision, which is compared too.
    pub fn describe_redacted(&self, request: &ProbeRequest, redact: bool) -> Vec<String> {
        let sum = |text: &str| short_digest(&sha256_hex(text.as_bytes())).to_string();
        let mut lines = Vec::new();
        for path in &request.paths {
            lines.push(match self.paths.get(path) {
                None => format!("path {path}: absent"),
                Some(f) => {
                    let size = if f.kind == PathKind::File { format!(" {} bytes", f.size) } else { String::new() };
                    let hash = match &f.sha256 {
                        Some(_) if redact => " sha256 (sensitive)".to_string(),
                        Some(h) => format!(" sha256 {}", short_digest(h)),
                        None => String::new(),
                    };
                    format!("path {path}: {} {:04o} {}:{}{size}{hash}", f.kind.describe(), f.mode, f.owner, f.group)
                }
            });
        }
        for unit in &request.units {
            lines.push(match self.units.get(unit) {
                None => format!("unit {unit}: not reported"),
                Some(u) => format!(
                    "unit {unit}: {} {}/{} {}{}{}",
                    u.load_state,
                    u.active_state,
                    u.sub_state,
                    if u.unit_file_state.is_empty() { "no unit file" } else { &u.unit_file_state },
                    u.active_enter.map(|t| format!(", active since {}", utc_time(t))).unwrap_or_default(),
                    if u.need_daemon_reload { ", needs daemon-reload" } else { "" },
                ),
            });
        }
        for user in &request.users {
            lines.push(match self.users.get(user) {
                None => format!("user {user}: absent"),
                Some(u) => format!("user {user}: uid {} gid {} home {} shell {}", u.uid, u.gid, u.home, u.shell),
            });
        }
        for group in &request.groups {
            lines.push(match self.groups.get(group) {
                None => format!("group {group}: absent"),
                Some(g) => format!("group {group}: gid {} members {}", g.gid, g.members.join(",")),
            });
        }
        for argv in &request.versions {
            let cmd = argv.join(" ");
            lines.push(match self.versions.get(argv) {
                None => format!("version {cmd}: none"),
                Some(v) => format!("version {cmd}: {v}"),
            });
        }
        if request.firewall {
            use super::firewall::NftTable;
            lines.push(match self.firewall.as_ref().map(|f| &f.table) {
                None => "nft table inet cairn: not reported".to_string(),
                Some(NftTable::Missing) => "nft table inet cairn: absent".to_string(),
                Some(NftTable::NoNft) => "nft table inet cairn: nft not installed".to_string(),
                Some(NftTable::Error(e)) => format!("nft table inet cairn: error {e}"),
                Some(NftTable::Json(j)) => format!("nft table inet cairn: sha256 {}", sum(j)),
            });
        }
        for path in &request.certs {
            lines.push(match self.certs.get(path) {
                None => format!("certificate {path}: absent"),
                Some(pem) => format!("certificate {path}: sha256 {}", sum(pem)),
            });
        }
        for path in &request.keys {
            lines.push(match self.keys.get(path) {
                None => format!("key {path}: absent"),
                Some(KeyFact::PublicKey(p)) => format!("key {path}: public key sha256 {}", sum(p)),
                Some(KeyFact::Unreadable) => format!("key {path}: unreadable"),
                Some(KeyFact::NoOpenssl) => format!("key {path}: not checked (no openssl)"),
            });
        }
        lines
    }
}

/// The probe script ([`ProbeRequest::invocation`]): reads the request, prints tagged lines
/// ending in `E end`. What it reads, prints and forks is described in `probe.sh`.
const PROBE_SCRIPT: &str = include_str!("probe.sh");

/// Requests up to this many bytes travel as the probe's last argument, larger ones on stdin: the
/// shell reads stdin one system call per byte, an argument costs nothing. Well inside Linux's
/// 128 KiB for one argument, which the script shares (sshd hands the whole command line to the
/// login shell as one `-c` argument).
const REQUEST_ARGUMENT_MAX: usize = 32 * 1024;

/// How one probe is run: its argv, and its stdin (empty when the request is an argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInvocation {
    /// `sh -c SCRIPT cairn-probe UNIT_PROPS [REQUEST]`.
    pub argv: Vec<String>,
    /// The request when it is too large to be an argument; else empty.
    pub stdin: Vec<u8>,
}

impl ProbeRequest {
    /// The probe's argv and stdin: the request as the last argument when it is small (nearly
    /// always), else on stdin.
    pub fn invocation(&self) -> ProbeInvocation {
        let request = self.request();
        let script = ["sh", "-c", PROBE_SCRIPT, "cairn-probe", super::unit::SHOW_PROPERTIES];
        if request.len() <= REQUEST_ARGUMENT_MAX {
            let mut words = argv(&script);
            words.push(request);
            ProbeInvocation { argv: words, stdin: Vec::new() }
        } else {
            ProbeInvocation { argv: argv(&script), stdin: request.into_bytes() }
        }
    }

    /// The request: one `TAG<TAB>value` line per thing to read (see `probe.sh`).
    fn request(&self) -> String {
        let mut out = String::new();
        for (tag, set) in [("P", &self.paths), ("C", &self.certs), ("K", &self.keys)] {
            for p in set {
                out.push_str(tag);
                out.push('\t');
                out.push_str(p);
                out.push('\n');
            }
        }
        for (tag, set) in [("UNIT", &self.units), ("USER", &self.users), ("GROUP", &self.groups)] {
            for v in set {
                out.push_str(tag);
                out.push('\t');
                out.push_str(v);
                out.push('\n');
            }
        }
        // Version commands: the argv joined by the unit separator (spec values carry none).
        for (tag, set) in [("V", &self.versions), ("Q", &self.queries)] {
            for v in set {
                out.push_str(tag);
                out.push('\t');
                out.push_str(&v.join("\u{1f}"));
                out.push('\n');
            }
        }
        if self.firewall {
            out.push_str("FW\t1\n");
        }
        if self.manifests {
            out.push_str("M\t");
            out.push_str(MANIFEST_DIR);
            out.push('\n');
        }
        for (path, sha256) in &self.old_texts {
            out.push_str("D\t");
            out.push_str(sha256);
            out.push('\t');
            out.push_str(path);
            out.push('\n');
        }
        if let Some(record) = &self.lock {
            out.push_str("L\t");
            out.push_str(record);
            out.push('\n');
        }
        out
    }

    /// Runs the probe on a host: one command.
    pub async fn run(&self, transport: &dyn Transport) -> Result<HostFacts, TransportError> {
        let ProbeInvocation { argv, stdin } = self.invocation();
        let input = if stdin.is_empty() { Stdin::Null } else { Stdin::Bytes(&stdin) };
        let out = transport.run(&argv, input).await?;
        let failed = |detail: String| TransportError::Remote { host: transport.host().to_string(), operation: "probe".to_string(), detail };
        if !out.success() {
            return Err(failed(out.error_text()));
        }
        parse_probe_bytes(&out.stdout).map_err(|e| failed(e.to_string()))
    }
}

/// The probe's end marker; the old texts' archive follows it.
const END_LINE: &[u8] = b"E\tend\n";

/// Parses the probe's whole output: tagged lines up to the end marker (every other line starts
/// with another tag, so the first one is the end), then the tar archive of old texts, if any.
pub fn parse_probe_bytes(out: &[u8]) -> Result<HostFacts, ProbeError> {
    let end = if out.starts_with(END_LINE) {
        Some(0)
    } else {
        out.windows(END_LINE.len() + 1).position(|w| w[0] == b'\n' && &w[1..] == END_LINE).map(|at| at + 1)
    };
    let (text, archive) = match end {
        Some(at) => out.split_at(at + END_LINE.len()),
        None => (out, &[][..]),
    };
    let mut facts = parse_probe_output(&String::from_utf8_lossy(text))?;
    facts.old_texts = read_old_texts(archive);
    Ok(facts)
}

/// The regular files of a tar archive by path. An archive cut short or unreadable keeps the
/// files read before the damage: the others are read apart when a diff needs them.
fn read_old_texts(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    use std::io::Read as _;
    let mut files = BTreeMap::new();
    if archive.is_empty() {
        return files;
    }
    let mut tar = tar::Archive::new(archive);
    let Ok(entries) = tar.entries() else { return files };
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Ok(path) = entry.path().map(|p| p.to_string_lossy().into_owned()) else { break };
        let mut content = Vec::new();
        // A cut-off entry reads short without an error.
        if entry.read_to_end(&mut content).is_err() || content.len() as u64 != entry.size() {
            break;
        }
        files.insert(path, content);
    }
    files
}

/// Parses the probe's output. Pure; tested on raw output.
pub fn parse_probe_output(text: &str) -> Result<HostFacts, ProbeError> {
    let mut facts = HostFacts::default();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut complete = false;
    let mut manifest_text: BTreeMap<String, String> = BTreeMap::new();
    let (mut unit_names, mut unit_lines, mut passwd, mut group) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut fields = line.splitn(2, '\t');
        let tag = fields.next().unwrap_or_default();
        let rest = fields.next().unwrap_or_default();
        match tag {
            "S" => {
                let (path, fact) = parse_stat_line(rest, line)?;
                facts.paths.insert(path, fact);
            }
            "H" => {
                let (hash, path) = rest.split_once("  ").ok_or_else(|| ProbeError::unexpected("hash line", line))?;
                hashes.insert(path.to_string(), hash.to_string());
            }
            "UN" => unit_names.push(rest.to_string()),
            "US" => unit_lines.push(rest),
            "UX" => return Err(ProbeError::SystemctlShow(rest.trim().to_string())),
            "PW" => passwd.push(rest),
            "GR" => group.push(rest),
            "C" => super::cert::parse_cert_line(&mut facts.certs, rest, line)?,
            "K" => super::cert::parse_key_line(&mut facts.keys, rest, line)?,
            "V" => {
                let (argv, first) = rest.split_once('\t').ok_or_else(|| ProbeError::unexpected("version line", line))?;
                let first = first.trim();
                if !first.is_empty() {
                    facts.versions.insert(argv.split('\u{1f}').map(str::to_string).collect(), first.to_string());
                }
            }
            "Q" => {
                let mut parts = rest.splitn(3, '\t');
                let (Some(argv), Some(status), Some(out)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(ProbeError::unexpected("query line", line));
                };
                let status = status.parse().map_err(|_| ProbeError::unexpected("query status", line))?;
                let argv = argv.split('\u{1f}').map(str::to_string).collect();
                facts.queries.insert(argv, QueryOutput { status, stdout: out.replace('\u{1f}', "\n") });
            }
            "FWSSH" | "FWNFT" => facts.firewall.get_or_insert_with(Default::default).parse_line(tag, rest)?,
            "M" => {
                let (path, text) = rest.split_once('\t').ok_or_else(|| ProbeError::unexpected("manifest line", line))?;
                manifest_text.entry(path.to_string()).or_default().push_str(text);
            }
            "L" => {
                facts.lock = Some(match rest.split_once('\t') {
                    Some(("held", record)) => LockTaken::Held(record.to_string()),
                    None if rest == "held" => LockTaken::Held(String::new()),
                    None if rest == "acquired" => LockTaken::Acquired,
                    _ => return Err(ProbeError::unexpected("lock line", line)),
                });
            }
            "E" => complete = true,
            _ => return Err(ProbeError::unexpected("probe output", line)),
        }
    }
    if !complete {
        return Err(ProbeError::EndedEarly);
    }
    facts.units = super::unit::parse_show(&unit_names, &unit_lines)?;
    facts.users = super::user::parse_passwd(&passwd)?;
    facts.groups = super::user::parse_group(&group)?;
    for (path, hash) in hashes {
        if let Some(fact) = facts.paths.get_mut(&path) {
            fact.sha256 = Some(hash);
        }
    }
    for (path, text) in manifest_text {
        let name = path.rsplit('/').next().unwrap_or(&path).trim_end_matches(".json").to_string();
        facts.manifests.insert(name, Manifest::parse(&text).map_err(|error| UnreadableManifest { path, error }));
    }
    Ok(facts)
}

/// A digest as the observed-state lines show it: its first 12 hex digits (48 bits tell a change
/// apart; the full sum only made the stale-plan listing unreadable).
fn short_digest(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// Seconds since the epoch as `2026-12-01 10:00:00 UTC` (the number itself if out of range).
fn utc_time(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!("{} {:02}:{:02}:{:02} UTC", t.date(), t.hour(), t.minute(), t.second()),
        Err(_) => secs.to_string(),
    }
}

/// Parses one `S` line of `stat -c 'S\t%F\t%a\t%U\t%G\t%s\t%Y\t%n'` (tag split off).
fn parse_stat_line(rest: &str, line: &str) -> Result<(String, PathFact), ProbeError> {
    let f: Vec<&str> = rest.splitn(7, '\t').collect();
    let [kind, mode, owner, group, size, mtime, path] = f.as_slice() else {
        return Err(ProbeError::unexpected("stat line", line));
    };
    let kind = match *kind {
        "regular file" | "regular empty file" => PathKind::File,
        "directory" => PathKind::Dir,
        "symbolic link" => PathKind::Symlink,
        _ => PathKind::Other,
    };
    let fact = PathFact {
        kind,
        mode: u32::from_str_radix(mode, 8).map_err(|_| ProbeError::bad("mode in", line))?,
        owner: (*owner).to_string(),
        group: (*group).to_string(),
        size: size.parse().map_err(|_| ProbeError::bad("size in", line))?,
        mtime: mtime.parse().map_err(|_| ProbeError::bad("mtime in", line))?,
        sha256: None,
    };
    Ok(((*path).to_string(), fact))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the probe of `req` on this machine, as a host runs it.
    async fn run_local(t: &crate::transport::LocalTransport, req: &ProbeRequest) -> crate::transport::CommandOutput {
        let ProbeInvocation { argv, stdin } = req.invocation();
        let input = if stdin.is_empty() { Stdin::Null } else { Stdin::Bytes(&stdin) };
        t.run(&argv, input).await.unwrap()
    }

    /// Runs the probe script on this machine with a hand-written request, as its last argument or
    /// on stdin: the two ways a request reaches it.
    async fn run_script(request: &str, on_stdin: bool) -> Vec<u8> {
        let t = crate::transport::LocalTransport::new("local");
        let mut words = argv(&["sh", "-c", PROBE_SCRIPT, "cairn-probe", super::super::unit::SHOW_PROPERTIES]);
        let out = if on_stdin {
            t.run(&words, Stdin::Bytes(request.as_bytes())).await.unwrap()
        } else {
            words.push(request.to_string());
            t.run(&words, Stdin::Null).await.unwrap()
        };
        assert!(out.success(), "{}", out.error_text());
        out.stdout
    }

    #[test]
    fn a_small_request_is_an_argument_and_a_large_one_comes_on_stdin() {
        let mut req = ProbeRequest::default();
        req.paths.insert("/etc/motd".into());
        let small = req.invocation();
        assert_eq!(small.argv.len(), 6);
        assert_eq!(small.argv[5], "P\t/etc/motd\n");
        assert!(small.stdin.is_empty());
        for i in 0..600 {
            req.paths.insert(format!("/srv/a/rather/long/directory/name/for/many/files/number-{i:04}.conf"));
        }
        let large = req.invocation();
        assert_eq!(large.argv.len(), 5, "the request is not an argument");
        assert!(large.stdin.len() > REQUEST_ARGUMENT_MAX);
        assert_eq!(large.stdin, req.request().into_bytes());
    }

    #[tokio::test]
    async fn a_request_reads_the_same_as_an_argument_and_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        // A space, a glob and a tab in names: split on newlines only, never globbed.
        std::fs::write(dir.path().join("plain.conf"), "old text\n").unwrap();
        std::fs::write(dir.path().join("a *b\tc.conf"), "x").unwrap();
        std::fs::write(dir.path().join("ab.conf"), "not asked for").unwrap();
        std::fs::create_dir(dir.path().join("manifests")).unwrap();
        // A manifest over two lines comes back as two lines, joined again by the parser.
        std::fs::write(dir.path().join("manifests/spec.json"), "{\"a\":\n1}\n").unwrap();
        let wrong = "0".repeat(64);
        let request = format!(
            "P\t{d}/plain.conf\nP\t{d}/a *b\tc.conf\nP\t{d}/missing\nP\t{d}\nD\t{wrong}\t{d}/plain.conf\nM\t{d}/manifests\nUNKNOWN\tignored\n"
        );
        let as_argument = run_script(&request, false).await;
        let on_stdin = run_script(&request, true).await;
        assert_eq!(String::from_utf8_lossy(&as_argument), String::from_utf8_lossy(&on_stdin));
        let end = as_argument.windows(END_LINE.len()).position(|w| w == END_LINE).unwrap();
        let text = String::from_utf8_lossy(&as_argument[..end]).to_string();
        let lines: Vec<&str> = text.lines().collect();
        let tags: Vec<&str> = lines.iter().map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(tags, ["S", "S", "S", "H", "H", "M", "M"], "{text}");
        assert!(text.contains(&format!("\t{d}/a *b\tc.conf\n")), "{text}");
        assert!(!text.contains("ab.conf"), "{text}");
        assert!(text.ends_with(&format!("M\t{d}/manifests/spec.json\t{{\"a\":\nM\t{d}/manifests/spec.json\t1}}\n")), "{text}");
        // The file whose sha256 is not the one asked for comes back in the archive.
        let facts = parse_probe_bytes(&as_argument).unwrap();
        assert_eq!(facts.old_texts[&format!("{d}/plain.conf")], b"old text\n");
        assert_eq!(facts.path(&format!("{d}/a *b\tc.conf")).unwrap().size, 1);
        assert!(facts.path(&format!("{d}/missing")).is_none());
    }

    #[tokio::test]
    async fn a_request_cut_off_on_stdin_loses_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("one"), "1").unwrap();
        std::fs::write(dir.path().join("two"), "2").unwrap();
        let whole = String::from_utf8(run_script(&format!("P\t{d}/one\nP\t{d}/two\n"), true).await).unwrap();
        assert!(whole.contains(&format!("{d}/one\n")) && whole.contains(&format!("{d}/two\n")), "{whole}");
        let cut = String::from_utf8(run_script(&format!("P\t{d}/one\nP\t{d}/two"), true).await).unwrap();
        assert!(cut.contains(&format!("{d}/one\n")), "{cut}");
        assert!(!cut.contains("two"), "a line with no newline is not read: {cut}");
        let nothing = String::from_utf8(run_script(&format!("P\t{d}/one"), true).await).unwrap();
        assert_eq!(nothing, "E\tend\n");
    }

    #[test]
    fn parses_stat_and_hash_lines() {
        let raw = "S\tregular file\t644\troot\troot\t6\t1700000000\t/etc/demo/motd\n\
                   S\tdirectory\t755\troot\tadm\t4096\t1700000001\t/etc/demo\n\
                   H\tabc123  /etc/demo/motd\nE\tend\n";
        let facts = parse_probe_output(raw).unwrap();
        let motd = facts.path("/etc/demo/motd").unwrap();
        assert_eq!((motd.kind, motd.mode, motd.size, motd.sha256.as_deref()), (PathKind::File, 0o644, 6, Some("abc123")));
        let dir = facts.path("/etc/demo").unwrap();
        assert_eq!((dir.kind, dir.group.as_str(), dir.sha256.as_deref()), (PathKind::Dir, "adm", None));
        assert!(facts.path("/missing").is_none());
    }

    #[test]
    fn parses_certificate_and_key_lines() {
        let raw = "C\t-----BEGIN CERTIFICATE-----\t/etc/pki/a b.pem\n\
                   C\tMIIB\t/etc/pki/a b.pem\n\
                   C\t-----END CERTIFICATE-----\t/etc/pki/a b.pem\n\
                   K\t-----BEGIN PUBLIC KEY-----\t/etc/pki/key.pem\n\
                   K\tMFkw\t/etc/pki/key.pem\n\
                   K\t-----END PUBLIC KEY-----\t/etc/pki/key.pem\n\
                   K\t!unreadable\t/etc/pki/bad.pem\n\
                   K\t!noopenssl\t/etc/pki/other.pem\n\
                   S\tregular file\t600\troot\troot\t6\t1\t/etc/pki/key.pem\nE\tend\n";
        let facts = parse_probe_output(raw).unwrap();
        assert_eq!(facts.certs["/etc/pki/a b.pem"], "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
        assert_eq!(
            facts.keys["/etc/pki/key.pem"],
            KeyFact::PublicKey("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n".into())
        );
        assert_eq!(facts.keys["/etc/pki/bad.pem"], KeyFact::Unreadable);
        assert_eq!(facts.keys["/etc/pki/other.pem"], KeyFact::NoOpenssl);
        // The key was stat'ed but never hashed.
        assert_eq!(facts.path("/etc/pki/key.pem").unwrap().sha256, None);
    }

    #[tokio::test]
    async fn probe_returns_a_public_key_never_the_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let key_path = dir.path().join("key.pem");
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let cert_path = dir.path().join("cert.pem");
        std::fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").unwrap();
        let mut req = ProbeRequest::default();
        req.keys.insert(key_path.display().to_string());
        req.keys.insert(dir.path().join("missing.pem").display().to_string());
        req.certs.insert(cert_path.display().to_string());
        let t = crate::transport::LocalTransport::new("local");
        let out = run_local(&t, &req).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let facts = parse_probe_output(&text).unwrap();
        let Some(KeyFact::PublicKey(pem)) = facts.keys.get(&key_path.display().to_string()) else { panic!("{facts:?}") };
        assert_eq!(pem.trim(), key.public_key_pem().trim());
        assert_eq!(facts.path(&key_path.display().to_string()).unwrap().sha256, None);
        assert_eq!(facts.certs[&cert_path.display().to_string()], "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(facts.keys.len(), 1);
        assert_eq!(t.stats().commands(), 1);
    }

    #[test]
    fn observed_lines_show_times_as_times_and_short_digests() {
        let raw = "S\tregular file\t644\troot\troot\t6\t1700000000\t/etc/motd\nH\t5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  /etc/motd\n\
                   UN\tetcd.service\nUS\tId=etcd.service\nUS\tLoadState=loaded\nUS\tActiveState=active\nUS\tSubState=running\n\
                   US\tUnitFileState=enabled\nUS\tActiveEnterTimestamp=@1796120131\nE\tend\n";
        let facts = parse_probe_output(raw).unwrap();
        let mut req = ProbeRequest::default();
        req.paths.insert("/etc/motd".into());
        req.units.insert("etcd.service".into());
        assert_eq!(
            facts.describe(&req),
            [
                "path /etc/motd: a regular file 0644 root:root 6 bytes sha256 5891b5b522d5",
                "unit etcd.service: loaded active/running enabled, active since 2026-12-01 10:15:31 UTC",
            ]
        );
    }

    #[test]
    fn truncated_output_is_an_error() {
        assert!(parse_probe_output("S\tdirectory\t755\troot\troot\t1\t2\t/x\n").is_err());
        assert!(parse_probe_output("garbage\nE\tend\n").is_err());
    }

    #[test]
    fn parses_unit_and_account_lines() {
        let raw = "UN\tetcd.service\nUN\tghost.timer\n\
                   US\tId=etcd.service\nUS\tActiveState=active\nUS\tActiveEnterTimestamp=@1700000000\nUS\t\n\
                   US\tId=ghost.timer\nUS\tLoadState=not-found\nUS\tActiveState=inactive\n\
                   PW\tetcd:x:998:997::/var/lib/etcd:/usr/sbin/nologin\nGR\tetcd:x:997:\nE\tend\n";
        let facts = parse_probe_output(raw).unwrap();
        assert_eq!(facts.units["etcd.service"].active_enter, Some(1_700_000_000));
        assert_eq!(facts.units["ghost.timer"].load_state, "not-found");
        assert_eq!(facts.users["etcd"].uid, 998);
        assert_eq!(facts.groups["etcd"].gid, 997);
        let err = parse_probe_output("UN\tx.service\nUX\tSystem has not been booted with systemd \nE\tend\n").unwrap_err();
        assert_eq!(err.to_string(), "systemctl show failed: System has not been booted with systemd");
    }

    #[tokio::test]
    async fn probe_reads_accounts_for_real_on_this_machine() {
        let mut req = ProbeRequest::default();
        req.users.insert("root".into());
        req.users.insert("no-such-user-cairn".into());
        req.groups.insert("root".into());
        let t = crate::transport::LocalTransport::new("local");
        let facts = req.run(&t).await.unwrap();
        assert_eq!(facts.users["root"].uid, 0);
        assert!(!facts.users.contains_key("no-such-user-cairn"));
        assert_eq!(facts.groups["root"].gid, 0);
        assert_eq!(t.stats().commands(), 1);
    }

    #[tokio::test]
    async fn probe_runs_for_real_on_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a file");
        std::fs::write(&file, b"hello\n").unwrap();
        let mut req = ProbeRequest::default();
        req.paths.insert(file.display().to_string());
        req.paths.insert(dir.path().display().to_string());
        req.paths.insert(dir.path().join("missing").display().to_string());
        let t = crate::transport::LocalTransport::new("local");
        let facts = req.run(&t).await.unwrap();
        let f = facts.path(&file.display().to_string()).unwrap();
        assert_eq!(f.sha256.as_deref(), Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"));
        assert_eq!(facts.path(&dir.path().display().to_string()).unwrap().kind, PathKind::Dir);
        assert_eq!(facts.paths.len(), 2);
        assert_eq!(t.stats().commands(), 1);
    }

    #[tokio::test]
    async fn the_probe_brings_the_old_content_of_changed_text_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let same = dir.path().join("same");
        let changed = dir.path().join("a changed file with a name longer than a tar header's hundred bytes, to need the GNU long name");
        let absent = dir.path().join("absent");
        std::fs::write(&same, b"kept\n").unwrap();
        std::fs::write(&changed, b"old \xff bytes\n").unwrap();
        let mut req = ProbeRequest::default();
        for (path, content) in [(&same, &b"kept\n"[..]), (&changed, b"new\n"), (&absent, b"new\n")] {
            req.paths.insert(path.display().to_string());
            req.old_texts.insert(path.display().to_string(), sha256_hex(content));
        }
        let t = crate::transport::LocalTransport::new("local");
        let facts = req.run(&t).await.unwrap();
        assert_eq!(facts.old_texts.len(), 1, "{:?}", facts.old_texts.keys());
        assert_eq!(facts.old_texts.get(&changed.display().to_string()).map(Vec::as_slice), Some(&b"old \xff bytes\n"[..]));
        assert_eq!(facts.paths.len(), 2);
        assert_eq!(t.stats().commands(), 1);
    }

    #[test]
    fn old_texts_follow_the_end_marker_and_a_damaged_archive_keeps_what_came_before() {
        let mut archive = tar::Builder::new(Vec::new());
        for (path, content) in [("/etc/a", &b"E\tend\nA\n"[..]), ("/etc/b", b"B\n")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive.append_data(&mut header, path.trim_start_matches('/'), content).unwrap();
        }
        let archive = archive.into_inner().unwrap();
        let mut out = b"S\tregular file\t644\troot\troot\t4\t1\t/etc/a\nE\tend\n".to_vec();
        out.extend_from_slice(&archive);
        let facts = parse_probe_bytes(&out).unwrap();
        assert_eq!(facts.old_texts.keys().collect::<Vec<_>>(), ["etc/a", "etc/b"]);
        assert_eq!(facts.old_texts["etc/a"], b"E\tend\nA\n");
        assert_eq!(facts.paths.len(), 1);
        // Cut inside the second file's data: the first is kept.
        let cut = out.len() - archive.len() + 512 + 512 + 512 + 1;
        let facts = parse_probe_bytes(&out[..cut]).unwrap();
        assert_eq!(facts.old_texts.keys().collect::<Vec<_>>(), ["etc/a"]);
        assert!(parse_probe_bytes(b"S\tregular file\t644\troot\troot\t4\t1\t/etc/a\n").is_err(), "no end marker");
    }

    #[test]
    fn parses_lock_lines() {
        assert_eq!(parse_probe_output("L\tacquired\nE\tend\n").unwrap().lock, Some(LockTaken::Acquired));
        let held = parse_probe_output("L\theld\t{\"id\":\"x\"}\nE\tend\n").unwrap().lock;
        assert_eq!(held, Some(LockTaken::Held("{\"id\":\"x\"}".into())));
        assert_eq!(parse_probe_output("L\theld\t\nE\tend\n").unwrap().lock, Some(LockTaken::Held(String::new())));
        assert!(parse_probe_output("L\tmaybe\nE\tend\n").is_err());
        assert_eq!(parse_probe_output("E\tend\n").unwrap().lock, None);
    }

    #[test]
    fn parses_version_lines() {
        let raw = "V\t/usr/local/bin/etcd\u{1f}--version\tetcd Version: 3.5.21\nV\t/x\t\nE\tend\n";
        let facts = parse_probe_output(raw).unwrap();
        let key = vec!["/usr/local/bin/etcd".to_string(), "--version".to_string()];
        assert_eq!(facts.versions.get(&key).map(String::as_str), Some("etcd Version: 3.5.21"));
        assert_eq!(facts.versions.len(), 1);
    }

    #[tokio::test]
    async fn version_commands_run_in_the_same_single_probe() {
        let mut req = ProbeRequest::default();
        // Words are passed as they are: no globbing, no evaluation of `$`.
        req.versions.insert(argv(&["printf", "%s|%s\\nsecond line\\n", "v 1.2", "*$HOME"]));
        req.versions.insert(argv(&["/nonexistent/tool", "--version"]));
        req.versions.insert(argv(&["false"]));
        let t = crate::transport::LocalTransport::new("local");
        let facts = req.run(&t).await.unwrap();
        assert_eq!(facts.versions.len(), 1, "{:?}", facts.versions);
        assert_eq!(facts.versions.values().next().map(String::as_str), Some("v 1.2|*$HOME"));
        assert_eq!(t.stats().commands(), 1);
    }
}
