//! The HTTP vocabulary every later stage speaks: which host a request names, the checks
//! a head passes, how heads are rewritten between hops, request bodies, and the one
//! error type with its pages. Nothing here knows about backends or configuration.

pub mod checks;
pub mod error;
pub mod fields;
pub mod host;
pub mod page;
pub mod passed;
pub mod rewrite;

pub use error::{BackendFault, ProxyError, Retry, Side};
