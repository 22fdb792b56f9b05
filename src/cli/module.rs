//! `cairn module show NAME`: describes a module (inputs with types, defaults and descriptions,
//! checks, resources) as Markdown on stdout. NAME is a module name, looked up like a spec's
//! `source` from the current directory (`modules/` here and in each parent, then
//! `CAIRN_MODULE_PATH`), or a path to a module folder.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::spec::{load_module, module_roots};

/// `cairn module …`.
#[derive(Debug, clap::Subcommand)]
pub enum ModuleCommand {
    /// Describe a module: its inputs (type, default, description), checks and resources.
    Show {
        /// A module name (looked up in `modules/` folders and CAIRN_MODULE_PATH) or a folder path.
        name: String,
    },
}

/// Runs a `cairn module` command: 0 on success, 1 when the module is missing or invalid.
pub fn run(cmd: ModuleCommand) -> ExitCode {
    match cmd {
        ModuleCommand::Show { name } => {
            let Some(dir) = find(&name) else {
                eprintln!(
                    "error: module `{name}` not found (looked in `modules/` here and in each parent directory, and in CAIRN_MODULE_PATH)"
                );
                return ExitCode::FAILURE;
            };
            match load_module(&dir) {
                Ok((def, _)) => {
                    print!("{}", crate::module::show::markdown(&def));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{}", e.render());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn find(name: &str) -> Option<PathBuf> {
    if name.contains('/') || name.starts_with('.') {
        let dir = PathBuf::from(name);
        return dir.join("module.toml").is_file().then_some(dir);
    }
    module_roots(Path::new(".")).into_iter().map(|r| r.join(name)).find(|d| d.join("module.toml").is_file())
}
