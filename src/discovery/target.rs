//! A target: one address a name resolved to, with what its SRV record said of it.

use std::net::SocketAddr;

/// One address a name gave, with what an SRV record said of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Where the backend listens.
    pub addr: SocketAddr,
    /// Its share among the targets of its priority (a name's own weight for A/AAAA).
    pub weight: u32,
    /// Its SRV priority (0 for A/AAAA).
    pub priority: u16,
}
