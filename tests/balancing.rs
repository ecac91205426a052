//! Balancing that survives real backends: algorithms measured over real requests,
//! active and passive health, safe retries, all-down behaviour.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use relevo::clock::now_ms;
use relevo::config::{BackendConfig, Balance, HashKey, HealthCheck, HostEntryConfig};
use relevo::routing::Availability;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn weighted(name: &str, backends: &[(SocketAddr, u32)], balance: Balance) -> HostEntryConfig {
    let mut h = host(name, &[]);
    h.backends = backends
        .iter()
        .map(|&(addr, weight)| BackendConfig {
            addr,
            weight,
            max_conns: None,
            priority: 0,
        })
        .collect();
    h.balance = balance;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_3_to_1_give_75_25() {
    for balance in [
        Balance::RoundRobin,
        Balance::Random,
        Balance::LeastConn,
        Balance::P2c,
    ] {
        let (b1, b2) = (backend("b1").await, backend("b2").await);
        let p = start_proxy(
            vec![weighted("app.test", &[(b1.addr, 3), (b2.addr, 1)], balance)],
            |_| {},
        );
        for _ in 0..400 {
            assert_eq!(get(p.addr, "app.test", "/", "").await.status, 200);
        }
        let share = b1.requests() as f64 / 400.0;
        // Round-robin is exact, and least-conn breaks the ties of sequential requests
        // by weighted round-robin; random is within 3.5 standard deviations (±7.6%).
        // p2c compares load, then latency: weights only shape which two it compares.
        match balance {
            Balance::RoundRobin | Balance::LeastConn => {
                assert_eq!(b1.requests(), 300, "{balance:?}")
            }
            Balance::Random => assert!((share - 0.75).abs() <= 0.08, "{balance:?}: b1 got {share}"),
            _ => assert!(
                b2.requests() > 0 && b1.requests() > 0,
                "{balance:?}: both used"
            ),
        }
    }
}

/// Fires `n` overlapping requests (a new one every few ms) and waits for all.
async fn overlapping(addr: SocketAddr, n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        tasks.push(tokio::spawn(async move {
            get(addr, "app.test", &format!("/{i}"), "").await.status
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

// least-conn and p2c count in-flight requests: a slow backend accumulates them and
// gets fewer new ones. Round-robin would split 50/50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_and_p2c_steer_away_from_a_slow_backend() {
    for balance in [Balance::LeastConn, Balance::P2c] {
        let (slow, fast) = (backend("slow").await, backend("fast").await);
        slow.delay_ms.store(400, Ordering::SeqCst);
        let p = start_proxy(
            vec![weighted(
                "app.test",
                &[(slow.addr, 1), (fast.addr, 1)],
                balance,
            )],
            |_| {},
        );
        overlapping(p.addr, 60).await;
        let slow_share = slow.requests() as f64 / 60.0;
        assert!(
            slow_share < 0.25,
            "{balance:?}: the slow backend got {slow_share}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_keeps_a_key_on_one_backend_and_moves_about_1_in_n() {
    let backends = [backend("a").await, backend("b").await, backend("c").await];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let mut h = weighted(
        "app.test",
        &addrs.iter().map(|&a| (a, 1)).collect::<Vec<_>>(),
        Balance::Hash,
    );
    h.hash_key = HashKey::Header("x-user".parse().unwrap());
    let p = start_proxy(vec![h.clone()], |_| {});
    let users = 150;
    let mut before = Vec::new();
    for u in 0..users {
        let first = get(p.addr, "app.test", "/", &format!("X-User: u{u}\r\n"))
            .await
            .body;
        let again = get(p.addr, "app.test", "/", &format!("X-User: u{u}\r\n"))
            .await
            .body;
        assert_eq!(first, again, "user u{u} moved between two requests");
        before.push(first);
    }
    // Every backend has some users (the ring spreads keys).
    for b in &backends {
        assert!(
            before.iter().filter(|n| **n == b.name).count() > users / 6,
            "{} has too few users",
            b.name
        );
    }
    // Remove backend "c" with a reload: only c's users move.
    h.backends.truncate(2);
    let config = relevo::Config::with_hosts("127.0.0.1:0".parse().unwrap(), vec![h]);
    relevo::server::reload(&p.state, config);
    let mut moved = 0;
    for (u, was) in before.iter().enumerate() {
        let now = get(p.addr, "app.test", "/", &format!("X-User: u{u}\r\n"))
            .await
            .body;
        if &now != was {
            assert_eq!(
                was, "c",
                "user u{u} moved from {was} to {now} though {was} is still there"
            );
            moved += 1;
        }
    }
    let share = moved as f64 / users as f64;
    assert!(
        (0.15..0.5).contains(&share),
        "{share} of keys moved, expected about 1/3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_a_backend_out_and_bring_it_back() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let interval = Duration::from_millis(100);
    let mut h = host("app.test", &[b1.addr, b2.addr]);
    h.health = Some(HealthCheck {
        path: "/healthz".into(),
        interval,
        timeout: Duration::from_millis(500),
        rise: 2,
        fall: 2,
        expect: (200, 299),
    });
    let p = start_proxy(vec![h], |_| {});
    b1.health.store(503, Ordering::SeqCst);
    // Down after `fall` failed checks: within (fall + 1) intervals.
    wait_until("active checks take b1 down", || {
        !p.backend(b1.addr).health.active_up()
    })
    .await;
    let before = b1.requests();
    for _ in 0..20 {
        assert_eq!(get(p.addr, "app.test", "/", "").await.body, "b2");
    }
    assert_eq!(b1.requests(), before, "a down backend got traffic");
    // Back after `rise` good checks.
    b1.health.store(200, Ordering::SeqCst);
    wait_until("active checks bring b1 back", || {
        p.backend(b1.addr).health.active_up()
    })
    .await;
    for _ in 0..4 {
        get(p.addr, "app.test", "/", "").await;
    }
    assert!(b1.requests() > before, "the backend did not come back");
}

// Passive health: consecutive connect failures eject a backend; its requests are
// retried elsewhere meanwhile, so clients see no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_after_consecutive_failures() {
    let dead = dead_addr().await;
    let good = backend("good").await;
    let p = start_proxy(vec![host("app.test", &[dead, good.addr])], |c| {
        c.passive.failures = 2;
        c.passive.eject = Duration::from_secs(30);
    });
    for _ in 0..20 {
        assert_eq!(get(p.addr, "app.test", "/", "").await.status, 200);
    }
    let d = p.backend(dead);
    assert_eq!(
        d.stats.requests.load(Ordering::SeqCst),
        2,
        "ejected after 2 failures, then left alone"
    );
    assert_eq!(d.health.ejections.load(Ordering::SeqCst), 1);
    assert_eq!(good.requests(), 20);
}

// After an ejection expires, one probe is let through; failing it ejects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_expires_into_a_probe() {
    let dead = dead_addr().await;
    let good = backend("good").await;
    let p = start_proxy(vec![host("app.test", &[dead, good.addr])], |c| {
        c.passive.failures = 1;
        c.passive.eject = Duration::from_millis(200);
    });
    assert_eq!(get(p.addr, "app.test", "/", "").await.status, 200);
    let d = p.backend(dead);
    assert_eq!(d.health.ejections.load(Ordering::SeqCst), 1);
    assert_eq!(
        d.health.availability(now_ms()),
        Availability::Ejected,
        "ejected right after the failure"
    );
    // The clock, not a sleep, says when the ejection is over.
    wait_until("the 200 ms ejection expires into a probe", || {
        d.health.availability(now_ms()) == Availability::Probe
    })
    .await;
    // The balancer may pick the good backend first; the probe goes within a few requests.
    let mut sent = 0;
    while d.stats.requests.load(Ordering::SeqCst) < 2 {
        assert!(
            sent < 4,
            "no probe in 4 requests after the ejection expired"
        );
        assert_eq!(get(p.addr, "app.test", "/", "").await.status, 200);
        sent += 1;
    }
    assert_eq!(
        d.health.ejections.load(Ordering::SeqCst),
        2,
        "the failed probe ejected it again"
    );
    // Ejected again, for twice as long (400 ms): the next requests get no probe.
    for _ in sent..4 {
        assert_eq!(
            d.health.availability(now_ms()),
            Availability::Ejected,
            "still ejected after the failed probe"
        );
        assert_eq!(get(p.addr, "app.test", "/", "").await.status, 200);
    }
    assert_eq!(
        d.stats.requests.load(Ordering::SeqCst),
        2,
        "exactly one probe after the ejection"
    );
    assert_eq!(d.health.ejections.load(Ordering::SeqCst), 2);
}

/// A backend that reads a request and closes without answering; counts requests.
async fn black_hole() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).await.unwrap_or(0) > 0 {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, n)
}

// RFC 9110 §9.2.2: a request that reached a backend is retried only if idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_retried_after_sending_but_post_is_not() {
    let (hole, hits) = black_hole().await;
    let good = backend("good").await;
    // Round-robin starts with the first listed backend: the black hole.
    let p = start_proxy(vec![host("app.test", &[hole, good.addr])], |_| {});
    let r = get(p.addr, "app.test", "/", "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "good"),
        "GET retried on the good backend"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(p.backend(hole).stats.retried.load(Ordering::SeqCst), 1);

    let p = start_proxy(vec![host("app.test", &[hole, good.addr])], |_| {});
    let text = raw(
        p.addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert_eq!(
        status_of(&text),
        502,
        "POST that reached a backend must not be replayed: {text}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(good.requests(), 1, "only the GET reached the good backend");
}

// A POST that never reached a backend (connect refused) is safe to send elsewhere,
// and its body is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_retried_when_it_never_left() {
    let dead = dead_addr().await;
    let good = backend("good").await;
    let p = start_proxy(vec![host("app.test", &[dead, good.addr])], |_| {});
    let text = raw(p.addr, b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(good.last().body, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_bound_the_attempts() {
    let (d1, d2, d3) = (dead_addr().await, dead_addr().await, dead_addr().await);
    let mut h = host("app.test", &[d1, d2, d3]);
    h.tries = Some(2);
    let p = start_proxy(vec![h], |_| {});
    assert_eq!(get(p.addr, "app.test", "/", "").await.status, 502);
    let attempts: u64 = [d1, d2, d3]
        .iter()
        .map(|a| p.backend(*a).stats.requests.load(Ordering::SeqCst))
        .sum();
    assert_eq!(attempts, 2);
}

// Every backend down by its active check: 503 with Retry-After (RFC 9110 §10.2.3),
// unless the entry fails open and tries them anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_is_503_with_retry_after_unless_fail_open() {
    for fail_open in [false, true] {
        let b = backend("b").await;
        b.health.store(503, Ordering::SeqCst);
        let mut h = host("app.test", &[b.addr]);
        h.fail_open = fail_open;
        h.health = Some(HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
            expect: (200, 299),
        });
        let p = start_proxy(vec![h], |_| {});
        wait_until("the check takes it down", || {
            !p.backend(b.addr).health.active_up()
        })
        .await;
        let r = get(p.addr, "app.test", "/", "").await;
        if fail_open {
            assert_eq!(r.status, 200, "fail-open still tries the backend");
            assert_eq!(b.requests(), 1);
        } else {
            assert_eq!(r.status, 503);
            let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(secs >= 1, "{secs}");
            assert_eq!(b.requests(), 0, "a backend down by its check got traffic");
        }
    }
}

// Passive evidence alone never empties an entry: a single backend that failed often
// enough to be ejected still gets the requests (nginx never marks the only server of
// a group unavailable), and a good answer puts it back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_never_empties_an_entry() {
    let b = backend("b").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |c| {
        c.passive.failures = 1;
        c.passive.statuses = vec![500];
        c.passive.eject = Duration::from_secs(30);
    });
    assert_eq!(get(p.addr, "app.test", "/status?500", "").await.status, 500);
    assert!(p.backend(b.addr).health.ejected(), "one 500 ejects it");
    for _ in 0..3 {
        assert_eq!(get(p.addr, "app.test", "/", "").await.status, 200);
    }
    assert!(
        !p.backend(b.addr).health.ejected(),
        "a good answer ends the ejection"
    );
    assert_eq!(b.requests(), 4);
}

// In-flight counters belong to the backend, which a reload keeps: requests started
// before a reload are still counted, and released, after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counters_survive_a_reload() {
    let (slow, other) = (backend("slow").await, backend("other").await);
    // The slow backend holds its answers until the test is done with the reload, so
    // the three requests stay in flight however long that takes.
    slow.hold.send_replace(true);
    let h = weighted("app.test", &[(slow.addr, 1)], Balance::LeastConn);
    let p = start_proxy(vec![h], |_| {});
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            get(addr, "app.test", "/", "").await.status
        }));
    }
    wait_until("3 requests in flight, held by the slow backend", || {
        p.backend(slow.addr).stats.in_flight.load(Ordering::SeqCst) == 3 && slow.heads() == 3
    })
    .await;
    // Reload: a new balancer with another backend beside the slow one.
    let h = weighted(
        "app.test",
        &[(slow.addr, 2), (other.addr, 1)],
        Balance::LeastConn,
    );
    relevo::server::reload(
        &p.state,
        relevo::Config::with_hosts("127.0.0.1:0".parse().unwrap(), vec![h]),
    );
    assert_eq!(
        p.backend(slow.addr).stats.in_flight.load(Ordering::SeqCst),
        3,
        "the reload lost the count"
    );
    // least-conn sees the 3 requests in flight and sends new ones to the other backend.
    for _ in 0..3 {
        assert_eq!(get(p.addr, "app.test", "/", "").await.body, "other");
    }
    assert_eq!(
        slow.requests(),
        0,
        "the held requests were not answered yet"
    );
    slow.hold.send_replace(false);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(slow.requests(), 3);
    wait_until("the released requests leave the in-flight count", || {
        p.backend(slow.addr).stats.in_flight.load(Ordering::SeqCst) == 0
    })
    .await;
}

// Maglev (issue 12): two relevo instances given the same backends in another order
// send every key to the same backend, so instances behind an L4 balancer agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_agree_under_maglev() {
    let (b1, b2, b3) = (
        backend("b1").await,
        backend("b2").await,
        backend("b3").await,
    );
    let entry = |order: &[SocketAddr]| {
        let mut h = host("app.test", order);
        h.balance = Balance::Maglev;
        h.hash_key = HashKey::Header("x-user".parse().unwrap());
        h
    };
    let p = start_proxy(vec![entry(&[b1.addr, b2.addr, b3.addr])], |_| {});
    let q = start_proxy(vec![entry(&[b3.addr, b1.addr, b2.addr])], |_| {});
    let mut used = std::collections::HashSet::new();
    for user in 0..60 {
        let extra = format!("X-User: user-{user}\r\n");
        let a = get(p.addr, "app.test", "/", &extra).await.body;
        let b = get(q.addr, "app.test", "/", &extra).await.body;
        assert_eq!(a, b, "user-{user}");
        used.insert(a);
    }
    assert_eq!(
        used.len(),
        3,
        "the keys spread over every backend: {used:?}"
    );
}
