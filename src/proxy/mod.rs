//! The request's journey once its head is read: the phases, one attempt, the retry
//! loop, the response body, tunnels, and the session that is finished (access log) when
//! the response ends. [`state::State`] is what every request reads: one configuration
//! generation's host table and backends.

pub mod access_log;
pub mod attempt;
pub mod finish;
pub mod log_line;
pub mod phases;
pub mod response_body;
pub mod retry;
pub mod session;
pub mod state;
pub mod tunnel;

pub use phases::handle;
pub use response_body::{ProxyBody, Reply};
pub use state::State;
