//! `relevo run --upgrade-from` and `--upgrade-socket`: taking the listener over from
//! the running relevo before serving, and offering it to the next binary while
//! serving (the handover itself is `server::upgrade`).

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::server::upgrade::{Offer, Takeover, PROXY};
use crate::server::Server;

/// The upgrade options of `relevo run`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Take the listener over from the relevo offering it on this Unix socket.
    pub from: Option<PathBuf>,
    /// Offer the listener on this Unix socket to the next binary.
    pub socket: Option<PathBuf>,
}

/// One run's part in upgrades: the takeover it started with, and the offer to the next.
#[derive(Debug)]
pub struct Upgrade {
    /// Where to offer the listener to the next binary.
    socket: Option<PathBuf>,
    /// The conversation with the process taken over from, until this one serves.
    takeover: Option<Takeover>,
    /// The listener taken over, until the server is built on it.
    inherited: Option<std::net::TcpListener>,
}

impl Upgrade {
    /// With `options.from`, takes the listener over (before anything is bound; the
    /// configuration must be loaded already, so that a bad file never costs the old
    /// process anything).
    pub async fn begin(options: Options, config: &Config) -> io::Result<Upgrade> {
        let mut upgrade = Upgrade {
            socket: options.socket,
            takeover: None,
            inherited: None,
        };
        let Some(from) = options.from else {
            return Ok(upgrade);
        };
        let mut takeover = Takeover::connect(&from)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("from {}: {e}", from.display())))?;
        let Some(listener) = takeover.listener(PROXY)? else {
            return Err(io::Error::other(format!(
                "{} handed over no proxy listener",
                from.display()
            )));
        };
        let addr = listener.local_addr()?;
        if addr != config.listen {
            info!(
                "upgrade: serving the inherited listener {addr}; listen = {} is ignored",
                config.listen
            );
        }
        upgrade.takeover = Some(takeover);
        upgrade.inherited = Some(listener);
        Ok(upgrade)
    }

    /// The listener taken over, for `Server::bind_with` (once).
    pub fn inherited(&mut self) -> Option<std::net::TcpListener> {
        self.inherited.take()
    }

    /// Ready to serve on `server`: returns what resolves once the listener has been
    /// handed to a successor (the cue to stop accepting and drain), pending forever
    /// without `--upgrade-socket`. On a fresh start the upgrade socket is bound now,
    /// so that a bad path fails the start; after a takeover, only once the old
    /// process has let go (its socket file is in use until then).
    pub fn serve(self, server: &Server) -> io::Result<impl Future<Output = ()>> {
        let fds = match &self.socket {
            Some(_) => vec![(PROXY, server.listener_fd().try_clone_to_owned()?)],
            None => Vec::new(),
        };
        let mut offer = None;
        let mut later = None;
        match (self.socket, self.takeover) {
            (Some(path), None) => offer = Some(listen(&path, fds)?),
            (socket, Some(takeover)) => later = Some((takeover, socket.map(|p| (p, fds)))),
            (None, None) => {}
        }
        Ok(async move {
            if let Some((takeover, socket)) = later {
                // Polled first when the server starts accepting: now is the time.
                if let Err(e) = takeover.serving().await {
                    warn!("upgrade: the old process did not confirm it stops ({e}); it may still be serving");
                }
                if let Some((path, fds)) = socket {
                    // Serving already: a failure here only means no further upgrade.
                    match listen(&path, fds) {
                        Ok(o) => offer = Some(o),
                        Err(e) => error!("upgrade: cannot listen on {}: {e}", path.display()),
                    }
                }
            }
            match offer.as_mut() {
                Some(offer) => offer.handed_over().await,
                None => std::future::pending().await,
            }
        })
    }
}

fn listen(path: &std::path::Path, fds: Vec<(&'static str, OwnedFd)>) -> io::Result<Offer> {
    let offer = Offer::listen(path, fds)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    info!(
        "upgrade: a new binary can take over from {}",
        path.display()
    );
    Ok(offer)
}
