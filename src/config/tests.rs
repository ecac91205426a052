//! The configuration's own tests: the lab's table, the long form, and located errors.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::values::parse_duration;
use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
}

fn assert_errors(cases: &[(&str, &str)]) {
    for (text, want) in cases {
        let got = parse(text).unwrap_err();
        assert!(
            got.starts_with(want),
            "for {text:?}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn lab_table_is_accepted_as_written() {
    let c = parse(
        r#"
listen = "127.0.0.1:8080"

[hosts]
"app.test"  = ["127.0.0.1:19101", "127.0.0.1:19102"]
"solo.test" = ["127.0.0.1:19103"]
"legacy.test" = ["127.0.0.1"]                # port 80 when omitted
"#,
    )
    .unwrap();
    assert_eq!(c.hosts.len(), 3);
    assert_eq!(c.hosts[0].name, "app.test");
    assert_eq!(
        c.hosts[2].backends,
        vec![BackendConfig::from(
            "127.0.0.1:80".parse::<SocketAddr>().unwrap()
        )]
    );
}

#[test]
fn long_form_and_mixed() {
    let c = parse(
        r#"
[hosts]
"solo.test" = ["127.0.0.1:1"]
[hosts."App.Test"]
backends = ["127.0.0.1:19101", "[::1]:19102"]
balance = "random"
"#,
    )
    .unwrap();
    let app = c.hosts.iter().find(|h| h.name == "app.test").unwrap();
    assert_eq!(app.balance, Balance::Random);
    assert_eq!(app.backends[1].addr, "[::1]:19102".parse().unwrap());
}

#[test]
fn errors_name_line_and_problem() {
    let cases = [
        (
            "[hosts]\n\"a\" = [\"1.2.3\"]\n",
            "t.toml:2:8: bad backend address `1.2.3`",
        ),
        (
            "[hosts]\n\"a\" = []\n",
            "t.toml:2:1: host `a` has no backends",
        ),
        (
            "[hosts]\n\"a\" = [\"1.1.1.1\"]\n\"A\" = [\"1.1.1.2\"]\n",
            "t.toml:3:1: duplicate host `A`",
        ),
        (
            "bogus = 1\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
            "t.toml:1:1: unknown field `bogus`",
        ),
        (
            "[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\nbalance = \"fastest\"\n",
            "t.toml:3:11: unknown balance `fastest`: expected one of round-robin, random",
        ),
        (
            "listen = \"nope\"\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
            "t.toml:1:10: bad listen address `nope`",
        ),
        (
            "[timeouts]\nconnect = \"5 parsecs\"\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
            "t.toml:2:11: bad duration",
        ),
        ("[hosts]\n", "t.toml:1:1: the host table is empty"),
        (
            "[hosts.\"a\"]\nbackends = []\n",
            "t.toml:2:12: host `a` has no backends",
        ),
        (
            "[hosts.\"a\"]\nbackends = [\"x\"]\n",
            "t.toml:2:13: bad backend address `x`",
        ),
        (
            "[hosts.\"a b\"]\nbackends = [\"1.1.1.1\"]\n",
            "t.toml:1:8: bad host name `a b`",
        ),
        (
            "listen = \"127.0.0.1:1\"\n",
            "t.toml:1:1: the host table is empty",
        ),
        (
            "[hosts]\n\"a\" = [\"1.1.1.1\", \"1.1.1.1:80\"]\n",
            "t.toml:2:19: backend `1.1.1.1:80` is listed twice",
        ),
    ];
    assert_errors(&cases);
}

#[test]
fn balancing_health_and_retry_options() {
    let c = parse(
        r#"
[passive]
failures = 5
eject = "1s"
statuses = [502, 503]
[retries]
tries = 2
budget = "5s"
[hosts."app.test"]
backends = ["127.0.0.1:1", { addr = "127.0.0.1:2", weight = 3 }]
balance = "hash"
hash_key = "cookie:sid"
fail_open = true
tries = 4
[hosts."app.test".health]
path = "/healthz"
interval = "500ms"
expect = "200-299"
"#,
    )
    .unwrap();
    let h = &c.hosts[0];
    assert_eq!(h.backends[1].weight, 3);
    assert_eq!(h.balance, Balance::Hash);
    assert_eq!(h.hash_key, HashKey::Cookie("sid".into()));
    assert!(h.fail_open);
    assert_eq!(h.tries, Some(4));
    let hc = h.health.as_ref().unwrap();
    assert_eq!(
        (hc.path.as_str(), hc.interval, hc.expect, hc.rise, hc.fall),
        ("/healthz", Duration::from_millis(500), (200, 299), 2, 3)
    );
    assert_eq!(
        (c.passive.failures, c.passive.statuses.clone()),
        (5, vec![502, 503])
    );
    assert_eq!(
        (c.retries.tries, c.retries.budget),
        (2, Duration::from_secs(5))
    );
}

#[test]
fn option_errors_name_line_and_problem() {
    let cases = [
        (
            "[hosts]\n\"a\" = [{ addr = \"1.1.1.1\", weight = 0 }]\n",
            "t.toml:2:37: weight must be between 1 and 1000",
        ),
        (
            "[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\nhash_key = \"body\"\n",
            "t.toml:3:12: bad hash_key `body`",
        ),
        (
            "[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\n[hosts.\"a\".health]\nexpect = \"299-200\"\n",
            "t.toml:4:10: health.expect `299-200`",
        ),
        (
            "[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\n[hosts.\"a\".health]\npath = \"healthz\"\n",
            "t.toml:4:8: health.path `healthz` must be a path",
        ),
        (
            "[passive]\nstatuses = [404]\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
            "t.toml:2:13: passive.statuses: 404 is not a 5xx status",
        ),
        (
            "[retries]\ntries = 0\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
            "t.toml:2:9: retries.tries must be at least 1",
        ),
        (
            "[hosts]\n\"a\" = [{ addr = \"1.1.1.1\", wieght = 2 }]\n",
            "t.toml:2:",
        ),
    ];
    assert_errors(&cases);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("s"), None);
}

#[test]
fn admin_listener_is_loopback_or_guarded() {
    let hosts = "[hosts]\n\"a\" = [\"1.1.1.1\"]\n";
    let c = parse(&format!("[admin]\n{hosts}")).unwrap();
    let admin = c.admin.unwrap();
    assert_eq!(admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(admin.token, None);
    assert!(
        parse(hosts).unwrap().admin.is_none(),
        "off unless configured"
    );
    let c = parse(&format!(
        "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken = \"t\"\n{hosts}"
    ))
    .unwrap();
    assert_eq!(c.admin.unwrap().token.as_deref(), Some("t"));
    assert_errors(&[
        (
            &format!("[admin]\nlisten = \"0.0.0.0:9901\"\n{hosts}"),
            "t.toml:2:10: admin.listen `0.0.0.0:9901` is not a loopback address: set admin.token",
        ),
        (
            &format!("[admin]\nlisten = \"[::]:9901\"\n{hosts}"),
            "t.toml:2:10: admin.listen `[::]:9901` is not a loopback address",
        ),
        (
            &format!("[admin]\ntoken = \" \"\n{hosts}"),
            "t.toml:2:9: admin.token must not be empty",
        ),
        (
            &format!("[admin]\nlisten = \"nope\"\n{hosts}"),
            "t.toml:2:10: bad admin.listen `nope`",
        ),
    ]);
}

#[test]
fn backends_may_be_names_and_srv_records_beside_addresses() {
    let c = parse(
        r#"
[dns]
servers = ["127.0.0.1:5353", "10.0.0.53"]
hold = "5s"

[hosts]
"api.test" = ["10.0.0.1:8080", "API.internal:8080", "plain.internal", { addr = "w.internal:81", weight = 3, max_conns = 7 }]
"svc.test" = { backends = [{ srv = "_http._tcp.api.service.consul" }] }
"abs.test" = ["api.default.svc.cluster.local.:8080"]
"#,
    )
    .unwrap();
    let api = &c.hosts[0];
    assert_eq!(api.backends.len(), 1);
    let names: Vec<String> = api.names.iter().map(|n| n.name.to_string()).collect();
    assert_eq!(
        names,
        ["api.internal:8080", "plain.internal:80", "w.internal:81"]
    );
    assert_eq!((api.names[2].weight, api.names[2].max_conns), (3, Some(7)));
    assert_eq!(
        c.hosts[1].names[0].name,
        DnsName::Srv("_http._tcp.api.service.consul".into())
    );
    assert_eq!(
        c.dns.servers,
        ["127.0.0.1:5353", "10.0.0.53:53"]
            .map(|s| s.parse::<SocketAddr>().unwrap())
            .to_vec()
    );
    assert_eq!(c.dns.hold, Duration::from_secs(5));
    // A trailing dot (an absolute name, no search list) is kept.
    assert_eq!(
        c.hosts[2].names[0].name.to_string(),
        "api.default.svc.cluster.local.:8080"
    );
    assert_eq!(c.dns.min_ttl, Dns::default().min_ttl);
    // Without names and without [dns], nothing changes.
    let plain = parse("[hosts]\n\"a.test\" = [\"10.0.0.1\"]\n").unwrap();
    assert!(plain.hosts[0].names.is_empty());
    assert_eq!(plain.dns, Dns::default());
}

#[test]
fn bad_names_and_dns_settings_are_located() {
    assert_errors(&[
        (
            "[hosts]\n\"a.test\" = [\"10.0.0.300\"]\n",
            "t.toml:2:13: bad backend address `10.0.0.300`",
        ),
        (
            "[hosts]\n\"a.test\" = [\"bad name.internal\"]\n",
            "t.toml:2:13: bad backend address `bad name.internal`",
        ),
        (
            "[hosts]\n\"a.test\" = [{ srv = \"_http._tcp.x\", weight = 2 }]\n",
            "t.toml:2:46: an SRV backend takes its weights from the records",
        ),
        (
            "[hosts]\n\"a.test\" = [{ srv = \"_x._tcp.a\", addr = \"b.internal\" }]\n",
            "t.toml:2:13: a backend table needs either `addr` or `srv`",
        ),
        (
            "[hosts]\n\"a.test\" = [\"x.internal\", \"X.internal:80\"]\n",
            "t.toml:2:27: backend `x.internal:80` is listed twice",
        ),
        (
            "[dns]\nservers = [\"localhost\"]\n[hosts]\n\"a.test\" = [\"10.0.0.1\"]\n",
            "t.toml:2:12: bad dns.servers entry `localhost`",
        ),
        (
            "[dns]\nmin_ttl = \"10s\"\nmax_ttl = \"5s\"\n[hosts]\n\"a.test\" = [\"10.0.0.1\"]\n",
            "t.toml:3:11: dns.max_ttl must not be shorter than dns.min_ttl",
        ),
    ]);
}

#[test]
fn h2_limits_and_tls_keys_are_validated() {
    let c = parse(
        "[limits]\nh2_max_concurrent_streams = 32\nh2_stream_window_bytes = 65535\n[hosts]\n\"a\" = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    assert_eq!(c.limits.h2_max_concurrent_streams, 32);
    assert_eq!(c.limits.h2_stream_window_bytes, 65_535);
    assert_eq!(c.limits.h2_max_client_resets, 200);
    assert!(c.tls.is_none());
    let hosts = "[hosts]\n\"a\" = [\"127.0.0.1\"]\n";
    assert_errors(&[
        (
            &format!("[limits]\nh2_stream_window_bytes = 100\n{hosts}"),
            "t.toml:2:26: limits.h2_stream_window_bytes must be at least 65535",
        ),
        (
            &format!("[limits]\nh2_connection_window_bytes = 4294967295\n{hosts}"),
            "t.toml:2:30: limits.h2_connection_window_bytes must be at most 2147483647",
        ),
        (
            &format!("[tls]\nmin_version = \"1.1\"\n{hosts}"),
            "t.toml:2:15: unknown tls.min_version `1.1`",
        ),
        (
            &format!("[tls]\nlisten = \"nowhere\"\n{hosts}"),
            "t.toml:2:10: bad tls.listen `nowhere`",
        ),
        (&format!("[tls]\n{hosts}"), "t.toml:1:1: tls.certs is empty"),
    ]);
}
