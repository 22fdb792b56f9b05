//! Loading a spec file (stub; the parser lands next).

use std::path::Path;

use super::{Diagnostics, SourceMap, Spec};

/// A spec that could not be loaded: every problem, and the files needed to quote them.
#[derive(Debug)]
pub struct LoadError {
    /// Files read so far.
    pub sources: SourceMap,
    /// Every problem found.
    pub diagnostics: Diagnostics,
}

/// Reads and validates the spec at `path`, with its includes.
pub fn load(path: &Path) -> Result<Spec, LoadError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    load_str(path, &text)
}

/// Validates spec text as if read from `path` (includes and templates resolved beside it).
pub fn load_str(path: &Path, text: &str) -> Result<Spec, LoadError> {
    let _ = (path, text);
    Err(LoadError { sources: SourceMap::default(), diagnostics: Diagnostics::default() })
}
