//! The relevo binary as a child process: started, its stderr collected, its bound
//! address read from its "listening on" line, killed when dropped.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::WAIT;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_relevo");

/// A running relevo, killed when dropped (whatever the test's outcome).
pub struct Relevo {
    /// The process.
    pub child: Child,
    /// The address it listens on, from its log.
    pub addr: SocketAddr,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Relevo {
    fn drop(&mut self) {
        // Err: it has exited already.
        let _ = self.child.start_kill();
    }
}

impl Relevo {
    /// Starts `relevo ARGS...` and waits for its "listening on" line.
    pub async fn spawn<I, S>(args: I) -> Relevo
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if let Some(a) = line.split("listening on ").nth(1) {
                    return a.trim().parse::<SocketAddr>().unwrap();
                }
            }
            panic!("relevo exited: {:?}", log.lock().unwrap());
        })
        .await
        .expect("relevo did not start listening");
        // Keep draining stderr so a full pipe never blocks the proxy.
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Relevo { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends `sig` (`-HUP`, `-TERM`...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The admin listener's address, from its log line.
    pub async fn admin_addr(&self) -> SocketAddr {
        admin_addr_in(&self.wait_log("admin listener on ").await)
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("relevo did not exit: {:?}", self.log.lock().unwrap()),
        }
    }

    /// Peak resident memory of the process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// The address in relevo's "admin listener on ADDR: ..." log line.
pub fn admin_addr_in(line: &str) -> SocketAddr {
    let rest = line.split("admin listener on ").nth(1).unwrap();
    rest.split(':')
        .take(2)
        .collect::<Vec<_>>()
        .join(":")
        .parse()
        .unwrap()
}
