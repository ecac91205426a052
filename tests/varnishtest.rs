//! Runs the byte-exact client/backend scripts in `tests/vtc/` with Debian's
//! `varnishtest` (package varnish; `.ci/run` installs it) against the relevo binary.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

#[test]
fn varnishtest_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vtc");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "vtc"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty());
    let mut failed = Vec::new();
    for script in &scripts {
        // A port the kernel just handed out and released: relevo binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new("varnishtest")
            .args(["-t", "30", "-v"])
            .arg(format!("-Drelevo={}", env!("CARGO_BIN_EXE_relevo")))
            .arg(format!("-Drelevo_port={port}"))
            .arg(script)
            .output()
            .expect("varnishtest is not installed (apt-get install varnish)");
        if !out.status.success() {
            failed.push(format!(
                "{}:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} scripts failed:\n{}",
        failed.len(),
        scripts.len(),
        failed.join("\n\n")
    );
}
