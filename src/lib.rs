//! relevo: an HTTP/1.1 load-balancing proxy.
//!
//! A request travels through the modules in this order (see ARCHITECTURE.md):
//! [`server`] accepts and [`guard`] screens the connection → hyper reads the head →
//! [`proxy`] drives the request: [`router`] finds the site, [`balancer`] picks a
//! backend, [`forward`] rewrites the head, [`upstream`]/[`pool`] supply a kept-alive
//! connection → [`body`] streams the response back and writes the access log.

pub mod balancer;
pub mod body;
pub mod config;
pub mod demo;
pub mod error;
pub mod forward;
pub mod guard;
pub mod health;
pub mod pool;
pub mod proxy;
pub mod route;
pub mod router;
pub mod server;
pub mod state;
pub mod tunnel;
pub mod upstream;

pub use config::Config;
pub use server::Server;
