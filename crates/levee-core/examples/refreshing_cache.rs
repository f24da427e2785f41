//! A refreshing cache in front of a slow fake origin (200 ms per call).
//!
//! Shows the two rules that keep a slow origin from seeing a stampede:
//! single-flight fills (20 concurrent misses, 1 origin call) and
//! stale-while-revalidate (20 gets just past the TTL are served at once
//! while 1 background refresh runs).
//!
//! Run with `cargo run -p levee-core --example refreshing_cache`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use levee_core::cache::{CacheParams, CacheStatus, Loaded, RefreshingCache};
use tokio::time::{Instant, sleep};

/// A slow origin that counts its calls and versions its answers.
#[derive(Clone, Default)]
struct Origin {
    calls: Arc<AtomicU64>,
}

impl Origin {
    async fn fetch(self, path: String) -> Result<Loaded<String>, std::io::Error> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        sleep(Duration::from_millis(200)).await;
        Ok(Loaded::new(format!("{path} v{call}")))
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// 20 concurrent gets for one key; prints how they were served.
async fn burst(label: &str, cache: &RefreshingCache<String, String>, origin: &Origin) {
    let start = Instant::now();
    let gets: Vec<_> = (0..20)
        .map(|_| {
            let (cache, origin) = (cache.clone(), origin.clone());
            tokio::spawn(async move {
                let served = cache
                    .get("/index".to_owned(), || origin.fetch("/index".to_owned()))
                    .await;
                (served, start.elapsed())
            })
        })
        .collect();
    let (mut hit, mut miss, mut stale, mut slowest) = (0, 0, 0, Duration::ZERO);
    let mut value = String::new();
    for get in gets {
        let Ok((Ok(served), took)) = get.await else {
            println!("{label}: a get failed");
            continue;
        };
        match served.status {
            CacheStatus::Hit => hit += 1,
            CacheStatus::Miss => miss += 1,
            CacheStatus::Stale => stale += 1,
        }
        slowest = slowest.max(took);
        value = served.value;
    }
    println!(
        "{label:<28} hit {hit:>2}  miss {miss:>2}  stale {stale:>2}  slowest {:>4} ms  value {value:?}  origin calls so far {}",
        slowest.as_millis(),
        origin.calls(),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params = CacheParams::builder()
        .max_size(1 << 20)
        .default_ttl(Duration::from_millis(500))
        .stale_while_revalidate(Duration::from_secs(5))
        .fill_wait(Duration::from_secs(2))
        .build()?;
    let cache = RefreshingCache::new(params, |k: &String, v: &String| (k.len() + v.len()) as u64);
    let origin = Origin::default();

    burst("cold (single-flight)", &cache, &origin).await;
    burst("warm (fresh)", &cache, &origin).await;
    sleep(Duration::from_millis(600)).await;
    burst("past TTL (stale-while-rev.)", &cache, &origin).await;
    sleep(Duration::from_millis(300)).await;
    burst("after the refresh", &cache, &origin).await;

    let stats = cache.stats();
    println!(
        "origin calls {} for 80 gets; stats: hits {} misses {} stale {} loads {} errors {} evictions {} entries {} weight {}",
        origin.calls(),
        stats.hits,
        stats.misses,
        stats.stale,
        stats.loads,
        stats.load_errors,
        stats.evictions,
        stats.entries,
        stats.weight,
    );
    Ok(())
}
