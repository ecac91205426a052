//! Where a request goes: the host table picks the entry, the entry's balancer picks
//! one of its backends. Backends are seen through [`candidate::Candidate`] only.

pub mod balancer;
pub mod candidate;
pub mod hash_ring;
pub mod host_table;
pub mod maglev;
pub mod traffic;

pub use balancer::{Balancer, NoPick};
pub use candidate::{Availability, Candidate, Member};
pub use host_table::{HostEntry, HostTable};
pub use traffic::Traffic;
