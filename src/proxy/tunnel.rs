//! Byte tunnels: upgraded connections (WebSocket, after a backend's 101) and `CONNECT`
//! to allowed targets. The answer carries a `downstream::upgrade::Tunnel` to the far
//! side; the client connection relays both ways until both close or the tunnel is
//! idle for `timeouts.tunnel_idle`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::net::TcpStream;

use super::response_body::{ProxyBody, Reply};
use super::state::State;
use crate::downstream::upgrade::{Io, Tunnel};
use crate::http::ProxyError;
use crate::upstream::PooledConn;

/// The backend's 101, carrying the backend's side of the tunnel to the client's.
pub fn upgraded(
    mut resp: Reply,
    upstream: PooledConn,
    idle: Duration,
    backend: SocketAddr,
) -> Reply {
    let far = Box::pin(async move { Ok(Box::new(upstream) as Box<dyn Io>) });
    resp.extensions_mut()
        .insert(Tunnel::new(far, idle, backend.to_string()));
    resp
}

/// Answers `CONNECT host:port`: 403 unless `[connect] allow` lists it, else a TCP
/// connection to the target and a 200 that turns the client connection into a tunnel.
pub async fn connect<B>(state: &State, req: Request<B>) -> Result<Reply, ProxyError> {
    let authority = req
        .uri()
        .authority()
        .cloned()
        .ok_or(ProxyError::ConnectRefused)?;
    let port = authority.port_u16().ok_or(ProxyError::ConnectRefused)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if !state
        .config
        .connect_allow
        .iter()
        .any(|rule| rule.allows(&host, port))
    {
        return Err(ProxyError::ConnectRefused);
    }
    let timeouts = state.timeouts();
    let dial = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in tokio::net::lookup_host((host.as_str(), port)).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok((s, addr)),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    let fallback: SocketAddr = ([0, 0, 0, 0], port).into();
    let (stream, addr) = match tokio::time::timeout(timeouts.connect, dial).await {
        Err(_) => return Err(ProxyError::ConnectTimeout(fallback)),
        Ok(Err(source)) => {
            return Err(ProxyError::Connect {
                addr: fallback,
                source,
            })
        }
        Ok(Ok(pair)) => pair,
    };
    let _ = stream.set_nodelay(true);
    let far = Box::pin(async move { Ok(Box::new(stream) as Box<dyn Io>) });
    let mut resp = Box::new(Response::new(ProxyBody::empty()));
    *resp.status_mut() = StatusCode::OK;
    resp.extensions_mut()
        .insert(Tunnel::new(far, timeouts.tunnel_idle, addr.to_string()));
    Ok(resp)
}
