//! The access-log line of a finished request.

use tracing::info;

use super::session::Session;

/// Writes one line for `session` at info level, target `relevo::access`.
pub fn write(session: &Session, complete: bool) {
    info!(
        target: "relevo::access",
        client = %session.client,
        host = session.host(),
        method = %session.method,
        target = %session.target,
        backend = %session.backend.map_or_else(|| "-".to_string(), |b| b.to_string()),
        status = session.status.as_u16(),
        bytes = session.bytes_out,
        ms = format_args!("{:.3}", session.started.elapsed().as_secs_f64() * 1000.0),
        complete,
    );
}
