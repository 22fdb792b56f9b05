//! Download progress for `binary` resources: a byte bar per url on a terminal, one line per
//! download otherwise (CI logs). Implements the engine's [`FetchProgress`] hook.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::{ProgressBar, ProgressStyle};

use crate::resource::binary::fetch::{self, FetchProgress};

/// Draws downloads on stderr.
struct Downloads {
    tty: bool,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl FetchProgress for Downloads {
    fn started(&self, url: &str, total: Option<u64>) {
        if !self.tty {
            let size = total.map(|t| format!(" ({:.1} MB)", t as f64 / 1e6)).unwrap_or_default();
            eprintln!("downloading {url}{size}");
            return;
        }
        let bar = ProgressBar::new(total.unwrap_or(0));
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(crate::resource::binary::url_file_name(url).to_string());
        self.bars.lock().unwrap_or_else(PoisonError::into_inner).insert(url.to_string(), bar);
    }

    fn advanced(&self, url: &str, done: u64) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(PoisonError::into_inner).get(url) {
            bar.set_position(done);
        }
    }

    fn finished(&self, url: &str) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(PoisonError::into_inner).remove(url) {
            bar.finish_and_clear();
        }
    }
}

/// Installs the download display for this process.
pub fn install() {
    fetch::set_progress(Arc::new(Downloads { tty: std::io::stderr().is_terminal(), bars: Mutex::new(HashMap::new()) }));
}
