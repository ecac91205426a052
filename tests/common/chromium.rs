//! Headless Chromium for the browser tests: found (or the test skipped, unless
//! `RELEVO_REQUIRE_CHROMIUM=1`), and a page's DOM after its scripts ran.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium is killed after this long, whatever it is doing.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary, or None (after saying so) when the test should be skipped.
pub fn chromium() -> Option<PathBuf> {
    let found = std::iter::once(PathBuf::from("/usr/bin/chromium"))
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("chromium"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("RELEVO_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "RELEVO_REQUIRE_CHROMIUM=1 but chromium is not installed (apt-get install chromium)"
        );
        println!(
            "SKIPPED: chromium not installed (apt-get install chromium); \
             .ci/run installs it and makes the browser tests required"
        );
    }
    found
}

/// Loads `url` in headless Chromium (with `extra` flags), lets the page's timers run
/// for `budget_ms` of virtual time (its polling included), and returns the DOM it
/// then has.
pub fn dump_dom(chromium: &Path, url: &str, budget_ms: u32, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--window-size=1280,860",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            // Err only means it exited meanwhile.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_TIMEOUT:?} on {url}; stderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap();
    let log = err.join().unwrap();
    assert!(
        status.success() && dom.contains("</html>"),
        "chromium failed ({status}) on {url}; stderr:\n{log}\nstdout:\n{dom}"
    );
    dom
}
