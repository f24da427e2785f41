//! `levee-testkit`: run a fault-injecting backend, or generate load.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::load::{self, LoadSpec};

/// Test tools for levee: a fault-injecting HTTP backend and a closed-loop
/// load generator.
#[derive(Parser)]
#[command(name = "levee-testkit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a fault-injecting HTTP backend until SIGINT or SIGTERM.
    Backend(BackendArgs),
    /// Send closed-loop HTTP/1.1 load and print a report.
    Load(LoadArgs),
}

#[derive(Args)]
struct BackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Name in the `x-backend` header and the `hello from NAME` body.
    #[arg(long, default_value = "b1")]
    name: String,
    /// Starting mode: healthy, crashed, hung, slow[:DURATION], failing,
    /// reset, partial-reset[:BYTES].
    #[arg(long, default_value = "healthy")]
    mode: Mode,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct LoadArgs {
    /// Target URL, `http://HOST:PORT/path`.
    #[arg(long)]
    url: http::Uri,
    /// Concurrent connections, each with one request in flight.
    #[arg(short = 'c', long, default_value_t = 32)]
    concurrency: usize,
    /// How long to send (e.g. `10s`); default 10s unless --max-requests is set.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many requests.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Per-request deadline; a slower answer counts as an error.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: http::Method,
    /// Request body, sent with every request.
    #[arg(long)]
    body: Option<String>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Backend(args) => args.threads,
        Command::Load(args) => args.threads,
    };
    let runtime = match runtime(threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("levee-testkit: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Backend(args) => backend(args).await,
            Command::Load(args) => load(args).await,
        }
    })
}

fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

async fn backend(args: BackendArgs) -> ExitCode {
    let backend = match Backend::start(args.name, args.listen).await {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("levee-testkit: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = backend.set_mode(args.mode).await {
        eprintln!("levee-testkit: cannot enter mode {}: {error}", args.mode);
        return ExitCode::FAILURE;
    }
    // Scripts wait for this line before they start sending.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", backend.addr());
    let _ = stdout.flush();
    wait_for_signal().await;
    backend.shutdown().await;
    ExitCode::SUCCESS
}

async fn load(args: LoadArgs) -> ExitCode {
    let spec = LoadSpec {
        url: args.url,
        method: args.method,
        concurrency: args.concurrency,
        duration: args.duration,
        max_requests: args.max_requests,
        deadline: args.deadline,
        body: args.body.map(Bytes::from),
    };
    match load::try_run(spec).await {
        Ok(report) => {
            let text = if args.json {
                format!("{}\n", report.to_json())
            } else {
                report.to_string()
            };
            // Not `print!`: a closed pipe (`| head`) must not panic.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("levee-testkit: {error}");
            ExitCode::from(2)
        }
    }
}

/// Returns at SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
