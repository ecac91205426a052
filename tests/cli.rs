//! The `relevo` binary as a user runs it: check, run, demo, signals, logs, memory.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::process::{Relevo, BIN};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A relevo process and the directory of its configuration; killed when dropped.
struct Running {
    relevo: Relevo,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Running {
    type Target = Relevo;
    fn deref(&self) -> &Relevo {
        &self.relevo
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Relevo {
        &mut self.relevo
    }
}

/// Starts `relevo ARGS...` and waits for its "listening on" line.
async fn spawn(args: &[&str], dir: Option<tempfile::TempDir>) -> Running {
    Running {
        relevo: Relevo::spawn(args).await,
        _dir: dir,
    }
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relevo.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

async fn run_with(text: &str) -> (Running, String) {
    let (dir, path) = write_config(text);
    let r = spawn(&["run", "--config", &path, "--threads", "2"], Some(dir)).await;
    (r, path)
}

#[test]
fn help_lists_the_commands() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "demo"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn check_accepts_the_lab_table() {
    let (_dir, path) = write_config(
        "listen = \"127.0.0.1:8080\"\n\n[hosts]\n\"app.test\"  = [\"127.0.0.1:19101\", \"127.0.0.1:19102\"]\n\"solo.test\" = [\"127.0.0.1:19103\"]\n\"legacy.test\" = [\"127.0.0.1\"]                # port 80 when omitted\n",
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", &path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (3 hosts, 4 backends)"));
}

#[test]
fn check_and_run_reject_a_bad_file_with_line_and_exit_2() {
    let (_dir, path) = write_config(
        "[hosts]\n\"app.test\" = [\"127.0.0.1:19101\"]\n\"b.test\" = [\"300.1.1.1\"]\n",
    );
    for cmd in ["check", "run"] {
        let out = std::process::Command::new(BIN)
            .args([cmd, "--config", &path])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{path}:3:")) && err.contains("bad backend address `300.1.1.1`"),
            "{err}"
        );
    }
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_round_robin_over_three_backends() {
    let r = spawn(&["demo", "--listen", "127.0.0.1:0"], None).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let reply = get(r.addr, "demo.test", "/", "").await;
        assert_eq!(reply.status, 200);
        seen.push(reply.body);
    }
    seen.sort();
    assert!(
        seen[0].starts_with("demo backend 1") && seen[2].starts_with("demo backend 3"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request() {
    let b = backend("b1").await;
    let (r, _) = run_with(&format!(
        "listen = \"127.0.0.1:0\"\n[hosts]\n\"app.test\" = [\"{}\"]\n",
        b.addr
    ))
    .await;
    assert_eq!(get(r.addr, "app.test", "/logged?x=1", "").await.status, 200);
    let line = r.wait_log("target=/logged?x=1").await;
    for field in [
        "client=127.0.0.1:",
        "host=\"app.test\"",
        "method=GET",
        "status=200",
        "bytes=2",
        "ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(line.contains(&format!("backend={}", b.addr)), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_host_table_without_dropping_connections() {
    let (b1, b2) = (backend("one").await, backend("two").await);
    let (r, path) = run_with(&format!(
        "listen = \"127.0.0.1:0\"\n[hosts]\n\"app.test\" = [\"{}\"]\n",
        b1.addr
    ))
    .await;
    let mut c = connect(r.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.body, "one");

    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\n[hosts]\n\"app.test\" = [\"{}\"]\n\"new.test\" = [\"{}\"]\n",
            b2.addr, b2.addr
        ),
    )
    .unwrap();
    r.signal("-HUP");
    r.wait_log("reloaded").await;
    // The same client connection now reaches the new table.
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.body, "two");
    send(&mut c, b"GET / HTTP/1.1\r\nHost: new.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.status, 200);

    // A broken file is refused and the running table stays.
    std::fs::write(&path, "[hosts]\n\"app.test\" = []\n").unwrap();
    r.signal("-HUP");
    r.wait_log("keeping the running configuration").await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.body, "two");
}

/// SIGHUP and SIGUSR1 end a process that has no handler for them: relevo installs its
/// handlers before it says it listens, so a reload sent the moment it answers (by a
/// deploy script, a config manager) reloads instead of killing it. The big host
/// table keeps relevo logging for a while after "listening on", the window in which
/// the handlers used to be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_right_after_listening_reloads() {
    let b = backend("one").await;
    let mut table = String::from("listen = \"127.0.0.1:0\"\n[hosts]\n");
    for i in 0..3000 {
        table.push_str(&format!("\"h{i}.test\" = [\"{}\"]\n", b.addr));
    }
    let (r, _path) = run_with(&table).await;
    r.signal("-HUP");
    r.signal("-USR1");
    r.wait_log("SIGHUP: reloaded").await;
    let mut c = connect(r.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: h7.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.body, "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let b = backend("b1").await;
    let (mut r, _) = run_with(&format!(
        "listen = \"127.0.0.1:0\"\n[hosts]\n\"app.test\" = [\"{}\"]\n",
        b.addr
    ))
    .await;
    // The backend holds its answer until the test lets it go, so the request is
    // still in flight through the SIGTERM and the closing of the listener.
    b.hold.send_replace(true);
    let mut c = connect(r.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    // Wait until the backend has the request, then ask relevo to stop.
    wait_until("the backend gets the request", || b.heads() == 1).await;
    r.signal("-TERM");
    r.wait_log("SIGTERM").await;
    // New connections are refused once the listener is closed...
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(r.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the request in flight is still waited for, and then completes.
    assert!(
        r.child.try_wait().unwrap().is_none(),
        "relevo exited with a request in flight"
    );
    b.hold.send_replace(false);
    let reply = read_reply(&mut c).await;
    assert_eq!(reply.status, 200);
    let status = tokio::time::timeout(WAIT, r.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// 1 GiB each way through relevo: memory stays flat because bodies stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_flat_memory() {
    const GIB: u64 = 1 << 30;
    let b = backend("b1").await;
    let (r, _) = run_with(&format!(
        "listen = \"127.0.0.1:0\"\naccess_log = false\n[hosts]\n\"app.test\" = [\"{}\"]\n",
        b.addr
    ))
    .await;

    // Download: the backend streams 1 GiB without a length; the client counts it.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        format!("GET /big?{GIB} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let read = async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("download too slow");
    assert!(total > GIB, "got {total} bytes");

    // Upload: 1 GiB with Content-Length; the backend answers with the length it read.
    // (The test backend itself collects the body, so it is sent to /echo-length on a
    // raw backend that only counts.)
    let counter = counting_backend().await;
    let (r2, _) = run_with(&format!(
        "listen = \"127.0.0.1:0\"\naccess_log = false\n[hosts]\n\"app.test\" = [\"{counter}\"]\n"
    ))
    .await;
    let mut s = TcpStream::connect(r2.addr).await.unwrap();
    s.write_all(format!("POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let chunk = vec![b'u'; 256 * 1024];
    let upload = async {
        for _ in 0..(GIB / chunk.len() as u64) {
            s.write_all(&chunk).await.unwrap();
        }
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(120), upload)
        .await
        .expect("upload too slow");
    assert!(out.ends_with(&GIB.to_string()), "{out}");

    for (what, proc_) in [("download", &r), ("upload", &r2)] {
        let peak = proc_.peak_rss_kib();
        eprintln!("{what}: relevo peak RSS {peak} KiB");
        assert!(
            peak < 64 * 1024,
            "{what}: relevo peaked at {peak} KiB for a 1 GiB body"
        );
    }
}

/// A raw backend that reads a Content-Length body, counting it, and answers the count.
async fn counting_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                let mut len = 0u64;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut buf = vec![0u8; 256 * 1024];
                let mut got = 0u64;
                while got < len {
                    let n = r.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got += n as u64;
                }
                let body = got.to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                // A client that is gone has nothing left to read; the test checks the
                // count it reads.
                let _ = r.get_mut().write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[test]
fn route_explains_host_algorithm_and_backend() {
    let (_dir, path) = write_config(
        "[hosts]\n\"solo.test\" = [\"127.0.0.1:1\"]\n[hosts.\"app.test\"]\nbackends = [\"127.0.0.1:19101\", { addr = \"127.0.0.1:19102\", weight = 3 }]\nbalance = \"hash\"\nhash_key = \"header:X-User\"\n",
    );
    let route = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["route", "--config", &path])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = route(&["http://app.test/p", "-H", "X-User: alice"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("entry `app.test`") && text.contains("hash on header:x-user = \"alice\""),
        "{text}"
    );
    // The same key always lands on the same backend.
    let backend = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("backend:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        backend(&text),
        backend(&route(&["http://app.test/other", "-H", "X-User: alice"]).1)
    );
    let (code, text) = route(&["/", "-H", "Host: solo.test"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("backend:  127.0.0.1:1 "), "{text}");
    let (code, text) = route(&["http://other.test/"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("403"), "{text}");
}

// The benchmark templates (bench/*.toml.in) must stay valid configurations.
#[test]
fn bench_templates_are_valid_configs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".toml.in") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("{listen}", "127.0.0.1:20090")
            .replace("{threads}", "1")
            .replace("{maxconn}", "1524")
            .replace("{keepalive}", "1024")
            .replace("{backend1}", "127.0.0.1:20081")
            .replace("{backend2}", "127.0.0.1:20082");
        let (_dir, config) = write_config(&text);
        let out = std::process::Command::new(BIN)
            .args(["check", "--config", &config])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(
        checked, 4,
        "relevo, relevo-admin, relevo-p2c, relevo-round-robin"
    );
}

/// Waits until the file at `path` contains `needle`; returns its text.
async fn wait_file(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle:?}: {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// The access log as logrotate expects it: lines go to the file, a rotated (renamed)
// file keeps getting them until SIGUSR1, then the file is reopened under its name.
// JSON lines carry every field of the text line plus the timings and attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_file_is_reopened_on_sigusr1() {
    let b = backend("b1").await;
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let rotated = logs.path().join("access.log.1");
    let (r, _) = run_with(&format!(
        "listen = \"127.0.0.1:0\"\naccess_log = {:?}\naccess_log_format = \"json\"\n[hosts]\n\"app.test\" = [\"{}\"]\n",
        path.display().to_string(),
        b.addr
    ))
    .await;
    assert_eq!(get(r.addr, "app.test", "/one", "").await.status, 200);
    let text = wait_file(&path, "/one").await;
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "time",
        "client",
        "host",
        "method",
        "target",
        "backend",
        "status",
        "bytes",
        "duration_ms",
        "connect_ms",
        "upstream_ms",
        "attempts",
        "complete",
    ] {
        assert!(line.get(field).is_some(), "{field} missing in {line}");
    }
    assert_eq!(line["host"], "app.test");
    assert_eq!(line["status"], 200);
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["backend"], b.addr.to_string());
    assert!(
        line["connect_ms"].as_f64().is_some(),
        "a first request connects: {line}"
    );

    std::fs::rename(&path, &rotated).unwrap();
    assert_eq!(get(r.addr, "app.test", "/two", "").await.status, 200);
    wait_file(&rotated, "/two").await;
    r.signal("-USR1");
    r.wait_log("SIGUSR1: reopening the access log").await;
    assert_eq!(get(r.addr, "app.test", "/three", "").await.status, 200);
    wait_file(&path, "/three").await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("/three"), "{old}");
    assert_eq!(old.lines().count(), 2, "{old}");
}

// `access_log_format = "combined"`: the Apache/nginx line log tools parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_access_log_format() {
    let b = backend("b1").await;
    let (r, _) = run_with(&format!(
        "listen = \"127.0.0.1:0\"\naccess_log_format = \"combined\"\n[hosts]\n\"app.test\" = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let r2 = get(
        r.addr,
        "app.test",
        "/c?q=1",
        "Referer: http://x.test/\r\nUser-Agent: probe \"1\"\r\n",
    )
    .await;
    assert_eq!(r2.status, 200);
    let line = r.wait_log("\"GET /c?q=1 HTTP/1.1\"").await;
    let re_ok = line.starts_with("127.0.0.1 - - [")
        && line.contains("] \"GET /c?q=1 HTTP/1.1\" 200 2 \"http://x.test/\" \"probe \\\"1\\\"\"");
    assert!(re_ok, "{line}");
}

// The configuration in the Kubernetes example's ConfigMap must stay valid (parsed only:
// its names resolve in a cluster, not here).
#[test]
fn kubernetes_example_config_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/relevo.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let block = yaml
        .split("relevo.toml: |\n")
        .nth(1)
        .and_then(|rest| rest.split("\n---").next())
        .expect("a relevo.toml block in the ConfigMap");
    let toml: String = block
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = relevo::Config::parse(&toml, &path).unwrap();
    assert_eq!(config.hosts[0].names.len(), 1);
}
