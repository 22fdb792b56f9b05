//! Unpacking release archives (tar.gz, tar.xz, plain tar, zip) into the local cache, safely.
//!
//! Every member name is checked before anything is written: absolute names, `..` components and
//! symbolic or hard links whose target would leave the archive are refused with an error naming
//! the member, and the whole archive is rejected. Only regular files are written to disk (links
//! are recorded in the [`Manifest`] and followed when a member is looked up), so nothing written
//! can point outside the extraction directory. When every entry lives under one top folder
//! (`etcd-v3.5.22-linux-amd64/etcd`), that folder is stripped from member names (`etcd`).
//! Each regular file's sha256 is computed while it is written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why an archive could not be unpacked, or a member not found in it. `Clone` (causes are
/// shared) because a fetch's outcome is kept and read by every host that needs it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    /// No file or link of that name.
    #[error(
        "the archive has no file `{member}` (after stripping its top folder); it has: {}",
        listing(.names)
    )]
    NoSuchMember {
        /// The member asked for.
        member: String,
        /// Every member the archive has, sorted.
        names: Vec<String>,
    },
    /// Links lead to links more than 16 times.
    #[error("archive member `{member}` is a chain of links too long to follow")]
    LinkChainTooLong {
        /// The member asked for.
        member: String,
    },
    /// A member name starts with `/`.
    #[error("archive member `{name}` has an absolute path")]
    AbsolutePath {
        /// The member's name.
        name: String,
    },
    /// A member name contains a NUL byte.
    #[error("archive member `{name}` contains a NUL byte")]
    NulByte {
        /// The member's name.
        name: String,
    },
    /// A member name has a `..` component.
    #[error("archive member `{name}` contains `..`")]
    ParentDir {
        /// The member's name.
        name: String,
    },
    /// A symbolic link to an absolute path.
    #[error("archive member `{name}` is a symbolic link to the absolute path `{target}`, outside the archive")]
    SymlinkAbsolute {
        /// The link's name.
        name: String,
        /// Where it points.
        target: String,
    },
    /// A symbolic link whose target climbs out of the archive.
    #[error("archive member `{name}` is a symbolic link to `{target}`, outside the archive")]
    SymlinkOutside {
        /// The link's name.
        name: String,
        /// Where it points.
        target: String,
    },
    /// A hard link whose target is not a safe member name.
    #[error("hard link `{name}`: {source}")]
    HardLink {
        /// The link's name, as in the archive.
        name: String,
        /// What is wrong with its target.
        source: Box<ArchiveError>,
    },
    /// A member could not be written into the extraction directory.
    #[error("unpacking `{local}`: {source}")]
    Write {
        /// The member's path relative to the extraction directory.
        local: String,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The archive file could not be opened.
    #[error("opening {}: {source}", .path.display())]
    Open {
        /// The archive file.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The tar stream is damaged (or its compression).
    #[error("reading the tar archive: {source}")]
    Tar {
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The zip file is damaged.
    #[error("reading the zip archive: {source}")]
    Zip {
        /// The cause.
        source: Arc<zip::result::ZipError>,
    },
    /// A zip symbolic link's target could not be read.
    #[error("reading link `{name}`: {source}")]
    ZipLink {
        /// The link's name.
        name: String,
        /// The cause.
        source: Arc<std::io::Error>,
    },
}

/// At most 12 names, then how many more: "a, b and 3 more".
fn listing(names: &[String]) -> String {
    let shown = names.iter().take(12).map(String::as_str).collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(12) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Archive formats cairn unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gzip-compressed tar.
    TarGz,
    /// xz-compressed tar.
    TarXz,
    /// Uncompressed tar.
    Tar,
    /// zip.
    Zip,
}

/// Recognises an archive by its first bytes (at least 262 of them for plain tar).
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Format::TarGz)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Format::TarXz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(Format::Zip)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(Format::Tar)
    } else {
        None
    }
}

/// One regular file unpacked into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the extraction directory.
    pub local: String,
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// What an unpacked archive holds, by member name (top folder stripped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Regular files.
    pub files: BTreeMap<String, Entry>,
    /// Links (symbolic or hard): member → the member it resolves to.
    pub links: BTreeMap<String, String>,
}

impl Manifest {
    /// The regular file a member name resolves to, following links inside the archive.
    pub fn lookup(&self, member: &str) -> Result<&Entry, ArchiveError> {
        let mut name = normalize(member).map(|c| c.join("/")).unwrap_or_else(|_| member.to_string());
        for _ in 0..16 {
            if let Some(e) = self.files.get(&name) {
                return Ok(e);
            }
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => return Err(self.missing(member)),
            }
        }
        Err(ArchiveError::LinkChainTooLong { member: member.to_string() })
    }

    fn missing(&self, member: &str) -> ArchiveError {
        let mut names: Vec<String> = self.files.keys().chain(self.links.keys()).cloned().collect();
        names.sort_unstable();
        ArchiveError::NoSuchMember { member: member.to_string(), names }
    }
}

/// Splits a member name into safe components: no absolute paths, no `..`, no NUL; `.` and empty
/// components are dropped.
pub fn normalize(name: &str) -> Result<Vec<String>, ArchiveError> {
    if name.starts_with('/') {
        return Err(ArchiveError::AbsolutePath { name: name.to_string() });
    }
    if name.contains('\0') {
        return Err(ArchiveError::NulByte { name: name.to_string() });
    }
    let mut out = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(ArchiveError::ParentDir { name: name.to_string() }),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

/// Resolves a symbolic link's target against the link's folder; refuses targets outside the
/// archive.
fn resolve_symlink(link: &[String], target: &str) -> Result<Vec<String>, ArchiveError> {
    let name = link.join("/");
    if target.starts_with('/') {
        return Err(ArchiveError::SymlinkAbsolute { name, target: target.to_string() });
    }
    let mut out: Vec<String> = link[..link.len().saturating_sub(1)].to_vec();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(ArchiveError::SymlinkOutside { name, target: target.to_string() });
                }
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

enum Kind {
    File,
    Dir,
    Symlink(String),
    Hardlink(String),
    Other,
}

/// Collects entries while unpacking; builds the manifest at the end.
struct Unpacker<'a> {
    dest: &'a Path,
    /// Every entry's components (for the top-folder rule).
    names: Vec<Vec<String>>,
    files: Vec<(Vec<String>, Entry)>,
    links: Vec<(Vec<String>, Vec<String>)>,
}

impl<'a> Unpacker<'a> {
    fn new(dest: &'a Path) -> Self {
        Self { dest, names: Vec::new(), files: Vec::new(), links: Vec::new() }
    }

    fn entry(&mut self, raw_name: &str, kind: Kind, content: &mut dyn Read) -> Result<(), ArchiveError> {
        let parts = normalize(raw_name)?;
        if parts.is_empty() {
            return Ok(());
        }
        match kind {
            Kind::File => {
                let local = parts.join("/");
                let path = self.dest.join(&local);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| ArchiveError::Write { local: local.clone(), source: Arc::new(e) })?;
                }
                let (sha256, size) =
                    copy_hashing(content, &path).map_err(|e| ArchiveError::Write { local: local.clone(), source: Arc::new(e) })?;
                self.files.push((parts.clone(), Entry { local, sha256, size }));
            }
            Kind::Symlink(target) => {
                let resolved = resolve_symlink(&parts, &target)?;
                self.links.push((parts.clone(), resolved));
            }
            Kind::Hardlink(target) => {
                let resolved =
                    normalize(&target).map_err(|e| ArchiveError::HardLink { name: raw_name.to_string(), source: Box::new(e) })?;
                self.links.push((parts.clone(), resolved));
            }
            Kind::Dir | Kind::Other => {}
        }
        self.names.push(parts);
        Ok(())
    }

    fn finish(self) -> Manifest {
        let top = self.names.first().and_then(|n| n.first()).cloned();
        let strip = top.filter(|t| self.names.iter().all(|n| n.first() == Some(t)) && self.names.iter().any(|n| n.len() > 1));
        let name = |parts: &[String]| -> Option<String> {
            let rest = if strip.is_some() { parts.get(1..)? } else { parts };
            (!rest.is_empty()).then(|| rest.join("/"))
        };
        let mut m = Manifest::default();
        for (parts, entry) in self.files {
            if let Some(n) = name(&parts) {
                m.files.insert(n, entry);
            }
        }
        for (parts, target) in self.links {
            if let (Some(n), Some(t)) = (name(&parts), name(&target)) {
                m.files.remove(&n);
                m.links.insert(n, t);
            }
        }
        m
    }
}

/// Copies `from` into a new file at `to`, returning its sha256 and size.
pub fn copy_hashing(from: &mut dyn Read, to: &Path) -> std::io::Result<(String, u64)> {
    let mut out = File::create(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    out.sync_all()?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Unpacks `archive` (of `format`) into the empty directory `dest`. Blocking.
pub fn unpack(archive: &Path, format: Format, dest: &Path) -> Result<Manifest, ArchiveError> {
    let open =
        || File::open(archive).map(BufReader::new).map_err(|e| ArchiveError::Open { path: archive.to_path_buf(), source: Arc::new(e) });
    let mut u = Unpacker::new(dest);
    match format {
        Format::TarGz => unpack_tar(flate2::read::MultiGzDecoder::new(open()?), &mut u)?,
        Format::TarXz => unpack_tar(liblzma::read::XzDecoder::new_multi_decoder(open()?), &mut u)?,
        Format::Tar => unpack_tar(open()?, &mut u)?,
        Format::Zip => unpack_zip(open()?, &mut u)?,
    }
    Ok(u.finish())
}

fn unpack_tar(reader: impl Read, u: &mut Unpacker<'_>) -> Result<(), ArchiveError> {
    let tar_error = |e| ArchiveError::Tar { source: Arc::new(e) };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(tar_error)?;
    for entry in entries {
        let mut entry = entry.map_err(tar_error)?;
        // Metadata records (e.g. git archive's `pax_global_header`) are not members.
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = || entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(link()),
            tar::EntryType::Link => Kind::Hardlink(link()),
            _ => Kind::Other,
        };
        u.entry(&name, kind, &mut entry)?;
    }
    Ok(())
}

fn unpack_zip(reader: impl Read + std::io::Seek, u: &mut Unpacker<'_>) -> Result<(), ArchiveError> {
    let zip_error = |e| ArchiveError::Zip { source: Arc::new(e) };
    let mut zip = zip::ZipArchive::new(reader).map_err(zip_error)?;
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(zip_error)?;
        let name = file.name().to_string();
        let kind = if file.is_dir() {
            Kind::Dir
        } else if file.is_symlink() {
            let mut target = String::new();
            file.read_to_string(&mut target).map_err(|e| ArchiveError::ZipLink { name: name.clone(), source: Arc::new(e) })?;
            Kind::Symlink(target)
        } else if file.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        u.entry(&name, kind, &mut file)?;
    }
    Ok(())
}

/// Where a member's bytes are on this machine.
pub fn local_path(root: &Path, entry: &Entry) -> PathBuf {
    root.join(&entry.local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_traversal_refused() {
        assert_eq!(normalize("./a//b/./c").unwrap(), vec!["a", "b", "c"]);
        assert!(normalize("/etc/passwd").unwrap_err().to_string().contains("absolute path"));
        assert!(normalize("a/../../x").unwrap_err().to_string().contains("`..`"));
        let link = vec!["top".to_string(), "bin".to_string(), "l".to_string()];
        assert_eq!(resolve_symlink(&link, "../lib/x").unwrap(), vec!["top", "lib", "x"]);
        assert!(resolve_symlink(&link, "../../../x").unwrap_err().to_string().contains("outside the archive"));
        assert!(resolve_symlink(&link, "/bin/sh").unwrap_err().to_string().contains("absolute path"));
    }

    #[test]
    fn a_missing_member_lists_twelve_names_and_counts_the_rest() {
        let mut m = Manifest::default();
        for i in 0..14 {
            m.files.insert(format!("f{i:02}"), Entry { local: String::new(), sha256: String::new(), size: 0 });
        }
        let shown = (0..12).map(|i| format!("f{i:02}")).collect::<Vec<_>>().join(", ");
        let want = format!("the archive has no file `x` (after stripping its top folder); it has: {shown} and 2 more");
        assert_eq!(m.lookup("x").unwrap_err().to_string(), want);
        m.files.retain(|name, _| name.as_str() < "f02");
        assert_eq!(
            m.lookup("x").unwrap_err().to_string(),
            "the archive has no file `x` (after stripping its top folder); it has: f00, f01"
        );
    }

    #[test]
    fn formats_are_detected_by_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Some(Format::TarGz));
        assert_eq!(detect(b"\xfd7zXZ\x00rest"), Some(Format::TarXz));
        assert_eq!(detect(b"PK\x03\x04...."), Some(Format::Zip));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar), Some(Format::Tar));
        assert_eq!(detect(b"#!/bin/sh\n"), None);
    }
}
