//! The fuzz seed corpus (`tests/fuzz/corpus/`, read by `tests/fuzz.rs`): test helpers that load
//! inline specs call [`keep_spec`], which, only when `CAIRN_FUZZ_COLLECT` is set, saves the text
//! under `tests/fuzz/corpus/spec/` with a first line naming the path it was loaded as. Run
//! `CAIRN_FUZZ_COLLECT=1 cargo test --test spec_errors --test engine --test modules --test fuzz`
//! to refresh the corpus after adding tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

/// The first line of a spec seed: `# fuzz-base: PATH`, the path the text is loaded as.
pub const BASE_PREFIX: &str = "# fuzz-base: ";

/// Whether this run collects the corpus.
pub fn collecting() -> bool {
    std::env::var_os("CAIRN_FUZZ_COLLECT").is_some()
}

/// Saves `text` (loaded as `base`) as a spec seed when collecting.
pub fn keep_spec(base: &Path, text: &str) {
    if collecting() {
        keep("spec", "toml", format!("{BASE_PREFIX}{}\n{text}", base.display()).as_bytes());
    }
}

/// Saves `bytes` under `tests/fuzz/corpus/TARGET/`, named by their sha256.
pub fn keep(target: &str, ext: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let name = &cairn::hash::sha256_hex(bytes)[..16];
    std::fs::write(dir.join(format!("{name}.{ext}")), bytes).unwrap();
}
