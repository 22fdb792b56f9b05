//! Unified diffs of text content for plans (similar, patience, 3 lines of context, bounded time).

use std::time::Duration;

use similar::{Algorithm, TextDiff};

/// Largest content (either side) shown as a diff; bigger changes show only their hashes.
const MAX_DIFF_BYTES: usize = 256 * 1024;

/// A unified diff of `old` → `new` labelled with `path`, or a one-line note when the content is
/// binary or too big to show.
pub fn unified(path: &str, host: &str, old: &[u8], new: &[u8]) -> String {
    if old.len() > MAX_DIFF_BYTES || new.len() > MAX_DIFF_BYTES {
        return format!("(content too large to show: {} → {} bytes)\n", old.len(), new.len());
    }
    let (Ok(old), Ok(new)) = (std::str::from_utf8(old), std::str::from_utf8(new)) else {
        return format!("(binary content: {} → {} bytes)\n", old.len(), new.len());
    };
    let diff = TextDiff::configure().algorithm(Algorithm::Patience).timeout(Duration::from_millis(500)).diff_lines(old, new);
    diff.unified_diff()
        .context_radius(3)
        .header(&format!("{path} (on {host})"), &format!("{path} (wanted)"))
        .missing_newline_hint(true)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_lines_with_context() {
        let d = unified("/etc/x", "node1", b"a\nb\nc\n", b"a\nB\nc\n");
        assert_eq!(d, "--- /etc/x (on node1)\n+++ /etc/x (wanted)\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
    }

    #[test]
    fn binary_content_is_summarised() {
        assert_eq!(unified("/x", "h", b"\xff\x00", b"ok"), "(binary content: 2 → 2 bytes)\n");
    }
}
