//! `check`: a command that must succeed on its hosts once its dependencies are applied, tried up
//! to `retries + 1` times, `interval` seconds apart, each attempt limited to `timeout` seconds
//! (by coreutils `timeout` on the host). It changes nothing: plans show it as `?` ("will check:
//! …") without counting it as a change. A failure fails the apply with the command's output and
//! skips everything that depends on the check.

use std::time::Duration;

use super::{Action, Applied, ApplyError, Decision, HostFacts, ResourceKind};
use crate::spec::{CheckCommand, CheckSpec, Diagnostic, Kind, TemplateText};
use crate::state::manifest::Owned;
use crate::transport::{Stdin, Transport};

/// How much of a failed attempt's output goes into the error.
const OUTPUT_TAIL_LINES: usize = 30;

/// A check as it runs on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCheck {
    /// argv of the command (`sh -c SCRIPT` for a string command).
    pub argv: Vec<String>,
    /// How the plan names it.
    pub description: String,
    /// Extra attempts after a failure.
    pub retries: u32,
    /// Seconds between attempts.
    pub interval_secs: u64,
    /// Seconds one attempt may take.
    pub timeout_secs: u64,
}

impl DesiredCheck {
    /// Renders a `[check.*]` table for one host (each argv item, or the shell script, is a
    /// template).
    pub fn from_spec(
        spec: &CheckSpec,
        render: &mut dyn FnMut(&TemplateText) -> Result<String, Diagnostic>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let argv = match &spec.command {
            CheckCommand::Shell(script) => vec!["sh".to_string(), "-c".to_string(), render(script).map_err(|d| vec![d])?],
            CheckCommand::Argv(items) => {
                let mut out = Vec::new();
                let mut errors = Vec::new();
                for item in items {
                    match render(item) {
                        Ok(s) => out.push(s),
                        Err(e) => errors.push(e),
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                out
            }
        };
        Ok(Self {
            argv,
            description: spec.description.clone(),
            retries: spec.retries,
            interval_secs: spec.interval_secs,
            timeout_secs: spec.timeout_secs,
        })
    }

    /// Runs the check until it passes or its attempts are used up. Returns how it passed.
    pub async fn run(&self, transport: &dyn Transport) -> Result<String, ApplyError> {
        let attempts = self.retries.saturating_add(1);
        let mut argv = vec!["timeout".to_string(), "-k".to_string(), "5".to_string(), self.timeout_secs.to_string()];
        argv.extend(self.argv.iter().cloned());
        let mut last = String::new();
        for attempt in 1..=attempts {
            // A guard in case the host's `timeout` never returns (connection trouble).
            let guard = Duration::from_secs(self.timeout_secs + 15);
            match tokio::time::timeout(guard, transport.run(&argv, Stdin::Null)).await {
                Ok(Ok(out)) if out.success() => {
                    let tries = if attempt == 1 { "first attempt".to_string() } else { format!("attempt {attempt} of {attempts}") };
                    return Ok(format!("check passed: {} ({tries})", self.description));
                }
                Ok(Ok(out)) => {
                    let status = match out.status {
                        Some(124) => format!("timed out after {}s", self.timeout_secs),
                        Some(code) => format!("exit status {code}"),
                        None => "killed by a signal".to_string(),
                    };
                    last = format!("{status}{}", output_tail(&out.stdout, &out.stderr));
                }
                // The connection failed (lost, or the command could not start): the transport does
                // not come back, so retrying would only wait out every interval.
                Ok(Err(e)) => return Err(self.failed(attempt, &format!("{e} (not retried: the connection failed)"))),
                Err(_) => last = format!("no answer from the host within {}s", guard.as_secs()),
            }
            if attempt < attempts {
                tokio::time::sleep(Duration::from_secs(self.interval_secs)).await;
            }
        }
        Err(self.failed(attempts, &last))
    }

    /// "check failed: … after N attempts: why".
    fn failed(&self, attempts: u32, why: &str) -> ApplyError {
        let tries = if attempts == 1 { "1 attempt".to_string() } else { format!("{attempts} attempts") };
        ApplyError::Failed(format!("check failed: {} (`{}`) after {tries}: {why}", self.description, self.target()))
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredCheck {
    fn kind(&self) -> Kind {
        Kind::Check
    }

    /// What the plan shows; a check always runs when the apply gets to it.
    fn diff(&self, _facts: &HostFacts) -> Decision {
        Decision::new(Action::Check, format!("will check: {}", self.description))
    }

    async fn apply(&self, transport: &dyn Transport, _decision: &Decision) -> Result<Applied, ApplyError> {
        self.run(transport).await.map(|_| Applied::plain())
    }

    async fn run_check(&self, transport: &dyn Transport) -> Option<Result<String, ApplyError>> {
        Some(self.run(transport).await)
    }

    fn owned(&self, _created: bool) -> Option<Owned> {
        None
    }

    /// The command as shown in plans ("etcdctl endpoint health").
    fn target(&self) -> String {
        match self.argv.as_slice() {
            [sh, c, script] if sh == "sh" && c == "-c" => script.clone(),
            _ => crate::transport::quote_argv(&self.argv),
        }
    }
}

/// The last lines of a command's stdout and stderr, for errors.
fn output_tail(stdout: &[u8], stderr: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(stdout).trim_end().to_string();
    let err = String::from_utf8_lossy(stderr);
    if !err.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(err.trim_end());
    }
    if text.is_empty() {
        return ", no output".to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(OUTPUT_TAIL_LINES);
    let shown: Vec<String> = lines[skip..].iter().map(|l| format!("    {l}")).collect();
    format!(", output:\n{}", shown.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::LocalTransport;

    fn check(argv: &[&str], retries: u32) -> DesiredCheck {
        DesiredCheck {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            description: "demo health".into(),
            retries,
            interval_secs: 0,
            timeout_secs: 5,
        }
    }

    #[test]
    fn plan_shows_a_check_that_changes_nothing() {
        let d = check(&["true"], 0).diff(&HostFacts::default());
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Check, "will check: demo health"));
        assert!(!d.action.is_change());
        assert_eq!(check(&["sh", "-c", "a | b"], 0).target(), "a | b");
        assert_eq!(check(&["etcdctl", "endpoint health"], 0).target(), "etcdctl 'endpoint health'");
    }

    #[test]
    fn output_tail_keeps_the_last_lines() {
        let many: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        let tail = output_tail(many.as_bytes(), b"oops\n");
        assert!(tail.starts_with(", output:\n    line 12\n"), "{tail}");
        assert!(tail.ends_with("    line 40\n    oops"), "{tail}");
        assert_eq!(output_tail(b"", b" \n"), ", no output");
    }

    #[tokio::test]
    async fn failing_check_reports_output_and_attempts() {
        let t = LocalTransport::new("local");
        let err = check(&["sh", "-c", "echo not healthy; echo detail >&2; exit 3"], 1).run(&t).await.unwrap_err().to_string();
        assert!(err.contains("2 attempts"), "{err}");
        assert!(err.contains("after 2 attempts: exit status 3, output:\n    not healthy\n    detail"), "{err}");
        assert_eq!(t.stats().commands(), 2);
    }

    #[tokio::test]
    async fn passing_check_after_retries() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("n");
        // Fails twice, then passes.
        let script = "n=$(cat \"$1\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$1\"; [ $n -ge 3 ]";
        let c = check(&["sh", "-c", script, "x", marker.to_str().unwrap()], 5);
        let t = LocalTransport::new("local");
        assert_eq!(c.run(&t).await.unwrap(), "check passed: demo health (attempt 3 of 6)");
    }

    /// A host whose connection is gone: every command fails to run.
    struct Lost(crate::transport::TransportStats);

    #[async_trait::async_trait]
    impl Transport for Lost {
        fn host(&self) -> &str {
            "h1"
        }
        async fn run(&self, argv: &[String], _: Stdin<'_>) -> Result<crate::transport::CommandOutput, crate::transport::TransportError> {
            self.0.count_command();
            Err(crate::transport::TransportError::Command {
                host: "h1".into(),
                command: argv[0].clone(),
                detail: "connection to root@192.0.2.1:22 lost".into(),
            })
        }
        fn stats(&self) -> &crate::transport::TransportStats {
            &self.0
        }
        async fn close(&self) {}
    }

    #[tokio::test]
    async fn a_lost_connection_is_not_retried() {
        let mut c = check(&["true"], 30);
        c.interval_secs = 3;
        let t = Lost(crate::transport::TransportStats::default());
        let err = tokio::time::timeout(Duration::from_secs(2), c.run(&t)).await.unwrap().unwrap_err().to_string();
        assert_eq!(
            err,
            "check failed: demo health (`true`) after 1 attempt: h1: running `timeout` failed: connection to root@192.0.2.1:22 lost \
             (not retried: the connection failed)"
        );
        assert_eq!(t.stats().commands(), 1);
    }

    #[tokio::test]
    async fn timeout_is_reported() {
        let mut c = check(&["sleep", "5"], 0);
        c.timeout_secs = 1;
        let err = c.run(&LocalTransport::new("local")).await.unwrap_err().to_string();
        assert!(err.contains("timed out after 1s"), "{err}");
    }
}
