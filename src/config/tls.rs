//! `[tls]`: the TLS listener and its certificates, loaded and checked when the file is
//! (so `relevo check` and a reload refuse a missing file, a key that is not the
//! certificate's, or an expired certificate, and point at the entry).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

use super::error::Invalid;

/// The TLS listener: where, with which certificates, from which version on.
#[derive(Debug)]
pub struct Tls {
    /// Address the TLS listener binds (beside the plain `listen`).
    pub listen: SocketAddr,
    /// The certificates, in file order: the first one also answers handshakes without
    /// SNI or with a name none covers.
    pub certs: Vec<Certificate>,
    /// Oldest protocol version accepted.
    pub min_version: TlsVersion,
    /// Whether plain-HTTP requests for a host a certificate covers get 308 to https.
    pub redirect_http: bool,
}

/// A TLS protocol version relevo speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    V1_2,
    /// TLS 1.3 (RFC 8446).
    V1_3,
}

/// One loaded certificate chain with its key and the names it is valid for.
#[derive(Debug)]
pub struct Certificate {
    /// The PEM chain file, for messages.
    pub cert_path: PathBuf,
    /// The chain and signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS names (lower case, `*.` wildcards kept) and IP addresses, which
    /// SNI and the 421 check match against.
    pub names: Vec<String>,
    /// Seconds since the Unix epoch after which the leaf is no longer valid.
    pub not_after: i64,
}

impl Certificate {
    /// Whether the certificate is valid for `host` (lower case, no port): an exact
    /// name, or a wildcard covering exactly one leftmost label (RFC 6125 §6.4.3).
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|name| match name.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => name == host,
        })
    }

    /// Loads `cert` (a PEM chain, leaf first) and `key` (a PEM private key), checking
    /// that they belong together; `now` (Unix seconds) rejects an expired leaf.
    pub fn load(cert: &Path, key: &Path, now: i64) -> Result<Certificate, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad certificate {}: {e}", cert.display()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| format!("{}: no certificate in the file", cert.display()))?;
        let (names, not_after) =
            read_leaf(leaf).map_err(|e| format!("bad certificate {}: {e}", cert.display()))?;
        if not_after < now {
            return Err(format!(
                "certificate {} expired (not after {})",
                cert.display(),
                format_unix(not_after)
            ));
        }
        let der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| format!("bad key {}: {e}", key.display()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|_| {
            format!(
                "key {} does not match certificate {}",
                key.display(),
                cert.display()
            )
        })?;
        Ok(Certificate {
            cert_path: cert.to_owned(),
            key: Arc::new(certified),
            names,
            not_after,
        })
    }
}

impl Tls {
    /// The index of the certificate for a handshake naming `sni`: the first that covers
    /// it, else the first.
    pub fn pick(&self, sni: Option<&str>) -> usize {
        sni.map(str::to_ascii_lowercase)
            .and_then(|name| self.certs.iter().position(|c| c.covers(&name)))
            .unwrap_or(0)
    }

    /// Whether any certificate covers `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.certs.iter().any(|c| c.covers(host))
    }
}

impl TlsVersion {
    /// The version as the configuration and the logs write it.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

/// The leaf's names (subjectAltName DNS and IP entries; the subject's CN when it has
/// none) and its expiry.
fn read_leaf(der: &[u8]) -> Result<(Vec<String>, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

fn format_unix(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// `[tls]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// `Tls::listen`, spanned to point at a bad address.
    listen: Option<Spanned<String>>,
    /// `Tls::certs` as file names.
    certs: Option<Vec<Spanned<RawCert>>>,
    /// `Tls::min_version` as written ("1.2", "1.3").
    min_version: Option<Spanned<String>>,
    /// `Tls::redirect_http`.
    redirect_http: Option<bool>,
}

/// One `{ cert = "...", key = "..." }` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCert {
    /// The PEM chain's path; errors about the certificate point here.
    cert: Spanned<String>,
    /// The PEM key's path; errors about the key point here.
    key: Spanned<String>,
}

/// Validates `[tls]`, loading every certificate; relative paths are read from `base`
/// (the configuration file's folder).
pub(super) fn validate(raw: &Spanned<RawTls>, base: &Path) -> Result<Tls, Invalid> {
    let t = raw.get_ref();
    let listen = match &t.listen {
        None => SocketAddr::from(([0, 0, 0, 0], 8443)),
        Some(l) => l.get_ref().parse().map_err(|_| {
            (
                l.span(),
                format!(
                    "bad tls.listen `{}`: expected IP:PORT, e.g. \"0.0.0.0:8443\"",
                    l.get_ref()
                ),
            )
        })?,
    };
    let min_version = match t
        .min_version
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("1.2", _)) => TlsVersion::V1_2,
        Some(("1.3", _)) => TlsVersion::V1_3,
        Some((other, span)) => {
            return Err((
                span,
                format!("unknown tls.min_version `{other}`: expected \"1.2\" or \"1.3\""),
            ))
        }
    };
    let entries = t.certs.as_deref().unwrap_or_default();
    if entries.is_empty() {
        return Err((
            raw.span(),
            "tls.certs is empty: add { cert = \"chain.pem\", key = \"key.pem\" }".into(),
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut certs = Vec::new();
    for entry in entries {
        let e = entry.get_ref();
        let cert = base.join(e.cert.get_ref());
        let key = base.join(e.key.get_ref());
        // A problem with the key is reported at the key, any other at the certificate.
        let loaded = Certificate::load(&cert, &key, now).map_err(|msg| {
            let at_key = msg.starts_with("cannot read key") || msg.starts_with("bad key");
            let span = if at_key { e.key.span() } else { e.cert.span() };
            (span, msg)
        })?;
        certs.push(loaded);
    }
    Ok(Tls {
        listen,
        certs,
        min_version,
        redirect_http: t.redirect_http.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&str]) -> Certificate {
        let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
            rcgen::KeyPair::generate().unwrap().serialize_der().into(),
        ))
        .unwrap();
        Certificate {
            cert_path: PathBuf::new(),
            key: Arc::new(CertifiedKey::new(Vec::new(), signing)),
            names: names.iter().map(|n| n.to_string()).collect(),
            not_after: i64::MAX,
        }
    }

    #[test]
    fn wildcards_cover_one_label() {
        // RFC 6125 §6.4.3: `*` stands for exactly one whole leftmost label.
        let c = named(&["*.wild.test", "app.test"]);
        assert!(c.covers("a.wild.test"));
        assert!(c.covers("app.test"));
        assert!(!c.covers("wild.test"));
        assert!(!c.covers("a.b.wild.test"));
        assert!(!c.covers(".wild.test"));
        assert!(!c.covers("other.test"));
    }
}
