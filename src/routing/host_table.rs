//! The host table: which entry serves the host a request named (else 403).

use std::collections::HashMap;
use std::sync::Arc;

use super::balancer::Balancer;
use super::traffic::Traffic;
use crate::config::HealthCheck;
use crate::http::host::Target;
use crate::http::ProxyError;

/// A served host: its backends and how requests are spread over them.
#[derive(Debug)]
pub struct HostEntry<B> {
    /// The host-table key (`name` or `name:port`).
    pub key: String,
    /// The backends and the algorithm that chooses one per request.
    pub balancer: Balancer<B>,
    /// Largest accepted request body, if limited.
    pub max_body_bytes: Option<u64>,
    /// Attempts per request (1 = no retry).
    pub tries: u32,
    /// Active health check of the backends, if any.
    pub health: Option<HealthCheck>,
    /// What its requests did, for metrics and the status page; kept across reloads
    /// that leave its backends as they were.
    pub traffic: Arc<Traffic>,
}

/// Host table, matched case-insensitively; an explicit port in a key wins over the bare name.
#[derive(Debug)]
pub struct HostTable<B> {
    /// Entries by key (`name` or `name:port`, lower case). Hashed with foldhash, not
    /// SipHash: the table is looked up once per request and never grows from what
    /// clients send (its keys are the configuration's), so it needs no defence
    /// against chosen collisions, and SipHash cost three times as much per lookup.
    entries: HashMap<String, Arc<HostEntry<B>>, foldhash::fast::RandomState>,
    /// Whether any key names a port: if none does, a request's port is not looked up
    /// (that would format a `name:port` key on every request).
    port_keys: bool,
}

impl<B> HostTable<B> {
    /// Builds the table from entries keyed by `HostEntry::key`.
    pub fn new(entries: Vec<Arc<HostEntry<B>>>) -> HostTable<B> {
        let entries: HashMap<_, _, _> = entries.into_iter().map(|e| (e.key.clone(), e)).collect();
        let port_keys = entries.keys().any(|k| k.contains(':'));
        HostTable { entries, port_keys }
    }

    /// All entries, for status output and health checks.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<HostEntry<B>>> {
        self.entries.values()
    }

    /// The entry with key `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<HostEntry<B>>> {
        self.entries.get(key)
    }

    /// The entry serving `target`, or 403.
    pub fn route(&self, target: &Target) -> Result<&Arc<HostEntry<B>>, ProxyError> {
        if let Some(port) = target.port.filter(|_| self.port_keys) {
            if let Some(entry) = self.entries.get(&format!("{}:{}", target.host, port)) {
                return Ok(entry);
            }
        }
        self.entries
            .get(&target.host)
            .ok_or_else(|| ProxyError::UnknownHost(target.authority_str().to_owned()))
    }
}
