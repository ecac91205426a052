//! Backend names for `relevo check` and `relevo route`: each resolved once, right now,
//! with the configured resolver (nothing is watched), and described for a person.

use std::fmt::Write;

use crate::config::{Config, DnsName};
use crate::discovery::{self, resolver::Outcome};

/// A configuration whose names were resolved once.
#[derive(Debug)]
pub struct Resolved {
    /// The configuration with every name replaced by the addresses it has now.
    pub config: Config,
    /// What each name gave.
    pub names: Vec<(DnsName, Outcome)>,
    /// Why nothing could be resolved (no resolver), if so.
    pub error: Option<String>,
}

/// Resolves every name of `config` once, on a runtime of its own (the commands that
/// call it run none).
pub fn resolve(config: &Config) -> Resolved {
    let unresolved = |error: String| Resolved {
        config: discovery::effective(config, &Default::default()),
        names: Vec::new(),
        error: Some(error),
    };
    if !discovery::has_names(config) {
        return Resolved {
            config: config.clone(),
            names: Vec::new(),
            error: None,
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return unresolved(format!("cannot start a runtime to resolve names: {e}")),
    };
    match runtime.block_on(discovery::resolve_once(config)) {
        Ok((config, names)) => Resolved {
            config,
            names,
            error: None,
        },
        Err(e) => unresolved(e),
    }
}

/// What an outcome means, in a few words: the addresses, or why there are none.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Found { targets, ttl } => {
            let mut out = String::new();
            for (i, t) in targets.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(out, "{sep}{}", t.addr);
                if t.priority != 0 || t.weight != 1 {
                    let _ = write!(out, " (priority {}, weight {})", t.priority, t.weight);
                }
            }
            let _ = write!(out, "; TTL {}s", ttl.as_secs());
            out
        }
        Outcome::Missing { nxdomain: true, .. } => "does not resolve: NXDOMAIN".into(),
        Outcome::Missing { .. } => "does not resolve: no records".into(),
        Outcome::Failed(e) => format!("does not resolve: {e}"),
    }
}

/// One warning per name that does not resolve now (its entry runs without it).
pub fn warnings(resolved: &Resolved) -> Vec<String> {
    let mut out: Vec<String> = resolved.error.iter().cloned().collect();
    for (name, outcome) in &resolved.names {
        if !matches!(outcome, Outcome::Found { .. }) {
            out.push(format!(
                "backend name `{name}` {}; its host gets no backends from it until it resolves",
                describe(outcome)
            ));
        }
    }
    out
}
