//! relevo out of file descriptors: the load relevo itself cannot carry is never blamed
//! on a backend. Its own binary, because the open-file limit is the whole process's.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The descriptors open in this process, without the one that lists them.
fn open_fds() -> BTreeSet<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            // The directory being read is open too, for the time of the listing.
            let target = std::fs::read_link(e.path()).ok()?;
            if target.ends_with("fd") && target.starts_with("/proc") {
                return None;
            }
            e.file_name().to_str()?.parse().ok()
        })
        .collect()
}

fn set_soft_limit(soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

fn soft_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    unsafe { assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0) };
    lim.rlim_cur
}

// Every upstream connect fails with EMFILE ("Too many open files"): the client gets a
// 503 with Retry-After (RFC 9110 §15.6.4: relevo is overloaded, not the backend), the
// backend is not ejected and no failure is counted against it, and once descriptors
// are free again the same client connection is served.
#[tokio::test(flavor = "current_thread")]
async fn running_out_of_descriptors_never_ejects_a_backend() {
    // A backend that closes every connection after one answer, so each request needs
    // a new upstream connection.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                // The proxy may have gone; nothing to report to anyone then.
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let p = start_proxy(vec![host("app.test", &[addr])], |c| {
        // Enough failures to eject it several times over, were they counted.
        c.passive.failures = 1;
    });
    let mut client = connect(p.addr).await;
    send(&mut client, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut client).await.status, 200);

    // Wait for the closed connections' descriptors to go, then allow no new one: a
    // descriptor number must be below the soft limit, so the limit is the lowest free.
    let deadline = Instant::now() + WAIT;
    let mut last = open_fds();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = open_fds();
        if now == last {
            break;
        }
        assert!(Instant::now() < deadline, "descriptors never settled");
        last = now;
    }
    let lowest_free = (0..).find(|n| !last.contains(n)).unwrap();
    let saved = soft_limit();
    set_soft_limit(lowest_free);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        send(&mut client, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
        let r = read_reply(&mut client).await;
        retry_after = retry_after.or(r.header("retry-after"));
        statuses.push(r.status);
    }
    set_soft_limit(saved);
    assert_eq!(statuses, [503, 503, 503]);
    assert_eq!(retry_after.as_deref(), Some("1"));
    let b = p.backend(addr);
    assert_eq!(b.health.ejections.load(Ordering::SeqCst), 0, "ejected");
    assert_eq!(b.stats.failures.load(Ordering::SeqCst), 0, "blamed");
    send(&mut client, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut client).await.status, 200);
}
