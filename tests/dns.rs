//! DNS service discovery against a real DNS server: Debian's `dnsmasq` (`.ci/run`
//! installs it), started by each test on a loopback port it picked, serving A records
//! from a hosts file the test rewrites (dnsmasq rereads it on SIGHUP) and SRV records
//! from its command line, with TTL 1 s. relevo is the binary, on port 0.
//!
//! Without dnsmasq the tests say so and pass, unless `RELEVO_REQUIRE_DNSMASQ=1` (set
//! by `.ci/run`) makes it required.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::process::{Relevo, BIN};
use common::*;

/// The zone the tests' names live in: dnsmasq answers it from its files only, so a
/// name removed from them is NXDOMAIN (not REFUSED for lack of an upstream).
const ZONE: &str = "relevo.test";

/// The dnsmasq binary, or `None` (test skipped) when it is not installed.
fn dnsmasq_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("RELEVO_REQUIRE_DNSMASQ").as_deref() != Ok("1"),
            "dnsmasq is required (RELEVO_REQUIRE_DNSMASQ=1) but not installed: apt-get install dnsmasq-base"
        );
        eprintln!("skipped: dnsmasq is not installed (apt-get install dnsmasq-base); set RELEVO_REQUIRE_DNSMASQ=1 to make it required");
    }
    found
}

/// A dnsmasq serving `hosts` (rewritten by `set_hosts`) and SRV records; killed when dropped.
struct Dnsmasq {
    child: Child,
    port: u16,
    hosts: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // Err: it has exited already (the outage test kills it).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` (`(ip, name)` lines) and `srv` (`--srv-host` values),
    /// on a free loopback port: one a UDP socket was just given, tried again if another
    /// process took it meanwhile.
    fn start(bin: &Path, hosts: &[(&str, &str)], srv: &[String]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let hosts_file = dir.path().join("hosts");
        write_hosts(&hosts_file, hosts);
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = dir.path().join(format!("dnsmasq-{port}.log"));
            let mut cmd = Command::new(bin);
            cmd.args([
                "--no-daemon",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local-ttl=1",
                "--user=root",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--local=/{ZONE}/"))
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()));
            for s in srv {
                cmd.arg(format!("--srv-host={s}"));
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            // Bound once it has read the hosts file (after the socket is made); an exit
            // instead means the port was taken: try another.
            let deadline = Instant::now() + WAIT;
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains(&format!("read {}", hosts_file.display())) {
                    return Dnsmasq {
                        child,
                        port,
                        hosts: hosts_file,
                        dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    eprintln!("dnsmasq on port {port} did not start: {text}");
                    break;
                }
                assert!(Instant::now() < deadline, "dnsmasq did not start: {text}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("dnsmasq could not get a port");
    }

    /// The address to put in `[dns] servers`.
    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the A records and makes dnsmasq reread them.
    fn set_hosts(&self, hosts: &[(&str, &str)]) {
        write_hosts(&self.hosts, hosts);
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Stops answering: a resolver outage.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Writes a hosts file whole (a rename, so dnsmasq never reads half of it).
fn write_hosts(path: &Path, hosts: &[(&str, &str)]) {
    let text: String = hosts.iter().map(|(ip, n)| format!("{ip} {n}\n")).collect();
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A name of the test zone.
fn name(label: &str) -> String {
    format!("{label}.{ZONE}")
}

/// Backends called `names[i]` on 127.0.0.(i+1), all on one port (the port a DNS name's
/// addresses share), picked free and tried again if one of the addresses has it taken.
async fn backends_on_one_port(names: &[&str]) -> (u16, Vec<Backend>) {
    'again: for _ in 0..10 {
        let first = backend(names[0]).await;
        let port = first.addr.port();
        let mut all = vec![first];
        for (i, n) in names.iter().enumerate().skip(1) {
            let addr = SocketAddr::new(IpAddr::from([127, 0, 0, i as u8 + 1]), port);
            match backend_on(n, addr).await {
                Ok(b) => all.push(b),
                Err(_) => continue 'again,
            }
        }
        return (port, all);
    }
    panic!("no port free on every loopback address");
}

/// Writes `config` to a file in `dns`'s folder.
fn config_file(dns: &Dnsmasq, file: &str, config: &str) -> PathBuf {
    let path = dns.dir.path().join(file);
    std::fs::write(&path, config).unwrap();
    path
}

/// relevo running `config`.
async fn relevo(config: &Path) -> Relevo {
    Relevo::spawn(["run".as_ref(), "--config".as_ref(), config.as_os_str()]).await
}

/// The body of one GET of `/` for `host` (the backend's name), or its status.
async fn who(r: &Relevo, host: &str) -> String {
    let reply = get(r.addr, host, "/", "").await;
    match reply.status {
        200 => reply.body,
        s => s.to_string(),
    }
}

/// Polls (bounded) until a request for `host` is answered by `want`.
async fn until_served_by(r: &Relevo, host: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = who(r, host).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host} never answered by {want} (last: {got}): {:?}",
            r.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the metric series `series` (name and labels as written), 0 if absent.
async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let text = get(admin, "admin", "/metrics", "").await.body;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

/// A host entry of one name, with TTLs of a second and the given hold.
fn one_name_config(dns: &Dnsmasq, backend: &str, hold: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nservers = [\"{}\"]\nmin_ttl = \"1s\"\nhold = \"{hold}\"\n\
         [hosts.\"api.test\"]\nbackends = [\"{backend}\"]\nbalance = \"round-robin\"\n",
        dns.server()
    )
}

/// dnsmasq serving `hosts`, and relevo serving `api.test` from the one name `backend`
/// with the given hold; the configuration file is returned for a reload to rewrite.
async fn one_name(
    bin: &Path,
    hosts: &[(&str, &str)],
    backend: &str,
    hold: &str,
) -> (Dnsmasq, PathBuf, Relevo) {
    let dns = Dnsmasq::start(bin, hosts, &[]);
    let conf = config_file(&dns, "r.toml", &one_name_config(&dns, backend, hold));
    let r = relevo(&conf).await;
    (dns, conf, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_address_takes_traffic_after_its_ttl() {
    let Some(bin) = dnsmasq_binary() else { return };
    let (port, b) = backends_on_one_port(&["a", "b"]).await;
    let api = name("api");
    let (dns, _conf, r) = one_name(
        &bin,
        &[("127.0.0.1", &api)],
        &format!("{api}:{port}"),
        "30s",
    )
    .await;
    for _ in 0..4 {
        assert_eq!(who(&r, "api.test").await, "a");
    }
    dns.set_hosts(&[("127.0.0.1", &api), ("127.0.0.2", &api)]);
    until_served_by(&r, "api.test", "b").await;
    let line = r.wait_log("changed").await;
    assert!(
        line.contains(&format!(
            "[127.0.0.1:{port}] -> [127.0.0.1:{port}, 127.0.0.2:{port}]"
        )),
        "{line}"
    );
    // Both take turns from now on.
    let (a0, b0) = (b[0].requests(), b[1].requests());
    for _ in 0..4 {
        who(&r, "api.test").await;
    }
    assert_eq!((b[0].requests() - a0, b[1].requests() - b0), (2, 2));
    // The kept address kept its pool (one connection all along) and its counters (they
    // count every request it served, from before the change too).
    assert_eq!(b[0].connections(), 1, "the kept backend's pool was dropped");
    let admin = r.admin_addr().await;
    let served = format!(
        "relevo_requests_total{{host=\"api.test\",backend=\"127.0.0.1:{port}\",code=\"200\"}}"
    );
    assert_eq!(metric(admin, &served).await, b[0].requests() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_address_gets_no_new_requests_and_finishes_those_in_flight() {
    let Some(bin) = dnsmasq_binary() else { return };
    let (port, b) = backends_on_one_port(&["a", "b"]).await;
    let api = name("api");
    let (dns, _conf, r) = one_name(
        &bin,
        &[("127.0.0.1", &api), ("127.0.0.2", &api)],
        &format!("{api}:{port}"),
        "30s",
    )
    .await;
    // Round-robin in address order: a, then b, whose answer waits until released.
    assert_eq!(who(&r, "api.test").await, "a");
    b[1].hold.send_replace(true);
    let proxy = r.addr;
    let in_flight = tokio::spawn(async move { get(proxy, "api.test", "/", "").await });
    wait_until("the request in flight on b", || b[1].heads() == 1).await;
    dns.set_hosts(&[("127.0.0.1", &api)]);
    r.wait_log("changed").await;
    for _ in 0..6 {
        assert_eq!(who(&r, "api.test").await, "a");
    }
    assert_eq!(b[1].heads(), 1, "the removed address got a new request");
    b[1].hold.send_replace(false);
    let reply = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_outage_keeps_the_last_set() {
    let Some(bin) = dnsmasq_binary() else { return };
    let (port, b) = backends_on_one_port(&["a", "b"]).await;
    let api = name("api");
    let backend = format!("{api}:{port}");
    let hosts = [("127.0.0.1", api.as_str()), ("127.0.0.2", &api)];
    let (mut dns, _conf, r) = one_name(&bin, &hosts, &backend, "1s").await;
    let admin = r.admin_addr().await;
    // Served once the names are resolved (relevo resolves them before it serves).
    assert_eq!(who(&r, "api.test").await, "a");
    dns.kill();
    // Resolutions fail from now on; wait until two have (more than one TTL, more than
    // the hold: neither may empty the set).
    let errors = format!("relevo_dns_resolutions_total{{name=\"{backend}\",result=\"error\"}}");
    let deadline = Instant::now() + WAIT * 2;
    while metric(admin, &errors).await < 2.0 {
        assert!(Instant::now() < deadline, "no failed resolutions counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.wait_log("keeping").await;
    let (a0, b0) = (b[0].requests(), b[1].requests());
    for _ in 0..6 {
        assert_ne!(who(&r, "api.test").await, "503");
    }
    assert_eq!((b[0].requests() - a0, b[1].requests() - b0), (3, 3));
    let addresses = format!("relevo_dns_addresses{{name=\"{backend}\"}}");
    assert_eq!(metric(admin, &addresses).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_empties_the_set_only_after_the_hold() {
    let Some(bin) = dnsmasq_binary() else { return };
    let (port, _b) = backends_on_one_port(&["a"]).await;
    let api = name("api");
    let backend = format!("{api}:{port}");
    let hold = Duration::from_secs(4);
    let (dns, _conf, r) = one_name(&bin, &[("127.0.0.1", &api)], &backend, "4s").await;
    let admin = r.admin_addr().await;
    assert_eq!(who(&r, "api.test").await, "a");
    let removed = Instant::now();
    dns.set_hosts(&[]);
    let nx = format!("relevo_dns_resolutions_total{{name=\"{backend}\",result=\"nxdomain\"}}");
    let deadline = Instant::now() + WAIT;
    while metric(admin, &nx).await < 1.0 {
        assert!(Instant::now() < deadline, "no NXDOMAIN counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first NXDOMAIN is held: the address still serves.
    assert_eq!(who(&r, "api.test").await, "a");
    let deadline = Instant::now() + WAIT * 2;
    while who(&r, "api.test").await != "503" {
        assert!(
            Instant::now() < deadline,
            "the name's set was never emptied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        removed.elapsed() >= hold,
        "emptied after {:?}, before the hold of {hold:?}",
        removed.elapsed()
    );
    r.wait_log(&format!("changed (nxdomain): [127.0.0.1:{port}] -> []"))
        .await;
    // And it comes back when the name does.
    dns.set_hosts(&[("127.0.0.1", &api)]);
    until_served_by(&r, "api.test", "a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_weights_and_priorities() {
    let Some(bin) = dnsmasq_binary() else { return };
    let (b1, b2, b3) = (
        backend("b1").await,
        backend("b2").await,
        backend("b3").await,
    );
    let target = name("node");
    let svc = format!("_http._tcp.api.{ZONE}");
    // RFC 2782 order: name, target, port, priority, weight.
    let srv = [
        format!("{svc},{target},{},10,3", b1.addr.port()),
        format!("{svc},{target},{},10,1", b2.addr.port()),
        format!("{svc},{target},{},20,1", b3.addr.port()),
    ];
    let dns = Dnsmasq::start(&bin, &[("127.0.0.1", &target)], &srv);
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         [dns]\nservers = [\"{}\"]\n\
         [hosts.\"srv.test\"]\nbackends = [{{ srv = \"{svc}\" }}]\nbalance = \"round-robin\"\n\
         health = {{ path = \"/healthz\", interval = \"100ms\", rise = 1, fall = 1 }}\n",
        dns.server()
    );
    let conf = config_file(&dns, "r.toml", &config);
    let r = relevo(&conf).await;
    // Weights 3:1 become 100:33; priority 20 gets nothing while priority 10 is up.
    for _ in 0..133 {
        assert_ne!(who(&r, "srv.test").await, "503");
    }
    assert_eq!((b1.requests(), b2.requests(), b3.requests()), (100, 33, 0));
    // Priority 10 down by its health check: priority 20 takes over...
    b1.health.store(503, Ordering::SeqCst);
    b2.health.store(503, Ordering::SeqCst);
    until_served_by(&r, "srv.test", "b3").await;
    // ...until one target of priority 10 is back.
    b2.health.store(200, Ordering::SeqCst);
    until_served_by(&r, "srv.test", "b2").await;
    let before = b3.requests();
    for _ in 0..5 {
        assert_eq!(who(&r, "srv.test").await, "b2");
    }
    assert_eq!(b3.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_watches_the_names_of_the_new_file() {
    let Some(bin) = dnsmasq_binary() else { return };
    let (port, _b) = backends_on_one_port(&["a", "b", "c"]).await;
    let (api, other) = (name("api"), name("other"));
    let (dns, conf, r) = one_name(
        &bin,
        &[("127.0.0.1", &api), ("127.0.0.3", &other)],
        &format!("{api}:{port}"),
        "30s",
    )
    .await;
    assert_eq!(who(&r, "api.test").await, "a");
    std::fs::write(
        &conf,
        one_name_config(&dns, &format!("{other}:{port}"), "30s"),
    )
    .unwrap();
    r.signal("-HUP");
    r.wait_log("SIGHUP: reloaded").await;
    until_served_by(&r, "api.test", "c").await;
    // The new name is watched: a second address for it takes traffic.
    dns.set_hosts(&[
        ("127.0.0.1", &api),
        ("127.0.0.3", &other),
        ("127.0.0.2", &other),
    ]);
    until_served_by(&r, "api.test", "b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_for_a_name_that_does_not_resolve_and_route_shows_addresses() {
    let Some(bin) = dnsmasq_binary() else { return };
    let api = name("api");
    let dns = Dnsmasq::start(&bin, &[("127.0.0.1", &api), ("127.0.0.2", &api)], &[]);
    let config = format!(
        "[dns]\nservers = [\"{}\"]\n[hosts]\n\"api.test\" = [\"{api}:8080\", \"{}\"]\n",
        dns.server(),
        name("nowhere")
    );
    let conf = config_file(&dns, "r.toml", &config);
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: backend name `{}:80` does not resolve: NXDOMAIN",
            name("nowhere")
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("`{api}")), "{stderr}");
    let route = Command::new(BIN)
        .args(["route", "--config"])
        .arg(&conf)
        .arg("http://api.test/")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&route.stdout);
    assert!(route.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "name:     {api}:8080 -> 127.0.0.1:8080, 127.0.0.2:8080"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("backend:  127.0.0.1:8080"), "{stdout}");
}
