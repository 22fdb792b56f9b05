//! A real `sshd` for tests: started on 127.0.0.1 and a free port with a throw-away config, host
//! key, client key and known_hosts file, all in a temp dir. Killed (by PID, with the session
//! processes it forked) when dropped.
//!
//! `SetEnv SHLVL=1` keeps bash from sourcing root's `~/.bashrc` for each command (bash does that
//! for a top-level shell started by sshd), so the tester's dotfiles neither slow nor pollute
//! the commands.
//!
//! Needs Debian's `openssh-server` (`/usr/sbin/sshd`) and `ssh-keygen`. When sshd is missing or
//! cannot start, [`Sshd::start_or_skip`] returns `None` so the test can skip, unless the
//! environment variable `CI` is set: then it panics, so CI never skips silently.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where sshd lives on Debian.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd and the files a client needs to reach it.
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    /// A private key the server accepts (for user root).
    pub client_key: PathBuf,
    /// A known_hosts file that lists this server's host key.
    pub known_hosts: PathBuf,
    /// The server's public host key line (`ssh-ed25519 AAAA...`).
    pub host_pub: String,
}

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs (package openssh-client)");
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `true` when tests must not skip (env `CI` set).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

impl Sshd {
    /// Starts an sshd, or explains why not: `None` (test skips) outside CI, panic in CI.
    pub fn start_or_skip() -> Option<Sshd> {
        match Sshd::start() {
            Ok(s) => Some(s),
            Err(e) if in_ci() => panic!("sshd could not start and CI is set: {e}"),
            Err(e) => {
                eprintln!("SKIPPED: sshd could not start: {e}");
                None
            }
        }
    }

    /// Starts an sshd and waits until it answers with an SSH banner.
    pub fn start() -> Result<Sshd, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!("{SSHD} not found (apt-get install -y openssh-server)"));
        }
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new().prefix("cairn-sshd.").tempdir().map_err(|e| e.to_string())?;
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).map_err(|e| e.to_string())?;
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).map_err(|e| e.to_string())?;
        let host_pub: String = host_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");

        let log_path = dir.path().join("sshd.log");
        let mut last_err = String::new();
        // The free port may be taken between probing and binding: try a few.
        for _attempt in 0..3 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            let d = dir.path().display();
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                     PermitRootLogin yes\nUsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                     MaxSessions 10\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\nSetEnv SHLVL=1\n"
                ),
            )
            .map_err(|e| e.to_string())?;
            let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("spawning {SSHD}: {e}"))?;
            match wait_ready(&mut child, port, &log_path, Duration::from_secs(10)) {
                Ok(()) => {
                    let known_hosts = dir.path().join("known_hosts");
                    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n")).map_err(|e| e.to_string())?;
                    return Ok(Sshd { child, dir, port, client_key, known_hosts, host_pub });
                }
                Err(e) => {
                    last_err = e;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        Err(last_err)
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The temp dir holding keys and config.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID of the listening sshd.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the per-connection processes sshd forked (by PID): every client connection drops.
    pub fn kill_sessions(&self) {
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }

    /// Kills the per-connection processes sshd forked, then sshd itself, all by PID.
    fn stop(&mut self) {
        self.kill_sessions();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `port` answers with `SSH-`; fails if sshd exits first.
fn wait_ready(child: &mut Child, port: u16, log: &Path, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited with {status}: {}", log_text()));
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("sshd did not answer within {within:?}: {}", log_text()))
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PIDs of every process below `root` (children, grandchildren, ...), from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // the command name is in parentheses and may hold spaces: parse after the last ')'
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) else { continue };
            parents.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}
