//! Opening and closing the connection to every host a run touches, and turning the spec's
//! `[ssh]` defaults and host tables into the transport's own [`SshConfig`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::graph::Graph;
use crate::plan::planner::Connections;
use crate::spec::{HostKeyChecking, HostSpec, Spec, SshDefaults, TransportKind};
use crate::transport::ssh::{ControlDir, HostKeyPolicy, SshConfig, SshTransport};
use crate::transport::{LocalTransport, SharedTransport};

/// Connects to every host of `graph` at once. A failed host keeps its error (with the cause
/// chain) so the rest of the run can go on without it. The control directory holds the ssh
/// master sockets and is removed when the returned handle is dropped.
pub async fn connect_all(spec: &Spec, graph: &Graph) -> (Connections, Option<Arc<ControlDir>>) {
    let needs_ssh = graph.hosts.values().any(|h| h.transport == TransportKind::Ssh);
    let control_dir = if needs_ssh {
        match ControlDir::new() {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                let err = format!("cannot create a private directory for ssh control sockets: {e}");
                return (graph.hosts.keys().map(|h| (h.clone(), Err(crate::plan::planner::Unreachable(err.clone())))).collect(), None);
            }
        }
    } else {
        None
    };
    let mut tasks = tokio::task::JoinSet::new();
    for host in graph.hosts.values() {
        let host = host.clone();
        let defaults = spec.ssh.clone();
        let control_dir = control_dir.clone();
        tasks.spawn(async move {
            let conn = connect(&defaults, &host, control_dir.as_deref()).await;
            (host.name, conn)
        });
    }
    let mut conns = Connections::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, conn)) = joined {
            conns.insert(name, conn.map_err(crate::plan::planner::Unreachable));
        }
    }
    (conns, control_dir)
}

async fn connect(defaults: &SshDefaults, host: &HostSpec, control_dir: Option<&ControlDir>) -> Result<SharedTransport, String> {
    match (host.transport, control_dir) {
        (TransportKind::Local, _) => Ok(Arc::new(LocalTransport::new(host.name.clone()))),
        (TransportKind::Ssh, Some(dir)) => {
            let config = ssh_config(defaults, host);
            match SshTransport::connect(config, dir).await {
                Ok(t) => Ok(Arc::new(t)),
                Err(e) => Err(e.to_string()),
            }
        }
        (TransportKind::Ssh, None) => Err(format!("{}: no control directory for ssh", host.name)),
    }
}

/// How `host` is reached over ssh: its table's settings over the `[ssh]` defaults; user `root`,
/// port 22, known_hosts `~/.ssh/known_hosts`, timeout 10 s; `~` expanded in paths.
fn ssh_config(defaults: &SshDefaults, host: &HostSpec) -> SshConfig {
    let known_hosts = defaults.known_hosts_file.clone().unwrap_or_else(|| PathBuf::from("~/.ssh/known_hosts"));
    SshConfig {
        host_name: host.name.clone(),
        address: host.address.clone(),
        port: host.port.or(defaults.port).unwrap_or(22),
        user: host.user.clone().or_else(|| defaults.user.clone()).unwrap_or_else(|| "root".to_string()),
        identity_file: defaults.identity_file.as_deref().map(expand_tilde),
        known_hosts_file: Some(expand_tilde(&known_hosts)),
        host_key_checking: host_key_policy(defaults.host_key_checking),
        r#become: host.r#become.unwrap_or(defaults.r#become),
        connect_timeout: Duration::from_secs(defaults.connect_timeout_secs.unwrap_or(10)),
    }
}

/// The spec's `host_key_checking` as the transport's policy.
fn host_key_policy(checking: HostKeyChecking) -> HostKeyPolicy {
    match checking {
        HostKeyChecking::Strict => HostKeyPolicy::Strict,
        HostKeyChecking::AcceptNew => HostKeyPolicy::AcceptNew,
        HostKeyChecking::Off => HostKeyPolicy::Off,
    }
}

/// `~` or `~/rest` → `$HOME/rest`; anything else (including `~user`) unchanged.
fn expand_tilde(path: &Path) -> PathBuf {
    let Ok(rest) = path.strip_prefix("~") else { return path.to_path_buf() };
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Warnings to show before connecting (e.g. host key checking switched off).
pub fn warnings(spec: &Spec, graph: &Graph) -> Vec<String> {
    let ssh_hosts = graph.hosts.values().filter(|h| h.transport == TransportKind::Ssh).count();
    if spec.ssh.host_key_checking == HostKeyChecking::Off && ssh_hosts > 0 {
        vec!["host_key_checking = \"off\": ssh host keys are not verified, so a machine impersonating a host would receive cairn's commands and files".to_string()]
    } else {
        Vec::new()
    }
}

/// Closes every open connection, all at once: each close is a round trip to its master's
/// control socket, and one after the other they were a tail of 2–3 ms per host at the end of
/// every run.
pub async fn close_all(conns: &Connections) {
    let mut closing = tokio::task::JoinSet::new();
    for t in conns.values().flatten() {
        let t = std::sync::Arc::clone(t);
        closing.spawn(async move { t.close().await });
    }
    while closing.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostSpec {
        HostSpec {
            name: name.to_string(),
            address: "10.0.0.5".to_string(),
            port: None,
            user: None,
            r#become: None,
            labels: Default::default(),
            transport: TransportKind::Ssh,
            span: Default::default(),
        }
    }

    #[test]
    fn ssh_config_fills_defaults_and_expands_tilde() {
        let home = std::env::var("HOME").unwrap_or_default();
        let cfg = ssh_config(&SshDefaults::default(), &host("web1"));
        assert_eq!(cfg.user, "root");
        assert_eq!(cfg.port, 22);
        assert_eq!(cfg.connect_timeout, Duration::from_secs(10));
        assert_eq!(cfg.host_key_checking, HostKeyPolicy::Strict);
        assert!(!cfg.r#become);
        assert_eq!(cfg.identity_file, None);
        assert_eq!(cfg.known_hosts_file, Some(PathBuf::from(&home).join(".ssh/known_hosts")));

        let defaults = SshDefaults {
            user: Some("deploy".into()),
            port: Some(2222),
            identity_file: Some("~/.ssh/id_cairn".into()),
            known_hosts_file: Some("/etc/cairn/known_hosts".into()),
            host_key_checking: HostKeyChecking::AcceptNew,
            r#become: true,
            connect_timeout_secs: Some(3),
        };
        let mut h = host("db1");
        h.port = Some(22022);
        h.user = Some("admin".into());
        h.r#become = Some(false);
        let cfg = ssh_config(&defaults, &h);
        assert_eq!((cfg.user.as_str(), cfg.port, cfg.r#become), ("admin", 22022, false));
        assert_eq!(cfg.identity_file, Some(PathBuf::from(&home).join(".ssh/id_cairn")));
        assert_eq!(cfg.known_hosts_file, Some(PathBuf::from("/etc/cairn/known_hosts")));
        assert_eq!(cfg.connect_timeout, Duration::from_secs(3));
        assert_eq!(cfg.host_key_checking, HostKeyPolicy::AcceptNew);
        assert_eq!(host_key_policy(HostKeyChecking::Off), HostKeyPolicy::Off);
        assert_eq!(expand_tilde(Path::new("~other/x")), PathBuf::from("~other/x"));
    }
}
