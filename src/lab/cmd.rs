//! Running the host programs the lab drives (`ip`, `ssh-keygen`, `debootstrap`, `cp`, …) from an
//! argv, never a shell string, and turning failures into [`LabError::Command`].

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::error::LabError;

/// Runs `argv` with stdin closed, waits, and returns its stdout when it exits 0.
pub(crate) fn run<S: AsRef<OsStr>>(argv: &[S]) -> Result<String, LabError> {
    let out = output(argv)?;
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(failed(argv, &out)) }
}

/// Runs `argv` with stdin closed and returns whatever happened (spawn errors aside).
pub(crate) fn output<S: AsRef<OsStr>>(argv: &[S]) -> Result<Output, LabError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(LabError::Command { command: String::new(), detail: "empty command".to_string() });
    };
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command { command: display(argv), detail: format!("cannot start: {e}") })
}

/// The error for a command that ran and failed.
pub(crate) fn failed<S: AsRef<OsStr>>(argv: &[S], out: &Output) -> LabError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
    let status = match out.status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    LabError::Command {
        command: display(argv),
        detail: if text.is_empty() { status } else { format!("{status}: {}", last_lines(text, 15)) },
    }
}

/// The command line as text for messages (quoted so it can be read unambiguously).
pub(crate) fn display<S: AsRef<OsStr>>(argv: &[S]) -> String {
    let parts: Vec<String> = argv.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    crate::transport::quote_argv(&parts)
}

/// Whether `program` is an executable file in PATH (or in the sbin directories, which a non-login
/// root shell may lack).
pub(crate) fn have_program(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(extra.into());
    }
    dirs.iter().any(|d| is_executable(&d.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
