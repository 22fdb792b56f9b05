//! The `ssh` transport: one ssh master connection per host (openssh crate, native mux), every
//! command multiplexed over it as its own channel.
//!
//! This module owns:
//! - [`SshConfig`] and [`HostKeyPolicy`]: how one host is reached, as plain values; the CLI
//!   builds them from the spec (`cli/connect.rs`), so the transport knows nothing of specs.
//! - [`SshTransport`]: connecting (host key policy, connect timeout, keep-alives), running argv
//!   with stdin (bytes, or a local file handed to ssh as a file descriptor so big uploads never
//!   pass through cairn's memory), a bound of [`MAX_CHANNELS_PER_HOST`] concurrent channels
//!   (below sshd's default `MaxSessions 10`), connection and command counters, and closing.
//! - [`ControlDir`] and the registry of live masters: control sockets live in a short private
//!   directory; [`install_ctrl_c_cleanup`] / [`close_all_masters`] close every master when cairn
//!   is interrupted. Masters also exit on their own [`MASTER_IDLE_SECS`] seconds after cairn
//!   stops pinging them, so even a `kill -9`ed cairn leaves nothing behind for long.
//! - Error messages: which host, what failed, the whole cause chain, and the likely cause named
//!   (authentication refused, host key unknown or changed, connection refused, no route,
//!   timeout).
//!
//! The command line sent to the host is built by [`crate::transport::quote_argv`] and passed with
//! `raw_command`, so shell quoting stays in one place (`transport/quote.rs`); openssh's own
//! `command().args()` would be a second quoting implementation to keep in agreement with it.
//! Nothing here prints; warnings go to `tracing`.

mod control;
mod errors;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{RwLock, Semaphore};

pub use control::{ControlDir, close_all_masters, install_ctrl_c_cleanup};

use super::{CommandOutput, Stdin, StdinPart, Transport, TransportError, TransportStats, quote_argv};

/// At most this many commands run at once over one host's master (sshd's default
/// `MaxSessions` is 10; more concurrent channels are refused by the server).
pub const MAX_CHANNELS_PER_HOST: usize = 8;

/// A master with no client for this many seconds exits (`ControlPersist`). While the transport
/// lives it pings its master every [`KEEPALIVE_EVERY`], so only an abandoned master times out.
pub const MASTER_IDLE_SECS: usize = 30;

/// How often a live transport pings its master to keep it from idling out.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);

/// `ServerAliveInterval`: how often ssh probes a silent server (3 missed probes drop the link).
pub const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// How strictly the server's host key is checked against `known_hosts_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// The key must already be known.
    #[default]
    Strict,
    /// An unknown host's key is added on first contact; a changed key is still refused.
    AcceptNew,
    /// No checking at all (warned about).
    Off,
}

/// How one host is reached over ssh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    /// The host's name in the spec, used in every message.
    pub host_name: String,
    /// Address (name or IP) to connect to.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key to use (only this one: `IdentitiesOnly`); `None` uses the agent and defaults.
    pub identity_file: Option<PathBuf>,
    /// known_hosts file checked (and, with accept-new, appended to); `None` uses ssh's default.
    pub known_hosts_file: Option<PathBuf>,
    /// Host key policy.
    pub host_key_checking: HostKeyPolicy,
    /// Run every command through `sudo -n --`.
    pub r#become: bool,
    /// How long establishing the connection may take (whole seconds, at least 1).
    pub connect_timeout: Duration,
}

impl SshConfig {
    /// `user@address:port`, for messages.
    fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }
}

/// The shell command line for `argv`: quoted by [`quote_argv`], behind `sudo -n --` when
/// `become` is set.
pub fn command_line(argv: &[String], r#become: bool) -> String {
    if r#become {
        let mut full = vec!["sudo".to_string(), "-n".to_string(), "--".to_string()];
        full.extend(argv.iter().cloned());
        quote_argv(&full)
    } else {
        quote_argv(argv)
    }
}

/// Commands to one host over one ssh master connection. Create with [`SshTransport::connect`];
/// call [`Transport::close`] when done (dropping it also asks the master to stop).
#[derive(Debug)]
pub struct SshTransport {
    cfg: SshConfig,
    /// `None` once closed. Commands hold a read guard while they run; `close` takes the write
    /// guard, so it waits for running commands and later ones see the transport closed.
    session: RwLock<Option<Session>>,
    channels: Semaphore,
    stats: TransportStats,
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    registration: Mutex<Option<control::MasterRegistration>>,
}

impl SshTransport {
    /// Opens the master connection to the host described by `cfg`, with its control socket in
    /// `control_dir` (which must outlive the transport). Fails with
    /// [`TransportError::Connect`] naming the host, the likely cause and ssh's own words.
    ///
    /// Must be called inside a tokio runtime (a keep-alive task is spawned).
    pub async fn connect(cfg: SshConfig, control_dir: &ControlDir) -> Result<SshTransport, TransportError> {
        let fail = |detail: String| TransportError::Connect { host: cfg.host_name.clone(), detail };
        if cfg.address.is_empty() || cfg.address.starts_with('-') || cfg.address.chars().any(char::is_whitespace) {
            return Err(fail(format!("invalid address {:?}", cfg.address)));
        }
        if cfg.user.is_empty() || cfg.user.starts_with('-') {
            return Err(fail(format!("invalid user {:?}", cfg.user)));
        }
        let timeout_secs = cfg.connect_timeout.as_secs().max(1);
        let mut builder = SessionBuilder::default();
        builder
            .user(cfg.user.clone())
            .port(cfg.port)
            .known_hosts_check(match cfg.host_key_checking {
                HostKeyPolicy::Strict => KnownHosts::Strict,
                HostKeyPolicy::AcceptNew => KnownHosts::Add,
                HostKeyPolicy::Off => KnownHosts::Accept,
            })
            .connect_timeout(Duration::from_secs(timeout_secs))
            .server_alive_interval(SERVER_ALIVE_INTERVAL)
            .control_directory(control_dir.path())
            .control_persist(match std::num::NonZeroUsize::new(MASTER_IDLE_SECS) {
                Some(n) => ControlPersist::IdleFor(n),
                None => ControlPersist::ClosedAfterInitialConnection,
            });
        if let Some(key) = &cfg.identity_file {
            builder.keyfile(key);
        }
        if let Some(known_hosts) = &cfg.known_hosts_file {
            builder.user_known_hosts_file(known_hosts);
        }
        if cfg.host_key_checking == HostKeyPolicy::Off {
            tracing::warn!(host = %cfg.host_name, "host key checking is off");
        }

        // ssh's ConnectTimeout covers TCP and the handshake; this outer bound catches the rest
        // (e.g. a server stalling during authentication).
        let outer = Duration::from_secs(timeout_secs * 2 + 5);
        let session = match tokio::time::timeout(outer, builder.connect_mux(&cfg.address)).await {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                let chain = errors::chain(&e);
                let cause = errors::classify_connect(&chain, &cfg).unwrap_or_else(|| "ssh failed".to_string());
                return Err(fail(format!("{cause} (connecting to {}): {chain}", cfg.target())));
            }
            Err(_) => {
                return Err(fail(format!("timed out after {} s connecting to {}", outer.as_secs(), cfg.target())));
            }
        };
        let stats = TransportStats::default();
        stats.count_connection();
        let ctl = session.control_socket().to_path_buf();
        tracing::debug!(host = %cfg.host_name, socket = %ctl.display(), "ssh master up");
        let registration = control::MasterRegistration::new(ctl.clone());
        let keeper = tokio::spawn(keep_alive(ctl));
        Ok(SshTransport {
            cfg,
            session: RwLock::new(Some(session)),
            channels: Semaphore::new(MAX_CHANNELS_PER_HOST),
            stats,
            keeper: Mutex::new(Some(keeper)),
            registration: Mutex::new(Some(registration)),
        })
    }

    /// The settings this transport was made with.
    pub fn config(&self) -> &SshConfig {
        &self.cfg
    }

    /// The master's control socket, or `None` once closed (tests use it to find the master).
    pub async fn control_socket(&self) -> Option<PathBuf> {
        self.session.read().await.as_ref().map(|s| s.control_socket().to_path_buf())
    }

    fn command_error(&self, argv: &[String], detail: String) -> TransportError {
        TransportError::Command { host: self.cfg.host_name.clone(), command: argv.first().cloned().unwrap_or_default(), detail }
    }

    fn stop_keeper(&self) {
        if let Some(keeper) = self.keeper.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            keeper.abort();
        }
    }

    /// Runs one command over `session`; the caller holds a channel permit.
    async fn run_on(&self, session: &Session, argv: &[String], stdin: Stdin<'_>) -> Result<CommandOutput, TransportError> {
        let line = command_line(argv, self.cfg.r#become);
        let mut cmd = session.raw_command(&line);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut parts_in: Option<Vec<StdinPart<'_>>> = None;
        match stdin {
            Stdin::Null => {
                cmd.stdin(Stdio::null());
            }
            Stdin::Bytes(b) => {
                cmd.stdin(Stdio::piped());
                parts_in = Some(vec![StdinPart::Bytes(b)]);
            }
            Stdin::Parts(parts) => {
                cmd.stdin(Stdio::piped());
                parts_in = Some(parts.to_vec());
            }
            Stdin::File(path) => {
                // The file's descriptor goes to the ssh master, which reads it directly: no copy
                // through cairn, and as fast as the channel allows.
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| self.command_error(argv, format!("opening {} for stdin: {e}", path.display())))?;
                cmd.stdin(Stdio::from(file.into_std().await));
            }
        }
        // sshd counts a finished command's session until its channel is fully closed, so right
        // after a burst of commands finish it can briefly refuse new ones (MaxSessions) even
        // though at most MAX_CHANNELS_PER_HOST run. A refused open never started the command:
        // retrying is safe.
        let mut delay = Duration::from_millis(10);
        let started = std::time::Instant::now();
        let mut child = loop {
            match cmd.spawn().await {
                Ok(child) => break child,
                Err(e) if session_refused(&e) && started.elapsed() < SESSION_RETRY_FOR => {
                    tracing::debug!(host = %self.cfg.host_name, "session refused, retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(self.lost_or(session, argv, "starting the command", &e).await),
            }
        };

        let feeder = child.stdin().take();
        let feed = async move {
            if let (Some(mut pipe), Some(parts)) = (feeder, parts_in) {
                super::feed_parts(&mut pipe, &parts).await?;
                pipe.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
            // dropping `pipe` closes the command's stdin
        };
        let out_pipe = child.stdout().take();
        let read_out = async move {
            let mut buf = Vec::new();
            if let Some(mut p) = out_pipe {
                p.read_to_end(&mut buf).await?;
            }
            Ok::<Vec<u8>, std::io::Error>(buf)
        };
        let err_pipe = child.stderr().take();
        let read_err = async move {
            let mut buf = Vec::new();
            if let Some(mut p) = err_pipe {
                p.read_to_end(&mut buf).await?;
            }
            Ok::<Vec<u8>, std::io::Error>(buf)
        };
        let (fed, stdout, stderr) = tokio::join!(feed, read_out, read_err);
        // Output is read to its end before waiting: the wait ends the output streams.
        let status = child.wait().await;
        // What ran (its program, or a script's name: never its arguments) and how long it took.
        tracing::debug!(host = %self.cfg.host_name, command = %command_name(argv), ms = started.elapsed().as_millis() as u64, "remote command");
        // A broken pipe only means the command did not read all of its input; its exit says more.
        let fed_err = fed.err().filter(|e| e.kind() != std::io::ErrorKind::BrokenPipe);
        let stdout = stdout.map_err(|e| self.command_error(argv, format!("reading stdout: {e}")))?;
        let stderr = stderr.map_err(|e| self.command_error(argv, format!("reading stderr: {e}")))?;
        let status = match status {
            Ok(st) => st.code(),
            // The crate reports exit 127 as an error; it is an ordinary status here.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => Some(127),
            Err(openssh::Error::RemoteProcessTerminated) => {
                // Killed by a signal, or the connection dropped: only the master can tell.
                if session.check().await.is_ok() {
                    None
                } else {
                    return Err(self.command_error(argv, format!("connection to {} lost", self.cfg.target())));
                }
            }
            Err(e) => return Err(self.lost_or(session, argv, "waiting for the command", &e).await),
        };
        if let Some(e) = fed_err {
            return Err(self.command_error(argv, format!("feeding stdin: {e}")));
        }
        Ok(CommandOutput { status, stdout, stderr })
    }

    /// An error for a failed step, saying "connection lost" when the master is gone.
    async fn lost_or(&self, session: &Session, argv: &[String], step: &str, e: &openssh::Error) -> TransportError {
        let chain = errors::chain(e);
        let detail = match e {
            openssh::Error::InvalidCommand => format!("{step}: an argument contains a NUL byte"),
            openssh::Error::Disconnected => format!("{step}: connection to {} lost: {chain}", self.cfg.target()),
            _ if session.check().await.is_err() => {
                format!("{step}: connection to {} lost: {chain}", self.cfg.target())
            }
            _ => format!("{step}: {chain}"),
        };
        self.command_error(argv, detail)
    }
}

/// How long a command keeps retrying when the server refuses to open its session.
const SESSION_RETRY_FOR: Duration = Duration::from_secs(10);

/// A command's name for the log: a fixed script's `$0` (`sh -c SCRIPT cairn-probe ...`), else its
/// program. Never an argument, which may name what a secret is.
fn command_name(argv: &[String]) -> &str {
    match argv {
        [sh, c, _, name, ..] if sh == "sh" && c == "-c" => name,
        [program, ..] => program,
        [] => "",
    }
}

/// The server refused to open a session channel (typically `MaxSessions` reached for a moment).
fn session_refused(e: &openssh::Error) -> bool {
    matches!(e, openssh::Error::SshMux(_)) && errors::chain(e).contains("open refused")
}

/// Pings the master now and then so that `ControlPersist` only ends abandoned masters.
async fn keep_alive(ctl: PathBuf) {
    // A handle that does not own the master: dropping it does not stop it.
    let handle = Session::resume_mux(ctl.into_boxed_path(), None);
    loop {
        tokio::time::sleep(KEEPALIVE_EVERY).await;
        if let Err(e) = handle.check().await {
            tracing::debug!("ssh master gone: {e}");
            return;
        }
    }
}

#[async_trait::async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.cfg.host_name
    }

    async fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CommandOutput, TransportError> {
        self.stats.count_command();
        if argv.is_empty() {
            return Err(self.command_error(argv, "empty command".to_string()));
        }
        let guard = self.session.read().await;
        let Some(session) = guard.as_ref() else {
            return Err(self.command_error(argv, "the connection is closed".to_string()));
        };
        let _permit = self.channels.acquire().await.map_err(|_| self.command_error(argv, "the connection is closed".to_string()))?;
        self.run_on(session, argv, stdin).await
    }

    fn stats(&self) -> &TransportStats {
        &self.stats
    }

    async fn close(&self) {
        self.stop_keeper();
        self.channels.close();
        let session = self.session.write().await.take();
        if let Some(session) = session
            && let Err(e) = session.close().await
        {
            tracing::warn!(host = %self.cfg.host_name, "closing the ssh master: {}", errors::chain(&e));
        }
        drop(self.registration.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        // The session's own drop asks the master to stop listening, which ends it.
        self.stop_keeper();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_once_and_prefixes_sudo() {
        let argv = crate::transport::argv(&["sh", "-c", "echo \"$1\"", "x", "it's"]);
        assert_eq!(command_line(&argv, false), "sh -c 'echo \"$1\"' x 'it'\\''s'");
        assert_eq!(command_line(&argv, true), "sudo -n -- sh -c 'echo \"$1\"' x 'it'\\''s'");
    }
}
