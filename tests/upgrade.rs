//! Hitless binary upgrade with the real binary: under steady load, a new relevo takes
//! the listener over (`--upgrade-from`), the old one drains and exits 0, and not one
//! request fails; a takeover that never serves leaves the old one serving.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{Relevo, BIN};
use common::{backend, get, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::Command;
use tokio::task::JoinSet;

/// Starts `relevo run --config CONFIG ARGS...` (flag, value pairs) on one thread.
async fn start(config: &Path, args: &[&Path]) -> Relevo {
    let mut all: Vec<&std::ffi::OsStr> = ["run", "--config"].map(std::ffi::OsStr::new).to_vec();
    all.push(config.as_os_str());
    all.extend(["--threads", "1"].map(std::ffi::OsStr::new));
    all.extend(args.iter().map(|a| a.as_os_str()));
    Relevo::spawn(all).await
}

/// The pid file's name in the temporary directory, as deploy/relevo-upgrade expects.
const PID_FILE: &str = "relevo.pid";

/// A temporary directory with a configuration in front of `backend` and room for the
/// upgrade socket.
fn setup(backend: SocketAddr) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relevo.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\naccess_log = false\n[timeouts]\nshutdown = \"5s\"\n[hosts]\n\"app.test\" = [\"{backend}\"]\n"
        ),
    )
    .unwrap();
    // The names deploy/relevo-upgrade expects in its run directory.
    let socket = dir.path().join("upgrade.sock");
    (dir, config, socket)
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// When each request that got its 200 was sent.
    ok: Vec<Instant>,
    /// Every request that did not get a 200, and why.
    failed: Vec<String>,
}

/// Steady, paced load: workers on keep-alive connections and workers opening a new
/// connection per request, until stopped.
struct Load {
    tally: Arc<Mutex<Tally>>,
    running: Arc<AtomicBool>,
    workers: JoinSet<()>,
}

/// Each worker's pace: 6 workers at one request per 20 ms is 300 requests/s.
const PACE: Duration = Duration::from_millis(20);

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let running = Arc::new(AtomicBool::new(true));
        let mut workers = JoinSet::new();
        for i in 0..6 {
            let (tally, running) = (tally.clone(), running.clone());
            let keep_alive = i < 4;
            workers.spawn(worker(addr, keep_alive, tally, running));
        }
        Load {
            tally,
            running,
            workers,
        }
    }

    /// Waits (bounded) until `n` requests sent after `since` have been answered 200.
    async fn wait_ok_since(&self, since: Instant, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let count = self
                .tally
                .lock()
                .unwrap()
                .ok
                .iter()
                .filter(|t| **t >= since)
                .count();
            if count >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {count} answers since then");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> Tally {
        self.running.store(false, Ordering::SeqCst);
        while let Some(done) = tokio::time::timeout(WAIT, self.workers.join_next())
            .await
            .expect("a load worker is stuck")
        {
            done.unwrap();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

async fn worker(
    addr: SocketAddr,
    keep_alive: bool,
    tally: Arc<Mutex<Tally>>,
    running: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n = 0u64;
    while running.load(Ordering::SeqCst) {
        tick.tick().await;
        n += 1;
        let sent = Instant::now();
        let reused = conn.is_some();
        let outcome = tokio::time::timeout(WAIT, exchange(addr, &mut conn, keep_alive, n)).await;
        let mut t = tally.lock().unwrap();
        match outcome {
            Ok(Ok(())) => t.ok.push(sent),
            Ok(Err(e)) => {
                conn = None;
                let kind = if reused { "reused" } else { "new" };
                t.failed
                    .push(format!("request {n} on a {kind} connection: {e}"));
            }
            Err(_) => {
                conn = None;
                t.failed.push(format!("request {n}: no answer in {WAIT:?}"));
            }
        }
    }
}

/// One GET: on the kept connection (opened when there is none) or, without
/// `keep_alive`, on a new connection closed after the answer.
async fn exchange(
    addr: SocketAddr,
    conn: &mut Option<BufReader<TcpStream>>,
    keep_alive: bool,
    n: u64,
) -> Result<(), String> {
    if conn.is_none() {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        *conn = Some(BufReader::new(stream));
    }
    let Some(c) = conn.as_mut() else {
        unreachable!()
    };
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let request = format!("GET /load/{n} HTTP/1.1\r\nHost: app.test\r\n{close}\r\n");
    c.get_mut()
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let (status, closing) = read_response(c).await?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    if closing || !keep_alive {
        *conn = None;
    }
    Ok(())
}

/// Reads one response framed by Content-Length; returns its status and whether the
/// server closes the connection after it. Any error (reset, early end) is a failure.
async fn read_response(c: &mut BufReader<TcpStream>) -> Result<(u16, bool), String> {
    let mut status = None;
    let mut length = 0usize;
    let mut closing = false;
    loop {
        let mut line = String::new();
        let n = c
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {status:?} without a whole head"));
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if status.is_none() {
            status = lower.get(9..12).and_then(|s| s.parse::<u16>().ok());
        } else if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().map_err(|_| format!("bad length {v:?}"))?;
        } else if let Some(v) = lower.strip_prefix("connection:") {
            closing = v.contains("close");
        }
    }
    let mut body = vec![0; length];
    c.read_exact(&mut body)
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok((status.ok_or("no status line")?, closing))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upgrades_under_steady_load_fail_no_request() {
    let b = backend("b1").await;
    // Slow enough answers that requests are in flight at every handover: the old
    // process must finish them while it drains.
    b.delay_ms.store(15, Ordering::SeqCst);
    let (dir, config, socket) = setup(b.addr);
    let pid_file = dir.path().join(PID_FILE);
    let pid_of = || {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string()
    };
    let mut current = start(
        &config,
        &[
            Path::new("--upgrade-socket"),
            &socket,
            Path::new("--pid-file"),
            &pid_file,
        ],
    )
    .await;
    current.wait_log("a new binary can take over from").await;
    assert_eq!(pid_of(), current.pid().to_string());
    let addr = current.addr;
    let started = Instant::now();
    let load = Load::start(addr);
    load.wait_ok_since(started, 200).await;
    // Twice: the successor offers the listener in turn and can itself be replaced.
    for _ in 0..2 {
        current.wait_log("a new binary can take over from").await;
        let mut next = start(
            &config,
            &[
                Path::new("--upgrade-from"),
                &socket,
                Path::new("--upgrade-socket"),
                &socket,
                Path::new("--pid-file"),
                &pid_file,
            ],
        )
        .await;
        assert_eq!(next.addr, addr, "the successor serves the same socket");
        next.wait_log("took over the listener from").await;
        let status = current.exit().await;
        let exited = Instant::now();
        assert_eq!(status.code(), Some(0), "{:?}", current.log.lock().unwrap());
        // Written by the successor before the old process could exit: a supervisor
        // reading it then (systemd's PIDFile=) finds the new main process.
        assert_eq!(pid_of(), next.pid().to_string());
        current
            .wait_log(&format!("handed the listener to pid {}", next.pid()))
            .await;
        // Served by the successor alone: the old process is gone.
        load.wait_ok_since(exited, 200).await;
        std::mem::swap(&mut current, &mut next);
    }
    let tally = load.stop().await;
    eprintln!(
        "{} requests answered 200 in {:?}, {} failed",
        tally.ok.len(),
        started.elapsed(),
        tally.failed.len()
    );
    assert!(tally.failed.is_empty(), "failed: {:#?}", tally.failed);
    assert_eq!(get(addr, "app.test", "/", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_that_never_serves_leaves_the_old_process_serving() {
    let b = backend("b1").await;
    let (_dir, config, socket) = setup(b.addr);
    let mut old = start(&config, &[Path::new("--upgrade-socket"), &socket]).await;
    old.wait_log("a new binary can take over from").await;
    // A would-be successor that asks, gets the listener and goes away without serving
    // (a plain read: the kernel closes the descriptor that came with the answer).
    let mut taker = UnixStream::connect(&socket).await.unwrap();
    taker.write_all(b"relevo-upgrade 1 take\n").await.unwrap();
    let mut answer = [0u8; 10];
    taker.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"fds proxy\n");
    drop(taker);
    old.wait_log("went away before serving").await;
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old one exited"
    );
    for _ in 0..3 {
        assert_eq!(get(old.addr, "app.test", "/", "").await.status, 200);
    }
    // The offer stands: a real successor takes over afterwards.
    let next = start(&config, &[Path::new("--upgrade-from"), &socket]).await;
    assert_eq!(old.exit().await.code(), Some(0));
    assert_eq!(get(next.addr, "app.test", "/", "").await.status, 200);
}

/// A process known by its pid alone (started by a script that has exited), killed when
/// dropped.
struct Orphan(
    /// The pid to kill.
    u32,
);

impl Drop for Orphan {
    fn drop(&mut self) {
        // Err or failure: it has exited already.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_script_hands_over_and_refuses_a_bad_configuration() {
    let b = backend("b1").await;
    let (dir, config, socket) = setup(b.addr);
    let pid_file = dir.path().join(PID_FILE);
    let mut old = start(
        &config,
        &[
            Path::new("--upgrade-socket"),
            &socket,
            Path::new("--pid-file"),
            &pid_file,
        ],
    )
    .await;
    old.wait_log("a new binary can take over from").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let script = |config: &Path| {
        let mut child = Command::new("sh")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/relevo-upgrade"
            ))
            .env("RELEVO", BIN)
            .env("RELEVO_CONFIG", config)
            .env("RELEVO_RUNDIR", dir.path())
            .env("RELEVO_UPGRADE_WAIT", "10")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The new relevo writes here too, for as long as it runs.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        child
    };
    let pid_of = || {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string()
    };

    // A file the new binary refuses: nothing changes.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[hosts]\n\"app.test\" = []\n").unwrap();
    let status = tokio::time::timeout(WAIT, script(&bad).wait())
        .await
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(1), "{:?}", log.lock().unwrap());
    assert_eq!(pid_of(), old.pid().to_string());
    assert_eq!(get(old.addr, "app.test", "/", "").await.status, 200);

    let status = tokio::time::timeout(WAIT, script(&config).wait())
        .await
        .unwrap();
    let new = pid_of();
    let _new = Orphan(new.parse().unwrap());
    assert!(status.unwrap().success(), "{:?}", log.lock().unwrap());
    assert_ne!(new, old.pid().to_string());
    assert_eq!(old.exit().await.code(), Some(0));
    assert_eq!(get(old.addr, "app.test", "/", "").await.status, 200);
    let said = log.lock().unwrap().join("\n");
    assert!(said.contains(&format!("pid {new} took over")), "{said}");
}

// The admin listener goes over with the proxy's: the successor serves the same admin
// address (a fresh bind would find it still taken by the old process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_is_handed_over_too() {
    let b = backend("b1").await;
    let (_dir, config, socket) = setup(b.addr);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}[admin]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let mut old = start(&config, &[Path::new("--upgrade-socket"), &socket]).await;
    old.wait_log("a new binary can take over from").await;
    let admin_of = |line: String| -> SocketAddr { common::process::admin_addr_in(&line) };
    let admin = admin_of(old.wait_log("admin listener on").await);
    assert_eq!(get(admin, "admin", "/healthz", "").await.status, 200);
    let next = start(&config, &[Path::new("--upgrade-from"), &socket]).await;
    assert_eq!(admin_of(next.wait_log("admin listener on").await), admin);
    assert_eq!(old.exit().await.code(), Some(0));
    let r = get(admin, "admin", "/metrics", "").await;
    assert_eq!(r.status, 200, "the successor answers on the admin address");
    assert_eq!(get(next.addr, "app.test", "/", "").await.status, 200);
}

// The TLS listener is not handed over: the successor binds the same port beside the old
// process (SO_REUSEPORT), which would otherwise keep it and make the successor fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_successor_binds_the_tls_port_beside_the_old_process() {
    let b = backend("b1").await;
    let (_dir, config, socket) = setup(b.addr);
    let pki = common::tls::Pki::new();
    let (cert, key) = pki.issue("app", &["app.test"]);
    // A port free now, written into the file as a real deployment would.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[hosts]",
        &format!(
            "[tls]\nlisten = \"127.0.0.1:{port}\"\ncerts = [{{ cert = {cert:?}, key = {key:?} }}]\n[hosts]"
        ),
    );
    std::fs::write(&config, text).unwrap();
    let mut old = start(&config, &[Path::new("--upgrade-socket"), &socket]).await;
    old.wait_log("a new binary can take over from").await;
    let tls_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let next = start(&config, &[Path::new("--upgrade-from"), &socket]).await;
    next.wait_log("TLS (HTTP/2, HTTP/1.1) on").await;
    assert_eq!(old.exit().await.code(), Some(0));
    let mut send = common::tls::h2_to(tls_addr, &pki, "app.test").await;
    assert_eq!(
        common::tls::h2_get(&mut send, "https://app.test/")
            .await
            .body,
        "b1"
    );
}
