//! Fetching a binary's url into the local cache, once per run, verified by sha256.
//!
//! Layout under the cache directory (`<state_dir>/cache`):
//! - `sha256/<sum>`: the downloaded file, stored only after its sha256 matched the spec;
//! - `sha256/<sum>.d/`: an archive unpacked (see [`super::archive`]), with `manifest.json`
//!   listing every member's sha256.
//!
//! Both are written under a temporary name and renamed into place, so an interrupted run never
//! leaves a half-written entry, and two runs at once at worst both download. A cached entry is
//! trusted (the name is its verified sum); delete the cache directory to force a new download.
//!
//! Within one run, every instance of every `binary` resource with the same sha256 shares one
//! [`ArtifactSlot`] (a `OnceCell`), so hosts planned in parallel wait for a single download.
//! Progress goes to the hook set with [`set_progress`]; the engine itself never prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use super::archive::{self, ArchiveError, Manifest};

/// Why a url could not be fetched into the cache, or a file found in what was fetched. `Clone`
/// (causes are shared) because one fetch's outcome is kept and read by every host that needs it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// A member was asked of a url that was not unpacked.
    #[error("{} is not an unpacked archive", .path.display())]
    NotUnpacked {
        /// The downloaded file.
        path: PathBuf,
    },
    /// The unpacked archive has no such member (or its links cannot be followed).
    #[error(transparent)]
    Member(#[from] ArchiveError),
    /// The url's content is not an archive cairn unpacks.
    #[error(
        "{url} is not an archive cairn can unpack (expected tar.gz, tar.xz, tar or zip); to install it as it is, use `path` instead of `extract`"
    )]
    NotAnArchive {
        /// The url.
        url: String,
    },
    /// Unpacking the downloaded archive failed.
    #[error("cannot unpack {url}: {source}")]
    Unpack {
        /// The url.
        url: String,
        /// Why.
        source: ArchiveError,
    },
    /// The url has not been fetched in this run (planning reads only what was fetched).
    #[error("{url} has not been fetched")]
    NotFetched {
        /// The url.
        url: String,
    },
    /// The cache directory could not be created.
    #[error("creating the download cache {}: {source}", .dir.display())]
    CreateCache {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// A file of the cache could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The list of an unpacked archive's members could not be encoded.
    #[error("{source}")]
    EncodeManifest {
        /// serde's error.
        source: Arc<serde_json::Error>,
    },
    /// The list of an unpacked archive's members could not be written.
    #[error("writing the manifest: {source}")]
    WriteManifest {
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The unpacked archive could not be renamed into place (and no other run put it there).
    #[error("cannot move the unpacked archive into {}", .root.display())]
    MoveUnpacked {
        /// Where it belongs.
        root: PathBuf,
    },
    /// The background task unpacking the archive failed.
    #[error("unpacking task failed: {source}")]
    UnpackTask {
        /// The cause.
        source: Arc<tokio::task::JoinError>,
    },
    /// The background task copying a `file://` url failed.
    #[error("copy task failed: {source}")]
    CopyTask {
        /// The cause.
        source: Arc<tokio::task::JoinError>,
    },
    /// The file of a `file://` url could not be opened.
    #[error("cannot read {}: {source}", .path.display())]
    ReadLocal {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The file of a `file://` url could not be copied into the cache.
    #[error("copying {}: {source}", .path.display())]
    CopyLocal {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// What arrived does not hash to the spec's sha256.
    #[error("sha256 mismatch for {url}: the spec expects {expected}, the downloaded file has {actual}; it was not cached or used")]
    ShaMismatch {
        /// The url.
        url: String,
        /// The spec's sha256.
        expected: String,
        /// The sha256 of what arrived.
        actual: String,
    },
    /// The verified download could not be renamed into the cache.
    #[error("storing {} in the cache: {source}", .dest.display())]
    Store {
        /// Its place in the cache.
        dest: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {detail}")]
    HttpClient {
        /// The cause chain, joined with ": ".
        detail: String,
    },
    /// The request failed (connection, TLS, ...); a certificate problem gets a hint.
    #[error("GET {url}: {detail}{}", certificate_hint(.detail))]
    Request {
        /// The url.
        url: String,
        /// The cause chain, joined with ": ".
        detail: String,
    },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    HttpStatus {
        /// The url.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The response body broke off.
    #[error("GET {url}: {detail}")]
    Body {
        /// The url.
        url: String,
        /// The cause chain, joined with ": ".
        detail: String,
    },
    /// The response ended before the length the server announced.
    #[error("GET {url}: the download ended after {done} of {total} bytes")]
    Truncated {
        /// The url.
        url: String,
        /// Bytes received.
        done: u64,
        /// Bytes announced.
        total: u64,
    },
}

/// The hint for a failed request whose cause mentions a certificate.
fn certificate_hint(detail: &str) -> &'static str {
    if detail.contains("certificate") {
        "; if the server's certificate comes from a private CA, trust it with SSL_CERT_FILE=/path/to/ca.pem"
    } else {
        ""
    }
}

/// An [`FetchError::Io`] for `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |e| FetchError::Io { path: path.to_path_buf(), source: Arc::new(e) }
}

/// Receives download progress (the CLI draws a bar on a terminal).
pub trait FetchProgress: Send + Sync {
    /// A download of `url` starts; `total` is its size when the server says.
    fn started(&self, url: &str, total: Option<u64>);
    /// `done` bytes of `url` have arrived so far.
    fn advanced(&self, url: &str, done: u64);
    /// The download of `url` ended (successfully or not).
    fn finished(&self, url: &str);
}

static PROGRESS: OnceLock<Arc<dyn FetchProgress>> = OnceLock::new();

/// Installs the progress hook for this process (first call wins).
pub fn set_progress(p: Arc<dyn FetchProgress>) {
    let _ = PROGRESS.set(p);
}

fn progress() -> Option<&'static Arc<dyn FetchProgress>> {
    PROGRESS.get()
}

/// Downloads and file copies this process has made (for tests and `--verbose`).
static FETCHES: AtomicU64 = AtomicU64::new(0);

/// How many urls this process has fetched (cache hits not counted).
pub fn fetch_count() -> u64 {
    FETCHES.load(Ordering::Relaxed)
}

/// A file in the local cache, ready to be pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Where it is on this machine.
    pub path: PathBuf,
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A fetched url: the file itself, and its members when it is an unpacked archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The downloaded file.
    pub file: LocalFile,
    /// Where the archive was unpacked, and what it holds (`None` for a bare file).
    pub unpacked: Option<(PathBuf, Manifest)>,
}

impl Artifact {
    /// The local file for an archive member (`Some`) or the bare file (`None`).
    pub fn member(&self, member: Option<&str>) -> Result<LocalFile, FetchError> {
        let Some(member) = member else { return Ok(self.file.clone()) };
        let Some((root, manifest)) = &self.unpacked else {
            return Err(FetchError::NotUnpacked { path: self.file.path.clone() });
        };
        let entry = manifest.lookup(member)?;
        Ok(LocalFile { path: archive::local_path(root, entry), sha256: entry.sha256.clone(), size: entry.size })
    }
}

/// The outcome of fetching once: the artifact, or why it could not be had.
pub type Fetched = Result<Arc<Artifact>, FetchError>;

type Key = (PathBuf, String, bool);

static SLOTS: LazyLock<Mutex<HashMap<Key, Arc<OnceCell<Fetched>>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The shared, fetch-once handle for one (cache, sha256, unpack or not).
#[derive(Clone)]
pub struct ArtifactSlot {
    key: Key,
    cell: Arc<OnceCell<Fetched>>,
}

impl std::fmt::Debug for ArtifactSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactSlot").field("key", &self.key).field("fetched", &self.cell.get().map(Result::is_ok)).finish()
    }
}

impl PartialEq for ArtifactSlot {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ArtifactSlot {}

impl ArtifactSlot {
    /// The slot for `sha256` in `cache_dir`, shared by every caller in this process.
    pub fn new(cache_dir: &Path, sha256: &str, unpack: bool) -> Self {
        let key = (cache_dir.to_path_buf(), sha256.to_string(), unpack);
        let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        let cell = Arc::clone(slots.entry(key.clone()).or_default());
        Self { key, cell }
    }

    /// What a finished fetch gave, without fetching.
    pub fn get(&self) -> Option<&Fetched> {
        self.cell.get()
    }

    /// Fetches `url` (once per process for this slot) and returns the outcome.
    pub async fn resolve(&self, url: &str) -> &Fetched {
        let (cache_dir, sha256, unpack) = &self.key;
        self.cell.get_or_init(|| async { fetch(cache_dir, url, sha256, *unpack).await.map(Arc::new) }).await
    }
}

/// Makes sure `url`'s content (which must hash to `sha256`) is in the cache, unpacked when
/// `unpack`, and returns where.
pub async fn fetch(cache_dir: &Path, url: &str, sha256: &str, unpack: bool) -> Result<Artifact, FetchError> {
    let dir = cache_dir.join("sha256");
    // The cache is `<state_dir>/cache`: the state dir is made first, with its .gitignore.
    if let Some(state_dir) = cache_dir.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        crate::state::ensure_state_dir(state_dir)
            .map_err(|e| FetchError::CreateCache { dir: state_dir.to_path_buf(), source: Arc::new(e) })?;
    }
    tokio::fs::create_dir_all(&dir).await.map_err(|e| FetchError::CreateCache { dir: dir.clone(), source: Arc::new(e) })?;
    let file = dir.join(sha256);
    if tokio::fs::metadata(&file).await.is_err() {
        download(url, sha256, &file).await?;
    }
    let size = tokio::fs::metadata(&file).await.map_err(io(&file))?.len();
    let local = LocalFile { path: file.clone(), sha256: sha256.to_string(), size };
    if !unpack {
        return Ok(Artifact { file: local, unpacked: None });
    }
    let root = dir.join(format!("{sha256}.d"));
    let url = url.to_string();
    let manifest = tokio::task::spawn_blocking(move || unpack_cached(&url, &file, &root).map(|m| (root, m)))
        .await
        .map_err(|e| FetchError::UnpackTask { source: Arc::new(e) })??;
    Ok(Artifact { file: local, unpacked: Some(manifest) })
}

fn temp_name(dir: &Path, base: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(".tmp-{base}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Reads `root/manifest.json`, or unpacks `file` into `root` (via a temp dir and a rename).
fn unpack_cached(url: &str, file: &Path, root: &Path) -> Result<Manifest, FetchError> {
    let manifest_path = root.join("manifest.json");
    if let Ok(text) = std::fs::read(&manifest_path)
        && let Ok(m) = serde_json::from_slice::<Manifest>(&text)
    {
        return Ok(m);
    }
    let mut head = [0u8; 512];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(file).map_err(io(file))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(io(file)(e)),
            }
        }
        n
    };
    let format = archive::detect(&head[..n]).ok_or_else(|| FetchError::NotAnArchive { url: url.to_string() })?;
    let parent = root.parent().unwrap_or(Path::new("."));
    let base = root.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = temp_name(parent, &base);
    let files = tmp.join("files");
    std::fs::create_dir_all(&files).map_err(io(&files))?;
    let unpack_failed = |source| FetchError::Unpack { url: url.to_string(), source };
    let result = archive::unpack(file, format, &files).map_err(unpack_failed).and_then(|mut m| {
        // Stored paths are relative to `root`.
        for entry in m.files.values_mut() {
            entry.local = format!("files/{}", entry.local);
        }
        let json = serde_json::to_vec_pretty(&m).map_err(|e| FetchError::EncodeManifest { source: Arc::new(e) })?;
        std::fs::write(tmp.join("manifest.json"), json).map_err(|e| FetchError::WriteManifest { source: Arc::new(e) })?;
        Ok(m)
    });
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if std::fs::rename(&tmp, root).is_err() {
        // Another run got there first (the rename target exists): use theirs.
        let _ = std::fs::remove_dir_all(&tmp);
        if !manifest_path.exists() {
            return Err(FetchError::MoveUnpacked { root: root.to_path_buf() });
        }
    }
    Ok(m)
}

/// Fetches `url` into `dest`, refusing it unless its sha256 is `sha256`.
async fn download(url: &str, sha256: &str, dest: &Path) -> Result<(), FetchError> {
    FETCHES.fetch_add(1, Ordering::Relaxed);
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(dir, sha256);
    let result = if let Some(path) = file_url_path(url) {
        let (from, to) = (PathBuf::from(path), tmp.clone());
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&from).map_err(|e| FetchError::ReadLocal { path: from.clone(), source: Arc::new(e) })?;
            archive::copy_hashing(&mut f, &to)
                .map(|(sum, _)| sum)
                .map_err(|e| FetchError::CopyLocal { path: from.clone(), source: Arc::new(e) })
        })
        .await
        .map_err(|e| FetchError::CopyTask { source: Arc::new(e) })
        .and_then(|r| r)
    } else {
        http_get(url, &tmp).await
    };
    let verdict = result.and_then(|actual| {
        if actual == sha256 { Ok(()) } else { Err(FetchError::ShaMismatch { url: url.to_string(), expected: sha256.to_string(), actual }) }
    });
    match verdict {
        Ok(()) => tokio::fs::rename(&tmp, dest).await.map_err(|e| FetchError::Store { dest: dest.to_path_buf(), source: Arc::new(e) }),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// `/abs/path` of a `file:///abs/path` url.
fn file_url_path(url: &str) -> Option<&str> {
    let rest = url.get(..7).filter(|p| p.eq_ignore_ascii_case("file://")).map(|_| &url[7..])?;
    Some(rest.strip_prefix("localhost").unwrap_or(rest))
}

/// The whole cause chain of an error, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// GETs `url` into `to`, returning the sha256 of what arrived.
async fn http_get(url: &str, to: &Path) -> Result<String, FetchError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::HttpClient { detail: chain(&e) })?;
    let mut response = client.get(url).send().await.map_err(|e| FetchError::Request { url: url.to_string(), detail: chain(&e) })?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::HttpStatus { url: url.to_string(), status });
    }
    let total = response.content_length();
    let hook = progress();
    if let Some(p) = hook {
        p.started(url, total);
    }
    let result = async {
        let mut file = tokio::fs::File::create(to).await.map_err(io(to))?;
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Body { url: url.to_string(), detail: chain(&e) })? {
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io(to))?;
            done += chunk.len() as u64;
            if let Some(p) = hook {
                p.advanced(url, done);
            }
        }
        file.sync_all().await.map_err(io(to))?;
        if let Some(t) = total
            && t != done
        {
            return Err(FetchError::Truncated { url: url.to_string(), done, total: t });
        }
        Ok(hex::encode(hasher.finalize()))
    }
    .await;
    if let Some(p) = hook {
        p.finished(url);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls() {
        assert_eq!(file_url_path("file:///tmp/x"), Some("/tmp/x"));
        assert_eq!(file_url_path("FILE:///tmp/x"), Some("/tmp/x"));
        assert_eq!(file_url_path("file://localhost/tmp/x"), Some("/tmp/x"));
        assert_eq!(file_url_path("https://x/y"), None);
    }

    #[test]
    fn a_certificate_problem_of_a_request_gets_a_hint() {
        let detail = "error sending request: invalid peer certificate: UnknownIssuer".to_string();
        let e = FetchError::Request { url: "https://h/t".into(), detail: detail.clone() };
        assert_eq!(
            e.to_string(),
            format!(
                "GET https://h/t: {detail}; if the server's certificate comes from a private CA, trust it with SSL_CERT_FILE=/path/to/ca.pem"
            )
        );
        let e = FetchError::Request { url: "https://h/t".into(), detail: "connection refused".into() };
        assert_eq!(e.to_string(), "GET https://h/t: connection refused");
        let e = FetchError::Body { url: "https://h/t".into(), detail: detail.clone() };
        assert_eq!(e.to_string(), format!("GET https://h/t: {detail}"));
    }
}
