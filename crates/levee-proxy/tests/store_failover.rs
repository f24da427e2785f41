//! The shared store behind Redis Sentinel: two redis-servers (a master and
//! its replica) and three sentinels started here. The master is killed
//! under load; the sentinels promote the replica, every gateway follows it,
//! no client request fails, and the failover is reported.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use levee_proxy::RunningGateway;
use levee_proxy::config::{BalancePolicy, Config, OnUnreachable, StoreKind, StoreSettings};
use serde_json::Value;
use tokio::time::Instant;

/// A process that is killed when the test lets go of it.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn redis_server(args: &[String]) -> Process {
    let child = Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian: apt-get install redis-server; scripts/test.sh does this)");
    Process(child)
}

/// `redis-server` on `port` without persistence, replicating `master`.
fn data_server(port: u16, master: Option<u16>) -> Process {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    if let Some(master) = master {
        args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master.to_string(),
        ]);
    }
    redis_server(&args)
}

/// A sentinel on `port` watching the master on `master` as "levee",
/// quorum 2, quick to decide (its config file lives in `dir`).
fn sentinel(port: u16, master: u16, dir: &Path) -> Process {
    let config = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor levee 127.0.0.1 {master} 2\nsentinel down-after-milliseconds levee 400\nsentinel failover-timeout levee 3000\nsentinel parallel-syncs levee 1\n",
            dir.display()
        ),
    )
    .expect("sentinel config");
    redis_server(&[config.display().to_string(), "--sentinel".to_owned()])
}

async fn query<T: redis::FromRedisValue>(port: u16, command: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut connection = tokio::time::timeout(
        Duration::from_millis(500),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    tokio::time::timeout(
        Duration::from_millis(500),
        command.query_async(&mut connection),
    )
    .await
    .ok()?
    .ok()
}

fn gateway_config(backend: SocketAddr, sentinels: &[u16], instance: &str) -> Config {
    let mut config = config(vec![backend], BalancePolicy::RoundRobin);
    config.store = StoreSettings {
        kind: StoreKind::Redis,
        url: "redis://127.0.0.1:1/".to_owned(),
        namespace: "failover".to_owned(),
        instance_id: instance.to_owned(),
        on_unreachable: OnUnreachable::Local,
        sentinel: Some((
            sentinels
                .iter()
                .map(|port| format!("127.0.0.1:{port}"))
                .collect(),
            "levee".to_owned(),
        )),
    };
    config
}

async fn store_status(client: &TestClient, gateway: &RunningGateway) -> Value {
    let answer = get(client, gateway.admin_address(), "/status").await;
    let status: Value = serde_json::from_str(&answer.body).expect("status JSON");
    status["store"].clone()
}

async fn wait_store(
    client: &TestClient,
    gateway: &RunningGateway,
    within: Duration,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) {
    let give_up = Instant::now() + within;
    loop {
        let store = store_status(client, gateway).await;
        if accept(&store) {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "{what} within {within:?}: {store:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_costs_no_request_and_is_reported() {
    let dir = std::env::temp_dir().join(format!("levee-sentinel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (master_port, replica_port) = (free_port(), free_port());
    let mut master = Some(data_server(master_port, None));
    let _replica = data_server(replica_port, Some(master_port));
    let sentinel_ports = [free_port(), free_port(), free_port()];
    let _sentinels: Vec<Process> = sentinel_ports
        .iter()
        .map(|port| sentinel(*port, master_port, &dir))
        .collect();
    // The replica in sync, and the sentinels agreeing they can fail over.
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let info: Option<String> = query(replica_port, redis::cmd("INFO").arg("replication")).await;
        let synced = info.is_some_and(|info| info.contains("master_link_status:up"));
        // Each sentinel knows the replica and the two other sentinels (it
        // learns them from the master's INFO and hello messages).
        let mut ready = synced;
        for port in sentinel_ports {
            let replicas: Option<Vec<redis::Value>> =
                query(port, redis::cmd("SENTINEL").arg("REPLICAS").arg("levee")).await;
            let others: Option<Vec<redis::Value>> =
                query(port, redis::cmd("SENTINEL").arg("SENTINELS").arg("levee")).await;
            ready &= replicas.is_some_and(|r| r.len() == 1) && others.is_some_and(|o| o.len() == 2);
        }
        if ready {
            break;
        }
        assert!(Instant::now() < give_up, "sentinels ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let backends = backends(1).await;
    let client = client();
    let (a, a_web) = start(gateway_config(backends[0].addr(), &sentinel_ports, "gw-a")).await;
    let (b, b_web) = start(gateway_config(backends[0].addr(), &sentinel_ports, "gw-b")).await;
    let on_master = format!("127.0.0.1:{master_port}");
    for gateway in [&a, &b] {
        wait_store(
            &client,
            gateway,
            Duration::from_secs(10),
            "connected to the master",
            |s| s["health"] == "connected" && s["server"] == on_master.as_str(),
        )
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for web in [a_web, a_web, b_web, b_web] {
        let (stop, ok, errors) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&errors));
        load.push(tokio::spawn(async move {
            let client = common::client();
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && sent < 100_000 {
                sent += 1;
                let request = http::Request::get(format!("http://{web}/"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                match tokio::time::timeout(TEST_TIMEOUT, client.request(request)).await {
                    Ok(Ok(response)) if response.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The master dies.
    drop(master.take());
    let on_replica = format!("127.0.0.1:{replica_port}");
    for gateway in [&a, &b] {
        wait_store(
            &client,
            gateway,
            Duration::from_secs(20),
            "connected to the promoted replica",
            |s| {
                s["health"] == "connected"
                    && s["server"] == on_replica.as_str()
                    && s["failovers"] == 1
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load");
    }
    let (ok, errors) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    println!("sentinel failover: {ok} requests answered, {errors} errors");
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(errors, 0, "no client request failed during the failover");
    let events = get(&client, a.admin_address(), "/events").await.body;
    assert!(
        events.contains("failed over: reachable again on"),
        "{events}"
    );
    let metrics = get(&client, a.admin_address(), "/metrics").await.body;
    assert!(
        metrics.contains("levee_store_failovers_total 1"),
        "{metrics}"
    );
    for gateway in [a, b] {
        gateway.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
