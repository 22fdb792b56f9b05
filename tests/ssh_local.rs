//! The ssh transport against a real sshd on 127.0.0.1 (see `common/sshd.rs`): argv and stdin
//! byte for byte, exit codes, concurrency over one master, host key policies, clear connect
//! errors, no master left behind, and the host operations (`write_file_atomic`, `read_files`).
//!
//! Without sshd these tests skip, except when `CI` is set: then they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, clippy::print_stdout)]

#[path = "common/sshd.rs"]
mod sshd;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::transport::ssh::{ControlDir, HostKeyPolicy, SshConfig, SshTransport, close_all_masters};
use cairn::transport::{Content, FileAttrs, Stdin, Transport, TransportError, argv, read_files, write_file_atomic};
use sshd::Sshd;

/// `close_all_masters` closes every master of the process: that test runs alone (write), the
/// others together (read).
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

macro_rules! sshd_or_skip {
    () => {
        match Sshd::start_or_skip() {
            Some(s) => s,
            None => return,
        }
    };
}

fn config(s: &Sshd) -> SshConfig {
    SshConfig {
        host_name: "testhost".to_string(),
        address: "127.0.0.1".to_string(),
        port: s.port,
        user: "root".to_string(),
        identity_file: Some(s.client_key.clone()),
        known_hosts_file: Some(s.known_hosts.clone()),
        host_key_checking: HostKeyPolicy::Strict,
        r#become: false,
        connect_timeout: Duration::from_secs(5),
    }
}

async fn connect(s: &Sshd, dir: &ControlDir) -> SshTransport {
    match SshTransport::connect(config(s), dir).await {
        Ok(t) => t,
        Err(e) => panic!("connect failed: {e}\nsshd log:\n{}", s.log()),
    }
}

async fn connect_err(cfg: SshConfig, dir: &ControlDir) -> String {
    match SshTransport::connect(cfg, dir).await {
        Ok(t) => {
            t.close().await;
            panic!("connect unexpectedly succeeded")
        }
        Err(e @ TransportError::Connect { .. }) => {
            eprintln!("connect error: {e}");
            e.to_string()
        }
        Err(e) => panic!("wrong error kind: {e:?}"),
    }
}

/// Processes whose command line mentions `needle` (by `pgrep -f`).
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let out = std::process::Command::new("pgrep").arg("-af").arg(needle).output().expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Waits up to 3 s for no process to mention `needle`.
async fn assert_no_process_mentions(needle: &Path) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_and_stdin_arrive_byte_for_byte() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let t = connect(&s, &dir).await;

    let nasty = [
        "plain",
        "with space",
        "quote's \"double\"",
        "$(touch /tmp/cairn-pwned)",
        "`id`",
        "back\\slash",
        "new\nline",
        "*",
        "~",
        "",
        "semi;colon && pipe | amp &",
        "ünïcødé ✓",
        "-n",
    ];
    let mut args = argv(&["printf", "%s\\0"]);
    args.extend(nasty.iter().map(|a| a.to_string()));
    let out = t.run(&args, Stdin::Null).await.unwrap();
    assert!(out.success(), "{out:?}");
    let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    let want: Vec<&[u8]> = nasty.iter().map(|a| a.as_bytes()).chain([&b""[..]]).collect();
    assert_eq!(got, want);
    assert!(!Path::new("/tmp/cairn-pwned").exists(), "a $(...) argument was executed");

    // Every byte value through stdin and back.
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let out = t.run(&argv(&["cat"]), Stdin::Bytes(&all_bytes)).await.unwrap();
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stdout, all_bytes);

    // 1 MB in, 1 MB out (both directions at once must not deadlock).
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let out = t.run(&argv(&["cat"]), Stdin::Bytes(&big)).await.unwrap();
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout == big, "1 MB came back different");

    // stdout and stderr kept apart; a command that ignores stdin is fine.
    let out = t.run(&argv(&["sh", "-c", "printf out; printf err >&2; exit 3"]), Stdin::Bytes(&big)).await.unwrap();
    assert_eq!((out.status, out.stdout.as_slice(), out.stderr.as_slice()), (Some(3), &b"out"[..], &b"err"[..]));

    // A file as stdin.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &all_bytes).unwrap();
    let out = t.run(&argv(&["sha256sum"]), Stdin::File(tmp.path())).await.unwrap();
    let local = std::process::Command::new("sha256sum").arg(tmp.path()).output().unwrap();
    assert_eq!(out.stdout[..64], local.stdout[..64]);
    let err = t.run(&argv(&["cat"]), Stdin::File(Path::new("/nonexistent/cairn"))).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cairn"), "{err}");

    assert_eq!(t.stats().connections(), 1);
    assert_eq!(t.stats().commands(), 6);
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_including_127_and_signals() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let t = connect(&s, &dir).await;
    for code in [0, 1, 2, 42, 126, 127, 255] {
        let out = t.run(&argv(&["sh", "-c", &format!("exit {code}")]), Stdin::Null).await.unwrap();
        assert_eq!(out.status, Some(code), "exit {code}");
    }
    let out = t.run(&argv(&["cairn-no-such-command", "x"]), Stdin::Null).await.unwrap();
    assert_eq!(out.status, Some(127));
    assert!(out.error_text().contains("not found"), "{:?}", out.error_text());

    // Killed by a signal: no status, and the connection is still usable.
    let out = t.run(&argv(&["sh", "-c", "kill -9 $$"]), Stdin::Null).await.unwrap();
    assert_eq!(out.status, None);
    let out = t.run(&argv(&["true"]), Stdin::Null).await.unwrap();
    assert!(out.success());
    assert_eq!(t.stats().connections(), 1);
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_an_error_not_a_signal() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let t = Arc::new(connect(&s, &dir).await);
    let running = {
        let t = Arc::clone(&t);
        tokio::spawn(async move { t.run(&argv(&["sleep", "30"]), Stdin::Null).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.kill_sessions();
    let err = tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap_err();
    eprintln!("running command: {err}");
    assert!(err.to_string().contains("testhost") && err.to_string().contains("lost"), "{err}");
    let err = t.run(&argv(&["true"]), Stdin::Null).await.unwrap_err();
    eprintln!("next command: {err}");
    assert!(err.to_string().contains("testhost") && err.to_string().contains("lost"), "{err}");
    t.close().await;
    assert_no_process_mentions(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_commands_share_one_master() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let t = Arc::new(connect(&s, &dir).await);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..25 {
        let t = Arc::clone(&t);
        set.spawn(async move {
            let out = t.run(&argv(&["sh", "-c", "sleep 0.2; echo \"$1\"", "x", &i.to_string()]), Stdin::Null).await;
            (i, out)
        });
    }
    let mut done = 0;
    while let Some(joined) = set.join_next().await {
        let (i, out) = joined.unwrap();
        let out = out.unwrap_or_else(|e| panic!("command {i} failed: {e}"));
        assert_eq!(out.stdout, format!("{i}\n").into_bytes());
        done += 1;
    }
    assert_eq!(done, 25);
    assert_eq!(t.stats().connections(), 1);
    assert_eq!(t.stats().commands(), 25);
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_host_keys_refuse_unknown_and_changed_keys() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();

    // Unknown: the known_hosts file does not list the server.
    let empty = s.dir().join("known_hosts.empty");
    std::fs::write(&empty, "").unwrap();
    let mut cfg = config(&s);
    cfg.known_hosts_file = Some(empty.clone());
    let msg = connect_err(cfg, &dir).await;
    assert!(msg.contains("testhost") && msg.contains("host key unknown"), "{msg}");
    assert!(msg.contains("Host key verification failed"), "cause chain missing: {msg}");
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "", "strict must not add keys");

    // Changed: the file lists a different key for this host:port.
    let other = s.dir().join("other_host_key");
    sshd::keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let changed = s.dir().join("known_hosts.changed");
    std::fs::write(&changed, format!("[127.0.0.1]:{} {}\n", s.port, other_pub.join(" "))).unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let mut cfg = config(&s);
        cfg.known_hosts_file = Some(changed.clone());
        cfg.host_key_checking = policy;
        let msg = connect_err(cfg, &dir).await;
        assert!(msg.contains("testhost") && msg.contains("host key CHANGED"), "{policy:?}: {msg}");
    }
    assert_no_process_mentions(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_adds_an_unknown_host_then_strict_accepts_it() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let file = s.dir().join("known_hosts.new");
    std::fs::write(&file, "").unwrap();
    let mut cfg = config(&s);
    cfg.known_hosts_file = Some(file.clone());
    cfg.host_key_checking = HostKeyPolicy::AcceptNew;
    let t = SshTransport::connect(cfg.clone(), &dir).await.unwrap();
    t.close().await;
    let found =
        std::process::Command::new("ssh-keygen").arg("-F").arg(format!("[127.0.0.1]:{}", s.port)).arg("-f").arg(&file).output().unwrap();
    assert!(found.status.success(), "key not added: {:?}", std::fs::read_to_string(&file));

    cfg.host_key_checking = HostKeyPolicy::Strict;
    let t = SshTransport::connect(cfg, &dir).await.unwrap();
    assert!(t.run(&argv(&["true"]), Stdin::Null).await.unwrap().success());
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_authentication_is_reported_clearly() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let stranger = s.dir().join("stranger_key");
    sshd::keygen(&stranger);
    let mut cfg = config(&s);
    cfg.identity_file = Some(stranger);
    let msg = connect_err(cfg, &dir).await;
    assert!(msg.contains("testhost") && msg.contains("authentication refused"), "{msg}");
    assert!(msg.contains("Permission denied"), "cause chain missing: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_fails_fast() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let mut cfg = config(&s);
    cfg.port = sshd::free_port();
    let started = Instant::now();
    let msg = connect_err(cfg, &dir).await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(msg.contains("testhost") && msg.contains("connection refused"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    // Accepts TCP (the kernel does, from the backlog) but never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(&s);
    cfg.port = silent.local_addr().unwrap().port();
    cfg.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let msg = connect_err(cfg, &dir).await;
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert!(msg.contains("testhost") && msg.contains("timed out"), "{msg}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_leaves_no_master_behind() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let dir_path = dir.path().to_path_buf();
    assert!(dir_path.as_os_str().len() < 30, "control dir path too long: {}", dir_path.display());
    assert_eq!(std::fs::metadata(&dir_path).unwrap().permissions().mode() & 0o777, 0o700);

    let t = connect(&s, &dir).await;
    assert!(t.run(&argv(&["true"]), Stdin::Null).await.unwrap().success());
    let ctl = t.control_socket().await.unwrap();
    assert!(ctl.starts_with(&dir_path));
    assert!(ctl.as_os_str().len() < 90, "socket path too long: {}", ctl.display());
    assert_eq!(processes_mentioning(&dir_path).len(), 1, "one master expected");

    t.close().await;
    assert_no_process_mentions(&dir_path).await;
    let err = t.run(&argv(&["true"]), Stdin::Null).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");

    // Dropping without close also ends the master.
    let t = connect(&s, &dir).await;
    assert_eq!(processes_mentioning(&dir_path).len(), 1);
    drop(t);
    assert_no_process_mentions(&dir_path).await;

    drop(dir);
    assert!(!dir_path.exists(), "control dir not removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_all_masters_ends_every_master() {
    let _gate = GATE.write().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let a = connect(&s, &dir).await;
    let b = connect(&s, &dir).await;
    assert_eq!(processes_mentioning(dir.path()).len(), 2);
    // Other tests in this binary may hold masters too: at least ours were closed.
    assert!(close_all_masters().await >= 2);
    assert_no_process_mentions(dir.path()).await;
    assert!(a.run(&argv(&["true"]), Stdin::Null).await.is_err());
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_writes_and_batched_reads() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let t = connect(&s, &dir).await;
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();

    let content = b"line one\n\xff\xfe binary\n'quotes' $(x)\n".to_vec();
    let attrs = FileAttrs { mode: Some(0o640), owner: None, group: None };
    write_file_atomic(&t, &path("a file"), Content::Bytes(&content), &attrs).await.unwrap();
    assert_eq!(std::fs::read(path("a file")).unwrap(), content);
    assert_eq!(std::fs::metadata(path("a file")).unwrap().permissions().mode() & 0o777, 0o640);

    let src = work.path().join("src.bin");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &big).unwrap();
    write_file_atomic(&t, &path("big"), Content::File(&src), &FileAttrs::default()).await.unwrap();
    assert!(std::fs::read(path("big")).unwrap() == big);

    let err = write_file_atomic(&t, "/nonexistent-dir/x", Content::Bytes(b"x"), &attrs).await.unwrap_err();
    assert!(err.to_string().contains("testhost"), "{err}");

    let files = read_files(&t, &[path("a file"), path("missing"), path("big")]).await.unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0].as_deref(), Some(content.as_slice()));
    assert_eq!(files[1], None);
    assert!(files[2].as_deref() == Some(big.as_slice()));
    // leftovers of the atomic write: none
    let names: Vec<String> =
        std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with(".cairn-tmp")), "{names:?}");

    assert_eq!(t.stats().connections(), 1);
    assert_eq!(t.stats().commands(), 4);
    t.close().await;
}

/// Not a pass/fail test: prints upload time of 50 MB through `write_file_atomic` vs `scp`, and
/// the latency of one command over the open master. Run with
/// `cargo test --test ssh_local -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_upload_and_latency() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let t = connect(&s, &dir).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.bin");
    let data: Vec<u8> = (0..50u32 * 1024 * 1024).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let dest = work.path().join("dest.bin");

    for round in 0..3 {
        let started = Instant::now();
        write_file_atomic(&t, dest.to_str().unwrap(), Content::File(&src), &FileAttrs::default()).await.unwrap();
        let ours = started.elapsed();
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), data.len() as u64);

        let started = Instant::now();
        write_file_atomic(&t, dest.to_str().unwrap(), Content::Bytes(&data), &FileAttrs::default()).await.unwrap();
        let from_memory = started.elapsed();

        // The same bytes without the atomic dance (no fsync), like scp.
        let plain = work.path().join("plain.bin");
        let started = Instant::now();
        let out = t.run(&argv(&["sh", "-c", "cat > \"$1\"", "x", plain.to_str().unwrap()]), Stdin::File(&src)).await.unwrap();
        let plain_cat = started.elapsed();
        assert!(out.success());

        let scp_dest = work.path().join("scp.bin");
        let started = Instant::now();
        let status = std::process::Command::new("scp")
            .args(["-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-i"])
            .arg(&s.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", s.known_hosts.display()))
            .arg("-P")
            .arg(s.port.to_string())
            .arg(&src)
            .arg(format!("root@127.0.0.1:{}", scp_dest.display()))
            .status()
            .unwrap();
        let scp = started.elapsed();
        assert!(status.success());
        eprintln!(
            "round {round}: 50 MB write_file_atomic(File) {:.3} s, write_file_atomic(Bytes) {:.3} s, \
             cat>file with Stdin::File {:.3} s, scp {:.3} s (scp includes its own connection)",
            ours.as_secs_f64(),
            from_memory.as_secs_f64(),
            plain_cat.as_secs_f64(),
            scp.as_secs_f64()
        );
    }

    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        assert!(t.run(&argv(&["true"]), Stdin::Null).await.unwrap().success());
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!(
        "one command over the open master: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        times[25].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[49].as_secs_f64() * 1e3
    );
    t.close().await;
}

/// The child half of `ctrl_c_closes_masters_and_control_dir`: connects to the sshd described by
/// the environment, installs the Ctrl-C cleanup, says where its control dir is, and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ctrl_c_child() {
    let Ok(port) = std::env::var("CAIRN_TEST_CTRL_C_PORT") else { return };
    let cfg = SshConfig {
        host_name: "testhost".to_string(),
        address: "127.0.0.1".to_string(),
        port: port.parse().unwrap(),
        user: "root".to_string(),
        identity_file: Some(std::env::var("CAIRN_TEST_CTRL_C_KEY").unwrap().into()),
        known_hosts_file: Some(std::env::var("CAIRN_TEST_CTRL_C_KNOWN_HOSTS").unwrap().into()),
        host_key_checking: HostKeyPolicy::Strict,
        r#become: false,
        connect_timeout: Duration::from_secs(5),
    };
    let _cleanup = cairn::transport::ssh::install_ctrl_c_cleanup(|| std::process::exit(130));
    let dir = ControlDir::new().unwrap();
    let t = SshTransport::connect(cfg, &dir).await.unwrap();
    assert!(t.run(&argv(&["true"]), Stdin::Null).await.unwrap().success());
    println!("CONTROL_DIR={}", dir.path().display());
    // A command still running when Ctrl-C comes.
    let _ = t.run(&argv(&["sleep", "60"]), Stdin::Null).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_closes_masters_and_control_dir() {
    use std::io::BufRead;
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ctrl_c_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("CAIRN_TEST_CTRL_C_PORT", s.port.to_string())
        .env("CAIRN_TEST_CTRL_C_KEY", &s.client_key)
        .env("CAIRN_TEST_CTRL_C_KNOWN_HOSTS", &s.known_hosts)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let dir = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split_once("CONTROL_DIR=").map(|(_, p)| std::path::PathBuf::from(p)))
    })
    .await
    .unwrap();
    let Some(dir) = dir else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child never connected; sshd log:\n{}", s.log());
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processes_mentioning(&dir).len(), 1, "one master expected");
    let sent = std::process::Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_no_process_mentions(&dir).await;
    assert!(!dir.exists(), "control dir left behind: {}", dir.display());
}

/// Slow (40 s): a live transport keeps its master past `MASTER_IDLE_SECS` of silence, and the
/// master of a `kill -9`ed cairn exits on its own after that long. Run with
/// `cargo test --test ssh_local -- --ignored idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn idle_masters_live_while_cairn_lives_and_die_after_it() {
    let _gate = GATE.read().await;
    let s = sshd_or_skip!();
    let dir = ControlDir::new().unwrap();
    let t = connect(&s, &dir).await;

    // A cairn that gets SIGKILLed right after connecting.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ctrl_c_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("CAIRN_TEST_CTRL_C_PORT", s.port.to_string())
        .env("CAIRN_TEST_CTRL_C_KEY", &s.client_key)
        .env("CAIRN_TEST_CTRL_C_KNOWN_HOSTS", &s.known_hosts)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let killed_dir = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split_once("CONTROL_DIR=").map(|(_, p)| std::path::PathBuf::from(p)))
    })
    .await
    .unwrap()
    .expect("child connected");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(processes_mentioning(&killed_dir).len(), 1, "the orphaned master runs for now");

    let idle = Duration::from_secs(cairn::transport::ssh::MASTER_IDLE_SECS as u64 + 8);
    tokio::time::sleep(idle).await;
    assert!(processes_mentioning(&killed_dir).is_empty(), "orphaned master still running");
    let _ = std::fs::remove_dir_all(&killed_dir);

    assert!(t.run(&argv(&["true"]), Stdin::Null).await.unwrap().success(), "live master idled out");
    assert_eq!(t.stats().connections(), 1);
    t.close().await;
}
