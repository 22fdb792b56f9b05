//! `cairn lab up|status|down`: the command line for [`crate::lab`], local Debian test hosts in
//! systemd-nspawn containers. Parses arguments, prints progress to stderr and results to stdout,
//! and maps errors to exit codes.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use crate::lab::{self, LabError, UpOptions};

/// `cairn lab …`.
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Boot local Debian test hosts (systemd-nspawn containers with sshd) and write a hosts file.
    Up {
        /// How many hosts.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=i64::from(lab::MAX_HOSTS)))]
        hosts: u32,
        /// The lab's name (several labs with different names can run at once).
        #[arg(long, default_value = lab::DEFAULT_NAME)]
        name: String,
        /// Where to write the hosts file (`[ssh]` and `[hosts.*]` for your spec).
        #[arg(long, default_value = "lab.toml")]
        hosts_file: PathBuf,
    },
    /// Show which of the lab's hosts run, with addresses and PIDs.
    Status {
        /// The lab's name.
        #[arg(long, default_value = lab::DEFAULT_NAME)]
        name: String,
    },
    /// Stop the lab's hosts and remove everything it made (containers, bridge, state).
    Down {
        /// The lab's name.
        #[arg(long, default_value = lab::DEFAULT_NAME)]
        name: String,
    },
}

/// Runs a `cairn lab` command and returns the exit code: 0 on success, 1 when the command failed,
/// 2 when the machine lacks what the lab needs (root, systemd-nspawn, debootstrap).
pub fn run(cmd: LabCommand) -> ExitCode {
    let mut progress = |message: &str| eprintln!("lab: {message}");
    let result = match cmd {
        LabCommand::Up { hosts, name, hosts_file } => lab::up(&UpOptions { name, hosts, hosts_file }, &mut progress).map(|info| {
            println!("lab `{}`: {} hosts on {} ({})", info.name, info.nodes.len(), info.bridge, info.subnet);
            for node in &info.nodes {
                println!("  {:<8} {}", node.name, node.address);
            }
            println!("hosts file:  {}", info.hosts_file.display());
            println!("ssh key:     {}", info.key_path.display());
            println!("known_hosts: {}", info.known_hosts_path.display());
            if let Some(first) = info.nodes.first() {
                println!(
                    "try:         ssh -i {} -o UserKnownHostsFile={} root@{}",
                    info.key_path.display(),
                    info.known_hosts_path.display(),
                    first.address
                );
            }
        }),
        LabCommand::Status { name } => lab::status(&name).map(|status| {
            let running = status.nodes.iter().filter(|n| n.running).count();
            println!(
                "lab `{}`: {running}/{} hosts running; bridge {} ({}) {}",
                status.name,
                status.nodes.len(),
                status.bridge,
                status.subnet,
                if status.bridge_present { "present" } else { "missing" }
            );
            for node in &status.nodes {
                let pid = node.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
                println!("  {:<8} {:<15} {:<8} pid {pid}", node.name, node.address, if node.running { "running" } else { "stopped" });
            }
            println!("state: {}", status.state_dir.display());
            if let Some(hosts_file) = &status.hosts_file {
                println!("hosts file: {}", hosts_file.display());
            }
        }),
        LabCommand::Down { name } => lab::down(&name, &mut progress),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            match err {
                LabError::NotRoot | LabError::MissingProgram { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
