//! `levee check`: ask a running levee's `GET /ready` and turn the answer
//! into an exit code a container runtime or orchestrator understands.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

/// Ready (or degraded: still serving).
const EXIT_READY: u8 = 0;
/// Answered, not ready: starting, draining or impaired.
const EXIT_NOT_READY: u8 = 1;
/// No answer: not running, wrong address, hung.
const EXIT_UNREACHABLE: u8 = 2;
/// Largest `/ready` document read.
const MAX_BODY: usize = 256 * 1024;

/// Run the check against the admin listener at `admin` (`host:port`).
pub fn run(admin: &str, timeout: Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("levee check: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let answer = runtime.block_on(async { tokio::time::timeout(timeout, fetch(admin)).await });
    let (status, body) = match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => {
            println!("unreachable: levee admin at {admin}: {error}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
        Err(_) => {
            println!("unreachable: levee admin at {admin} did not answer within {timeout:?}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let document: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let state = document["state"].as_str().unwrap_or("unknown");
    match status {
        200 => {
            println!("ready ({state})");
            for failing in document["failing"].as_array().into_iter().flatten() {
                println!(
                    "  degraded: {}: {}",
                    failing["criterion"].as_str().unwrap_or("?"),
                    failing["reason"].as_str().unwrap_or("?")
                );
            }
            ExitCode::from(EXIT_READY)
        }
        503 => {
            println!("not ready ({state})");
            for reason in document["reasons"].as_array().into_iter().flatten() {
                println!("  {}", reason.as_str().unwrap_or("?"));
            }
            ExitCode::from(EXIT_NOT_READY)
        }
        other => {
            println!(
                "unreachable: {admin}/ready answered status {other}: is this a levee admin port?"
            );
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

async fn fetch(admin: &str) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|error| error.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/ready")
        .header(hyper::header::HOST, admin)
        .header(hyper::header::USER_AGENT, "levee-check")
        .body(Empty::<Bytes>::new())
        .map_err(|error| error.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok((status, body))
}
