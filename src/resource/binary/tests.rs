//! Fixture tests for `binary`: archive unpacking (formats, top folder, traversal refused), the
//! fetch-once cache (file:// and a local HTTP server), sha256 mismatches, and the pure diff.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::archive::{Format, unpack};
use super::fetch::{ArtifactSlot, fetch};
use super::*;
use crate::hash::sha256_hex;
use crate::resource::PathFact;

// ---------- archive builders ----------

fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(if name.ends_with('/') { tar::EntryType::Directory } else { tar::EntryType::Regular });
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar entry written byte by byte, so names the `tar` crate refuses to write can be tested.
fn raw_tar_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish_raw_tar(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip_bytes(entries: &[(&str, &[u8])], symlinks: &[(&str, &str)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    for (name, target) in symlinks {
        z.add_symlink(*name, *target, opts).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn etcd_like() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("etcd-v3.5.22-linux-amd64/", b""),
        ("etcd-v3.5.22-linux-amd64/etcd", b"etcd binary\n"),
        ("etcd-v3.5.22-linux-amd64/etcdctl", b"etcdctl binary\n"),
        ("etcd-v3.5.22-linux-amd64/Documentation/README.md", b"docs\n"),
    ]
}

fn unpack_bytes(bytes: &[u8], format: Format) -> Result<(tempfile::TempDir, archive::Manifest), archive::ArchiveError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive");
    std::fs::write(&file, bytes).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    assert_eq!(archive::detect(bytes), Some(format));
    unpack(&file, format, &out).map(|m| (dir, m))
}

// ---------- unpacking ----------

#[test]
fn tar_gz_members_are_extracted_with_the_top_folder_stripped() {
    let (dir, m) = unpack_bytes(&gz(&tar_bytes(&etcd_like())), Format::TarGz).unwrap();
    let etcd = m.lookup("etcd").unwrap();
    assert_eq!(etcd.sha256, sha256_hex(b"etcd binary\n"));
    assert_eq!(std::fs::read(dir.path().join("out").join(&etcd.local)).unwrap(), b"etcd binary\n");
    assert_eq!(m.lookup("etcdctl").unwrap().size, 15);
    assert!(m.lookup("Documentation/README.md").is_ok());
    let err = m.lookup("etcdutl").unwrap_err().to_string();
    assert!(err.contains("no file `etcdutl`") && err.contains("etcdctl"), "{err}");
}

#[test]
fn tar_xz_and_zip_unpack_the_same_way() {
    let (_d, m) = unpack_bytes(&xz(&tar_bytes(&etcd_like())), Format::TarXz).unwrap();
    assert_eq!(m.lookup("etcdctl").unwrap().sha256, sha256_hex(b"etcdctl binary\n"));
    let entries: Vec<_> = etcd_like().into_iter().filter(|(n, _)| !n.ends_with('/')).collect();
    let (_d, m) = unpack_bytes(&zip_bytes(&entries, &[("etcd-v3.5.22-linux-amd64/current", "etcd")]), Format::Zip).unwrap();
    assert_eq!(m.lookup("etcd").unwrap().sha256, sha256_hex(b"etcd binary\n"));
    // A link inside the archive is followed.
    assert_eq!(m.lookup("current").unwrap().sha256, sha256_hex(b"etcd binary\n"));
    let (_d, m) = unpack_bytes(&tar_bytes(&etcd_like()), Format::Tar).unwrap();
    assert!(m.lookup("etcd").is_ok());
}

#[test]
fn files_at_the_top_level_keep_their_names() {
    let (_d, m) = unpack_bytes(&gz(&tar_bytes(&[("tool", b"t"), ("LICENSE", b"l")])), Format::TarGz).unwrap();
    assert!(m.lookup("tool").is_ok() && m.lookup("LICENSE").is_ok());
    // One folder beside a file at the top: nothing is stripped.
    let (_d, m) = unpack_bytes(&gz(&tar_bytes(&[("bin/tool", b"t"), ("README", b"r")])), Format::TarGz).unwrap();
    assert!(m.lookup("bin/tool").is_ok());
}

#[test]
fn a_pax_global_header_does_not_stop_top_folder_stripping() {
    let mut t = Vec::new();
    raw_tar_entry(&mut t, "pax_global_header", tar::EntryType::XGlobalHeader, "", b"52 comment=0123456789abcdef0123456789abcdef01234567\n");
    raw_tar_entry(&mut t, "tool-1.0/bin/tool", tar::EntryType::Regular, "", b"tool");
    let (_d, m) = unpack_bytes(&gz(&finish_raw_tar(t)), Format::TarGz).unwrap();
    assert_eq!(m.lookup("bin/tool").unwrap().sha256, sha256_hex(b"tool"));
}

#[test]
fn traversal_is_refused() {
    let mut t = Vec::new();
    raw_tar_entry(&mut t, "top/ok", tar::EntryType::Regular, "", b"fine");
    raw_tar_entry(&mut t, "top/../../evil", tar::EntryType::Regular, "", b"evil");
    let err = unpack_bytes(&gz(&finish_raw_tar(t)), Format::TarGz).unwrap_err().to_string();
    assert_eq!(err, "archive member `top/../../evil` contains `..`");

    let mut t = Vec::new();
    raw_tar_entry(&mut t, "/etc/cron.d/evil", tar::EntryType::Regular, "", b"evil");
    let err = unpack_bytes(&finish_raw_tar(t), Format::Tar).unwrap_err().to_string();
    assert_eq!(err, "archive member `/etc/cron.d/evil` has an absolute path");

    let mut t = Vec::new();
    raw_tar_entry(&mut t, "top/link", tar::EntryType::Symlink, "../../etc/shadow", b"");
    let err = unpack_bytes(&gz(&finish_raw_tar(t)), Format::TarGz).unwrap_err().to_string();
    assert_eq!(err, "archive member `top/link` is a symbolic link to `../../etc/shadow`, outside the archive");

    let mut t = Vec::new();
    raw_tar_entry(&mut t, "top/link", tar::EntryType::Symlink, "/usr/bin/sudo", b"");
    let err = unpack_bytes(&finish_raw_tar(t), Format::Tar).unwrap_err().to_string();
    assert!(err.contains("absolute path `/usr/bin/sudo`, outside the archive"), "{err}");

    let err = unpack_bytes(&zip_bytes(&[("a/b", b"x")], &[("a/esc", "../../x")]), Format::Zip).unwrap_err().to_string();
    assert!(err.contains("outside the archive"), "{err}");
}

// ---------- fetching ----------

/// A one-file HTTP server on 127.0.0.1 counting requests; `/missing` answers 404.
async fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let missing = req.starts_with(b"GET /missing");
                let head = if missing {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                };
                let _ = sock.write_all(head.as_bytes()).await;
                if !missing {
                    let _ = sock.write_all(&body).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_download_happens_once_for_many_hosts_and_once_per_cache() {
    let archive = gz(&tar_bytes(&etcd_like()));
    let sum = sha256_hex(&archive);
    let (base, hits) = serve(archive).await;
    let url = format!("{base}/etcd-v3.5.22-linux-amd64.tar.gz");
    let cache = tempfile::tempdir().unwrap();
    // Ten "hosts" planned in parallel, each with its own instance (and slot handle).
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let slot = ArtifactSlot::new(cache.path(), &sum, true);
        let url = url.clone();
        tasks.push(tokio::spawn(async move { slot.resolve(&url).await.clone() }));
    }
    for t in tasks {
        let a = t.await.unwrap().unwrap();
        assert_eq!(a.member(Some("etcd")).unwrap().sha256, sha256_hex(b"etcd binary\n"));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(cache.path().join("sha256").join(&sum).is_file());
    assert!(cache.path().join("sha256").join(format!("{sum}.d/manifest.json")).is_file());
    // A later run (no shared slot) finds it in the cache: no request.
    let a = fetch(cache.path(), &url, &sum, true).await.unwrap();
    assert_eq!(a.member(Some("etcdctl")).unwrap().sha256, sha256_hex(b"etcdctl binary\n"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // 404 is an error naming the url.
    let err = fetch(cache.path(), &format!("{base}/missing"), &"0".repeat(64), false).await.unwrap_err().to_string();
    assert_eq!(err, format!("GET {base}/missing: HTTP 404 Not Found"));
}

#[tokio::test]
async fn file_url_is_copied_into_the_cache() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("tool");
    std::fs::write(&file, b"#!/bin/sh\necho tool 1.0\n").unwrap();
    let sum = sha256_hex(b"#!/bin/sh\necho tool 1.0\n");
    let cache = tempfile::tempdir().unwrap();
    let a = fetch(cache.path(), &format!("file://{}", file.display()), &sum, false).await.unwrap();
    assert_eq!(a.member(None).unwrap().path, cache.path().join("sha256").join(&sum));
    assert_eq!(a.file.size, 24);
}

#[tokio::test]
async fn sha_mismatch_names_both_sums_and_caches_nothing() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("tool");
    std::fs::write(&file, b"tampered").unwrap();
    let expected = sha256_hex(b"original");
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", file.display());
    let err = fetch(cache.path(), &url, &expected, false).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "sha256 mismatch for {url}: the spec expects {expected}, the downloaded file has {}; it was not cached or used",
            sha256_hex(b"tampered")
        )
    );
    let left: Vec<_> = std::fs::read_dir(cache.path().join("sha256")).unwrap().collect();
    assert!(left.is_empty(), "nothing may stay in the cache: {left:?}");
}

#[tokio::test]
async fn a_bare_file_is_not_an_archive() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("tool");
    std::fs::write(&file, b"#!/bin/sh\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(cache.path(), &format!("file://{}", file.display()), &sha256_hex(b"#!/bin/sh\n"), true).await.unwrap_err().to_string();
    assert!(err.contains("is not an archive cairn can unpack") && err.contains("use `path` instead of `extract`"), "{err}");
}

// ---------- diff ----------

const ETCD: &str = "/usr/local/bin/etcd";
const ETCDCTL: &str = "/usr/local/bin/etcdctl";

fn desired(targets: &[(Option<&str>, &str)]) -> DesiredBinary {
    let sha = "a".repeat(64);
    DesiredBinary {
        url: "https://example.com/v/etcd-v3.5.22-linux-amd64.tar.gz".into(),
        sha256: sha.clone(),
        targets: targets.iter().map(|(m, p)| Target { member: m.map(str::to_string), path: (*p).to_string(), optional: false }).collect(),
        mode: 0o755,
        owner: None,
        group: None,
        version_command: None,
        artifact: ArtifactSlot::new(Path::new("/nonexistent/diff-fixtures"), &sha, true),
    }
}

fn etcd_pair() -> DesiredBinary {
    desired(&[(Some("etcd"), ETCD), (Some("etcdctl"), ETCDCTL)])
}

fn file_fact(sha: &str, mode: u32) -> PathFact {
    PathFact { kind: PathKind::File, mode, owner: "root".into(), group: "root".into(), size: 10, mtime: 0, sha256: Some(sha.to_string()) }
}

fn facts(entries: &[(&str, PathFact)]) -> HostFacts {
    let mut f = HostFacts::default();
    for (p, fact) in entries {
        f.paths.insert((*p).to_string(), fact.clone());
    }
    f
}

fn sums() -> Vec<Option<String>> {
    vec![Some("1".repeat(64)), Some("2".repeat(64))]
}

#[test]
fn an_optional_member_the_release_lacks_is_not_installed() {
    // etcdutl: in 3.5's tarball, not in 3.4's. Without it, only etcd and etcdctl count.
    let b = desired(&[(Some("etcd"), ETCD), (Some("etcdctl"), ETCDCTL), (Some("etcdutl"), "/usr/local/bin/etcdutl")]);
    let mut wanted = sums();
    wanted.push(None);
    let f = facts(&[(ETCD, file_fact(&"1".repeat(64), 0o755)), (ETCDCTL, file_fact(&"2".repeat(64), 0o755))]);
    assert_eq!(b.decide(Ok(wanted.clone()), &f), Decision::noop("sha256 matches"));
    let d = b.decide(Ok(wanted), &HostFacts::default());
    assert_eq!(d.action, Action::Create);
    assert!(!d.attrs.iter().any(|a| a.name.contains("etcdutl")), "{:?}", d.attrs);
}

#[test]
fn missing_files_are_created() {
    let d = etcd_pair().decide(Ok(sums()), &HostFacts::default());
    assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Create, "files do not exist"));
    assert_eq!(d.content, None, "binaries are never fetched back from hosts for a text diff");
    assert_eq!(
        d.attrs,
        vec![
            AttrChange::new(&format!("{ETCD} sha256"), None, Some("1".repeat(12))),
            AttrChange::new(&format!("{ETCD} mode"), None, Some("0755".into())),
            AttrChange::new(&format!("{ETCDCTL} sha256"), None, Some("2".repeat(12))),
            AttrChange::new(&format!("{ETCDCTL} mode"), None, Some("0755".into())),
        ]
    );
}

#[test]
fn same_sha_is_a_noop() {
    let f = facts(&[(ETCD, file_fact(&"1".repeat(64), 0o755)), (ETCDCTL, file_fact(&"2".repeat(64), 0o755))]);
    assert_eq!(etcd_pair().decide(Ok(sums()), &f), Decision::noop("sha256 matches"));
}

#[test]
fn different_sha_is_an_update_with_old_and_new() {
    let f = facts(&[(ETCD, file_fact(&"f".repeat(64), 0o755)), (ETCDCTL, file_fact(&"2".repeat(64), 0o755))]);
    let mut b = etcd_pair();
    b.version_command = Some(vec![ETCD.into(), "--version".into()]);
    let mut f2 = f.clone();
    f2.versions.insert(vec![ETCD.into(), "--version".into()], "etcd Version: 3.5.21".into());
    let d = b.decide(Ok(sums()), &f2);
    assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "sha256 differs on /usr/local/bin/etcd"));
    assert_eq!(
        d.attrs,
        vec![
            AttrChange::new("version", Some("etcd Version: 3.5.21".into()), Some("from etcd-v3.5.22-linux-amd64.tar.gz".into())),
            AttrChange::new(&format!("{ETCD} sha256"), Some("f".repeat(12)), Some("1".repeat(12))),
        ]
    );
    // Only etcd is uploaded; etcdctl is left alone.
    assert_eq!(b.attrs_of(ETCD, &d.attrs).len(), 1);
    assert!(b.attrs_of(ETCDCTL, &d.attrs).is_empty());
}

#[test]
fn bare_file_uses_the_spec_sha_and_plain_attribute_names() {
    let mut b = desired(&[(None, "/usr/local/bin/tool")]);
    b.sha256 = "c".repeat(64);
    let f = facts(&[("/usr/local/bin/tool", file_fact(&"d".repeat(64), 0o755))]);
    let d = b.diff(&f); // no fetch needed: the spec's sha256 is the file's
    assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "sha256 differs"));
    assert_eq!(d.attrs, vec![AttrChange::new("sha256", Some("d".repeat(12)), Some("c".repeat(12)))]);
    let f = facts(&[("/usr/local/bin/tool", file_fact(&"c".repeat(64), 0o755))]);
    assert_eq!(b.diff(&f), Decision::noop("sha256 matches"));
    let d = b.diff(&HostFacts::default());
    assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Create, "file does not exist"));
}

#[test]
fn mode_drift_is_fixed_without_uploading() {
    let f = facts(&[(ETCD, file_fact(&"1".repeat(64), 0o700)), (ETCDCTL, file_fact(&"2".repeat(64), 0o755))]);
    let b = etcd_pair();
    let d = b.decide(Ok(sums()), &f);
    assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "mode differs on /usr/local/bin/etcd"));
    assert_eq!(b.attrs_of(ETCD, &d.attrs), vec![AttrChange::new("mode", Some("0700".into()), Some("0755".into()))]);
}

#[test]
fn a_directory_in_the_way_is_a_conflict() {
    let mut dir = file_fact("", 0o755);
    dir.kind = PathKind::Dir;
    dir.sha256 = None;
    let d = etcd_pair().decide(Ok(sums()), &facts(&[(ETCD, dir)]));
    assert_eq!(d.action, Action::Conflict);
    assert_eq!(d.reason.to_string(), "/usr/local/bin/etcd is a directory; cairn will not remove it to install a file there");
}

#[test]
fn a_fetch_failure_blocks_the_instance_with_its_message() {
    let err = FetchError::ShaMismatch { url: "x".into(), expected: "1".repeat(64), actual: "2".repeat(64) };
    let d = etcd_pair().decide(Err(err), &HostFacts::default());
    let want = format!(
        "sha256 mismatch for x: the spec expects {}, the downloaded file has {}; it was not cached or used",
        "1".repeat(64),
        "2".repeat(64)
    );
    assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Conflict, want.as_str()));
}

#[test]
fn url_file_names() {
    assert_eq!(url_file_name("https://h/a/b/etcd.tar.gz?x=1"), "etcd.tar.gz");
    assert_eq!(url_file_name("file:///srv/tool"), "tool");
}

#[tokio::test]
async fn https_sets_up_tls_and_reports_a_failed_handshake_with_its_cause() {
    // A plain-HTTP server spoken to over https: the TLS stack (rustls, aws-lc-rs, the platform
    // verifier) is built and the handshake fails with an error, not a panic.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
            let _ = sock.shutdown().await;
        }
    });
    let url = format!("https://{addr}/tool");
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(cache.path(), &url, &"0".repeat(64), false).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("GET {url}: ")), "{err}");
}
