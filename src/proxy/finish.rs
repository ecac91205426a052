//! The end of every request, whatever happened to it: the one place a session is
//! settled. The access log is written here, and this is where metrics attach.

use super::access_log;
use super::session::Session;

/// The request is over: `complete` says whether its response body was sent to the end.
pub fn finish(session: Box<Session>, complete: bool) {
    if session.log {
        access_log::write(&session, complete);
    }
}
