//! `levee-testkit`: run a fault-injecting backend, generate load, or hold
//! idle connections.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{HeaderName, HeaderValue};
use levee_testkit::backend::control::ControlPort;
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::idle::{self, IdleSpec};
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
    /// Open many keep-alive connections, one GET on each, then hold them
    /// idle (for memory-per-connection measurements).
    Idle(IdleArgs),
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
    /// Also serve a control API on this address (GET /mode, PUT /mode with
    /// a mode as the body, GET /stats), to switch modes from a script.
    #[arg(long)]
    control: Option<SocketAddr>,
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
    /// Extra request header `NAME: VALUE`, sent with every request
    /// (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// At most this many requests per second in all, spread evenly over the
    /// connections (default: as fast as the answers come).
    #[arg(long)]
    rate: Option<f64>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct IdleArgs {
    /// Target URL, `http://HOST:PORT/path`, fetched once per connection.
    #[arg(long)]
    url: http::Uri,
    /// Connections to open.
    #[arg(short = 'c', long, default_value_t = 1000)]
    connections: usize,
    /// Hold them this long after they are open (SIGINT/SIGTERM ends it
    /// sooner), then close them all.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Time per connection to connect and get the first answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not `NAME: VALUE`"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| format!("bad header name: {e}"))?;
    let value =
        HeaderValue::try_from(value.trim()).map_err(|e| format!("bad header value: {e}"))?;
    Ok((name, value))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Backend(args) => args.threads,
        Command::Load(args) => args.threads,
        // Opening thousands of connections is no work for more than one.
        Command::Idle(_) => Some(1),
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
            Command::Idle(args) => idle(args).await,
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
    let control = match args.control {
        Some(addr) => match ControlPort::start(backend.clone(), addr).await {
            Ok(control) => Some(control),
            Err(error) => {
                eprintln!("levee-testkit: cannot listen on {addr} (control): {error}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // Scripts wait for this line before they start sending.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", backend.addr());
    if let Some(control) = &control {
        let _ = writeln!(stdout, "control on {}", control.addr());
    }
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
        headers: args.headers.into_iter().collect(),
        rate: args.rate,
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

async fn idle(args: IdleArgs) -> ExitCode {
    // Thousands of sockets: take the whole descriptor allowance.
    if let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        if soft < hard {
            let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard);
        }
    }
    let mut spec = IdleSpec::new(args.url);
    spec.connections = args.connections;
    spec.deadline = args.deadline;
    let held = match idle::open(spec).await {
        Ok(held) => held,
        Err(error) => {
            eprintln!("levee-testkit: {error}");
            return ExitCode::from(2);
        }
    };
    let errors = held
        .errors()
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect::<Vec<_>>();
    // Scripts wait for this first line, then measure.
    if args.json {
        let errors: serde_json::Map<_, _> = held
            .errors()
            .iter()
            .map(|(kind, n)| (kind.as_str().to_owned(), (*n).into()))
            .collect();
        say(&serde_json::json!({
            "phase": "holding",
            "requested": args.connections,
            "opened": held.opened(),
            "failed": held.failed(),
            "errors": errors,
        })
        .to_string());
    } else {
        say(&format!(
            "holding {} of {} connections ({} failed{})",
            held.opened(),
            args.connections,
            held.failed(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join(", "))
            }
        ));
    }
    tokio::select! {
        _ = tokio::time::sleep(args.hold) => {}
        _ = wait_for_signal() => {}
    }
    let (opened, closed) = (held.opened(), held.closed_by_server());
    held.close().await;
    if args.json {
        say(
            &serde_json::json!({"phase": "done", "opened": opened, "closed_by_server": closed})
                .to_string(),
        );
    } else {
        say(&format!(
            "done: {closed} of {opened} were closed by the server while held"
        ));
    }
    ExitCode::SUCCESS
}

/// One line on stdout, flushed at once (a script is waiting for it); a
/// closed pipe is ignored.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
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
