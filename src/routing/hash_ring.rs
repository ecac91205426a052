//! Consistent hashing: the value a request hashes on, and the ketama ring of a host
//! entry's members.

use std::net::IpAddr;

use http::{header, HeaderMap};

use super::candidate::{Candidate, Member};
use crate::config::HashKey;

/// Points per unit of weight on the hash ring: enough for an even spread (ketama uses 160).
pub const RING_POINTS: u32 = 160;

/// The string a request hashes on; a missing header or cookie falls back to the client IP.
pub fn key_value(key: &HashKey, client: IpAddr, headers: &HeaderMap, path: &str) -> String {
    let value = match key {
        HashKey::ClientIp => None,
        HashKey::Path => Some(path.to_string()),
        HashKey::Header(name) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        HashKey::Cookie(name) => headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string()),
    };
    value.unwrap_or_else(|| client.to_string())
}

/// The ketama ring: `RING_POINTS × weight` points per member, placed by hashing
/// `address-n`, so a member's points do not depend on the other members.
pub fn ring<B: Candidate>(members: &[Member<B>]) -> Vec<(u64, usize)> {
    let mut ring = Vec::new();
    for (i, m) in members.iter().enumerate() {
        for n in 0..RING_POINTS * m.weight {
            ring.push((
                hash_bytes(format!("{}-{n}", m.backend.addr()).as_bytes()),
                i,
            ));
        }
    }
    ring.sort_unstable();
    ring
}

/// FNV-1a with a final avalanche (from splitmix64): stable across builds and runs,
/// which a consistent-hashing ring needs and `std`'s hasher does not promise.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_and_header_keys() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; session=xyz; b=2".parse().unwrap());
        h.insert("x-user", "alice".parse().unwrap());
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(
            key_value(&HashKey::Cookie("session".into()), ip, &h, "/p"),
            "xyz"
        );
        assert_eq!(
            key_value(&HashKey::Header("x-user".parse().unwrap()), ip, &h, "/p"),
            "alice"
        );
        assert_eq!(
            key_value(&HashKey::Cookie("none".into()), ip, &h, "/p"),
            "10.9.9.9"
        );
        assert_eq!(key_value(&HashKey::Path, ip, &h, "/p"), "/p");
    }
}
