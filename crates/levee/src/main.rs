//! The `levee` command: run, demo, validate, check.

mod check;
mod notify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use levee_proxy::config::{Config, ConfigErrors};

/// levee keeps a cluster answering while parts of it fail.
#[derive(Parser)]
#[command(name = "levee", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a config file.
    Run {
        /// Config file (TOML).
        #[arg(short, long)]
        config: PathBuf,
        /// Runtime worker threads (overrides `[runtime] worker_threads`;
        /// default: one per CPU).
        #[arg(long)]
        worker_threads: Option<usize>,
    },
    /// Run a gateway in front of three built-in demo backends, with the admin
    /// API, and print the URLs to try.
    Demo {
        /// Traffic listener address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin listener address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Runtime worker threads (default: one per CPU).
        #[arg(long)]
        worker_threads: Option<usize>,
    },
    /// Ask a running levee whether it is ready: exit 0 ready, 1 not ready
    /// (the reasons are printed), 2 unreachable. For Docker HEALTHCHECK and
    /// Kubernetes exec probes.
    Check {
        /// The admin listener's address.
        #[arg(long, default_value_t = levee_proxy::config::AdminSettings::DEFAULT_LISTEN.to_string())]
        admin: String,
        /// Give up after this long (then exit 2).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Check a config file: exit 0, or 2 with every problem as
    /// `file:line:col: message`. Endpoint names that do not resolve are
    /// warned about (exit 0: levee starts anyway).
    Validate {
        /// Config file (TOML).
        #[arg(short, long)]
        config: PathBuf,
    },
}

/// Exit code for a config that does not validate (and for a failed start).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure at run time, e.g. a port that cannot be bound.
const EXIT_START: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Check { admin, timeout } => check::run(&admin, timeout),
        Command::Validate { config: path } => match Config::load(&path) {
            Ok(config) => {
                // A name that does not resolve is not an error (it may
                // appear later, and levee starts anyway), but worth a word.
                for name in unresolvable_names(&config) {
                    eprintln!("{}: warning: {name}", path.display());
                }
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(errors) => report_config_errors(&errors),
        },
        Command::Run {
            config,
            worker_threads,
        } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(errors) => return report_config_errors(&errors),
            };
            let threads = worker_threads.or(config.runtime.worker_threads);
            raise_descriptor_limit();
            run_in_runtime(threads, async move {
                let gateway = levee_proxy::start(config).await?;
                for listener in &gateway.state().listeners {
                    println!(
                        "levee: listener {:?} on {}://{} -> cluster {:?}",
                        listener.name, listener.protocol, listener.address, listener.cluster
                    );
                }
                println!("levee: admin on http://{}", gateway.admin_address());
                // Every listener is bound: tell systemd (Type=notify).
                notify::ready();
                wait_for_signal().await;
                tracing::info!("shutdown signal received");
                notify::stopping();
                let outcome = gateway.shutdown().await;
                tracing::info!(?outcome, "stopped");
                Ok::<(), levee_proxy::StartError>(())
            })
        }
        Command::Demo {
            listen,
            admin,
            worker_threads,
        } => run_in_runtime::<_, levee_proxy::demo::DemoError>(worker_threads, async move {
            let demo = levee_proxy::demo::Demo::start(listen, admin).await?;
            println!("{}", demo.banner());
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            demo.shutdown().await;
            Ok(())
        }),
    }
}

/// A gateway holds two descriptors per proxied connection. The usual soft
/// limit (1024, systemd's default) is meant for programs that never need
/// more; programs that do are expected to raise it up to the hard limit
/// themselves, as nginx (`worker_rlimit_nofile`) and HAProxy do. Listeners
/// derive their default `max_connections` from the result.
fn raise_descriptor_limit() {
    let before = levee_proxy::listener::descriptor_limit();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) if Some(now) != before => {
            tracing::info!(from = ?before, to = now, "file descriptor limit raised to the hard limit");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot raise the file descriptor limit; keeping it");
        }
    }
}

/// The endpoint names of `config` that do not resolve now.
fn unresolvable_names(config: &Config) -> Vec<levee_proxy::upstream::resolve::Unresolvable> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(levee_proxy::upstream::resolve::unresolvable(config)),
        Err(error) => {
            eprintln!("levee: cannot look endpoint names up: {error}");
            Vec::new()
        }
    }
}

fn report_config_errors(errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    ExitCode::from(EXIT_CONFIG)
}

/// Build the tokio runtime and run `main` on it; a start error exits non-zero
/// with its message (e.g. the address and OS error of a failed bind).
fn run_in_runtime<F, E>(worker_threads: Option<usize>, main: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut builder = match worker_threads {
        Some(0) => {
            eprintln!("levee: --worker-threads must be at least 1");
            return ExitCode::from(EXIT_CONFIG);
        }
        // One worker: a current-thread runtime does the same work without the
        // work-stealing scheduler's cross-thread bookkeeping.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("levee: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("levee: {error}");
            ExitCode::from(EXIT_START)
        }
    }
}

/// Resolve on SIGINT or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops levee");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEVEE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
