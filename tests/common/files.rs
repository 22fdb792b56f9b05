//! Files for tests: copying a folder tree (an example or a module) into a temporary directory.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

/// Copies the tree at `from` to `to` (created), files and folders only.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
