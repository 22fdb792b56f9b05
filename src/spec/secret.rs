//! Secret sources: file content that comes from outside the repo, read on the machine running
//! cairn each time the spec is loaded (`plan`, `apply`, `apply PLAN`): an environment variable, a
//! local file, or a command's stdout. The value is held as [`SecretBytes`], whose `Debug` never
//! shows it; every file written from a secret is `sensitive`.

use std::fmt;
use std::path::PathBuf;

use super::diagnostic::Span;

/// Where a secret comes from, as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `{ env = "NAME" }`: the environment variable `NAME`.
    Env(String),
    /// `{ file = "~/secrets/x" }`: a local file (`~` expanded, relative paths from the spec's
    /// folder); not part of the spec's digest.
    File {
        /// As written.
        written: String,
        /// As read.
        path: PathBuf,
    },
    /// `{ command = ["pass", "show", "x"] }`: a program's stdout (run without a shell).
    Command(Vec<String>),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable `{name}`"),
            SecretSource::File { written, .. } => write!(f, "file `{written}`"),
            SecretSource::Command(argv) => write!(f, "command `{}`", argv.join(" ")),
        }
    }
}

/// A secret's bytes. `Debug` prints `(sensitive)`; there is no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps the bytes read.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes, for writing the file and for keyed digests.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// A secret read while loading the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Where it came from.
    pub source: SecretSource,
    /// Where the source is written in the spec.
    pub span: Span,
    /// What was read.
    pub value: SecretBytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret { source: SecretSource::Env("T".into()), span: Span::default(), value: SecretBytes::new(b"hunter2".to_vec()) };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
