//! TLS test kit: a test CA and certificates made with rcgen, relevo with a `[tls]`
//! listener on an ephemeral port, and rustls / hyper clients (HTTP/1.1 and HTTP/2).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use relevo::config::tls::{Certificate, Tls, TlsVersion};
use relevo::config::{Config, HostEntryConfig};
use relevo::stats::ServerStats;
use relevo::Server;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;

/// A test certificate authority and the files of the certificates it signed.
pub struct Pki {
    /// Where the PEM files are written.
    pub dir: tempfile::TempDir,
    /// The CA's key, which signs every leaf.
    ca_key: KeyPair,
    /// The CA's certificate: clients' root, and the issuer named in every leaf.
    ca: rcgen::Certificate,
}

impl Pki {
    /// A fresh CA and an empty folder for its certificates.
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "relevo test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca_key,
            ca,
        }
    }

    /// The CA certificate, for clients' roots.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// The CA certificate as a PEM file (curl's `--cacert`).
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.ca.pem()).unwrap();
        path
    }

    /// Signs a leaf for `names`, written as `<file>.pem` and `<file>.key`; `tweak`
    /// adjusts the parameters first (validity, say).
    pub fn issue_with(
        &self,
        file: &str,
        names: &[&str],
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        tweak(&mut params);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert_path = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// `issue_with`, default validity.
    pub fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_with(file, names, |_| {})
    }
}

/// The `[tls]` section for certificate files, as a test writes it in code.
pub fn tls_section(certs: &[(PathBuf, PathBuf)]) -> Tls {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    Tls {
        listen: "127.0.0.1:0".parse().unwrap(),
        certs: certs
            .iter()
            .map(|(c, k)| Certificate::load(c, k, now).unwrap())
            .collect(),
        min_version: TlsVersion::V1_2,
        redirect_http: false,
    }
}

/// relevo in this process with a TLS listener; stops when dropped.
pub struct TlsProxy {
    /// The plain listener.
    pub addr: SocketAddr,
    /// The TLS listener.
    pub tls: SocketAddr,
    /// The admin listener, when the configuration has one.
    pub admin: Option<SocketAddr>,
    /// The live state, for reloads.
    pub state: Arc<arc_swap::ArcSwap<relevo::proxy::State>>,
    /// Process-wide counters (requests by protocol).
    pub stats: Arc<ServerStats>,
    /// Stops the server when dropped.
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts relevo with `hosts` and `tls`, after `tweak` adjusts the configuration.
pub fn start(hosts: Vec<HostEntryConfig>, tls: Tls, tweak: impl FnOnce(&mut Config)) -> TlsProxy {
    let mut config = Config::with_hosts("127.0.0.1:0".parse().unwrap(), hosts);
    config.timeouts.shutdown = std::time::Duration::from_millis(100);
    config.tls = Some(Arc::new(tls));
    tweak(&mut config);
    start_config(config)
}

/// Starts relevo with `config`, which must have a `[tls]` section.
pub fn start_config(config: Config) -> TlsProxy {
    let server = Server::bind(config).expect("bind");
    let (tx, rx) = oneshot::channel();
    let proxy = TlsProxy {
        addr: server.local_addr().unwrap(),
        tls: server.tls_addr().expect("tls listener"),
        admin: server.admin_addr(),
        state: server.state(),
        stats: server.stats(),
        stop: Some(tx),
    };
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    proxy
}

/// A rustls client trusting `ca`, speaking only `versions`, offering `alpn`.
pub fn client(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The default client: both versions, both protocols offered (h2 first).
pub fn default_client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    client(
        &pki.ca_der(),
        rustls::DEFAULT_VERSIONS,
        &[b"h2", b"http/1.1"],
    )
}

/// A TLS connection to `addr` verifying the certificate for `name` (sent as SNI
/// unless the config disables it).
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A response read whole: status, head, body.
pub struct Got {
    /// Status, version and fields, the body taken out.
    pub resp: Response<()>,
    /// The whole body.
    pub body: Bytes,
}

async fn whole(resp: Response<Incoming>) -> Got {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        resp: Response::from_parts(parts, ()),
        body,
    }
}

/// An HTTP/2 client connection over `tls` (which must have negotiated h2).
pub async fn h2(tls: TlsStream<TcpStream>) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// An HTTP/2 connection to relevo's TLS listener at `addr` for `name` (SNI), trusting
/// `pki`'s CA.
pub async fn h2_to(
    addr: SocketAddr,
    pki: &Pki,
    name: &str,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    h2(connect(addr, name, default_client(pki)).await.unwrap()).await
}

/// An HTTP/1.1 client connection over `tls`.
pub async fn h1(tls: TlsStream<TcpStream>) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// GET `uri` on an HTTP/2 connection (`uri` absolute: its authority is `:authority`).
pub async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    uri: &str,
) -> Got {
    let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    whole(send.send_request(req).await.unwrap()).await
}

/// GET `path` with `Host: host` on an HTTP/1.1 connection.
pub async fn h1_get(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
) -> Got {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    whole(send.send_request(req).await.unwrap()).await
}

/// Writes `body` as `relevo.toml` in `dir` (beside the certificates, which it may name
/// by relative paths), returns its path.
pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("relevo.toml");
    std::fs::write(&path, body).unwrap();
    path
}
