//! cairn: declarative infrastructure as code for clustered services.
//!
//! The flow, one module per arrow: a TOML spec is loaded and validated ([`spec`]), modules are
//! expanded and templates rendered per host ([`module`]), resource instances (resource × host) are
//! ordered into a dependency graph ([`graph`]), every host is read with one batched probe and each
//! instance is diffed purely against what was observed ([`resource`]), the result is a [`plan::Plan`]
//! that renders as text or JSON, and [`apply`] executes it in dependency order, re-checking each
//! change before it acts. Hosts are reached through [`transport`]; [`lab`] makes local test hosts;
//! [`cli`] is the only layer that prints.

pub mod apply;
pub mod cli;
pub mod graph;
pub mod hash;
pub mod lab;
pub mod module;
pub mod plan;
pub mod resource;
pub mod spec;
pub mod state;
pub mod transport;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, ext, out);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }

    /// Every shell script under `src/` is sent by a Rust file beside it (`include_str!`), so no
    /// script escapes `.ci/run`'s shellcheck, and none lies around unused.
    #[test]
    fn every_shell_script_is_included_by_a_rust_file_beside_it() {
        let mut scripts = Vec::new();
        files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "sh", &mut scripts);
        assert!(scripts.len() >= 7, "found only {scripts:?}");
        for script in scripts {
            let dir = script.parent().unwrap();
            let name = script.file_name().unwrap().to_str().unwrap();
            let needle = format!("include_str!(\"{name}\")");
            let used = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|rs| rs.extension().is_some_and(|e| e == "rs"))
                .any(|rs| std::fs::read_to_string(rs).unwrap().contains(&needle));
            assert!(used, "{} is not included by any .rs file beside it", script.display());
            let text = std::fs::read_to_string(&script).unwrap();
            assert!(text.starts_with("#!/bin/sh\n"), "{} must start with #!/bin/sh", script.display());
        }
    }
}
