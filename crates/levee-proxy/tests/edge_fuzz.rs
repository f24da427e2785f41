//! Property tests of the HTTP edge: whatever bytes a client sends as a
//! request head, a chunked body or header values, levee answers with a
//! status that says what was wrong (or closes the connection), never
//! panics, never answers 500, never hangs, and goes on serving everyone
//! else. A bounded number of cases runs with the suite.
//!
//! One test in this file: it counts panics with a process-wide hook.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Send `bytes` on a fresh connection and read what comes back: the status
/// of the first response, or `None` if levee closed without one. Every
/// wait levee may do (a head or a body that never completes) is bounded by
/// its timeouts, set to 1 s here.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Option<u16>, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // The peer may close before everything is written: that is an answer.
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    answered.map_err(|_| {
        format!(
            "no answer and no close within 5 s for {:?}",
            String::from_utf8_lossy(bytes)
        )
    })?;
    let text = String::from_utf8_lossy(&received);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok()))
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("GET".to_owned()),
        4 => Just("POST".to_owned()),
        2 => Just("PUT".to_owned()),
        1 => Just("CONNECT".to_owned()),
        1 => Just("PRI".to_owned()),
        1 => "[A-Za-z!#$%&'*+.^_`|~-]{1,12}",
        1 => "[\\x00-\\xff]{0,8}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("/".to_owned()),
        1 => Just("*".to_owned()),
        1 => Just("http://example.com/x?y=1".to_owned()),
        1 => Just("example.com:443".to_owned()),
        1 => "/[ -~]{0,40}",
        1 => "[\\x00-\\xff]{0,40}",
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        1 => Just("host".to_owned()),
        4 => Just("content-length".to_owned()),
        4 => Just("transfer-encoding".to_owned()),
        1 => Just("connection".to_owned()),
        1 => Just("expect".to_owned()),
        1 => Just("upgrade".to_owned()),
        1 => Just("idempotency-key".to_owned()),
        1 => "[A-Za-z-]{1,16}",
        1 => "[\\x00-\\xff]{0,8}",
    ];
    let value = prop_oneof![
        4 => Just("chunked".to_owned()),
        1 => Just("chunked, gzip".to_owned()),
        1 => Just("gzip, chunked".to_owned()),
        1 => Just("close".to_owned()),
        1 => Just("100-continue".to_owned()),
        1 => Just("websocket".to_owned()),
        4 => "[0-9]{1,3}",
        1 => "[0-9]{4,20}",
        1 => "-[0-9]{1,3}",
        1 => "[ -~]{0,40}",
        1 => "[\\x00-\\xff]{0,40}",
    ];
    (name, value)
}

fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        // Well-formed.
        1 => "[a-z]{0,20}".prop_map(|data| format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()),
        // Lies about its size, odd extensions, garbage.
        1 => ("[0-9a-fA-FxX;= -]{0,12}", "[\\x00-\\xff]{0,20}")
            .prop_map(|(size, data)| format!("{size}\r\n{data}\r\n").into_bytes()),
    ];
    (prop::collection::vec(chunk, 0..4), prop::bool::ANY).prop_map(|(chunks, end)| {
        let mut body: Vec<u8> = chunks.concat();
        if end {
            body.extend_from_slice(b"0\r\n\r\n");
        }
        body
    })
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        token(),
        target(),
        prop_oneof![8 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0"), 1 => Just("HTTP/2.0"), 1 => Just("HTTP/9")],
        prop::collection::vec(header(), 0..4),
        prop::bool::ANY,
        chunked_body(),
    )
        .prop_map(|(method, target, version, headers, with_host, body)| {
            let mut head = format!("{method} {target} {version}\r\n");
            if with_host {
                head.push_str("host: example\r\n");
            }
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            bytes
        })
}

#[test]
fn no_request_a_client_can_send_breaks_levee() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (gateway, addr, _nodes) = runtime.block_on(async {
        let nodes = backends(2).await;
        let mut config = config(
            nodes.iter().map(|b| b.addr()).collect(),
            levee_proxy::config::BalancePolicy::RoundRobin,
        );
        config.listeners[0].header_read_timeout = Duration::from_secs(1);
        config.clusters[0].body_idle_timeout = Duration::from_secs(1);
        let (gateway, addr) = start(config).await;
        (gateway, addr, nodes)
    });
    let client = client();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let seen = parking_lot::Mutex::new(Vec::new());
    let result = runner.run(&request(), |bytes| {
        let status = runtime
            .block_on(exchange(addr, &bytes))
            .map_err(TestCaseError::fail)?;
        seen.lock().push(status);
        if let Some(status) = status {
            prop_assert!((100..600).contains(&status));
            prop_assert_ne!(
                status,
                500,
                "levee failed on {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let healthy = runtime.block_on(get(&client, addr, "/")).status;
        prop_assert_eq!(
            healthy,
            200,
            "levee stopped serving after {:?}",
            String::from_utf8_lossy(&bytes)
        );
        prop_assert_eq!(PANICS.load(Ordering::Relaxed), 0);
        Ok(())
    });
    runtime.block_on(gateway.shutdown());
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let mut statuses = seen.into_inner();
    statuses.sort_unstable();
    statuses.dedup();
    eprintln!("answers seen: {statuses:?}");
}
