//! `relevo run --upgrade-from` and `--upgrade-socket`: taking the listener over from
//! the running relevo before serving, and offering it to the next binary while
//! serving (the handover itself is `server::upgrade`).

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::server::upgrade::{Offer, Takeover, ADMIN, PROXY};
use crate::server::{Inherited, Server};

/// The upgrade options of `relevo run`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Take the listener over from the relevo offering it on this Unix socket.
    pub from: Option<PathBuf>,
    /// Offer the listener on this Unix socket to the next binary.
    pub socket: Option<PathBuf>,
    /// Write this process's pid here: at start, or after a takeover just before the
    /// old process is told to stop, so that a supervisor following the file (systemd's
    /// `PIDFile=`) knows the new main process before the old one exits.
    pub pid_file: Option<PathBuf>,
}

/// One run's part in upgrades: the takeover it started with, and the offer to the next.
#[derive(Debug)]
pub struct Upgrade {
    /// Where to offer the listener to the next binary.
    socket: Option<PathBuf>,
    /// The conversation with the process taken over from, until this one serves.
    takeover: Option<Takeover>,
    /// The listeners taken over, until the server is built on them.
    inherited: Inherited,
    /// Where to write this process's pid.
    pid_file: Option<PathBuf>,
}

impl Upgrade {
    /// With `options.from`, takes the listener over (before anything is bound; the
    /// configuration must be loaded already, so that a bad file never costs the old
    /// process anything).
    pub async fn begin(options: Options, config: &Config) -> io::Result<Upgrade> {
        let mut upgrade = Upgrade {
            socket: options.socket,
            takeover: None,
            inherited: Inherited::default(),
            pid_file: options.pid_file,
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
        let admin = takeover.listener(ADMIN)?;
        if let (Some(a), Some(wanted)) = (&admin, &config.admin) {
            let addr = a.local_addr()?;
            if addr != wanted.listen {
                info!(
                    "upgrade: serving the inherited admin listener {addr}; admin.listen = {} is ignored",
                    wanted.listen
                );
            }
        }
        upgrade.takeover = Some(takeover);
        upgrade.inherited = Inherited {
            proxy: Some(listener),
            admin: admin.filter(|_| config.admin.is_some()),
        };
        Ok(upgrade)
    }

    /// The listeners taken over, for `Server::bind_with` (once).
    pub fn inherited(&mut self) -> Inherited {
        std::mem::take(&mut self.inherited)
    }

    /// Ready to serve on `server`: returns what resolves once the listener has been
    /// handed to a successor (the cue to stop accepting and drain), pending forever
    /// without `--upgrade-socket`. On a fresh start the pid file is written and the
    /// upgrade socket bound now, so that a bad path fails the start; after a
    /// takeover, the pid file just before telling the old process we serve, and the
    /// socket once it has let go (its socket file is in use until then).
    pub fn serve(self, server: &Server) -> io::Result<impl Future<Output = ()>> {
        let fds = match &self.socket {
            Some(_) => {
                let mut fds = vec![(PROXY, server.listener_fd().try_clone_to_owned()?)];
                if let Some(admin) = server.admin_fd() {
                    fds.push((ADMIN, admin.try_clone_to_owned()?));
                }
                fds
            }
            None => Vec::new(),
        };
        let mut offer = None;
        let mut later = None;
        let mut pid_file = None;
        match (self.socket, self.takeover) {
            (socket, Some(takeover)) => later = Some((takeover, socket.map(|p| (p, fds)))),
            (socket, None) => {
                if let Some(path) = &self.pid_file {
                    pid_file = Some(PidFile::write(path)?);
                }
                if let Some(path) = socket {
                    offer = Some(listen(&path, fds)?);
                }
            }
        }
        Ok(async move {
            if let Some((takeover, socket)) = later {
                // Polled first when the server starts accepting: now is the time. The
                // pid file goes first: the old process may exit right after `serving`.
                if let Some(path) = &self.pid_file {
                    match PidFile::write(path) {
                        Ok(p) => pid_file = Some(p),
                        Err(e) => error!("upgrade: cannot write the pid file {e}"),
                    }
                }
                if let Err(e) = takeover.serving().await {
                    warn!("upgrade: the old process did not confirm it stops ({e}); it may still be serving");
                }
                if let Some((path, fds)) = socket {
                    // Serving already: a failure here only means no further upgrade.
                    match listen(&path, fds) {
                        Ok(o) => offer = Some(o),
                        Err(e) => error!("upgrade: cannot offer the listener on {e}"),
                    }
                }
            }
            match offer.as_mut() {
                Some(offer) => offer.handed_over().await,
                None => std::future::pending().await,
            }
            // Dropped here, or earlier with this future on a stop: a pid file that
            // still names this process goes (a successor has written its own).
            drop(pid_file);
        })
    }
}

/// `--pid-file`, removed on drop unless another process has written its pid there.
#[derive(Debug)]
struct PidFile {
    /// The file holding this process's pid.
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path`, beside it first and then renamed over it,
    /// so that a reader never sees a half-written file.
    fn write(path: &Path) -> io::Result<PidFile> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let pid = std::process::id();
        std::fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn listen(path: &Path, fds: Vec<(&'static str, OwnedFd)>) -> io::Result<Offer> {
    let offer = Offer::listen(path, fds)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    info!(
        "upgrade: a new binary can take over from {}",
        path.display()
    );
    Ok(offer)
}
