//! Byte tunnels: upgraded connections (WebSocket, after a backend's 101) and `CONNECT`
//! to allowed targets. Both sides are relayed until both close or the tunnel is idle
//! for `timeouts.tunnel_idle`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::response_body::ProxyBody;
use super::state::State;
use crate::http::ProxyError;

/// Size of each direction's relay buffer.
const RELAY_BUF: usize = 16 * 1024;

/// Relays an upgraded client connection and an upgraded backend connection.
pub fn spawn_upgraded(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, backend: SocketAddr) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => return debug!(%backend, "upgrade failed: {e}"),
        };
        match relay(TokioIo::new(client), TokioIo::new(upstream), idle).await {
            Ok((up, down)) => debug!(%backend, up, down, "upgraded connection closed"),
            Err(e) => debug!(%backend, "upgraded connection ended: {e}"),
        }
    });
}

/// Answers `CONNECT host:port`: 403 unless `[connect] allow` lists it, else a TCP
/// connection to the target and a 200 that turns the client connection into a tunnel.
pub async fn connect(
    state: &State,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
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
    let on_upgrade = hyper::upgrade::on(&mut req);
    let idle = timeouts.tunnel_idle;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(client) => match relay(TokioIo::new(client), stream, idle).await {
                Ok((up, down)) => debug!(target = %addr, up, down, "CONNECT tunnel closed"),
                Err(e) => debug!(target = %addr, "CONNECT tunnel ended: {e}"),
            },
            Err(e) => debug!(target = %addr, "CONNECT upgrade failed: {e}"),
        }
    });
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

/// Copies both ways until both sides have closed, or nothing moved for `idle`.
/// Returns the bytes sent each way (a→b, b→a).
async fn relay<A, B>(mut a: A, mut b: B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ab, mut ba) = (vec![0u8; RELAY_BUF], vec![0u8; RELAY_BUF]);
    let (mut a_open, mut b_open) = (true, true);
    let (mut a_to_b, mut b_to_a) = (0u64, 0u64);
    while a_open || b_open {
        tokio::select! {
            r = a.read(&mut ab), if a_open => match r? {
                0 => {
                    a_open = false;
                    b.shutdown().await?;
                }
                n => {
                    b.write_all(&ab[..n]).await?;
                    a_to_b += n as u64;
                }
            },
            r = b.read(&mut ba), if b_open => match r? {
                0 => {
                    b_open = false;
                    a.shutdown().await?;
                }
                n => {
                    a.write_all(&ba[..n]).await?;
                    b_to_a += n as u64;
                }
            },
            _ = tokio::time::sleep(idle) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle"));
            }
        }
    }
    Ok((a_to_b, b_to_a))
}
