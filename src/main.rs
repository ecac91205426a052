//! The `relevo` command line: run, check, demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use relevo::cli::run::{init_logging, run_blocking, serve, EXIT_CONFIG, EXIT_RUNTIME};
use relevo::cli::{demo, dry_run, fd_limit, names, upgrade};
use relevo::Config;
use tracing::{error, info};

mod allocator;

/// mimalloc keeps per-thread free lists and packs small objects densely: less time in
/// the allocator and fewer cache misses than glibc's malloc with thousands of connections.
#[global_allocator]
static GLOBAL: allocator::Allocator = allocator::Allocator;

/// An HTTP/1.1 load-balancing proxy.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file (SIGHUP reloads it, SIGTERM/SIGINT stop).
    Run {
        /// The TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Worker threads (overrides `threads` in the file; default: one per CPU).
        #[arg(short, long)]
        threads: Option<usize>,
        /// Take the listener over from the relevo offering it on this Unix socket
        /// (hitless upgrade; `listen` is then ignored). See docs/upgrade.md.
        #[arg(long, value_name = "SOCKET")]
        upgrade_from: Option<PathBuf>,
        /// Offer the listener on this Unix socket to a new binary: once it serves,
        /// this process stops accepting, drains and exits 0.
        #[arg(long, value_name = "SOCKET")]
        upgrade_socket: Option<PathBuf>,
        /// Write the pid here (after a takeover: before the old process stops), for a
        /// supervisor such as systemd's `PIDFile=`.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
    },
    /// Validate a configuration file and exit: 0 if valid, 2 if not.
    Check {
        /// The TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Dry run: which host entry and backend a request would reach, and why.
    Route {
        /// The TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The request target: `http://host/path` or `/path` with `-H 'Host: ...'`.
        url: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client address, for `hash_key = "client-ip"`.
        #[arg(long, default_value = "127.0.0.1")]
        client: std::net::IpAddr,
    },
    /// Run the proxy in front of three built-in demo backends, no file needed.
    Demo {
        /// Address to listen on.
        #[arg(short, long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address of the admin listener (status page, metrics).
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Worker threads (default: one per CPU).
        #[arg(short, long)]
        threads: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                if let Some(w) = fd_limit::hard()
                    .ok()
                    .and_then(|limit| fd_limit::warning(&c, limit))
                {
                    eprintln!("{}: warning: {w}", config.display());
                }
                for w in &c.warnings {
                    eprintln!("{w}");
                }
                for w in names::warnings(&names::resolve(&c)) {
                    eprintln!("{}: warning: {w}", config.display());
                }
                let backends: usize = c.hosts.iter().map(|h| h.backends.len()).sum();
                let named: usize = c.hosts.iter().map(|h| h.names.len()).sum();
                let names = match named {
                    0 => String::new(),
                    1 => ", 1 backend name".into(),
                    n => format!(", {n} backend names"),
                };
                let certs = c.tls.as_ref().map_or(String::new(), |t| {
                    format!(", {} certificates", t.certs.len())
                });
                println!(
                    "{}: ok ({} hosts, {backends} backends{names}{certs})",
                    config.display(),
                    c.hosts.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Route {
            config,
            url,
            headers,
            client,
        } => {
            let Some(config) = load(&config) else {
                return ExitCode::from(EXIT_CONFIG);
            };
            match dry_run::explain(config, &url, &headers, client) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(refusal) => {
                    println!("refused:  {refusal}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::Run {
            config: path,
            threads,
            upgrade_from,
            upgrade_socket,
            pid_file,
        } => {
            let Some(config) = load(&path) else {
                return ExitCode::from(EXIT_CONFIG);
            };
            init_logging(&config.log_level);
            let threads = threads.or(config.threads);
            let upgrade = upgrade::Options {
                from: upgrade_from,
                socket: upgrade_socket,
                pid_file,
            };
            run_blocking(
                threads,
                async move { serve(config, Some(path), upgrade).await },
            )
        }
        Command::Demo {
            listen,
            admin,
            threads,
        } => {
            init_logging("info");
            run_blocking(threads, async move {
                let backends = match demo::spawn_backends(3).await {
                    Ok(b) => b,
                    Err(e) => {
                        error!("cannot start demo backends: {e}");
                        return ExitCode::from(EXIT_RUNTIME);
                    }
                };
                for (i, b) in backends.iter().enumerate() {
                    info!("demo backend {} at {b}", i + 1);
                }
                eprintln!(
                    "\ntry:\n  curl -x http://{listen} http://{host}/\n  curl -H 'Host: {host}' http://{listen}/\n  curl -H 'Host: unknown.test' http://{listen}/   # 403\n\nstatus page: http://{admin}/status   metrics: http://{admin}/metrics\n",
                    host = demo::DEMO_HOST
                );
                let mut config = demo::config(listen, backends);
                config.admin = Some(relevo::config::Admin {
                    listen: admin,
                    token: None,
                });
                serve(config, None, upgrade::Options::default()).await
            })
        }
    }
}

/// Loads a configuration file, printing the located error if it is invalid.
fn load(path: &Path) -> Option<Config> {
    Config::load(path).map_err(|e| eprintln!("{e}")).ok()
}
