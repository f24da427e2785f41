//! The `levee` command: run, demo, validate, check.

mod check;
mod notify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use levee_proxy::config::{Config, ConfigErrors, LogFormat, LogSettings};

// The allocator: jemalloc, purging freed pages from a background thread one
// second after they are freed. Measured with bench/memory.sh and
// bench/instructions.sh (2026-11-30, 2-core VM):
//
// | allocator                   | idle conn | RSS 60 s after load / before | instr/request |
// | --------------------------- | --------- | ---------------------------- | ------------- |
// | glibc malloc                | 27.3 kB   | 3.68 (8.9 -> 33.2 -> 32.7 MB) | 48,795        |
// | mimalloc 0.1 (defaults)     | 39.6 kB   | 1.48                          | 47,463        |
// | jemalloc, background purge  | 4.3 kB    | 1.27-1.49 (1.19 at 120 s)     | 47,315        |
//
// glibc keeps what the parked connections' and finished requests' buffers
// freed (heap in use with 2000 parked connections: 3.5 kB each; RSS: 27 kB
// each, 6.6 kB after a manual malloc_trim); mimalloc and jemalloc purge only
// when the allocating thread allocates again, which an idle gateway does
// not, unless jemalloc's background thread does it. mimalloc with
// `purge_delay=0` gets 4.0 kB and gives memory back too, but madvises every
// freed page on the request path. What is left after a minute is the
// upstream keep-alive pool (idle connections live up to the cluster's
// idle_timeout, 90 s by default).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `malloc_conf`, read once at its start: a background thread
/// purges dirty pages after 1 s (default 10 s, and only when some thread
/// allocates), straight back to the OS (no "muzzy" stage).
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer that may live in a static.
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: it points to a `'static` literal that nothing writes.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for MallocConf {}

/// `levee --version`: the crate version and the build's git revision
/// (`build.rs`; "unknown" outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LEVEE_GIT_REVISION"),
    ")"
);

/// levee keeps a cluster answering while parts of it fail.
#[derive(Parser)]
#[command(name = "levee", version = VERSION, about)]
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
    /// Print a completion script for a shell, e.g.
    /// `levee completions bash > /etc/bash_completion.d/levee`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Exit code for a config that does not validate (and for a failed start).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure at run time, e.g. a port that cannot be bound.
const EXIT_START: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs as its config says; the other commands as the defaults do.
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(&LogSettings::default());
    }
    match cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "levee", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Check { admin, timeout } => check::run(&admin, timeout),
        Command::Validate { config: path } => match Config::load(&path) {
            Ok(config) => {
                for warning in &config.warnings {
                    eprintln!(
                        "{}:{}:{}: warning: {}",
                        warning.origin, warning.line, warning.column, warning.message
                    );
                }
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
            config: path,
            worker_threads,
        } => {
            let config = match Config::load(&path) {
                Ok(config) => config,
                Err(errors) => return report_config_errors(&errors),
            };
            init_logging(&config.log);
            let threads = worker_threads.or(config.runtime.worker_threads);
            raise_descriptor_limit();
            run_in_runtime(threads, async move {
                let signals = Signals::install();
                let gateway = levee_proxy::start(config).await?;
                // `POST /reload`, SIGHUP and `watch_config` read this file.
                gateway.reload_from(path.clone());
                for listener in gateway.state().listener_status() {
                    let cluster = listener.cluster.as_deref().unwrap_or("-");
                    println!(
                        "levee: listener {:?} on {}://{} -> cluster {cluster:?} ({} routes)",
                        listener.name,
                        listener.protocol,
                        listener.address,
                        listener.routes.len()
                    );
                }
                println!("levee: admin on http://{}", gateway.admin_address());
                // Every listener is bound: tell systemd (Type=notify).
                notify::ready();
                wait_for_signal(signals, Some(&gateway)).await;
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
            let signals = Signals::install();
            let demo = levee_proxy::demo::Demo::start(listen, admin).await?;
            println!("{}", demo.banner());
            wait_for_signal(signals, None).await;
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
fn unresolvable_names(config: &Config) -> Vec<levee_proxy::resolve::Unresolvable> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(levee_proxy::resolve::unresolvable(config)),
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

/// The signals levee answers, installed before it says it is ready: a
/// SIGTERM or SIGHUP sent the moment the admin port answers (or systemd
/// has READY=1) must not meet the signal's default action, which ends the
/// process.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    user1: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Take over the signals from now on (inside the runtime).
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind: SignalKind, name: &str, otherwise: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}; {otherwise}");
                    None
                }
            };
            Signals {
                interrupt: install(SignalKind::interrupt(), "SIGINT", "stop levee with SIGTERM"),
                hangup: install(SignalKind::hangup(), "SIGHUP", "reload with POST /reload"),
                user1: install(
                    SignalKind::user_defined1(),
                    "SIGUSR1",
                    "access logs are reopened at reloads only",
                ),
                term: install(
                    SignalKind::terminate(),
                    "SIGTERM",
                    "only Ctrl-C stops levee",
                ),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }
}

/// Resolve on SIGINT or SIGTERM. With a gateway, SIGHUP reloads its config
/// file meanwhile (a reload that fails keeps the running config; either way
/// it is logged and recorded as a `config` event), and SIGUSR1 reopens the
/// access log files (logrotate).
async fn wait_for_signal(signals: Signals, gateway: Option<&levee_proxy::RunningGateway>) {
    #[cfg(unix)]
    {
        let Signals {
            mut interrupt,
            mut hangup,
            mut user1,
            mut term,
        } = signals;
        loop {
            tokio::select! {
                Some(()) = next_signal(&mut interrupt) => return,
                Some(()) = next_signal(&mut term) => return,
                Some(()) = next_signal(&mut user1) => match gateway {
                    Some(gateway) => {
                        let reopened = gateway.state().reopen_access_logs();
                        tracing::info!(reopened, "SIGUSR1: reopening access logs");
                    }
                    None => tracing::info!("SIGUSR1 ignored: no access logs"),
                },
                Some(()) = next_signal(&mut hangup) => match gateway {
                    Some(gateway) => {
                        tracing::info!("SIGHUP: reloading the config file");
                        match gateway.state().reload_from_file().await {
                            Ok(reloaded) => tracing::info!(generation = reloaded.generation, changes = ?reloaded.changes, "reloaded"),
                            Err(error) => tracing::error!(%error, "reload failed; the running config stays"),
                        }
                    }
                    None => tracing::info!("SIGHUP ignored: nothing to reload"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let Signals {} = signals;
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The next delivery of `signal`, or never if it could not be set up.
#[cfg(unix)]
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Log to standard error as `settings` say; `LEVEE_LOG` overrides the
/// level. Colour only on a terminal, and never with `NO_COLOR` set
/// (no-color.org): a file or journald gets no escape codes.
fn init_logging(settings: &LogSettings) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEVEE_LOG").unwrap_or_else(|_| {
        // The config has checked the syntax.
        tracing_subscriber::EnvFilter::try_new(&settings.level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LogSettings::DEFAULT_LEVEL))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
