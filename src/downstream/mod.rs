//! The client side of relevo: the listening socket, the screen of a connection's first
//! head, the client stream (lingering close, blocked-write timeout) and the serving of
//! one connection with hyper. It knows nothing of what a request is for.

pub mod client_stream;
pub mod connection;
pub mod listener;
pub mod screen;
