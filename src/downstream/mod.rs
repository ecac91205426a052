//! The client side of relevo, its own HTTP/1.1 connection layer: the listening
//! socket, request heads parsed with `httparse`, request bodies read off the
//! connection, response heads and bodies written back, tunnels after an upgrade and
//! the lingering close. It knows nothing of what a request is for.

pub mod chunked;
pub mod client_stream;
pub mod connection;
pub mod h2;
pub mod head;
pub mod interim;
pub mod listener;
pub mod reader;
pub mod request_body;
pub mod response;
pub mod service;
pub mod tls;
pub mod upgrade;
pub mod writer;
