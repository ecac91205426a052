//! The access-log line of a finished request, in each of the formats.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::session::Session;
use crate::config::AccessLogFormat;

/// The line for `session` in `format`.
pub fn format(session: &Session, complete: bool, format: AccessLogFormat) -> String {
    match format {
        AccessLogFormat::Text => text(session, complete),
        AccessLogFormat::Json => json(session, complete),
        AccessLogFormat::Combined => combined(session),
    }
}

fn backend(session: &Session) -> String {
    session
        .backend
        .map_or_else(|| "-".to_string(), |b| b.to_string())
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `key=value` fields, strings quoted as relevo's own log quotes them.
fn text(s: &Session, complete: bool) -> String {
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    format!(
        "{now} access client={} host={:?} method={} target={} backend={} status={} bytes={} ms={:.3} attempts={} complete={complete} proto={} tls={}",
        s.client,
        s.host(),
        s.method,
        s.target,
        backend(s),
        s.status.as_u16(),
        s.bytes_out,
        s.started.elapsed().as_secs_f64() * 1000.0,
        s.attempts,
        s.protocol.name(),
        s.protocol.tls.unwrap_or("-"),
    )
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    client: String,
    host: &'a str,
    method: &'a str,
    target: &'a str,
    backend: String,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    connect_ms: Option<f64>,
    upstream_ms: Option<f64>,
    attempts: u32,
    complete: bool,
    proto: &'static str,
    tls: Option<&'static str>,
}

/// Every field of the text line, plus the timings and the attempt count.
fn json(s: &Session, complete: bool) -> String {
    let line = JsonLine {
        time: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        client: s.client.to_string(),
        host: s.host(),
        method: s.method.as_str(),
        target: &s.target,
        backend: backend(s),
        status: s.status.as_u16(),
        bytes: s.bytes_out,
        duration_ms: millis(s.started.elapsed()),
        connect_ms: s.connect_time.map(millis),
        upstream_ms: s.upstream_time.map(millis),
        attempts: s.attempts,
        complete,
        proto: s.protocol.name(),
        tls: s.protocol.tls,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// Apache's combined format: `%h - - [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i"`.
fn combined(s: &Session) -> String {
    let when = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    let now = OffsetDateTime::now_utc().format(&when).unwrap_or_default();
    let quoted = |v: &Option<String>| {
        v.as_deref().map_or_else(
            || "-".to_string(),
            |v| v.replace('\\', "\\\\").replace('"', "\\\""),
        )
    };
    let bytes = if s.bytes_out == 0 {
        "-".to_string()
    } else {
        s.bytes_out.to_string()
    };
    format!(
        "{} - - [{now}] \"{} {} {:?}\" {} {bytes} \"{}\" \"{}\"",
        s.client.ip(),
        s.method,
        s.target.replace('"', "%22"),
        s.version,
        s.status.as_u16(),
        quoted(&s.referer),
        quoted(&s.user_agent),
    )
}
