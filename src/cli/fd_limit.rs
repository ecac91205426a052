//! File descriptors: relevo raises its soft `RLIMIT_NOFILE` to the hard limit at start
//! (as nginx's `worker_rlimit_nofile`), and says when the configuration could need more
//! than that: running out turns every new connection into an error.

use std::collections::HashMap;
use std::io;

use crate::config::Config;

/// Descriptors kept for everything but connections: listeners, logs, the runtime,
/// health checks.
const SLACK: u64 = 64;

/// Raises the soft limit on open files to the hard limit; returns the soft limit now
/// in force.
pub fn raise() -> io::Result<u64> {
    let lim = current()?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed to it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(lim.rlim_max);
        }
    }
    Ok(lim.rlim_cur)
}

/// The hard limit on open files, the most `raise` can reach.
pub fn hard() -> io::Result<u64> {
    Ok(current()?.rlim_max)
}

/// The open-file limits in force.
fn current() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

/// Descriptors `config` may need at once: every client connection, every upstream
/// connection its backends' limits allow (one per client request at most), and slack.
pub fn needed(config: &Config) -> u64 {
    let clients = config.limits.max_connections as u64;
    let mut per_backend: HashMap<std::net::SocketAddr, u64> = HashMap::new();
    for host in &config.hosts {
        for b in &host.backends {
            let cap = b.max_conns.unwrap_or(config.limits.backend_max_conns) as u64;
            per_backend.insert(b.addr, cap.min(clients));
        }
    }
    let upstream: u64 = per_backend.values().sum::<u64>().min(clients);
    clients + upstream + SLACK
}

/// A warning when `config` may need more descriptors than `limit`, else `None`.
pub fn warning(config: &Config, limit: u64) -> Option<String> {
    let need = needed(config);
    (need > limit).then(|| {
        format!(
            "limits.max_connections = {} and the backends' connection limits may need {need} open files, but the limit is {limit}: raise it (ulimit -n, LimitNOFILE=) or lower limits.max_connections",
            config.limits.max_connections
        )
    })
}
