//! Opening and closing the connection to every host a run touches.

use std::sync::Arc;

use crate::graph::Graph;
use crate::plan::planner::Connections;
use crate::spec::{HostKeyChecking, HostSpec, Spec, TransportKind};
use crate::transport::{LocalTransport, SharedTransport};

/// Connects to every host of `graph` at once. A failed host keeps its error (with the cause
/// chain) so the rest of the run can go on without it.
pub async fn connect_all(spec: &Spec, graph: &Graph) -> Connections {
    let mut tasks = tokio::task::JoinSet::new();
    for host in graph.hosts.values() {
        let host = host.clone();
        let defaults = spec.ssh.clone();
        tasks.spawn(async move {
            let conn = connect(&defaults, &host).await;
            (host.name, conn)
        });
    }
    let mut conns = Connections::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, conn)) = joined {
            conns.insert(name, conn);
        }
    }
    conns
}

async fn connect(defaults: &crate::spec::SshDefaults, host: &HostSpec) -> Result<SharedTransport, String> {
    match host.transport {
        TransportKind::Local => Ok(Arc::new(LocalTransport::new(host.name.clone()))),
        TransportKind::Ssh => {
            let _ = defaults;
            Err(format!("{}: the ssh transport is not available in this build", host.name))
        }
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
