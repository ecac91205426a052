//! The backend side: each backend's state (health, latency, counters), its pool of
//! keep-alive connections, how a connection is opened, and the active checker.

pub mod active_check;
pub mod backend;
pub mod connect;
pub mod latency;
pub mod passive;
pub mod pool;
pub mod recovery;

pub use backend::{Backend, BackendStats, InFlight};
pub use pool::PooledConn;
