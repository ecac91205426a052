//! relevo: an HTTP/1.1 load-balancing proxy.
//!
//! The modules follow a request (see ARCHITECTURE.md), and each may import only from
//! the ones listed before it (`tests/layering.rs` checks this and that there is no
//! import cycle):
//!
//! 1. [`clock`], [`http`]: the protocol vocabulary (host syntax, checks, head
//!    rewriting, request bodies, the error type and its pages).
//! 2. [`config`]: the validated configuration every later stage reads.
//! 3. [`downstream`]: accept, read heads and bodies, write answers: the client connection.
//! 4. [`routing`]: the host table picks the entry, the balancer picks the backend.
//! 5. [`upstream`]: backends, their pools, health and latency; connections to them.
//! 6. [`discovery`]: backends written as DNS names, resolved and followed as their
//!    answers change (each change applied like a reload).
//! 7. [`proxy`]: the phases of one request, attempts and retries, the response body,
//!    tunnels, and the session finished (access log) when the response ends.
//! 8. [`admin`]: metrics, the status page and its JSON, liveness and readiness.
//! 9. [`server`]: the listener wired to the proxy (and the admin listener), reloads,
//!    binary upgrades.
//! 10. [`cli`]: the dry run, the demo, running until a signal or a handover.

// Every public item says what it is for.
#![warn(missing_docs)]

pub mod clock;
pub mod http;
pub mod stats;

pub mod config;

pub mod downstream;

pub mod routing;

pub mod upstream;

pub mod discovery;

pub mod proxy;

pub mod admin;

pub mod server;

pub mod cli;

pub use config::Config;
pub use server::Server;
