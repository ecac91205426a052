//! What a client connection's requests are served by, whatever the protocol: one
//! bound for `connection` (HTTP/1.1) and `h2` (HTTP/2).

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;

/// A boxed error hyper can take from a service or a body.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A trait standing for `bounds`, implemented by everything that meets them: the
/// bounds are written once, for the trait and its blanket impl alike.
macro_rules! alias {
    ($(#[$doc:meta])* $name:ident = $($bounds:tt)+) => {
        $(#[$doc])*
        pub trait $name: $($bounds)+ {}
        impl<S: $($bounds)+> $name for S {}
    };
}

alias! {
    /// What serves a client connection's requests, HTTP/1.1 or HTTP/2: a hyper
    /// service whose futures and bodies may move between threads.
    ClientService = HttpService<
        Incoming,
        Future: Send + 'static,
        Error: Into<BoxError>,
        ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
    > + Send + 'static
}
