//! `cairn completions SHELL` and `cairn man`: shell completion scripts (clap_complete) and the
//! man page (clap_mangen), both made from the same clap definition as the command line itself,
//! so they never fall behind it. The text is made by pure functions; [`run_completions`] and
//! [`run_man`] print or write it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

/// The completion script of `shell` for the `cairn` binary.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut out);
    out
}

/// The man page `cairn(1)`, in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

/// Writes `cairn.1` and one page per subcommand (`cairn-plan.1`, …) into `dir`, which must exist;
/// returns the pages now there, sorted.
pub fn write_man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "1") && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cairn")))
        .collect();
    pages.sort();
    Ok(pages)
}

/// `cairn completions SHELL`: the script on stdout.
pub fn run_completions(shell: Shell) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&completion_script(shell)).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the completion script: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cairn man [--dir DIR]`: `cairn(1)` on stdout, or every page written into DIR.
pub fn run_man(dir: Option<&Path>) -> ExitCode {
    let result = match dir {
        None => man_page().and_then(|page| {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&page).and_then(|()| stdout.flush())
        }),
        Some(dir) => write_man_pages(dir).map(|written| {
            for path in written {
                eprintln!("wrote {}", path.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let into = dir.map(|d| format!(" into {}", d.display())).unwrap_or_default();
            eprintln!("error: cannot write the man page{into}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            for sub in ["plan", "apply", "validate", "completions", "man"] {
                assert!(script.contains(sub), "{shell}: no {sub}");
            }
        }
    }

    #[test]
    fn man_page_has_a_title_and_the_subcommands() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.contains(".TH cairn 1"), "{page}");
        assert!(page.contains("plan"), "{page}");
    }
}
