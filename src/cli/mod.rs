//! The command line: clap commands, colour, progress, exit codes. The only layer that prints.

/// Runs the command line and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
