//! Which host a request is for (RFC 9112 §3.2): the authority of an absolute-form
//! target, else the single `Host` field, in the strict RFC 3986 host syntax that the
//! host table's keys use too.

use http::header::HeaderValue;
use http::{header, Method, Request, Version};

use super::error::ProxyError;

/// The host a request asked for, as the router and the backend need it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Lower-case host without brackets or trailing dot, for matching.
    pub host: String,
    /// Port the client named, if any.
    pub port: Option<u16>,
    /// The authority as the client wrote it (visible ASCII, checked), sent to the
    /// backend as `Host`: the client's own `Host` value when it came from there, so
    /// forwarding it copies nothing.
    pub authority: HeaderValue,
}

impl Target {
    /// The authority as the client wrote it.
    pub fn authority_str(&self) -> &str {
        // Only visible ASCII is ever stored (`target` checks it).
        self.authority.to_str().unwrap_or_default()
    }

    /// The authority's host part as written (an IPv6 literal keeps its brackets).
    pub fn authority_host(&self) -> &str {
        let s = self.authority_str();
        split_host(s).map_or(s, |(name, _)| name)
    }
}

/// Finds the host of a request: the absolute-form target's authority if present
/// (RFC 9112 §3.2.2: then `Host` is ignored), else the single `Host` field.
pub fn target<B>(req: &Request<B>) -> Result<Target, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectRefused);
    }
    // RFC 9112 §3.2: more than one Host line is a 400, whatever the target form.
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_field = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadHost("more than one Host field".into()));
    }
    let uri = req.uri();
    let authority = if let Some(scheme) = uri.scheme_str() {
        // An HTTP/2 request always carries its scheme (RFC 9113 §8.3.1), `https` on
        // the TLS listener, with `:authority` as the authority.
        let h2_https = req.version() == Version::HTTP_2 && scheme.eq_ignore_ascii_case("https");
        if !scheme.eq_ignore_ascii_case("http") && !h2_https {
            return Err(ProxyError::UnsupportedScheme(scheme.to_owned()));
        }
        let a = uri.authority().ok_or(ProxyError::MissingHost)?;
        HeaderValue::from_str(a.as_str())
            .map_err(|_| ProxyError::BadHost(format!("`{a}` is not host[:port]")))?
    } else {
        match host_field {
            None => return Err(ProxyError::MissingHost),
            Some(v) => v.clone(),
        }
    };
    let text = authority
        .to_str()
        .map_err(|_| ProxyError::BadHost("not visible ASCII".into()))?;
    if text.is_empty() {
        return Err(ProxyError::MissingHost);
    }
    let (host, port) = split_authority(text)?;
    Ok(Target {
        host,
        port,
        authority,
    })
}

/// An authority's host part as written (brackets kept) and what follows it (empty, or
/// `:` and the port); `None` when an IP literal's bracket does not close.
fn split_host(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('[') {
        // RFC 3986 §3.2.2: an IP literal ends at its closing bracket.
        let end = s.find(']')?;
        Some(s.split_at(end + 1))
    } else {
        // A reg-name or IPv4 address has no colon: the first one starts the port.
        Some(s.split_at(s.find(':').unwrap_or(s.len())))
    }
}

/// Splits an authority (`host[:port]`, RFC 3986 §3.2) into the lower-case host the
/// table is keyed by (no brackets, no trailing dot) and the port, rejecting what is
/// not a valid `host[:port]`.
///
/// One pass over the bytes for the usual reg-name or IPv4 host (this runs for every
/// request; three searches and a second walk cost ten times as much).
pub fn split_authority(s: &str) -> Result<(String, Option<u16>), ProxyError> {
    let not_authority = || ProxyError::BadHost(format!("`{s}` is not host[:port]"));
    let b = s.as_bytes();
    // userinfo is not allowed in http URIs we route on (RFC 9110 §4.2.4), and
    // `host:` with an empty port is not a valid Host value either. Percent escapes are
    // refused as the `http` crate's authority parser refused them (no host-table key
    // can hold one: the keys are read by that parser).
    if b.last() == Some(&b':') || b.iter().any(|&c| c == b'@' || c == b'%') {
        return Err(not_authority());
    }
    let (name, rest, reg_name) = if b.first() == Some(&b'[') {
        let Some((name, rest)) = split_host(s) else {
            return Err(ProxyError::BadHost(format!(
                "`{s}` is not a valid IPv6 literal"
            )));
        };
        (name, rest, true)
    } else {
        // RFC 3986 §3.2.2 reg-name (unreserved and sub-delims; `%` is refused above),
        // up to the first colon, which starts the port.
        let end = b.iter().position(|&c| c == b':').unwrap_or(b.len());
        let reg_name = b[..end].iter().all(|&c| REG_NAME[usize::from(c)]);
        (&s[..end], &s[end..], reg_name)
    };
    if name.is_empty() {
        return Err(not_authority());
    }
    // RFC 3986 §3.2.3: a port is digits, and a TCP port fits in 16 bits.
    let port = match rest {
        "" => None,
        rest => {
            let digits = rest.strip_prefix(':').ok_or_else(not_authority)?;
            Some(port_number(digits).ok_or_else(|| {
                ProxyError::BadHost(format!("`{s}`: the port must be a number from 0 to 65535"))
            })?)
        }
    };
    let host = match name.strip_prefix('[') {
        // IP-literal (RFC 3986 §3.2.2): only IPv6 is routable.
        Some(v6) => v6
            .strip_suffix(']')
            .filter(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
            .ok_or_else(|| ProxyError::BadHost(format!("`{s}` is not a valid IPv6 literal")))?,
        None if reg_name => name,
        None => {
            return Err(ProxyError::BadHost(format!(
                "`{s}` has characters a host name cannot have"
            )))
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    // "." and ".." are not names (found by the target_host fuzz target).
    if host.is_empty() || host.ends_with('.') {
        return Err(not_authority());
    }
    Ok((host, port))
}

/// A port's digits as a number, `None` when they are not all digits (no sign, no
/// space) or the number exceeds 16 bits.
fn port_number(digits: &str) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u16, |n, c| {
        let d = c.wrapping_sub(b'0');
        (d < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(u16::from(d))
    })
}

/// The bytes of an RFC 3986 §3.2.2 reg-name besides its `%XX` escapes: unreserved
/// (letters, digits, `-._~`) and sub-delims (`!$&'()*+,;=`). (The `http` crate's
/// authority parser is more lenient about the others; found by the target_host fuzz
/// target.)
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().uri(target);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn absolute_form_wins_over_host() {
        let t = target(&req("http://App.Test:8080/x", &["other"])).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("app.test", Some(8080)));
        assert_eq!(t.authority_str(), "App.Test:8080");
        assert_eq!(t.authority_host(), "App.Test");
    }

    #[test]
    fn h2_authority_is_the_host() {
        // RFC 9113 §8.3.1: `:authority` (here the URI's) stands for Host.
        let mut r = req("https://App.Test/x", &[]);
        *r.version_mut() = Version::HTTP_2;
        let t = target(&r).unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority_str()),
            ("app.test", "App.Test")
        );
        // Over HTTP/1.1, an https:// target is still not relevo's to forward.
        assert!(matches!(
            target(&req("https://a.test/", &[])),
            Err(ProxyError::UnsupportedScheme(_))
        ));
    }

    #[test]
    fn host_header_rules() {
        assert_eq!(target(&req("/", &["a.test."])).unwrap().host, "a.test");
        assert_eq!(target(&req("/", &["[::1]:80"])).unwrap().host, "::1");
        assert!(matches!(
            target(&req("/", &[])),
            Err(ProxyError::MissingHost)
        ));
        assert!(matches!(
            target(&req("/", &["a", "b"])),
            Err(ProxyError::BadHost(_))
        ));
        assert!(matches!(
            target(&req("/", &["u@a"])),
            Err(ProxyError::BadHost(_))
        ));
        assert!(matches!(
            target(&req("/", &["a:"])),
            Err(ProxyError::BadHost(_))
        ));
        // Regression (fuzz/artifacts/target_host/crash-964f4c83): an empty name.
        assert!(matches!(
            target(&req("/", &["."])),
            Err(ProxyError::BadHost(_))
        ));
        assert!(matches!(
            target(&req("/", &[".."])),
            Err(ProxyError::BadHost(_))
        ));
        // Regression (fuzz/artifacts/target_host): brackets inside a name.
        assert!(matches!(
            target(&req("/", &[")r[8%]"])),
            Err(ProxyError::BadHost(_))
        ));
        assert!(matches!(
            target(&req("/", &["[::1"])),
            Err(ProxyError::BadHost(_))
        ));
        assert!(matches!(
            target(&req("/", &["[zz]"])),
            Err(ProxyError::BadHost(_))
        ));
        assert!(matches!(
            target(&req("/", &["a%2"])),
            Err(ProxyError::BadHost(_))
        ));
        // As the `http` crate's parser had it: no percent escapes in a host.
        assert!(matches!(
            target(&req("/", &["%61pp.test"])),
            Err(ProxyError::BadHost(_))
        ));
        assert_eq!(target(&req("/", &["[::1]"])).unwrap().host, "::1");
        // RFC 3986 §3.2.3: ports are digits (and RFC 9110 §4.2.1: a TCP port).
        for bad in [
            "a.test:8o",
            "a.test:99999",
            "a.test:+80",
            "a.test:-1",
            "[::1]:x",
        ] {
            assert!(
                matches!(target(&req("/", &[bad])), Err(ProxyError::BadHost(_))),
                "{bad}"
            );
        }
        assert_eq!(target(&req("/", &["a.test:080"])).unwrap().port, Some(80));
        assert!(matches!(
            target(&req("/", &["a/b"])),
            Err(ProxyError::BadHost(_))
        ));
        assert!(matches!(
            target(&req("https://a/", &[])),
            Err(ProxyError::UnsupportedScheme(_))
        ));
    }
}
