//! Issue 4's load acceptance: under steady GET load from 30 clients, a node
//! that crashes or hangs costs no client a failed request.
//!
//! The load generator counts a request not finished within 5 s as an error
//! (wrk would silently drop it).

mod common;

use std::time::Duration;

use common::*;
use levee_core::HealthCheckParams;
use levee_proxy::config::{
    BalancePolicy, Config, HealthCheckKind, HealthSettings, HttpCheckSettings,
};
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::load::{LoadReport, LoadSpec, run};

const CLIENTS: usize = 30;
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// The defaults (retries, hedging, passive outlier detection) plus HTTP checks
/// every 500 ms, as in the HAProxy setup the issue compares with.
fn failover_config(endpoints: Vec<std::net::SocketAddr>) -> Config {
    let mut config = config(endpoints, BalancePolicy::P2cEwma);
    config.clusters[0].health = Some(HealthSettings {
        check: HealthCheckKind::Http(HttpCheckSettings::new("/healthz")),
        params: HealthCheckParams::new(
            2,
            2,
            Duration::from_millis(500),
            Duration::from_millis(500),
            Duration::from_millis(250),
            0.1,
        )
        .expect("params"),
    });
    config
}

async fn load(addr: std::net::SocketAddr, duration: Duration) -> LoadReport {
    let mut spec = LoadSpec::new(format!("http://{addr}/").parse().expect("url"));
    spec.concurrency = CLIENTS;
    spec.duration = Some(duration);
    spec.deadline = CLIENT_DEADLINE;
    run(spec).await
}

async fn three_backends() -> (
    Vec<Backend>,
    levee_proxy::RunningGateway,
    std::net::SocketAddr,
) {
    let backends = backends(3).await;
    let addrs = backends.iter().map(Backend::addr).collect();
    let (gateway, addr) = start(failover_config(addrs)).await;
    // Let the first checks pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (backends, gateway, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_one_of_three_nodes_under_load_costs_no_client_errors() {
    let (backends, gateway, addr) = three_backends().await;
    let during = tokio::spawn(load(addr, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    backends[0].set_mode(Mode::Crashed).await.expect("crash");
    let report = during.await.expect("load");
    println!("crash of 1 of 3 under load:\n{report}");
    assert_eq!(report.error_count(), 0, "{report}");
    assert_eq!(report.statuses.get(&200), Some(&report.sent), "{report}");
    assert!(report.successes > 1000, "{report}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hung_for_8s_under_load_costs_no_errors_and_little_goodput() {
    let (backends, gateway, addr) = three_backends().await;
    let baseline = load(addr, Duration::from_secs(4)).await;
    assert_eq!(baseline.error_count(), 0, "{baseline}");

    let during = tokio::spawn(load(addr, Duration::from_secs(8)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    backends[1].set_mode(Mode::Hung).await.expect("hang");
    let fault = during.await.expect("load");
    backends[1].set_mode(Mode::Healthy).await.expect("heal");

    let goodput = |report: &LoadReport| report.successes as f64 / report.elapsed.as_secs_f64();
    let ratio = goodput(&fault) / goodput(&baseline);
    println!(
        "hang of 1 of 3 for 8 s under load: goodput {:.0}/s vs {:.0}/s before ({:.0}%), slowest success {:?} (before: {:?})\nbefore:\n{baseline}\nduring:\n{fault}",
        goodput(&fault),
        goodput(&baseline),
        ratio * 100.0,
        fault.successes_latency.max,
        baseline.successes_latency.max,
    );
    assert_eq!(fault.error_count(), 0, "{fault}");
    assert!(
        fault.successes_latency.max <= Duration::from_millis(200),
        "slowest success {:?}",
        fault.successes_latency.max
    );
    assert!(ratio >= 0.85, "goodput kept: {:.0}%", ratio * 100.0);
    gateway.shutdown().await;
}
