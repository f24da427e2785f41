//! The last minutes of each cluster's traffic, one sample a second, for
//! the dashboard's charts: requests per second, success rate, p50 and p99,
//! retries, hedges and sheds per second.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::GatewayState;
use crate::cluster::traffic::TrafficTotals;

/// Samples kept per cluster: five minutes.
const KEEP: usize = 300;

/// One cluster's counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterTotals {
    /// Its client requests.
    pub traffic: TrafficTotals,
    /// Retries so far.
    pub retries: u64,
    /// Hedges so far.
    pub hedges: u64,
    /// Requests shed by admission control so far.
    pub shed: u64,
}

/// One second of one cluster.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// When it ended, Unix seconds.
    pub t: f64,
    /// Requests per second.
    pub rps: f64,
    /// Share of requests not answered 5xx, percent; `None` without
    /// requests.
    pub success: Option<f64>,
    /// Median latency, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Option<f64>,
    /// Retries per second.
    pub retries: f64,
    /// Hedges per second.
    pub hedges: f64,
    /// Sheds per second.
    pub shed: f64,
}

struct Series {
    last: ClusterTotals,
    at: Instant,
    samples: VecDeque<Sample>,
}

/// Every cluster's recent samples.
#[derive(Default)]
pub struct History {
    clusters: Mutex<HashMap<String, Series>>,
}

impl History {
    /// Record the counters of `clusters` read at `now`: one sample each
    /// (the first reading of a cluster only sets its baseline). Clusters no
    /// longer in the list (removed by a reload) are forgotten.
    pub fn record(&self, clusters: &[(String, ClusterTotals)], now: Instant, wall: SystemTime) {
        let t = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut series = self.clusters.lock();
        series.retain(|name, _| clusters.iter().any(|(kept, _)| kept == name));
        for (name, totals) in clusters {
            let Some(entry) = series.get_mut(name) else {
                series.insert(
                    name.clone(),
                    Series {
                        last: *totals,
                        at: now,
                        samples: VecDeque::new(),
                    },
                );
                continue;
            };
            let seconds = now
                .saturating_duration_since(entry.at)
                .max(Duration::from_millis(1))
                .as_secs_f64();
            let traffic = totals.traffic.since(&entry.last.traffic);
            let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
            let success = (traffic.requests > 0).then(|| {
                100.0 * (traffic.requests - traffic.server_errors) as f64 / traffic.requests as f64
            });
            if entry.samples.len() == KEEP {
                entry.samples.pop_front();
            }
            entry.samples.push_back(Sample {
                t,
                rps: traffic.requests as f64 / seconds,
                success,
                p50_ms: traffic.quantile_ms(0.5),
                p99_ms: traffic.quantile_ms(0.99),
                retries: rate(totals.retries, entry.last.retries),
                hedges: rate(totals.hedges, entry.last.hedges),
                shed: rate(totals.shed, entry.last.shed),
            });
            entry.last = *totals;
            entry.at = now;
        }
    }

    /// Every cluster's samples, oldest first.
    pub fn all(&self) -> HashMap<String, Vec<Sample>> {
        self.clusters
            .lock()
            .iter()
            .map(|(name, series)| (name.clone(), series.samples.iter().cloned().collect()))
            .collect()
    }

    /// Every cluster's latest sample.
    pub fn latest(&self) -> HashMap<String, Sample> {
        self.clusters
            .lock()
            .iter()
            .filter_map(|(name, series)| Some((name.clone(), series.samples.back()?.clone())))
            .collect()
    }
}

/// Sample the gateway's clusters every second.
pub(super) fn spawn_sampler(state: &Arc<GatewayState>) -> JoinHandle<()> {
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(state) = state.upgrade() else {
                return;
            };
            let totals = state.cluster_totals();
            state
                .history
                .record(&totals, Instant::now(), SystemTime::now());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::traffic::Traffic;

    #[tokio::test(start_paused = true)]
    async fn samples_are_rates_over_the_last_second() {
        let history = History::default();
        let traffic = Traffic::default();
        let read = |retries| {
            vec![(
                "app".to_owned(),
                ClusterTotals {
                    traffic: traffic.totals(),
                    retries,
                    hedges: 0,
                    shed: 0,
                },
            )]
        };
        history.record(&read(0), Instant::now(), SystemTime::now());
        assert!(history.all()["app"].is_empty(), "a baseline, no sample");
        for status in [200, 200, 200, 503] {
            traffic.record(status, Duration::from_millis(5));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        history.record(&read(4), Instant::now(), SystemTime::now());
        let sample = &history.latest()["app"];
        assert_eq!(sample.rps, 2.0);
        assert_eq!(sample.success, Some(75.0));
        assert_eq!(sample.retries, 2.0);
        assert!(sample.p50_ms.is_some_and(|ms| ms > 4.0 && ms < 8.2));
        // A cluster a reload removed is forgotten.
        history.record(&[], Instant::now(), SystemTime::now());
        assert!(history.all().is_empty());
    }
}
