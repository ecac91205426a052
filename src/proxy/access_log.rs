//! The access log: one line per finished request, formatted on the request's task and
//! handed to a writer thread through a bounded queue, so writing never blocks a
//! request (a full queue drops the line and counts it). SIGUSR1 reopens the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::session::Session;
use crate::config::{AccessLogFormat, AccessLogTarget};

/// Lines waiting for the writer; beyond this they are dropped, not waited for.
const QUEUE: usize = 16 * 1024;

/// A running access log.
#[derive(Debug)]
pub struct AccessLog {
    /// Where the lines go, and how they look (to keep the log across reloads).
    target: AccessLogTarget,
    /// How the lines look.
    format: AccessLogFormat,
    /// The writer thread's queue.
    lines: SyncSender<String>,
    /// Lines dropped because the queue was full.
    dropped: Arc<AtomicU64>,
    /// Set by `reopen`; the writer reopens the file before its next line.
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Starts the log `target` in `format`; `None` when it is off.
    pub fn open(
        target: &AccessLogTarget,
        format: AccessLogFormat,
    ) -> io::Result<Option<AccessLog>> {
        let sink = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stderr => Sink::Stderr,
            AccessLogTarget::File(path) => Sink::File(path.clone(), open_append(path)?),
        };
        let (lines, rx) = mpsc::sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("relevo-access-log".into())
            .spawn(move || write_lines(rx, sink, flag))?;
        Ok(Some(AccessLog {
            target: target.clone(),
            format,
            lines,
            dropped: Arc::default(),
            reopen,
        }))
    }

    /// Whether this log is what `target` and `format` ask for (then a reload keeps it).
    pub fn is(&self, target: &AccessLogTarget, format: AccessLogFormat) -> bool {
        self.target == *target && self.format == format
    }

    /// Queues the line of `session`; never waits.
    pub fn write(&self, session: &Session, complete: bool) {
        let line = match self.format {
            AccessLogFormat::Text => text(session, complete),
            AccessLogFormat::Json => json(session, complete),
            AccessLogFormat::Combined => combined(session),
        };
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reopens the file before the next line (after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Lines dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where the writer writes.
enum Sink {
    Stderr,
    File(PathBuf, File),
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: lines in order, a flush whenever the queue is empty.
fn write_lines(rx: Receiver<String>, mut sink: Sink, reopen: Arc<AtomicBool>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Ok(line) = rx.recv() {
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(more.as_bytes());
            buf.push(b'\n');
            if buf.len() > 256 * 1024 {
                break;
            }
        }
        if reopen.swap(false, Ordering::AcqRel) {
            if let Sink::File(path, file) = &mut sink {
                match open_append(path) {
                    Ok(f) => *file = f,
                    Err(e) => tracing::error!("access log: cannot reopen {}: {e}", path.display()),
                }
            }
        }
        let written = match &mut sink {
            Sink::Stderr => io::stderr().lock().write_all(&buf),
            Sink::File(_, f) => f.write_all(&buf),
        };
        if let Err(e) = written {
            tracing::error!("access log: write failed: {e}");
        }
        buf.clear();
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
        "{now} access client={} host={:?} method={} target={} backend={} status={} bytes={} ms={:.3} attempts={} complete={complete}",
        s.client,
        s.host(),
        s.method,
        s.target,
        backend(s),
        s.status.as_u16(),
        s.bytes_out,
        s.started.elapsed().as_secs_f64() * 1000.0,
        s.attempts,
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
