//! Idle keep-alive clients against a real backend: every connection does one
//! exchange and then stays open, and a server that closes them is noticed.

mod common;

use std::time::Duration;

use common::*;
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::idle::{self, IdleSpec};
use levee_testkit::load::{ErrorKind, LoadSpecError};

fn spec(backend: &Backend, connections: usize) -> IdleSpec {
    let mut spec = IdleSpec::new(format!("http://{}/", backend.addr()).parse().unwrap());
    spec.connections = connections;
    spec
}

/// Polls `condition` every 10 ms until it holds (the test bound stops a
/// regression).
async fn eventually(mut condition: impl FnMut() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connections_stay_open_after_one_request_each() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let held = idle::open(spec(&backend, 50)).await.unwrap();
        assert_eq!(held.opened(), 50);
        assert_eq!(held.failed(), 0);
        assert_eq!(backend.connections_accepted(), 50);
        assert_eq!(backend.requests_received(), 50);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(held.still_open(), 50);
        // Nothing more is sent while they are held.
        assert_eq!(backend.requests_received(), 50);
        held.close().await;
    })
    .await;
}

#[tokio::test]
async fn connections_the_server_closes_are_counted() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let held = idle::open(spec(&backend, 10)).await.unwrap();
        assert_eq!(held.opened(), 10);
        // A crash drops every open connection.
        backend.set_mode(Mode::Crashed).await.unwrap();
        eventually(|| held.closed_by_server() == 10).await;
        assert_eq!(held.still_open(), 0);
    })
    .await;
}

#[tokio::test]
async fn failures_are_counted_by_kind() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        backend.set_mode(Mode::Failing).await.unwrap();
        let held = idle::open(spec(&backend, 3)).await.unwrap();
        assert_eq!(held.opened(), 0);
        assert_eq!(held.errors().get(&ErrorKind::Status5xx), Some(&3));

        backend.set_mode(Mode::Hung).await.unwrap();
        let mut hung = spec(&backend, 2);
        hung.deadline = Duration::from_millis(100);
        let held = idle::open(hung).await.unwrap();
        assert_eq!(held.errors().get(&ErrorKind::Deadline), Some(&2));

        backend.set_mode(Mode::Crashed).await.unwrap();
        let held = idle::open(spec(&backend, 2)).await.unwrap();
        assert_eq!(held.errors().get(&ErrorKind::Connect), Some(&2));

        let zero = spec(&backend, 0);
        assert!(matches!(
            idle::open(zero).await,
            Err(LoadSpecError::ZeroConcurrency)
        ));
    })
    .await;
}
