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

use super::archive::{self, Manifest};

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
    pub fn member(&self, member: Option<&str>) -> Result<LocalFile, String> {
        let Some(member) = member else { return Ok(self.file.clone()) };
        let Some((root, manifest)) = &self.unpacked else {
            return Err(format!("{} is not an unpacked archive", self.file.path.display()));
        };
        let entry = manifest.lookup(member).map_err(|e| e.to_string())?;
        Ok(LocalFile { path: archive::local_path(root, entry), sha256: entry.sha256.clone(), size: entry.size })
    }
}

/// The outcome of fetching once: the artifact, or why it could not be had.
pub type Fetched = Result<Arc<Artifact>, String>;

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
pub async fn fetch(cache_dir: &Path, url: &str, sha256: &str, unpack: bool) -> Result<Artifact, String> {
    let dir = cache_dir.join("sha256");
    tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("creating the download cache {}: {e}", dir.display()))?;
    let file = dir.join(sha256);
    if tokio::fs::metadata(&file).await.is_err() {
        download(url, sha256, &file).await?;
    }
    let size = tokio::fs::metadata(&file).await.map_err(|e| format!("{}: {e}", file.display()))?.len();
    let local = LocalFile { path: file.clone(), sha256: sha256.to_string(), size };
    if !unpack {
        return Ok(Artifact { file: local, unpacked: None });
    }
    let root = dir.join(format!("{sha256}.d"));
    let url = url.to_string();
    let manifest = tokio::task::spawn_blocking(move || unpack_cached(&url, &file, &root).map(|m| (root, m)))
        .await
        .map_err(|e| format!("unpacking task failed: {e}"))??;
    Ok(Artifact { file: local, unpacked: Some(manifest) })
}

fn temp_name(dir: &Path, base: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(".tmp-{base}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Reads `root/manifest.json`, or unpacks `file` into `root` (via a temp dir and a rename).
fn unpack_cached(url: &str, file: &Path, root: &Path) -> Result<Manifest, String> {
    let manifest_path = root.join("manifest.json");
    if let Ok(text) = std::fs::read(&manifest_path)
        && let Ok(m) = serde_json::from_slice::<Manifest>(&text)
    {
        return Ok(m);
    }
    let mut head = [0u8; 512];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(format!("{}: {e}", file.display())),
            }
        }
        n
    };
    let format = archive::detect(&head[..n]).ok_or_else(|| {
        format!("{url} is not an archive cairn can unpack (expected tar.gz, tar.xz, tar or zip); to install it as it is, use `path` instead of `extract`")
    })?;
    let parent = root.parent().unwrap_or(Path::new("."));
    let base = root.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = temp_name(parent, &base);
    let files = tmp.join("files");
    std::fs::create_dir_all(&files).map_err(|e| format!("{}: {e}", files.display()))?;
    let result = archive::unpack(file, format, &files).map_err(|e| format!("cannot unpack {url}: {e}")).and_then(|mut m| {
        // Stored paths are relative to `root`.
        for entry in m.files.values_mut() {
            entry.local = format!("files/{}", entry.local);
        }
        let json = serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?;
        std::fs::write(tmp.join("manifest.json"), json).map_err(|e| format!("writing the manifest: {e}"))?;
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
            return Err(format!("cannot move the unpacked archive into {}", root.display()));
        }
    }
    Ok(m)
}

/// Fetches `url` into `dest`, refusing it unless its sha256 is `sha256`.
async fn download(url: &str, sha256: &str, dest: &Path) -> Result<(), String> {
    FETCHES.fetch_add(1, Ordering::Relaxed);
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(dir, sha256);
    let result = if let Some(path) = file_url_path(url) {
        let (from, to) = (PathBuf::from(path), tmp.clone());
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
            archive::copy_hashing(&mut f, &to).map(|(sum, _)| sum).map_err(|e| format!("copying {}: {e}", from.display()))
        })
        .await
        .map_err(|e| format!("copy task failed: {e}"))
        .and_then(|r| r)
    } else {
        http_get(url, &tmp).await
    };
    let verdict = result.and_then(|actual| {
        if actual == sha256 {
            Ok(())
        } else {
            Err(format!(
                "sha256 mismatch for {url}: the spec expects {sha256}, the downloaded file has {actual}; it was not cached or used"
            ))
        }
    });
    match verdict {
        Ok(()) => tokio::fs::rename(&tmp, dest).await.map_err(|e| format!("storing {} in the cache: {e}", dest.display())),
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
async fn http_get(url: &str, to: &Path) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", chain(&e)))?;
    let mut response = client.get(url).send().await.map_err(|e| {
        let cause = chain(&e);
        let hint = if cause.contains("certificate") {
            "; if the server's certificate comes from a private CA, trust it with SSL_CERT_FILE=/path/to/ca.pem"
        } else {
            ""
        };
        format!("GET {url}: {cause}{hint}")
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    let total = response.content_length();
    let hook = progress();
    if let Some(p) = hook {
        p.started(url, total);
    }
    let result = async {
        let mut file = tokio::fs::File::create(to).await.map_err(|e| format!("{}: {e}", to.display()))?;
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {}", chain(&e)))? {
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| format!("{}: {e}", to.display()))?;
            done += chunk.len() as u64;
            if let Some(p) = hook {
                p.advanced(url, done);
            }
        }
        file.sync_all().await.map_err(|e| format!("{}: {e}", to.display()))?;
        if let Some(t) = total
            && t != done
        {
            return Err(format!("GET {url}: the download ended after {done} of {t} bytes"));
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
}
