//! The access log: one line per finished request (`log_line.rs` formats it on the
//! request's task), handed to a writer thread through a bounded queue, so writing never blocks a
//! request (a full queue drops the line and counts it). SIGUSR1 reopens the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

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

    /// How its lines look.
    pub fn format(&self) -> AccessLogFormat {
        self.format
    }

    /// Queues one line; never waits.
    pub fn write(&self, line: String) {
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
