//! Screens a connection's first request head before hyper parses it:
//! - a client speaking another major HTTP version gets 505 (RFC 9110 §15.6.6) rather
//!   than a generic 400;
//! - hyper's per-connection buffers (about 16 KiB) are only allocated once a whole head
//!   has arrived, so thousands of slowloris clients cost a small buffer each.
//!
//! Bytes read here are replayed to hyper untouched.
//!
//! Only the first request of a connection is screened: a later pipelined request with
//! a foreign version is rejected by hyper's parser with 400, and the connection closes.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client_stream::{self, ClientStream, Io};

const VERSION_NOT_SUPPORTED: &[u8] = b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: 40\r\nconnection: close\r\n\r\nThis proxy speaks HTTP major version 1.\n";

/// The request line is looked for in this many first bytes; longer lines are left to
/// hyper, which applies its own limits.
const SCREEN_LINE_BYTES: usize = 8192;
/// First size of the screening buffer: most request heads fit.
const INITIAL_SCREEN_BYTES: usize = 1024;

/// Reads the first request head (within `timeout`, up to `head_limit` bytes, beyond
/// which hyper answers 431) and answers 505 as soon as the request line names an HTTP
/// major version other than 1. Returns the stream for hyper, or `None` when the
/// connection was answered or went away.
pub async fn screen<S: Io>(
    mut stream: S,
    timeout: Duration,
    send_timeout: Duration,
    head_limit: usize,
) -> Option<ClientStream<S>> {
    let mut prefix = BytesMut::with_capacity(INITIAL_SCREEN_BYTES);
    let mut foreign = false;
    let read_head = async {
        let mut scanned: usize = 0;
        loop {
            if stream.read_buf(&mut prefix).await? == 0 {
                break;
            }
            if prefix[..prefix.len().min(SCREEN_LINE_BYTES)].contains(&b'\n')
                && foreign_major_version(&prefix)
            {
                foreign = true;
                break;
            }
            // The head ends at an empty line (CRLF CRLF, or bare LFs, which hyper takes).
            let from = scanned.saturating_sub(3);
            if prefix[from..].windows(2).any(|w| w == b"\n\n")
                || prefix[from..].windows(4).any(|w| w == b"\r\n\r\n")
            {
                break;
            }
            scanned = prefix.len();
            if prefix.len() >= head_limit {
                break;
            }
        }
        io::Result::Ok(())
    };
    match tokio::time::timeout(timeout, read_head).await {
        Ok(Ok(())) => {}
        // Silent clients, slow heads and broken sockets: hyper would close them too.
        _ => return None,
    }
    if prefix.is_empty() {
        return None;
    }
    if foreign {
        let _ = tokio::time::timeout(
            client_stream::LINGER_TIME,
            stream.write_all(VERSION_NOT_SUPPORTED),
        )
        .await;
        client_stream::linger(stream).await;
        return None;
    }
    normalize_minor_version(&mut prefix);
    Some(ClientStream::new(prefix, stream, send_timeout))
}

/// RFC 9110 §2.5 / RFC 9112 §2.3: a request with a higher minor version than relevo
/// speaks (`HTTP/1.2`) is processed as HTTP/1.1, so the version is rewritten in place
/// before hyper (whose parser knows only 1.0 and 1.1) sees the line.
fn normalize_minor_version(buf: &mut [u8]) {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return;
    };
    let line_end = if end > 0 && buf[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    if line_end >= 9 && &buf[line_end - 9..line_end - 1] == b" HTTP/1." {
        let minor = &mut buf[line_end - 1];
        if minor.is_ascii_digit() && *minor > b'1' {
            *minor = b'1';
        }
    }
}

/// True for a request line ending in `HTTP/<d>.<d>` where the major digit is not 1.
pub fn foreign_major_version(buf: &[u8]) -> bool {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let Some(version) = line.rsplit(|&b| b == b' ').next() else {
        return false;
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1'
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::foreign_major_version as foreign;

    #[test]
    fn higher_minor_versions_become_1_1() {
        for (line, want) in [
            (
                &b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"[..],
                &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            ),
            (b"GET / HTTP/1.9\n\n", b"GET / HTTP/1.1\n\n"),
            (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"),
            (b"GET /HTTP/1.5 HTTP/1.1\r\n", b"GET /HTTP/1.5 HTTP/1.1\r\n"),
        ] {
            let mut buf = line.to_vec();
            super::normalize_minor_version(&mut buf);
            assert_eq!(buf, want);
        }
    }

    #[test]
    fn only_other_major_versions_are_foreign() {
        assert!(foreign(b"GET / HTTP/2.0\r\n"));
        assert!(foreign(b"GET / HTTP/3.0\n"));
        assert!(foreign(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!foreign(b"GET / HTTP/1.1\r\n"));
        assert!(!foreign(b"GET / HTTP/1.0\r\n"));
        assert!(!foreign(b"GET / HTTP/1.1"));
        assert!(!foreign(b"GET / HTTX/2.0\r\n"));
        assert!(!foreign(b"GET / HTTP/2\r\n"));
    }
}
