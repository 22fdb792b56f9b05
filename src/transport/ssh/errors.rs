//! Turning openssh errors into messages a person can act on: the whole cause chain (the crate's
//! top-level message is only "failed to connect"), ssh's log cleaned up, and the common causes
//! named up front.

use std::error::Error as StdError;

use super::{HostKeyPolicy, SshConfig};

/// Every message in the chain, joined with ": ", each one cleaned up (ssh's log is multi-line),
/// repeated messages dropped.
pub(super) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = clean(&e.to_string());
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// ssh's log as one line: lines trimmed, banners of `@` and "Permanently added" notes dropped.
fn clean(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '@') && !l.starts_with("Warning: Permanently added"))
        .map(|l| l.trim_matches('@').trim())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The likely cause of a failed connection, from ssh's words, phrased for the person at the
/// keyboard; `None` when nothing known matches.
pub(super) fn classify_connect(chain: &str, cfg: &SshConfig) -> Option<String> {
    let known_hosts = cfg.known_hosts_file.as_ref().map_or_else(|| "~/.ssh/known_hosts".to_string(), |p| p.display().to_string());
    let target = format!("{}:{}", cfg.address, cfg.port);
    // how known_hosts names the host
    let entry = if cfg.port == 22 { cfg.address.clone() } else { format!("[{}]:{}", cfg.address, cfg.port) };
    let c = chain;
    if c.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || c.contains("has changed and you have requested strict") {
        return Some(format!(
            "host key CHANGED: {target} offered a key different from the one in {known_hosts}; refusing \
             (possible man-in-the-middle). If the host was reinstalled, remove its old entry \
             (ssh-keygen -R '{entry}' -f {known_hosts}) and connect again"
        ));
    }
    if c.contains("Host key verification failed") || c.contains("host key is known for") {
        let hint = match cfg.host_key_checking {
            HostKeyPolicy::Strict => "; add its key to that file (ssh-keyscan) or set host_key_checking = \"accept-new\"",
            _ => "",
        };
        return Some(format!("host key unknown: {target} is not in {known_hosts} (strict host key checking){hint}"));
    }
    if c.contains("Permission denied (") || c.contains("Too many authentication failures") {
        let key = cfg.identity_file.as_ref().map_or_else(|| "the agent's or default keys".to_string(), |p| p.display().to_string());
        return Some(format!("authentication refused for user {:?} with {key}", cfg.user));
    }
    if c.contains("Connection refused") {
        return Some(format!("connection refused: nothing listens for ssh on {target}"));
    }
    if c.contains("No route to host") || c.contains("Network is unreachable") {
        return Some(format!("no route to {target}"));
    }
    if c.contains("timed out") || c.contains("Connection timed out") {
        return Some(format!("timed out after {} s reaching {target}", cfg.connect_timeout.as_secs().max(1)));
    }
    if c.contains("Could not resolve hostname") || c.contains("Name or service not known") {
        return Some(format!("cannot resolve {:?}", cfg.address));
    }
    if c.contains("Connection closed by") || c.contains("Connection reset by") {
        return Some(format!("{target} closed the connection during the handshake"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_walks_sources_and_cleans_ssh_logs() {
        let inner = std::io::Error::other(
            "@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@\r\nHost key verification failed.\r\n",
        );
        let outer = openssh::Error::Connect(inner);
        let text = chain(&outer);
        assert_eq!(
            text,
            "failed to connect to the remote host: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!; Host key verification failed."
        );
    }
}
