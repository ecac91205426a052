//! TLS on the client side: the rustls configuration of one generation of certificates
//! (SNI picks among them), and the handshake of an accepted connection, bounded in
//! time, that tells which protocol (ALPN `h2` or `http/1.1`) and version came of it.
//!
//! A reload builds a new [`Acceptor`]; handshakes under way finish with the one they
//! started with, since each holds its own `Arc` of the rustls configuration.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::client_stream;
use super::listener::Accepted;
use crate::config::tls::{Tls, TlsVersion};
use crate::stats::Protocol;

/// The answer to plain HTTP sent to the TLS port: better than a TLS alert a browser
/// user never sees (nginx answers the same way).
const PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 52\r\nconnection: close\r\n\r\nThis port speaks HTTPS: a plain HTTP request came.\r\n";

/// The rustls configuration for one generation of `[tls]`.
#[derive(Debug, Clone)]
pub struct Acceptor {
    /// The certificates and settings it was built from; the listener compares this
    /// pointer with the live configuration's to know when to build a new one.
    tls: Arc<Tls>,
    /// What every handshake of this generation uses.
    config: Arc<ServerConfig>,
}

/// What a completed handshake settled, for the connection's requests.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The protocol (ALPN) and TLS version, for logs and metrics.
    pub protocol: Protocol,
    /// The generation's certificates, to check each request's host against the one
    /// served (421 otherwise, RFC 9110 §15.5.20).
    tls: Arc<Tls>,
    /// Which of them the handshake served.
    cert: usize,
}

impl Negotiated {
    /// Whether the certificate this connection was served covers `host` (lower case,
    /// no port): a request for another host was misdirected here (a client reusing
    /// the connection for a name the certificate does not carry).
    pub fn covers(&self, host: &str) -> bool {
        self.tls
            .certs
            .get(self.cert)
            .is_some_and(|c| c.covers(host))
    }
}

/// Picks the certificate by SNI for every handshake of a generation.
#[derive(Debug)]
struct Resolver {
    /// The generation's certificates.
    tls: Arc<Tls>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let i = self.tls.pick(hello.server_name());
        self.tls.certs.get(i).map(|c| c.key.clone())
    }
}

impl Acceptor {
    /// The rustls configuration for `tls`: its certificates, versions from
    /// `min_version`, ALPN `h2` then `http/1.1`.
    pub fn new(tls: Arc<Tls>) -> Result<Acceptor, rustls::Error> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver { tls: tls.clone() }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Acceptor {
            tls,
            config: Arc::new(config),
        })
    }

    /// The `[tls]` this was built from.
    pub fn tls(&self) -> &Arc<Tls> {
        &self.tls
    }

    /// Runs the handshake on an accepted connection within `timeout`. `None` when it
    /// failed, stalled or was not TLS at all (logged at debug: the client's problem);
    /// the connection is closed then, after a TLS alert where rustls has one to send.
    pub async fn accept(
        &self,
        accepted: Accepted,
        timeout: Duration,
    ) -> Option<(Accepted<TlsStream<TcpStream>>, Negotiated)> {
        let Accepted { stream, peer, slot } = accepted;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let handshake = async {
            if looks_like_plain_http(&stream).await? {
                refuse_plain_http(stream).await;
                return Ok(None);
            }
            acceptor.accept(stream).await.map(Some)
        };
        let stream = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(Some(stream))) => stream,
            Ok(Ok(None)) => {
                debug!(client = %peer, "plain HTTP on the TLS port");
                return None;
            }
            Ok(Err(e)) => {
                debug!(client = %peer, "TLS handshake failed: {e}");
                return None;
            }
            Err(_) => {
                debug!(client = %peer, "TLS handshake not done within {timeout:?}");
                return None;
            }
        };
        let (_, conn) = stream.get_ref();
        let h2 = conn.alpn_protocol() == Some(b"h2");
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::V1_2,
            _ => TlsVersion::V1_3,
        };
        let cert = self.tls.pick(conn.server_name());
        let negotiated = Negotiated {
            protocol: Protocol {
                h2,
                tls: Some(version.name()),
            },
            tls: self.tls.clone(),
            cert,
        };
        Some((Accepted { stream, peer, slot }, negotiated))
    }
}

/// Whether the client started with what looks like an HTTP request line rather than a
/// TLS record (a handshake record starts with byte 22); such a client is answered
/// with a plain 400 before the connection closes.
async fn looks_like_plain_http(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    Ok(stream.peek(&mut first).await? == 1 && first[0].is_ascii_uppercase())
}

/// Answers plain HTTP on the TLS port, then closes gracefully.
async fn refuse_plain_http(mut stream: TcpStream) {
    let _ = tokio::time::timeout(client_stream::LINGER_TIME, stream.write_all(PLAIN_HTTP)).await;
    client_stream::linger(stream).await;
}

impl super::connection::Halves for TlsStream<TcpStream> {
    type Write = tokio::io::WriteHalf<TlsStream<TcpStream>>;
    fn halves(self) -> (super::reader::ReadHalf, Self::Write) {
        // A TLS session is one state machine: its halves share it under a lock.
        let (read, write) = tokio::io::split(self);
        (Box::new(read), write)
    }
}
