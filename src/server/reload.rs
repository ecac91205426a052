//! A configuration reload: a new state is built beside the live one (keeping warm
//! backends) and swapped in whole; requests in flight finish on the old one. A change
//! of a DNS answer is applied the same way (`discovery` calls [`reload`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::warn;

use crate::config::Config;
use crate::discovery::Discovery;
use crate::proxy::State;
use crate::stats::ServerStats;

/// Replaces the live state with one built from `config` (names already replaced by
/// their addresses), keeping warm backends.
pub fn reload(state: &ArcSwap<State>, config: Config) {
    let current = state.load();
    if config.listen != current.config.listen {
        warn!(
            "listen address change ({} -> {}) needs a restart; keeping {}",
            current.config.listen, config.listen, current.config.listen
        );
    }
    let listening = |c: &Config| c.tls.as_ref().map(|t| t.listen);
    if listening(&config) != listening(&current.config) {
        warn!("a change of the [tls] listener needs a restart; its certificates reload");
    }
    let next = State::build(config, Some(&current));
    next.start_health_checks();
    state.store(Arc::new(next));
}

/// A reload attempt as the signal handler makes it: `loaded` is the file read and
/// validated, or why not. Counted either way (`relevo_config_reloads_total`). The
/// names of the new file are resolved (those it shares with the running one keep their
/// addresses) and watched from now on, by `discovery`, which applies it.
pub async fn reload_counted<E>(
    discovery: &Arc<Discovery>,
    stats: &ServerStats,
    loaded: Result<Config, E>,
) -> Result<(), E> {
    match loaded {
        Ok(config) => {
            discovery.load(config).await;
            stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}
