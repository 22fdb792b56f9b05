//! Content hashing shared by every layer: the sha256 of bytes as lower-case hex, the form the
//! host probe reports (`sha256sum`), binaries are pinned with, and fingerprints are made of.

use sha2::{Digest as _, Sha256};

/// sha256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
