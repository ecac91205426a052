//! The backend side: each backend's state (health, latency, counters), its pool of
//! keep-alive connections, how a connection is opened, relevo's HTTP/1.1 client
//! (request head out, response head and body in, on the client task), and the
//! active checker.

pub mod active_check;
pub mod backend;
pub mod conn;
pub mod connect;
pub mod exchange;
pub mod latency;
pub mod passive;
pub mod pool;
pub mod recovery;
pub mod request_head;
pub mod response_body;
pub mod response_head;

pub use backend::{Backend, BackendStats, InFlight};
pub use pool::PooledConn;
pub use response_body::BackendBody;
