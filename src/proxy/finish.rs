//! The end of every request, whatever happened to it: the one place a session is
//! settled. Its counters are recorded here (a few atomic adds on handles the
//! configuration resolved in advance), and the access log is written.

use super::log_line;
use super::session::Session;

/// The request is over: `complete` says whether its response body was sent to the end.
pub fn finish(session: Box<Session>, complete: bool) {
    let took = session.started.elapsed();
    let status = session.status.as_u16();
    match &session.entry {
        Some(entry) => {
            entry
                .traffic
                .record(session.member, status, took, session.bytes_out);
        }
        None => session.state.unrouted.add(status),
    }
    if let Some(log) = &session.state.access_log {
        log.write(log_line::format(&session, complete, log.format()));
    }
}
