//! How cairn reaches a host: the [`Transport`] trait (run an argv with stdin), its `local` and
//! `ssh` implementations, and the host-side operations built on it (atomic writes, batched
//! reads). Shell quoting happens here and nowhere else: see [`quote`]. Knows nothing of resources.

mod local;
mod ops;
mod quote;
pub mod ssh;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use local::LocalTransport;
pub use ops::{Content, FileAttrs, FileContent, FileWrite, odd_component, read_files, run_batched, write_file_atomic, write_files_atomic};
pub use quote::{quote, quote_argv};

/// What a command's stdin is fed from.
#[derive(Debug, Clone, Copy)]
pub enum Stdin<'a> {
    /// Nothing (stdin is closed).
    Null,
    /// These bytes.
    Bytes(&'a [u8]),
    /// This local file, streamed (for big uploads).
    File(&'a Path),
    /// These parts one after the other: bytes, and local files streamed (a batched write's
    /// archive around the binaries it carries, never held in memory whole).
    Parts(&'a [StdinPart<'a>]),
}

/// One part of [`Stdin::Parts`].
#[derive(Debug, Clone, Copy)]
pub enum StdinPart<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// Exactly `len` bytes of this local file: a file that is shorter (or longer) than that
    /// fails the feed rather than shift what follows it.
    File {
        /// The file.
        path: &'a Path,
        /// Its size when the archive around it was built.
        len: u64,
    },
}

/// Writes `parts` to `pipe` in order (see [`Stdin::Parts`]).
pub(crate) async fn feed_parts<W: tokio::io::AsyncWrite + Unpin>(pipe: &mut W, parts: &[StdinPart<'_>]) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for part in parts {
        match part {
            StdinPart::Bytes(b) => pipe.write_all(b).await?,
            StdinPart::File { path, len } => {
                let file = tokio::fs::File::open(path).await?;
                // One byte more than promised shows a file that grew.
                let copied = tokio::io::copy(&mut file.take(len + 1), pipe).await?;
                if copied != *len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} changed while it was sent ({copied} bytes where {len} were expected)", path.display()),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What a finished command returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status; `None` when killed by a signal.
    pub status: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// stderr (or stdout when stderr is empty), lossily decoded and trimmed, for error messages.
    pub fn error_text(&self) -> String {
        let text = if self.stderr.iter().all(u8::is_ascii_whitespace) { &self.stdout } else { &self.stderr };
        String::from_utf8_lossy(text).trim().to_string()
    }
}

/// A failure to talk to a host. The message names the host and carries the whole cause chain.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not establish the connection (auth, host key, route, timeout).
    #[error("{host}: cannot connect: {detail}")]
    Connect {
        /// The host's name.
        host: String,
        /// The cause chain, joined with ": ".
        detail: String,
    },
    /// The connection failed while a command ran, or the command could not be started.
    #[error("{host}: running `{command}` failed: {detail}")]
    Command {
        /// The host's name.
        host: String,
        /// The program (argv[0]) or a short description.
        command: String,
        /// The cause chain.
        detail: String,
    },
    /// A host-side operation (write, read) reported an error.
    #[error("{host}: {operation}: {detail}")]
    Remote {
        /// The host's name.
        host: String,
        /// What was attempted, e.g. `write /etc/motd`.
        operation: String,
        /// What the host said.
        detail: String,
    },
}

/// Counters kept by every transport, so tests and `--verbose` can show what a run cost.
#[derive(Debug, Default)]
pub struct TransportStats {
    connections: AtomicU64,
    commands: AtomicU64,
}

impl TransportStats {
    /// Counts one new connection.
    pub fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts one command run on the host.
    pub fn count_command(&self) {
        self.commands.fetch_add(1, Ordering::Relaxed);
    }
    /// Connections opened so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
    /// Commands run so far.
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

/// A way to run commands on one host. Implementations: [`LocalTransport`], [`ssh::SshTransport`].
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// The host's name, for messages.
    fn host(&self) -> &str;

    /// Runs `argv` (program first, no shell involved unless argv says so) and collects its
    /// output. A non-zero exit is not an error here; callers inspect [`CommandOutput::status`].
    async fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CommandOutput, TransportError>;

    /// What this transport has cost so far.
    fn stats(&self) -> &TransportStats;

    /// Closes connections. Further calls fail.
    async fn close(&self);
}

/// A shared handle to a host's transport.
pub type SharedTransport = Arc<dyn Transport>;

/// Runs `argv` and turns a non-zero exit into [`TransportError::Remote`] for `operation`, with
/// what the host said; the output of a successful run is returned.
pub async fn run_ok(
    transport: &dyn Transport,
    argv: &[String],
    stdin: Stdin<'_>,
    operation: &str,
) -> Result<CommandOutput, TransportError> {
    let out = transport.run(argv, stdin).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(TransportError::Remote { host: transport.host().to_string(), operation: operation.to_string(), detail: out.error_text() })
    }
}

/// Builds an argv from string slices.
pub fn argv<S: AsRef<str>>(parts: &[S]) -> Vec<String> {
    parts.iter().map(|s| s.as_ref().to_string()).collect()
}
