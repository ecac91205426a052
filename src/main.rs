//! The `relevo` command line: run, check, demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use relevo::{demo, server, Config, Server};
use tracing::{error, info};

/// mimalloc keeps per-thread free lists and packs small objects densely: less time in
/// the allocator and fewer cache misses than glibc's malloc with thousands of connections.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Worker threads (default: one per CPU).
        #[arg(short, long)]
        threads: Option<usize>,
    },
}

/// Exit status for a configuration that does not validate (as `nginx -t` style tools do).
const EXIT_CONFIG: u8 = 2;
/// Exit status for a failure at run time (cannot bind, ...).
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                let backends: usize = c.hosts.iter().map(|h| h.backends.len()).sum();
                println!(
                    "{}: ok ({} hosts, {backends} backends)",
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
            match relevo::route::explain(config, &url, &headers, client) {
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
        } => {
            let Some(config) = load(&path) else {
                return ExitCode::from(EXIT_CONFIG);
            };
            init_logging(&config.log_level);
            let threads = threads.or(config.threads);
            run_blocking(threads, async move { serve(config, Some(path)).await })
        }
        Command::Demo { listen, threads } => {
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
                    "\ntry:\n  curl -x http://{listen} http://{host}/\n  curl -H 'Host: {host}' http://{listen}/\n  curl -H 'Host: unknown.test' http://{listen}/   # 403\n",
                    host = demo::DEMO_HOST
                );
                serve(demo::config(listen, backends), None).await
            })
        }
    }
}

/// Loads a configuration file, printing the located error if it is invalid.
fn load(path: &Path) -> Option<Config> {
    Config::load(path).map_err(|e| eprintln!("{e}")).ok()
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn run_blocking(
    threads: Option<usize>,
    fut: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // One thread: a current-thread runtime has no cross-thread wake-ups to pay for.
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("relevo: cannot start the runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn serve(config: Config, path: Option<PathBuf>) -> ExitCode {
    let server = match Server::bind(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot listen on {}: {e}", config.listen);
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let addr = server.local_addr().unwrap_or(config.listen);
    info!("listening on {addr}");
    for h in &config.hosts {
        let list: Vec<String> = h.backends.iter().map(|b| b.to_string()).collect();
        info!(
            "host {} -> [{}] ({})",
            h.key(),
            list.join(", "),
            h.balance.name()
        );
    }
    let state = server.state();
    tokio::spawn(reload_on_sighup(state, path));
    server.run(stop_signal()).await;
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping gracefully"),
        _ = int.recv() => info!("SIGINT: stopping gracefully"),
    }
}

#[cfg(unix)]
async fn reload_on_sighup(
    state: std::sync::Arc<arc_swap::ArcSwap<relevo::state::State>>,
    path: Option<PathBuf>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let Some(path) = path.as_deref() else {
            info!("SIGHUP: the demo has no configuration file to reload");
            continue;
        };
        reload(&state, path);
    }
}

fn reload(state: &arc_swap::ArcSwap<relevo::state::State>, path: &Path) {
    match Config::load(path) {
        Ok(config) => {
            let hosts = config.hosts.len();
            server::reload(state, config);
            info!("SIGHUP: reloaded {} ({hosts} hosts)", path.display());
        }
        Err(e) => error!("SIGHUP: keeping the running configuration: {e}"),
    }
}
