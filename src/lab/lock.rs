//! Exclusive advisory file locks (`flock`), released when the [`Lock`] is dropped or the process
//! dies, so a crashed lab never leaves a lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use super::error::LabError;

/// A held exclusive lock on a file.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock on `path` (creating the file), calling `waiting` once if another process
    /// holds it, and blocking until it is free.
    // `File::lock` is stable since Rust 1.89; the crate's declared rust-version is older.
    #[allow(clippy::incompatible_msrv)]
    pub fn exclusive(path: &Path, waiting: impl FnOnce()) -> Result<Lock, LabError> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                file.lock().map_err(LabError::io("lock", path))?;
            }
            Err(TryLockError::Error(e)) => return Err(LabError::io("lock", path)(e)),
        }
        Ok(Lock { _file: file })
    }
}

fn open(path: &Path) -> Result<File, LabError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io("create", dir))?;
    }
    OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(LabError::io("open", path))
}
