//! The operator's status page (`GET /status` on the admin listener), loaded in headless
//! Chromium against the real relevo running in this process.
//!
//! What this protects is the promise: the status page updates itself live (it
//! polls `status.json` and re-renders) and shows every backend's state and numbers. The
//! page ships no data of its own, so every number asserted here got into the DOM through
//! the page's own polling JavaScript; `data-updates` on `<body>` counts the polls it
//! rendered, and at least two prove it updates itself rather than loading once.
//!
//! Without Chromium (`/usr/bin/chromium` or `chromium` on PATH) the tests say so and
//! pass, unless `RELEVO_REQUIRE_CHROMIUM=1` (set by `.ci/run`, which installs Debian's
//! `chromium`) makes them required.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::chromium::{chromium, dump_dom};
use relevo::config::{Admin, HostEntryConfig};
use relevo::{Config, Server};
use tokio::sync::oneshot;

/// relevo with an admin listener on an ephemeral port; stops when dropped.
struct Relevo {
    proxy: SocketAddr,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
}

fn start(backends: &[SocketAddr], token: Option<&str>) -> Relevo {
    let mut config = Config::with_hosts(
        "127.0.0.1:0".parse().unwrap(),
        vec![HostEntryConfig::new("app.test", backends)],
    );
    config.timeouts.shutdown = Duration::from_millis(100);
    config.admin = Some(Admin {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
    });
    let server = Server::bind(config).expect("bind");
    let proxy = server.local_addr().unwrap();
    let admin = server
        .admin_addr()
        .expect("the admin listener is configured");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        // A dropped sender (Err) is as much a stop request as a sent ().
        let _ = stopped.await;
    }));
    Relevo {
        proxy,
        admin,
        _stop: stop,
    }
}

/// Sends `n` GETs for app.test through relevo, each answered 200.
async fn traffic(proxy: SocketAddr, n: usize) {
    for _ in 0..n {
        let reply = common::get(proxy, "app.test", "/", "").await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}

/// Waits until relevo's own `status.json` counts `n` requests for the host, so the
/// page, whenever it polls, has that number to show.
async fn wait_counted(admin: SocketAddr, n: usize) {
    let want = format!("\"requests\":{n},");
    let deadline = Instant::now() + common::WAIT;
    loop {
        let body = common::get(admin, "127.0.0.1", "/status.json", "")
            .await
            .body;
        if body.replace([' ', '\n'], "").contains(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "status.json never counted {n} requests:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text inside the first element carrying `data-field="NAME"` in `html`.
fn field<'a>(html: &'a str, name: &str) -> &'a str {
    let marker = format!("data-field=\"{name}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no data-field={name} in:\n{html}"));
    let rest = &html[at..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    rest[open..open + close].trim()
}

/// The `<tr>` the page rendered for the backend at `addr`.
fn row(dom: &str, addr: SocketAddr) -> &str {
    let marker = format!("data-addr=\"{addr}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for backend {addr} in the page:\n{dom}"));
    let end = dom[at..].find("</tr>").expect("row not closed");
    &dom[at..at + end]
}

/// The card the page rendered for `host`, up to its backend table.
fn host_summary<'a>(dom: &'a str, host: &str) -> &'a str {
    let marker = format!("data-host=\"{host}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no card for host {host} in the page:\n{dom}"));
    let end = dom[at..].find("<table").expect("host card without a table");
    &dom[at..at + end]
}

/// How many `status.json` answers the page rendered (`<body data-updates="N">`).
fn updates(dom: &str) -> u32 {
    let at = dom
        .find("data-updates=\"")
        .expect("no data-updates on body")
        + 14;
    let end = dom[at..].find('"').unwrap();
    dom[at..at + end].parse().unwrap()
}

fn number(text: &str) -> usize {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {text:?}"))
}

fn assert_live_page(dom: &str, backends: &[&common::Backend], total: usize) {
    assert!(
        updates(dom) >= 2,
        "the page rendered status.json {} times, not at least twice: it does not update itself",
        updates(dom)
    );
    assert!(
        dom.contains("data-field=\"banner\" role=\"alert\" hidden"),
        "the 'cannot reach relevo' banner is showing: a poll failed\n{dom}"
    );
    let summary = host_summary(dom, "app.test");
    assert_eq!(field(summary, "host"), "app.test");
    assert_eq!(
        number(field(summary, "requests")),
        total,
        "the host's request count is not the live one"
    );
    for b in backends {
        let r = row(dom, b.addr);
        assert_eq!(field(r, "addr"), b.addr.to_string());
        assert_eq!(
            field(r, "state"),
            "up",
            "backend {} is not shown up:\n{r}",
            b.addr
        );
        assert_eq!(
            number(field(r, "requests")),
            b.requests(),
            "backend {}'s request count is not the live one:\n{r}",
            b.addr
        );
        assert!(r.contains("<svg"), "backend {} has no charts:\n{r}", b.addr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_updates_itself_and_shows_every_backend() {
    let Some(chromium) = chromium() else {
        return;
    };
    let b1 = common::backend("b1").await;
    let b2 = common::backend("b2").await;
    let relevo = start(&[b1.addr, b2.addr], None);

    // One file, nothing from elsewhere: the only URL in it is the SVG namespace.
    let page = common::get(relevo.admin, "127.0.0.1", "/status", "").await;
    assert_eq!(page.status, 200);
    let others = page.body.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !others.contains("http://") && !others.contains("https://") && !others.contains("//cdn"),
        "the status page refers to an external asset"
    );
    assert!(
        page.body.contains("status.json"),
        "the page does not poll status.json"
    );

    traffic(relevo.proxy, 20).await;
    assert_eq!(b1.requests() + b2.requests(), 20);
    wait_counted(relevo.admin, 20).await;
    let url = format!("http://{}/status", relevo.admin);
    let dom = tokio::task::block_in_place(|| dump_dom(&chromium, &url, 5000, &[]));
    assert_live_page(&dom, &[&b1, &b2], 20);

    // More traffic, a fresh load: the numbers follow.
    traffic(relevo.proxy, 10).await;
    wait_counted(relevo.admin, 30).await;
    let dom = tokio::task::block_in_place(|| dump_dom(&chromium, &url, 5000, &[]));
    assert_live_page(&dom, &[&b1, &b2], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_sends_its_token_on_each_poll() {
    let Some(chromium) = chromium() else {
        return;
    };
    let b1 = common::backend("b1").await;
    let relevo = start(&[b1.addr], Some("s3cret-token"));
    traffic(relevo.proxy, 3).await;

    // Opened as /status?token=...: status.json is fetched without that query, so only
    // the Authorization header the page adds lets its polls through.
    let url = format!("http://{}/status?token=s3cret-token", relevo.admin);
    let dom = tokio::task::block_in_place(|| dump_dom(&chromium, &url, 5000, &[]));
    assert!(
        updates(&dom) >= 2,
        "polls did not get through with the token:\n{dom}"
    );
    assert_eq!(field(row(&dom, b1.addr), "state"), "up");

    // And that header is what let them through: without it, status.json is refused.
    let bare = common::get(relevo.admin, "127.0.0.1", "/status.json", "").await;
    assert_eq!(bare.status, 401, "the admin listener should want its token");
}
