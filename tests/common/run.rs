//! Running the real `cairn` binary from integration tests: no colour, no proxies, stdin closed,
//! and a safety net every test gets for free: no output may ever contain a private key, nor a
//! secret read from a secret source (tests give every such secret a value containing
//! [`SECRET_MARKER`]); [`assert_no_secret`] casts the same net over files (saved plans).
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

/// What one run of cairn printed and returned.
pub struct Run {
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Run {
    /// Exit status and both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!("exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }

    /// The "N remote command(s)" that `--verbose` reported for `host`.
    pub fn commands(&self, host: &str) -> u64 {
        let stderr = &self.stderr;
        let line = stderr.lines().find(|l| l.starts_with(&format!("{host}: "))).unwrap_or_else(|| panic!("no stats for {host}:\n{stderr}"));
        let n = line.split(", ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok());
        n.unwrap_or_else(|| panic!("unreadable stats line {line:?}"))
    }
}

/// Part of the value of every secret the tests feed through a secret source (`env`, `file`,
/// `command`): it must never appear in cairn's output, logs or plan files.
pub const SECRET_MARKER: &str = "cairn-test-secret";

/// Panics when `text` (read from `what`) holds a private key or a test secret.
pub fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains("PRIVATE KEY"), "a private key reached {what}:\n{text}");
    assert!(!text.contains("AGE-SECRET-KEY-"), "an age identity reached {what}:\n{text}");
    assert!(!text.contains(SECRET_MARKER), "a secret reached {what}:\n{text}");
}

/// Runs `cairn ARGS` in `dir`.
pub fn cairn(dir: &Path, args: &[&str]) -> Run {
    cairn_env(dir, args, &[])
}

/// `cairn ARGS` in `dir` as every test runs it: no colour, no proxies, stdin closed.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("CAIRN_LOG")
        .env_remove("CAIRN_AGE_IDENTITY")
        .env_remove("CAIRN_AGE_IDENTITY_FILE")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cairn ARGS` in `dir` with extra environment variables.
pub fn cairn_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let out = command(dir, args, env).output().unwrap();
    finished(args, started, &out)
}

/// Starts `cairn ARGS` in `dir` in the background, its output captured (`capture`) or dropped;
/// [`wait`] collects it.
pub fn spawn(dir: &Path, args: &[&str], capture: bool) -> Child {
    spawn_env(dir, args, &[], capture)
}

/// [`spawn`] with extra environment variables.
pub fn spawn_env(dir: &Path, args: &[&str], env: &[(&str, &str)], capture: bool) -> Child {
    let out = || if capture { Stdio::piped() } else { Stdio::null() };
    command(dir, args, env).stdout(out()).stderr(out()).spawn().unwrap()
}

/// Waits for a [`spawn`]ed cairn (`args` as given to it, for the log).
pub fn wait(child: Child, args: &[&str]) -> Run {
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    finished(args, started, &out)
}

fn finished(args: &[&str], started: Instant, out: &Output) -> Run {
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ cairn {} ({:.1}s)\n{}", args.join(" "), started.elapsed().as_secs_f64(), run.all());
    assert_no_secret("cairn's output", &run.all());
    run
}
