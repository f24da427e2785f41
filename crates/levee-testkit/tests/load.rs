//! The load generator against real backends: it counts what a client would
//! notice.

mod common;

use std::time::Duration;

use common::*;
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::load::{self, ErrorKind, LoadSpec, LoadSpecError};

fn spec(backend: &Backend, path: &str) -> LoadSpec {
    LoadSpec::new(format!("http://{}{path}", backend.addr()).parse().unwrap())
}

#[tokio::test]
async fn healthy_backend_every_request_succeeds_over_kept_alive_connections() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut spec = spec(&backend, "/");
        spec.concurrency = 4;
        spec.max_requests = Some(400);
        let report = load::run(spec).await;
        assert_eq!(report.sent, 400, "{report}");
        assert_eq!(report.successes, 400, "{report}");
        assert_eq!(report.error_count(), 0, "{report}");
        assert_eq!(report.statuses.get(&200), Some(&400));
        assert_eq!(report.latency.count, 400);
        assert_eq!(report.successes_latency.count, 400);
        assert!(report.latency.p50 <= report.latency.p99);
        assert!(report.latency.p99 <= report.latency.max);
        assert!(report.requests_per_second() > 0.0);
        assert_eq!(backend.requests_received(), 400);
        assert_eq!(backend.connections_accepted(), 4);
    })
    .await;
}

#[tokio::test]
async fn duration_limits_the_run() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut spec = spec(&backend, "/");
        spec.concurrency = 2;
        spec.duration = Some(Duration::from_millis(200));
        let report = load::run(spec).await;
        assert!(report.sent > 0);
        assert_eq!(report.successes, report.sent, "{report}");
        assert!(report.elapsed >= Duration::from_millis(200));
        assert!(report.elapsed < Duration::from_secs(2));
    })
    .await;
}

#[tokio::test]
async fn hung_backend_every_request_misses_its_deadline() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::Hung).await.unwrap();
        let mut spec = spec(&backend, "/");
        spec.concurrency = 2;
        spec.max_requests = Some(4);
        spec.deadline = Duration::from_millis(100);
        let report = load::run(spec).await;
        assert_eq!(report.sent, 4);
        assert_eq!(report.successes, 0);
        assert_eq!(
            report.errors.get(&ErrorKind::Deadline),
            Some(&4),
            "{report}"
        );
        assert_eq!(report.error_count(), 4);
        assert!(report.latency.p50 >= Duration::from_millis(100));
        assert_eq!(report.successes_latency.count, 0);
    })
    .await;
}

#[tokio::test]
async fn failure_modes_are_classified() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let cases = [
            (Mode::Failing, ErrorKind::Status5xx),
            (Mode::ResetAfterRequest, ErrorKind::Reset),
            (Mode::PartialThenReset { bytes: 10 }, ErrorKind::Reset),
            (Mode::Crashed, ErrorKind::Connect),
        ];
        for (mode, kind) in cases {
            backend.set_mode(mode).await.unwrap();
            let mut spec = spec(&backend, "/");
            spec.max_requests = Some(3);
            let report = load::run(spec).await;
            assert_eq!(report.errors.get(&kind), Some(&3), "{mode}: {report}");
        }
        backend.set_mode(Mode::Healthy).await.unwrap();
        let mut spec = spec(&backend, "/status/404");
        spec.max_requests = Some(3);
        let report = load::run(spec).await;
        assert_eq!(
            report.errors.get(&ErrorKind::Status4xx),
            Some(&3),
            "{report}"
        );
        assert_eq!(report.statuses.get(&404), Some(&3));
    })
    .await;
}

#[tokio::test]
async fn post_bodies_are_sent() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut spec = spec(&backend, "/echo");
        spec.method = http::Method::POST;
        spec.body = Some(bytes::Bytes::from_static(b"payload"));
        spec.max_requests = Some(5);
        let report = load::run(spec).await;
        assert_eq!(report.successes, 5, "{report}");
        let headers = backend.last_request_headers().unwrap();
        assert_eq!(headers["content-length"], "7");
    })
    .await;
}

#[tokio::test]
async fn invalid_specs_are_rejected() {
    bounded(async {
        let https = LoadSpec::new("https://127.0.0.1:1/".parse().unwrap());
        assert!(matches!(
            load::try_run(https.clone()).await,
            Err(LoadSpecError::UnsupportedScheme { .. })
        ));
        let report = load::run(https).await;
        assert_eq!(report.sent, 0);
        assert_eq!(report.errors.get(&ErrorKind::Other), Some(&1));

        let mut zero = LoadSpec::new("http://127.0.0.1:1/".parse().unwrap());
        zero.concurrency = 0;
        assert!(matches!(
            load::try_run(zero).await,
            Err(LoadSpecError::ZeroConcurrency)
        ));
        let relative = LoadSpec::new("/just/a/path".parse().unwrap());
        assert!(matches!(
            load::try_run(relative).await,
            Err(LoadSpecError::MissingHost { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn extra_headers_are_sent_with_every_request() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut spec = spec(&backend, "/echo");
        spec.method = http::Method::POST;
        spec.body = Some(bytes::Bytes::from_static(b"{}"));
        spec.headers
            .insert("idempotency-key", "soak-1".parse().unwrap());
        spec.max_requests = Some(3);
        let report = load::run(spec).await;
        assert_eq!(report.successes, 3, "{report}");
        let headers = backend.last_request_headers().unwrap();
        assert_eq!(headers["idempotency-key"], "soak-1");
        assert_eq!(headers["host"], backend.addr().to_string());
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_paces_the_requests() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let mut spec = spec(&backend, "/");
        spec.concurrency = 4;
        spec.rate = Some(40.0);
        spec.duration = Some(Duration::from_millis(500));
        let report = load::run(spec).await;
        // 40/s for 0.5 s: 20 requests, 5 per connection; an unpaced run
        // would send thousands. A busy machine can only make it fewer.
        assert!((4..=22).contains(&report.sent), "{report}");
        assert_eq!(report.successes, report.sent, "{report}");
        assert_eq!(backend.connections_accepted(), 4);

        let mut bad = LoadSpec::new(format!("http://{}/", backend.addr()).parse().unwrap());
        bad.rate = Some(0.0);
        assert!(matches!(
            load::try_run(bad).await,
            Err(LoadSpecError::BadRate)
        ));
    })
    .await;
}
