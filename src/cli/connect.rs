//! Opening and closing the connection to every host a run touches.

use std::sync::Arc;

use crate::graph::Graph;
use crate::plan::planner::Connections;
use crate::spec::{HostKeyChecking, HostSpec, Spec, SshDefaults, TransportKind};
use crate::transport::ssh::{ControlDir, SshConfig, SshTransport};
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
            let config = SshConfig::from_spec(defaults, host);
            match SshTransport::connect(config, dir).await {
                Ok(t) => Ok(Arc::new(t)),
                Err(e) => Err(e.to_string()),
            }
        }
        (TransportKind::Ssh, None) => Err(format!("{}: no control directory for ssh", host.name)),
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

/// Closes every open connection.
pub async fn close_all(conns: &Connections) {
    for t in conns.values().flatten() {
        t.close().await;
    }
}
