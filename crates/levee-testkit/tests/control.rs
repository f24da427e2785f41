//! The backend's control port: a script switches modes over HTTP, and the
//! traffic port behaves accordingly.

mod common;

use std::net::SocketAddr;

use common::*;
use levee_testkit::backend::control::ControlPort;
use levee_testkit::backend::{Backend, Mode};
use tokio::net::TcpStream;

/// One request to the control port, on a fresh connection.
async fn call(control: SocketAddr, method: &str, path: &str, body: &'static str) -> (u16, String) {
    let mut sender = connect(control).await;
    let (status, _, body) = send(&mut sender, request(method, path, body))
        .await
        .unwrap();
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn modes_are_switched_and_reported() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let control = ControlPort::start(backend.clone(), loopback())
            .await
            .unwrap();
        let port = control.addr();
        assert_eq!(
            call(port, "GET", "/mode", "").await,
            (200, "healthy\n".into())
        );

        assert_eq!(
            call(port, "PUT", "/mode", "failing").await,
            (200, "failing\n".into())
        );
        assert_eq!(backend.mode(), Mode::Failing);
        let (status, _, _) = get(backend.addr(), "/").await;
        assert_eq!(status, 503);

        // Crashed: the traffic port refuses, the control port still answers.
        assert_eq!(call(port, "PUT", "/mode", "crashed").await.0, 200);
        assert!(TcpStream::connect(backend.addr()).await.is_err());
        assert_eq!(
            call(port, "POST", "/mode", "slow:10ms").await,
            (200, "slow:10ms\n".into())
        );
        let (status, _, _) = get(backend.addr(), "/").await;
        assert_eq!(status, 200);

        let (status, stats) = call(port, "GET", "/stats", "").await;
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(stats["mode"], "slow:10ms");
        assert_eq!(stats["requests"], 2);
    })
    .await;
}

#[tokio::test]
async fn a_bad_mode_is_refused_and_changes_nothing() {
    bounded(async {
        let backend = Backend::start("b1", loopback()).await.unwrap();
        let control = ControlPort::start(backend.clone(), loopback())
            .await
            .unwrap();
        let (status, message) = call(control.addr(), "PUT", "/mode", "sleepy").await;
        assert_eq!(status, 400);
        assert!(message.contains("`sleepy`"), "{message}");
        assert_eq!(backend.mode(), Mode::Healthy);
        assert_eq!(call(control.addr(), "GET", "/nope", "").await.0, 404);
    })
    .await;
}
