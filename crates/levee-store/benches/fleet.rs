//! A fleet of N simulated levee instances (Redis stores in one process)
//! against one local `redis-server`: how fast a verdict reaches every
//! instance, what each instance costs the store at steady state, and the
//! store's CPU.
//!
//! ```sh
//! cargo bench -p levee-store --bench fleet            # N = 2, 10, 100
//! FLEET_SIZES="2 10" FLEET_BREAKERS=1000 cargo bench -p levee-store --bench fleet
//! ```
//!
//! Each instance reports `FLEET_BREAKERS` breakers (default 100; every
//! instance reports each, as with shared endpoint health). Steady state is
//! measured over 10 s after a settling pause: Redis's own count of
//! commands processed (`INFO stats`) per instance per second, and its CPU
//! (`INFO cpu`). Propagation: 20 times, one instance reports a breaker open
//! and the time until every other instance sees the fleet open it is
//! recorded, per instance.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall-clock timing of a benchmark

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use levee_store::{FleetRules, LocalReport, RedisStore, RedisStoreConfig, StateStore, StoreHealth};
use levee_testkit::dependency::RealServer;

const STEADY: Duration = Duration::from_secs(10);
/// Before measuring: every instance has read the others' reports. Longer
/// for larger fleets, whose instances all share this machine's cores.
const SETTLE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("FLEET_SIZES")
        .unwrap_or_else(|_| "2 10 100".to_owned())
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let breakers: usize = std::env::var("FLEET_BREAKERS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(100);
    let server = RealServer::redis().await;
    let client = redis::Client::open(format!("redis://{}/", server.address())).expect("client");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    println!("fleet: {breakers} breakers reported by every instance, one redis-server");
    println!("| instances | propagation p50 | p99 | max | store ops/s per instance | redis CPU |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let row = run(n, breakers, &server, &mut admin).await;
        println!(
            "| {n} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} | {:.1} % |",
            row.p50_ms, row.p99_ms, row.max_ms, row.ops_per_instance, row.redis_cpu_percent
        );
    }
}

struct Row {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ops_per_instance: f64,
    redis_cpu_percent: f64,
}

async fn run(
    n: usize,
    breakers: usize,
    server: &RealServer,
    admin: &mut redis::aio::MultiplexedConnection,
) -> Row {
    let namespace = format!("bench{n}");
    let mut stores = Vec::with_capacity(n);
    for i in 0..n {
        let config = RedisStoreConfig::new(
            format!("redis://{}/", server.address()),
            &namespace,
            format!("instance-{i}"),
        )
        .with_rules(FleetRules::new());
        let store = Arc::new(RedisStore::start(config).expect("store"));
        let now = SystemTime::now();
        for b in 0..breakers {
            store.report(
                &format!("endpoint-{b}"),
                LocalReport::closed("ok", 0, 10, now),
            );
        }
        stores.push(store);
    }
    for store in &stores {
        let mut health = store.health();
        tokio::time::timeout(
            Duration::from_secs(30),
            health.wait_for(|health| *health == StoreHealth::Connected),
        )
        .await
        .expect("connected within 30 s")
        .expect("store alive");
    }
    tokio::time::sleep(SETTLE + Duration::from_millis(50 * n as u64)).await;

    let (commands_before, cpu_before) = redis_counters(admin).await;
    let stats_before = command_stats(admin).await;
    let started = Instant::now();
    tokio::time::sleep(STEADY).await;
    let (commands_after, cpu_after) = redis_counters(admin).await;
    if std::env::var("FLEET_COMMANDS").is_ok() {
        let stats_after = command_stats(admin).await;
        let mut delta: Vec<(String, u64)> = stats_after
            .into_iter()
            .map(|(name, calls)| {
                let before = stats_before.get(&name).copied().unwrap_or(0);
                (name, calls - before)
            })
            .filter(|(_, calls)| *calls > 0)
            .collect();
        delta.sort_by_key(|(_, calls)| std::cmp::Reverse(*calls));
        println!("{n} instances, commands in {STEADY:?}: {delta:?}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The two INFO commands of the measurement are not the fleet's.
    let commands = commands_after.saturating_sub(commands_before + 1) as f64;
    let ops_per_instance = commands / elapsed / n as f64;
    let redis_cpu_percent = (cpu_after - cpu_before) / elapsed * 100.0;

    let mut delays_ms = Vec::with_capacity(ROUNDS * (n - 1));
    for round in 0..ROUNDS {
        let reporter = round % n;
        let name = format!("probe-{round}");
        let mut watchers = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            if i == reporter {
                continue;
            }
            let mut fleet = store.subscribe();
            let name = name.clone();
            watchers.push(tokio::spawn(async move {
                let seen =
                    fleet.wait_for(|map| map.get(&name).is_some_and(|state| state.is_open()));
                tokio::time::timeout(Duration::from_secs(10), seen)
                    .await
                    .map(|_| Instant::now())
                    .ok()
            }));
        }
        let now = SystemTime::now();
        let sent = Instant::now();
        stores[reporter].report(
            &name,
            LocalReport::open(now + Duration::from_secs(60), "bench", now),
        );
        for watcher in watchers {
            match watcher.await.expect("watcher") {
                Some(seen) => delays_ms.push((seen - sent).as_secs_f64() * 1000.0),
                None => delays_ms.push(f64::INFINITY),
            }
        }
        let now = SystemTime::now();
        stores[reporter].report(&name, LocalReport::closed("ok", 0, 0, now));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delays_ms.sort_by(f64::total_cmp);
    let at = |q: f64| delays_ms[((delays_ms.len() - 1) as f64 * q).round() as usize];
    let row = Row {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        ops_per_instance,
        redis_cpu_percent,
    };
    drop(stores);
    // The next fleet starts with an empty server.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(admin)
        .await
        .expect("flush");
    row
}

/// Commands processed and CPU seconds (user + system) of the server.
async fn redis_counters(admin: &mut redis::aio::MultiplexedConnection) -> (u64, f64) {
    let info: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(admin)
        .await
        .expect("INFO");
    let fields: HashMap<&str, &str> = info
        .lines()
        .filter_map(|line| line.trim().split_once(':'))
        .collect();
    let commands = fields
        .get("total_commands_processed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpu = ["used_cpu_user", "used_cpu_sys"]
        .iter()
        .filter_map(|key| fields.get(key).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    (commands, cpu)
}

/// Calls per command (`INFO commandstats`), for `FLEET_COMMANDS=1`.
async fn command_stats(admin: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}
