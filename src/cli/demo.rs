//! `relevo demo`: three small backends that say who answered, behind a proxy for
//! `demo.test`, so round-robin can be seen with curl and no config file.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::{Config, HostEntryConfig};
use crate::proxy::ProxyBody;

/// Host name the demo serves.
pub const DEMO_HOST: &str = "demo.test";

/// Starts `n` demo backends on ephemeral loopback ports and returns their addresses.
pub async fn spawn_backends(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(n);
    for i in 1..=n {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(serve_backend(listener, i));
    }
    Ok(addrs)
}

async fn serve_backend(listener: TcpListener, id: usize) {
    while let Ok((stream, _)) = listener.accept().await {
        let service = service_fn(move |req: Request<Incoming>| async move {
            let text = format!(
                "demo backend {id} answered {} {}\n",
                req.method(),
                req.uri()
            );
            let mut resp = Response::new(ProxyBody::page(text.into()));
            resp.headers_mut()
                .insert("content-type", http::HeaderValue::from_static("text/plain"));
            Ok::<_, Infallible>(resp)
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

/// The demo configuration: `demo.test` (and `localhost`, for a browser) over `backends`.
pub fn config(listen: SocketAddr, backends: Vec<SocketAddr>) -> Config {
    let host = |name: &str| HostEntryConfig::new(name, &backends);
    Config::with_hosts(listen, vec![host(DEMO_HOST), host("localhost")])
}
