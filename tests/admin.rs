//! The admin listener: exact values in `/metrics` and `/status.json` after a known mix
//! of traffic, the token guard, the separation of the admin and proxy ports, and
//! readiness while draining.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use relevo::config::{Admin, HostEntryConfig};
use relevo::{Config, Server};
use tokio::sync::oneshot;

/// relevo with an admin listener on an ephemeral port.
struct WithAdmin {
    proxy: SocketAddr,
    admin: SocketAddr,
    state: std::sync::Arc<arc_swap::ArcSwap<relevo::proxy::State>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for WithAdmin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn start(hosts: Vec<HostEntryConfig>, token: Option<&str>) -> WithAdmin {
    let mut config = Config::with_hosts("127.0.0.1:0".parse().unwrap(), hosts);
    config.timeouts.shutdown = Duration::from_secs(5);
    config.admin = Some(Admin {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
    });
    let server = Server::bind(config).expect("bind");
    let (proxy, admin) = (server.local_addr().unwrap(), server.admin_addr().unwrap());
    let state = server.state();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    WithAdmin {
        proxy,
        admin,
        state,
        stop: Some(tx),
    }
}

/// `GET path` on the admin port, with extra header lines.
async fn admin_get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    get(addr, "admin", path, extra).await
}

/// The value of the series `name{labels}` in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

// The promise: a known mix of traffic — two backends, some 403s, a 502 — shows
// up with exact values in /metrics and /status.json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_count_a_known_mix_exactly() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let dead = dead_addr().await;
    let p = start(
        vec![
            host("app.test", &[b1.addr, b2.addr]),
            host("bad.test", &[dead]),
        ],
        None,
    );
    for _ in 0..10 {
        assert_eq!(get(p.proxy, "app.test", "/", "").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(p.proxy, "nobody.test", "/", "").await.status, 403);
    }
    assert_eq!(get(p.proxy, "bad.test", "/", "").await.status, 502);

    let m = admin_get(p.admin, "/metrics", "").await;
    assert_eq!(m.status, 200);
    let text = m.body;
    let (a1, a2) = (b1.addr, b2.addr);
    for (series, want) in [
        (
            format!("relevo_requests_total{{host=\"app.test\",backend=\"{a1}\",code=\"200\"}}"),
            5.0,
        ),
        (
            format!("relevo_requests_total{{host=\"app.test\",backend=\"{a2}\",code=\"200\"}}"),
            5.0,
        ),
        (
            "relevo_requests_total{host=\"-\",backend=\"none\",code=\"403\"}".into(),
            3.0,
        ),
        (
            format!("relevo_requests_total{{host=\"bad.test\",backend=\"{dead}\",code=\"502\"}}"),
            1.0,
        ),
        (
            "relevo_request_duration_seconds_count{host=\"app.test\"}".into(),
            10.0,
        ),
        (
            "relevo_bytes_total{host=\"app.test\",direction=\"out\"}".into(),
            20.0,
        ),
        (
            format!("relevo_upstream_connections_opened_total{{backend=\"{a1}\"}}"),
            1.0,
        ),
        (
            format!("relevo_upstream_connections{{backend=\"{a1}\",state=\"idle\"}}"),
            1.0,
        ),
        (
            format!("relevo_backend_up{{host=\"app.test\",backend=\"{a1}\"}}"),
            1.0,
        ),
        (
            format!("relevo_backend_in_flight{{host=\"app.test\",backend=\"{a2}\"}}"),
            0.0,
        ),
        (
            format!("relevo_backend_ejections_total{{backend=\"{dead}\"}}"),
            0.0,
        ),
        ("relevo_client_connections_accepted_total".into(), 14.0),
        ("relevo_client_connections_refused_total".into(), 0.0),
        ("relevo_config_generation".into(), 1.0),
        ("relevo_config_reloads_total{result=\"ok\"}".into(), 0.0),
        ("relevo_host_spread{host=\"app.test\"}".into(), 0.0),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series}\n{text}");
    }
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    // Nothing a client sent became a label value.
    assert!(!text.contains("nobody.test"), "{text}");

    let s = admin_get(p.admin, "/status.json", "").await;
    assert_eq!(s.status, 200);
    let json: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    assert_eq!(json["generation"], 1);
    assert_eq!(json["ready"], true);
    assert_eq!(json["clients"]["total"], 14);
    let hosts = json["hosts"].as_array().unwrap();
    let app = hosts.iter().find(|h| h["host"] == "app.test").unwrap();
    assert_eq!(app["requests"], 10);
    assert_eq!(app["balance"], "least-conn");
    assert_eq!(app["spread"], 0.0);
    for b in app["backends"].as_array().unwrap() {
        assert_eq!(b["state"], "up", "{b}");
        assert_eq!(b["requests"], 5, "{b}");
        assert_eq!(b["share"], 0.5, "{b}");
        assert_eq!(b["fair_share"], 0.5, "{b}");
        assert_eq!(b["in_flight"], 0, "{b}");
        assert_eq!(b["connections"]["opened"], 1, "{b}");
    }
    let bad = hosts.iter().find(|h| h["host"] == "bad.test").unwrap();
    assert_eq!(bad["requests"], 1);
    assert_eq!(bad["backends"][0]["requests"], 1);

    // A reload is a new generation.
    relevo::server::reload(
        &p.state,
        Config::with_hosts(
            "127.0.0.1:0".parse().unwrap(),
            vec![host("app.test", &[b1.addr])],
        ),
    );
    let text = admin_get(p.admin, "/metrics", "").await.body;
    assert_eq!(
        sample(&text, "relevo_config_generation"),
        Some(2.0),
        "{text}"
    );
}

// A wrong or missing token gets 401 and nothing else; the right one, as a bearer
// token or as the status page's `?token=`, gets the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_every_admin_path() {
    let b = backend("b").await;
    let p = start(vec![host("app.test", &[b.addr])], Some("s3cret"));
    for path in [
        "/metrics",
        "/status",
        "/status.json",
        "/healthz",
        "/ready",
        "/nope",
    ] {
        for extra in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Authorization: s3cret\r\n",
        ] {
            let r = admin_get(p.admin, path, extra).await;
            assert_eq!(
                (r.status, r.body.as_str()),
                (401, "unauthorized\n"),
                "{path} {extra:?}"
            );
            assert_eq!(
                r.header("www-authenticate").as_deref(),
                Some("Bearer realm=\"relevo admin\"")
            );
        }
    }
    let r = admin_get(p.admin, "/metrics", "Authorization: Bearer s3cret\r\n").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("relevo_config_generation"));
    assert_eq!(
        admin_get(p.admin, "/status.json?token=s3cret", "")
            .await
            .status,
        200
    );
}

// The admin listener never serves proxy traffic, and the proxy port never serves
// admin paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_proxy_ports_stay_apart() {
    let b = backend("b").await;
    let p = start(vec![host("app.test", &[b.addr])], None);
    let r = get(p.admin, "app.test", "/", "").await;
    assert_eq!(r.status, 404, "the admin port proxied a request");
    assert_eq!(b.requests(), 0);
    for path in ["/metrics", "/status.json", "/ready"] {
        let r = get(p.proxy, "app.test", path, "").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "b"),
            "{path} on the proxy port"
        );
        assert_eq!(b.last().uri, path, "the backend got {path}");
    }
    let page = admin_get(p.admin, "/status", "").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(admin_get(p.admin, "/healthz", "").await.body, "ok\n");
}

// `/ready` turns false as soon as a graceful stop begins, while requests in flight
// finish (a load balancer in front stops sending new ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_false_while_draining() {
    let b = backend("b").await;
    b.delay_ms.store(1500, Ordering::SeqCst);
    let mut p = start(vec![host("app.test", &[b.addr])], None);
    assert_eq!(admin_get(p.admin, "/ready", "").await.status, 200);
    let proxy = p.proxy;
    let in_flight = tokio::spawn(async move { get(proxy, "app.test", "/", "").await.status });
    let state = p.state.clone();
    let deadline = Instant::now() + WAIT;
    while state.load().backends[&b.addr]
        .stats
        .in_flight
        .load(Ordering::SeqCst)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = p.stop.take().map(|s| s.send(()));
    loop {
        let r = admin_get(p.admin, "/ready", "").await;
        if r.status == 503 {
            assert_eq!(r.body, "draining\n");
            break;
        }
        assert!(Instant::now() < deadline, "/ready never turned false");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the request in flight finished"
    );
}
