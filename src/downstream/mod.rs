//! The client side of relevo: the listening socket, the screen of a connection's first
//! head, the client stream (lingering close, blocked-write timeout), the TLS handshake
//! (`tls`) and the serving of one connection with hyper, HTTP/1.1 (`connection`) or
//! HTTP/2 (`h2`). It knows nothing of what a request is for.

pub mod client_stream;
pub mod connection;
pub mod h2;
pub mod listener;
pub mod screen;
pub mod service;
pub mod tls;
