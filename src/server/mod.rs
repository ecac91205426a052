//! relevo assembled: the listener hands each accepted connection to
//! `downstream::connection`, whose requests go to `proxy::handle` with the state live
//! at that moment. A reload swaps that state; a stop drains the connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::admin;
use crate::config::Config;
use crate::discovery::Discovery;
use crate::downstream::connection::{self, Drain, Settings};
use crate::downstream::listener::Listener;
use crate::proxy::State;
use crate::stats::ServerStats;

mod reload;
mod service;
mod tls_listener;
pub mod upgrade;

pub use reload::{reload, reload_counted};

/// Listening sockets handed over by the relevo being upgraded.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The proxy's listener (then `listen` is ignored).
    pub proxy: Option<std::net::TcpListener>,
    /// The admin listener (then `admin.listen` is ignored).
    pub admin: Option<std::net::TcpListener>,
}

/// A bound proxy, ready to serve.
pub struct Server {
    /// The listening socket with its connection cap.
    listener: Listener,
    /// The current state; requests load it, reloads replace it.
    state: Arc<ArcSwap<State>>,
    /// Process-wide counters (clients, reloads, drain).
    stats: Arc<ServerStats>,
    /// The admin listener, when configured.
    admin: Option<admin::AdminServer>,
    /// The names of the configuration, resolved when `run` starts and watched.
    discovery: Arc<Discovery>,
    /// The TLS listener, when `[tls]` is configured.
    tls: Option<Listener>,
}

/// What a client connection is held to, from the configuration live when it came.
fn settings(config: &Config) -> Settings {
    Settings {
        header_timeout: config.timeouts.client_header,
        send_timeout: config.timeouts.client_send,
        max_header_bytes: config.limits.max_header_bytes,
        max_headers: config.limits.max_headers,
    }
}

impl Server {
    /// Binds the configured listen address (inside a tokio runtime: it starts the
    /// health checkers).
    pub fn bind(config: Config) -> io::Result<Server> {
        Server::bind_with(config, Inherited::default())
    }

    /// `bind`, or with `inherited` (a listener handed over by the relevo being
    /// upgraded, see `upgrade`) serves that one instead, ignoring `config.listen`.
    pub fn bind_with(config: Config, inherited: Inherited) -> io::Result<Server> {
        let stats = Arc::new(ServerStats::default());
        let max = config.limits.max_connections;
        let listener = match inherited.proxy {
            Some(socket) => Listener::from_std(socket, max, stats.clone())?,
            None => Listener::bind(config.listen, max, stats.clone(), false)?,
        };
        let admin_config = config.admin.clone();
        let tls = config
            .tls
            .as_ref()
            .map(|t| {
                Listener::bind(t.listen, max, stats.clone(), true)
                    .map_err(|e| io::Error::new(e.kind(), format!("tls.listen {}: {e}", t.listen)))
            })
            .transpose()?;
        let wants_log = config.access_log != crate::config::AccessLogTarget::Off;
        let base = config.clone();
        let state = State::build(config, None);
        if wants_log && state.access_log.is_none() {
            return Err(io::Error::other("cannot open the access log"));
        }
        state.start_health_checks();
        let state = Arc::new(ArcSwap::from_pointee(state));
        let live = state.clone();
        let discovery = Discovery::new(
            base,
            Box::new(move |effective| reload::reload(&live, effective)),
        );
        let admin = admin_config
            .map(|a| {
                let sources = (state.clone(), stats.clone(), discovery.clone());
                admin::AdminServer::bind(&a, inherited.admin, sources)
            })
            .transpose()?;
        Ok(Server {
            listener,
            state,
            stats,
            admin,
            discovery,
            tls,
        })
    }

    /// The admin listener's address, when it is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Process-wide counters, for reloads to record into.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The TLS listener's address, when `[tls]` is configured (useful with port 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|t| t.local_addr().ok())
    }

    /// The listening socket, to hand over to a new binary (`upgrade::Offer`).
    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The admin listener's descriptor, to hand over with the proxy's.
    pub fn admin_fd(&self) -> Option<BorrowedFd<'_>> {
        self.admin.as_ref().map(|a| a.fd())
    }

    /// A handle on the live state, for reloads.
    pub fn state(&self) -> Arc<ArcSwap<State>> {
        self.state.clone()
    }

    /// The names of the configuration and their watchers, for reloads.
    pub fn discovery(&self) -> Arc<Discovery> {
        self.discovery.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits (up to
    /// `timeouts.shutdown`) for open connections to finish their requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.run_until(async {
            shutdown.await;
            Drain::CloseIdle
        })
        .await
    }

    /// `run`, with the stop saying what becomes of idle connections (`Drain`).
    ///
    /// The configuration's names are resolved first: connections accepted by the
    /// kernel meanwhile wait, and their requests then find the names' addresses.
    pub async fn run_until(self, shutdown: impl Future<Output = Drain>) {
        self.discovery.start().await;
        // Tells connection tasks how to finish.
        let (stopping, stop) = watch::channel(None);
        let https_port = self.tls_addr().map(|a| a.port());
        if let Some(admin) = self.admin {
            // It keeps answering while connections drain: `/ready` says so.
            tokio::spawn(admin.serve());
        }
        let tls_task = self.tls.map(|listener| {
            tokio::spawn(tls_listener::run(
                listener,
                self.state.clone(),
                self.stats.clone(),
                stop.clone(),
            ))
        });
        tokio::pin!(shutdown);
        let drain = loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                drain = &mut shutdown => break drain,
            };
            let settings = settings(&self.state.load().config);
            let answerer = service::Answerer::new(service::Conn {
                state: self.state.clone(),
                stats: self.stats.clone(),
                peer: accepted.peer,
                stop: stop.clone(),
                tls: None,
                streams: None,
                https_port,
            });
            // Boxed: the connection's future would otherwise hold the service's 152
            // bytes three times over (each async layer keeps its arguments), idle or not.
            let service = Box::new(move |req, interim| answerer.answer(req, interim));
            tokio::spawn(connection::serve(accepted, settings, service, stop.clone()));
        };
        let timeout = self.state.load().config.timeouts.shutdown;
        self.stats.draining.store(true, Ordering::Relaxed);
        let _ = stopping.send(Some(drain));
        match tls_task {
            Some(task) => {
                let _ = tokio::join!(self.listener.drain(timeout), task);
            }
            None => self.listener.drain(timeout).await,
        }
    }
}
