//! Each probe against real servers (started by the testkit) and against
//! the lies it exists to catch.

use std::time::Duration;

use levee_core::health::{CheckFailure, CheckResult};
use levee_probe::{ProbeError, ProbeKind, ProbeTarget, run};
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::dependency::{FakeMemcached, RealServer};

const TIMEOUT: Duration = Duration::from_secs(2);

fn target(kind: ProbeKind, address: std::net::SocketAddr) -> ProbeTarget {
    ProbeTarget {
        kind,
        address: address.to_string(),
    }
}

#[tokio::test]
async fn memcached_and_redis_probes_pass_against_real_servers() {
    let memcached = RealServer::memcached().await;
    let redis = RealServer::redis().await;
    for probe in [
        target(ProbeKind::Memcached, memcached.address()),
        target(ProbeKind::Redis, redis.address()),
    ] {
        let outcome = run(&probe, "test", TIMEOUT).await;
        assert!(outcome.result.passed(), "{probe}: {:?}", outcome.error);
    }
}

#[tokio::test]
async fn a_memcached_that_drops_writes_fails_with_a_miss() {
    let fake = FakeMemcached::start().await.expect("fake");
    let outcome = run(
        &target(ProbeKind::Memcached, fake.address()),
        "test",
        TIMEOUT,
    )
    .await;
    assert_eq!(outcome.result, CheckResult::Failed(CheckFailure::ReadBack));
    let error = outcome.error.expect("an error");
    assert!(
        matches!(error, ProbeError::Miss { ref key } if key.starts_with("levee-probe:test:")),
        "{error}"
    );
}

#[tokio::test]
async fn a_silent_server_fails_on_the_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    let _keep = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    for kind in [
        ProbeKind::Redis,
        ProbeKind::Memcached,
        ProbeKind::Http { path: "/".into() },
    ] {
        let outcome = run(&target(kind, address), "test", Duration::from_millis(200)).await;
        assert_eq!(outcome.result, CheckResult::Failed(CheckFailure::Timeout));
    }
}

#[tokio::test]
async fn http_probes_want_a_2xx() {
    let backend = Backend::start("b", "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("backend");
    let probe = target(
        ProbeKind::Http {
            path: "/healthz".into(),
        },
        backend.addr(),
    );
    assert!(run(&probe, "t", TIMEOUT).await.result.passed());
    backend.set_mode(Mode::Failing).await.expect("failing");
    let outcome = run(&probe, "t", TIMEOUT).await;
    assert!(
        matches!(
            outcome.result,
            CheckResult::Failed(CheckFailure::UnexpectedStatus(500..=599))
        ),
        "{:?}",
        outcome.result
    );
    let tcp = target(ProbeKind::Tcp, backend.addr());
    assert!(run(&tcp, "t", TIMEOUT).await.result.passed());
}

#[tokio::test]
async fn an_http_probe_whose_body_breaks_off_fails() {
    let backend = Backend::start("b", "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("backend");
    backend
        .set_mode(Mode::PartialThenReset { bytes: 16 })
        .await
        .expect("partial reset");
    let probe = target(ProbeKind::Http { path: "/".into() }, backend.addr());
    let outcome = run(&probe, "t", TIMEOUT).await;
    assert_eq!(
        outcome.result,
        CheckResult::Failed(CheckFailure::BodyInterrupted),
        "{:?}",
        outcome.error
    );
    let error = outcome.error.expect("an error").to_string();
    assert!(error.contains("broke off after 16 bytes"), "{error}");
    // A body far longer than what is read passes.
    backend.set_mode(Mode::Healthy).await.expect("healthy");
    let big = target(
        ProbeKind::Http {
            path: "/bytes?n=1048576".into(),
        },
        backend.addr(),
    );
    let outcome = run(&big, "t", TIMEOUT).await;
    assert!(outcome.result.passed(), "{:?}", outcome.error);
}
