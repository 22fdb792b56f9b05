//! The `local` transport: runs commands on the machine running cairn, without a shell.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::{CommandOutput, Stdin, Transport, TransportError, TransportStats};

/// Runs commands on this machine, for `transport = "local"` hosts.
#[derive(Debug)]
pub struct LocalTransport {
    host: String,
    stats: TransportStats,
}

impl LocalTransport {
    /// A transport for the host named `host`.
    pub fn new(host: impl Into<String>) -> Self {
        let stats = TransportStats::default();
        stats.count_connection();
        Self { host: host.into(), stats }
    }
}

#[async_trait::async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.host
    }

    async fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CommandOutput, TransportError> {
        self.stats.count_command();
        let program = argv.first().map(String::as_str).unwrap_or_default();
        let fail = |detail: String| TransportError::Command { host: self.host.clone(), command: program.to_string(), detail };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&argv[1.min(argv.len())..])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(match stdin {
                Stdin::Null => Stdio::null(),
                _ => Stdio::piped(),
            })
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
        let feeder = child.stdin.take();
        let feed = async {
            let Some(mut pipe) = feeder else { return Ok(()) };
            match stdin {
                Stdin::Null => Ok(()),
                Stdin::Bytes(b) => pipe.write_all(b).await,
                Stdin::File(p) => {
                    let mut file = tokio::fs::File::open(p).await?;
                    tokio::io::copy(&mut file, &mut pipe).await.map(|_| ())
                }
                Stdin::Parts(parts) => super::feed_parts(&mut pipe, parts).await,
            }
            // dropping `pipe` closes the child's stdin
        };
        let (fed, output) = tokio::join!(feed, child.wait_with_output());
        let output = output.map_err(|e| fail(e.to_string()))?;
        // A broken pipe only means the command did not read all of its input; its exit says more.
        if let Err(e) = fed
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(fail(format!("feeding stdin: {e}")));
        }
        Ok(CommandOutput { status: output.status.code(), stdout: output.stdout, stderr: output.stderr })
    }

    fn stats(&self) -> &TransportStats {
        &self.stats
    }

    async fn close(&self) {}
}
