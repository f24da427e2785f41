//! Overload benchmark (issue 7): one node that serves at most `C` requests at
//! once, 20 ms each (capacity `C / 20 ms`), offered 3× its capacity at a fixed
//! rate (open loop: clients do not slow down when levee does) for 10 s,
//! through levee with admission control on, on with a response cache in
//! front (the node's answers carry no freshness: nothing can be stored, so
//! the cache must cost nothing), then off. Prints one table.
//!
//! ```sh
//! cargo bench -p levee-proxy --bench overload
//! OVERLOAD_SECONDS=20 OVERLOAD_CAPACITY=16 cargo bench -p levee-proxy --bench overload
//! ```
//!
//! A request not answered within 2 s counts as timed out (a real client has
//! given up by then). Only 127.0.0.1 is used.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use levee_core::admission::{AdmissionParams, Priority};
use levee_proxy::config::{
    AdmissionSettings, BalancePolicy, CacheSettings, ClusterSettings, Config, EndpointAddress,
    ListenerSettings, RouteRetry, RouteSettings,
};
use levee_proxy::route::{PathPattern, RouteMatch};
use levee_testkit::backend::{Backend, Mode};
use parking_lot::Mutex;
use tokio::time::Instant;

const SERVICE_TIME: Duration = Duration::from_millis(20);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
const LOOPBACK: &str = "127.0.0.1:0";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// What one request came back with.
#[derive(Default)]
struct Tally {
    served: Vec<Duration>,
    shed: Vec<Duration>,
    timed_out: u64,
    other: u64,
}

impl Tally {
    /// Count one request that ended as `answer` after `took`.
    fn count(&mut self, answer: Answer, took: Duration) {
        match answer {
            Answer::Status(200) => self.served.push(took),
            Answer::Status(503) => self.shed.push(took),
            Answer::Status(_) | Answer::Failed => self.other += 1,
            Answer::TimedOut => self.timed_out += 1,
        }
    }
}

/// How one request of the bench ended.
enum Answer {
    /// Answered, the body read whole.
    Status(u16),
    /// The connection or the body failed.
    Failed,
    /// Not within `within`.
    TimedOut,
}

type BenchClient = Client<HttpConnector, Empty<Bytes>>;

/// A pooled HTTP/1.1 client for one load run.
fn bench_client(max_idle: usize) -> BenchClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build_http()
}

/// Send `request` and read its answer whole, within `within`; how it ended
/// and how long it took.
async fn send(
    client: &BenchClient,
    request: http::Request<Empty<Bytes>>,
    within: Duration,
) -> (Answer, Duration) {
    let sent = Instant::now();
    let answer = tokio::time::timeout(within, async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok::<u16, Box<dyn std::error::Error + Send + Sync>>(status)
    })
    .await;
    let answer = match answer {
        Ok(Ok(status)) => Answer::Status(status),
        Ok(Err(_)) => Answer::Failed,
        Err(_) => Answer::TimedOut,
    };
    (answer, sent.elapsed())
}

struct Run {
    name: &'static str,
    tally: Tally,
    seconds: f64,
}

fn percentile(samples: &mut [Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    Some(samples[index])
}

fn ms(duration: Option<Duration>) -> String {
    duration.map_or("-".to_owned(), |d| {
        format!("{:.1}", d.as_secs_f64() * 1000.0)
    })
}

fn config(
    backend: SocketAddr,
    admission: Option<AdmissionSettings>,
    cache: Option<CacheSettings>,
) -> Config {
    let mut cluster = ClusterSettings::new(
        "app",
        vec![EndpointAddress::new(
            backend.ip().to_string(),
            backend.port(),
        )],
    );
    cluster.balance = BalancePolicy::RoundRobin;
    cluster.request_timeout = Duration::from_secs(30);
    cluster.retry.per_try_timeout = Duration::from_secs(30);
    // One node: nothing to retry on or hedge to, and no ejection to hide
    // the overload.
    cluster.retry.hedge = None;
    cluster.outlier = None;
    cluster.admission = admission;
    cluster.cache = cache;
    let mut config = Config::default();
    config.admin.listen = LOOPBACK.parse().expect("address");
    config.listeners = vec![ListenerSettings::new(
        "web",
        LOOPBACK.parse().expect("address"),
        "app",
    )];
    config.clusters = vec![cluster];
    config
}

/// Offer `rate` requests per second for `duration` to `addr`.
async fn offer(addr: SocketAddr, rate: u64, duration: Duration) -> (Tally, f64) {
    let (tally, _, seconds) = offer_classes(addr, rate, duration, 0).await;
    (tally, seconds)
}

/// Offer `rate` requests per second for `duration` to `addr`, every
/// `critical_every`-th one (0: none) marked `x-priority: critical` and the
/// others `sheddable`; tallies of the sheddable and the critical ones.
async fn offer_classes(
    addr: SocketAddr,
    rate: u64,
    duration: Duration,
    critical_every: u64,
) -> (Tally, Tally, f64) {
    let client = bench_client(4096);
    let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let critical = Arc::new(Mutex::new(Tally::default()));
    let mut sent_count = 0u64;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        ticks.tick().await;
        sent_count += 1;
        let is_critical = critical_every > 0 && sent_count % critical_every == 0;
        let client = client.clone();
        let uri = uri.clone();
        let tally = Arc::clone(if is_critical { &critical } else { &tally });
        let class = match (critical_every, is_critical) {
            (0, _) => None,
            (_, true) => Some("critical"),
            (_, false) => Some("sheddable"),
        };
        tasks.spawn(async move {
            let mut request = http::Request::get(uri);
            if let Some(class) = class {
                request = request.header("x-priority", class);
            }
            let request = request.body(Empty::new()).expect("request");
            let (answer, took) = send(&client, request, CLIENT_TIMEOUT).await;
            tally.lock().count(answer, took);
        });
    }
    while tasks.join_next().await.is_some() {}
    let seconds = duration.as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock());
    let critical = std::mem::take(&mut *critical.lock());
    (tally, critical, seconds)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let seconds = env_or("OVERLOAD_SECONDS", 10);
    let capacity = env_or("OVERLOAD_CAPACITY", 8) as usize;
    let capacity_rps = capacity as f64 / SERVICE_TIME.as_secs_f64();
    let offered_rps = (capacity_rps * 3.0) as u64;
    let duration = Duration::from_secs(seconds);

    let backend = Backend::start("b1", LOOPBACK.parse().expect("address"))
        .await
        .expect("backend starts");
    backend.set_capacity(Some(capacity));
    backend
        .set_mode(Mode::Slow(SERVICE_TIME))
        .await
        .expect("slow mode");

    let admission = AdmissionSettings {
        // As many slots as the node has workers, a queue of a quarter of
        // that, and the default controlled delay.
        params: AdmissionParams::builder()
            .max_concurrency(capacity)
            .max_queue((capacity / 4).max(1))
            .build()
            .expect("admission params"),
        adaptive: None,
        priority_header: None,
    };
    let mut runs = Vec::new();
    for (name, admission, cache) in [
        ("admission on", Some(admission.clone()), None),
        (
            "admission on, cache on",
            Some(admission),
            Some(CacheSettings::default()),
        ),
        ("admission off", None, None),
    ] {
        let gateway = levee_proxy::start(config(backend.addr(), admission, cache))
            .await
            .expect("gateway starts");
        let addr = gateway.listener_address("web").expect("listener");
        eprintln!("overload: {name}: offering {offered_rps} req/s for {seconds} s");
        let (tally, seconds) = offer(addr, offered_rps, duration).await;
        gateway.shutdown().await;
        // Let the node drain what the last run left queued.
        tokio::time::sleep(Duration::from_secs(3)).await;
        runs.push(Run {
            name,
            tally,
            seconds,
        });
    }

    println!(
        "node capacity {capacity} concurrent x {} ms = {capacity_rps:.0} req/s; offered {offered_rps} req/s (3x) for {seconds} s; client gives up after {} s",
        SERVICE_TIME.as_millis(),
        CLIENT_TIMEOUT.as_secs()
    );
    println!();
    println!(
        "| run | served/s | goodput vs capacity | served p50 ms | served p99 ms | served max ms | shed (503) | shed p99 ms | timed out | other |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in &mut runs {
        let served_rps = run.tally.served.len() as f64 / run.seconds;
        println!(
            "| {} | {:.0} | {:.0}% | {} | {} | {} | {} | {} | {} | {} |",
            run.name,
            served_rps,
            served_rps / capacity_rps * 100.0,
            ms(percentile(&mut run.tally.served, 0.50)),
            ms(percentile(&mut run.tally.served, 0.99)),
            ms(percentile(&mut run.tally.served, 1.0)),
            run.tally.shed.len(),
            ms(percentile(&mut run.tally.shed, 0.99)),
            run.tally.timed_out,
            run.tally.other,
        );
    }
    priority_run(&backend, capacity, capacity_rps, offered_rps, duration).await;
    slow_spell_runs(&backend, capacity, capacity_rps).await;
    backend.shutdown().await;
    deadline_runs().await;
}

/// Callers with 100 ms deadlines against two nodes whose answers take 40 to
/// 120 ms (p50 80 ms), a 60 ms per-try timeout and retries: the upstream
/// attempts sent, and those wasted (sent, but no answer reached a caller in
/// time), with the deadline propagated (`deadline_header`) and without.
async fn deadline_runs() {
    const DEADLINE: Duration = Duration::from_millis(100);
    const RATE: u64 = 100;
    let seconds = env_or("OVERLOAD_SECONDS", 10);
    println!();
    println!(
        "two nodes answering in 40-120 ms (uniform, p50 80 ms); callers give up after {} ms; per_try_timeout 60 ms, 3 attempts; {RATE} req/s for {seconds} s",
        DEADLINE.as_millis()
    );
    println!();
    println!(
        "| run | requests | answered in time | upstream attempts | attempts per request | wasted attempts |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, propagate) in [("deadline propagated", true), ("no deadline", false)] {
        let nodes = [
            Backend::start("d1", LOOPBACK.parse().expect("address"))
                .await
                .expect("node"),
            Backend::start("d2", LOOPBACK.parse().expect("address"))
                .await
                .expect("node"),
        ];
        let mut config = config(nodes[0].addr(), None, None);
        let cluster = &mut config.clusters[0];
        cluster.endpoints.push(EndpointAddress::new(
            nodes[1].addr().ip().to_string(),
            nodes[1].addr().port(),
        ));
        cluster.retry.per_try_timeout = Duration::from_millis(60);
        // Latencies are kept with hedging on; a hedge never comes first.
        cluster.retry.hedge = Some(levee_proxy::config::HedgeSettings {
            floor: Duration::from_secs(5),
            ceiling: Duration::from_secs(5),
        });
        if propagate {
            cluster.deadline_header = Some(http::HeaderName::from_static("x-request-timeout-ms"));
        }
        let gateway = levee_proxy::start(config).await.expect("gateway starts");
        let addr = gateway.listener_address("web").expect("listener");
        let client = bench_client(1024);
        let in_time = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE as f64));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut requests = 0u64;
        // A warm-up second teaches levee the nodes' p50, uncounted.
        let warm_up = Duration::from_secs(1);
        while started.elapsed() < Duration::from_secs(seconds) + warm_up {
            ticks.tick().await;
            let counted = started.elapsed() >= warm_up;
            if counted && requests == 0 {
                for node in &nodes {
                    node.reset_counters();
                }
            }
            requests += u64::from(counted);
            let millis = 40 + rand::random::<u64>() % 81;
            let request = http::Request::get(format!("http://{addr}/slow?ms={millis}"))
                .header("x-request-timeout-ms", DEADLINE.as_millis().to_string())
                .body(Empty::new())
                .expect("request");
            let (client, in_time) = (client.clone(), Arc::clone(&in_time));
            tasks.spawn(async move {
                let (answer, _) = send(&client, request, DEADLINE).await;
                if counted && matches!(answer, Answer::Status(200)) {
                    in_time.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        // Attempts still running when their caller left reach the nodes too.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let attempts: u64 = nodes.iter().map(Backend::requests_received).sum();
        let answered = in_time.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "| {name} | {requests} | {answered} | {attempts} | {:.2} | {} |",
            attempts as f64 / requests.max(1) as f64,
            attempts.saturating_sub(answered),
        );
        gateway.shutdown().await;
        for node in nodes {
            node.shutdown().await;
        }
    }
}

/// Offer `rate` requests per second for `duration`, tallied by the phase
/// (split at `splits`, from the start) in which each was sent.
async fn offer_phased(
    addr: SocketAddr,
    rate: u64,
    duration: Duration,
    splits: [Duration; 2],
) -> [Tally; 3] {
    let client = bench_client(4096);
    let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
    let tallies: Arc<Mutex<[Tally; 3]>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        ticks.tick().await;
        let phase = splits
            .iter()
            .filter(|split| started.elapsed() >= **split)
            .count();
        let (client, uri, tallies) = (client.clone(), uri.clone(), Arc::clone(&tallies));
        tasks.spawn(async move {
            let request = http::Request::get(uri).body(Empty::new()).expect("request");
            let (answer, took) = send(&client, request, CLIENT_TIMEOUT).await;
            tallies.lock()[phase].count(answer, took);
        });
    }
    while tasks.join_next().await.is_some() {}
    std::mem::take(&mut *tallies.lock())
}

/// The node's service time doubles for 10 s, then recovers, under 90% of
/// its normal capacity: what the adaptive limit, the fixed limit and no
/// limit serve before, during and after.
async fn slow_spell_runs(backend: &Backend, capacity: usize, capacity_rps: f64) {
    let offered = (capacity_rps * 0.9) as u64;
    let (before, spell) = (Duration::from_secs(5), Duration::from_secs(10));
    let adaptive = AdmissionSettings {
        params: AdmissionParams::builder()
            .max_concurrency(capacity * 4)
            .max_queue(capacity)
            .build()
            .expect("admission params"),
        adaptive: Some(levee_proxy::config::AdaptiveLimitSettings { min_concurrency: 1 }),
        priority_header: None,
    };
    let fixed = AdmissionSettings {
        params: AdmissionParams::builder()
            .max_concurrency(capacity)
            .max_queue(capacity)
            .build()
            .expect("admission params"),
        adaptive: None,
        priority_header: None,
    };
    println!();
    println!(
        "node {capacity} x 20 ms, 40 ms from 5 s to 15 s; offered {offered} req/s for 20 s (per phase: served/s, shed 503, timed out)"
    );
    println!();
    println!(
        "| run | before: served/s | slow: served/s | slow: shed | slow: timed out | after: served/s | after: shed | after: timed out |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, admission) in [
        ("adaptive limit", Some(adaptive)),
        ("fixed limit", Some(fixed)),
        ("no limit", None),
    ] {
        let gateway = levee_proxy::start(config(backend.addr(), admission, None))
            .await
            .expect("gateway starts");
        let addr = gateway.listener_address("web").expect("listener");
        eprintln!("overload: slow spell: {name}");
        let switch = {
            let backend = backend.clone();
            tokio::spawn(async move {
                tokio::time::sleep(before).await;
                let _ = backend.set_mode(Mode::Slow(SERVICE_TIME * 2)).await;
                tokio::time::sleep(spell).await;
                let _ = backend.set_mode(Mode::Slow(SERVICE_TIME)).await;
            })
        };
        let phases = offer_phased(addr, offered, before * 4, [before, before + spell]).await;
        let _ = switch.await;
        gateway.shutdown().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let seconds = [before, spell, before].map(|d| d.as_secs_f64());
        let [a, b, c] = &phases;
        println!(
            "| {name} | {:.0} | {:.0} | {} | {} | {:.0} | {} | {} |",
            a.served.len() as f64 / seconds[0],
            b.served.len() as f64 / seconds[1],
            b.shed.len(),
            b.timed_out,
            c.served.len() as f64 / seconds[2],
            c.shed.len(),
            c.timed_out,
        );
    }
}

/// 3x overload, 20% of it critical and 80% sheddable: the critical requests
/// are served, the sheddable ones shed first.
async fn priority_run(
    backend: &Backend,
    capacity: usize,
    capacity_rps: f64,
    offered_rps: u64,
    duration: Duration,
) {
    // A queue as deep as the node's workers: room for a burst of critical
    // requests, and sheddable waiters make room for them anyway.
    let admission = AdmissionSettings {
        params: AdmissionParams::builder()
            .max_concurrency(capacity)
            .max_queue(capacity)
            .build()
            .expect("admission params"),
        adaptive: None,
        priority_header: Some(http::HeaderName::from_static("x-priority")),
    };
    let mut config = config(backend.addr(), Some(admission), None);
    // Every request may claim up to critical.
    config.listeners[0].routes = vec![RouteSettings {
        name: "all".to_owned(),
        matches: RouteMatch {
            path: Some(PathPattern::Prefix("/".to_owned())),
            ..RouteMatch::default()
        },
        cluster: "app".to_owned(),
        request_timeout: None,
        retry: RouteRetry::default(),
        cache: None,
        priority: Some(Priority::Critical),
    }];
    let gateway = levee_proxy::start(config).await.expect("gateway starts");
    let addr = gateway.listener_address("web").expect("listener");
    eprintln!("overload: priorities: offering {offered_rps} req/s, 20% critical");
    let (sheddable, mut critical, seconds) = offer_classes(addr, offered_rps, duration, 5).await;
    gateway.shutdown().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let served = (sheddable.served.len() + critical.served.len()) as f64 / seconds;
    let critical_total = critical.served.len()
        + critical.shed.len()
        + critical.timed_out as usize
        + critical.other as usize;
    println!();
    println!(
        "| priorities, 20% critical | goodput vs capacity | critical success | critical p50 ms | critical p99 ms | sheddable served/s | sheddable shed |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| admission on (queue = capacity), priority_header | {:.0}% | {:.2}% | {} | {} | {:.0} | {} |",
        served / capacity_rps * 100.0,
        critical.served.len() as f64 / critical_total.max(1) as f64 * 100.0,
        ms(percentile(&mut critical.served, 0.50)),
        ms(percentile(&mut critical.served, 0.99)),
        sheddable.served.len() as f64 / seconds,
        sheddable.shed.len(),
    );
}
