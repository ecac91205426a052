//! Runs the byte-exact client/backend scripts in `tests/vtc/` with Debian's
//! `varnishtest` (package varnish; `.ci/run` installs it) against the relevo binary.
//!
//! For each script the runner starts relevo itself, on port 0 with a placeholder host
//! table, and reads the port it bound from its `listening on 127.0.0.1:PORT` log line:
//! no port is guessed. varnishtest gets `${relevo_port}`, `${relevo_conf}` (the
//! configuration file relevo runs with), `${relevo_pid}` and `${relevo_reload}` (the
//! helper `tests/vtc/reload.sh`). A script writes its host table to `${relevo_conf}`
//! and runs `bash ${relevo_reload} ${relevo_pid} ${relevo_port}`, which sends SIGHUP
//! and waits until the new table is live. relevo is killed when the script ends,
//! whatever happens.
//!
//! Without varnishtest on PATH the test says so and passes, unless
//! `RELEVO_REQUIRE_VARNISHTEST=1` (set by `.ci/run`) makes it required.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::WAIT;

/// What relevo runs with until the script writes its own table: every host unknown
/// (403) but this one, whose backend is a port nothing listens on.
const PLACEHOLDER: &str =
    "listen = \"127.0.0.1:0\"\n[hosts]\n\"placeholder.test\" = [\"127.0.0.1:1\"]\n";

/// A relevo process started for one script; killed when dropped, on a panic too.
struct Relevo {
    child: Child,
    port: u16,
    conf: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Relevo {
    fn drop(&mut self) {
        // Err: it has exited already, which the script's result tells.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Relevo {
    /// Starts `relevo run` on the placeholder table and waits for its listening line.
    fn start() -> Relevo {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("relevo.toml");
        std::fs::write(&conf, PLACEHOLDER).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_relevo"))
            .arg("run")
            .arg("--config")
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start relevo");
        let stderr = child.stderr.take().unwrap();
        let mut relevo = Relevo {
            child,
            port: 0,
            conf,
            log: Arc::new(Mutex::new(Vec::new())),
            _dir: dir,
        };
        // Reads stderr to the end, so that a full pipe never blocks relevo; reports
        // the port once it is logged.
        let (port_tx, port_rx) = mpsc::channel();
        let log = relevo.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    // Err: the runner gave up waiting already.
                    let _ = port_tx.send(port);
                }
                log.lock().unwrap().push(line);
            }
        });
        relevo.port = port_rx.recv_timeout(WAIT).unwrap_or_else(|e| {
            panic!(
                "relevo logged no `listening on 127.0.0.1:PORT` ({e}): {:?}",
                relevo.log.lock().unwrap()
            )
        });
        relevo
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The port in relevo's `listening on 127.0.0.1:PORT` line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on 127.0.0.1:").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `name` in a directory of PATH, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn varnishtest_scripts() {
    let Some(varnishtest) = on_path("varnishtest") else {
        assert!(
            std::env::var("RELEVO_REQUIRE_VARNISHTEST").as_deref() != Ok("1"),
            "varnishtest is not installed (apt-get install varnish), and \
             RELEVO_REQUIRE_VARNISHTEST=1 makes these scripts required"
        );
        // Straight to stderr, past the test harness's capture, so the skip shows.
        writeln!(
            std::io::stderr(),
            "SKIPPED varnishtest_scripts: varnishtest not installed (apt-get install \
             varnish); .ci/run installs it and makes this test required"
        )
        .unwrap();
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vtc");
    let reload = dir.join("reload.sh");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "vtc"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty());
    let mut failed = Vec::new();
    for script in &scripts {
        let relevo = Relevo::start();
        let out = Command::new(&varnishtest)
            .args(["-t", "30", "-v"])
            .arg(format!("-Drelevo_port={}", relevo.port))
            .arg(format!("-Drelevo_conf={}", relevo.conf.display()))
            .arg(format!("-Drelevo_pid={}", relevo.pid()))
            .arg(format!("-Drelevo_reload={}", reload.display()))
            .arg(script)
            .output()
            .expect("cannot run varnishtest");
        if !out.status.success() {
            failed.push(format!(
                "{}:\n{}\nrelevo's log:\n{}",
                script.display(),
                tail(&String::from_utf8_lossy(&out.stdout), 40),
                tail(&relevo.log.lock().unwrap().join("\n"), 20),
            ));
        }
        drop(relevo);
    }
    assert!(
        failed.is_empty(),
        "{} of {} scripts failed:\n{}",
        failed.len(),
        scripts.len(),
        failed.join("\n\n")
    );
}
