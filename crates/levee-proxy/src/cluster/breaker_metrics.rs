//! Metrics of circuit breakers: the state each is in, its transitions and
//! the requests it refused.

use levee_core::breaker::StateName;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    breaker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerStateLabels {
    breaker: String,
    state: &'static str,
}

/// The breaker metric families, registered once.
#[derive(Default)]
pub struct BreakerFamilies {
    state: Family<BreakerStateLabels, Gauge>,
    transitions: Family<BreakerStateLabels, Counter>,
    rejections: Family<BreakerLabels, Counter>,
}

impl BreakerFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> BreakerFamilies {
        let families = BreakerFamilies::default();
        registry.register(
            "breaker_state",
            "1 for the state each circuit breaker is in (closed, open, half-open), 0 for the others",
            families.state.clone(),
        );
        registry.register(
            "breaker_transitions",
            "Circuit breaker state changes, by the state entered",
            families.transitions.clone(),
        );
        registry.register(
            "breaker_rejections",
            "Requests answered 503 at once because their circuit breaker was open",
            families.rejections.clone(),
        );
        families
    }

    /// Handles for one circuit breaker's series.
    pub fn handles(&self, breaker: &str) -> BreakerMetrics {
        let state = |state: StateName| BreakerStateLabels {
            breaker: breaker.to_owned(),
            state: state.as_str(),
        };
        BreakerMetrics {
            states: StateName::ALL.map(|name| (name, self.state.get_or_create_owned(&state(name)))),
            transitions: StateName::ALL
                .map(|name| (name, self.transitions.get_or_create_owned(&state(name)))),
            rejections: self.rejections.get_or_create_owned(&BreakerLabels {
                breaker: breaker.to_owned(),
            }),
        }
    }
}

/// Pre-created series of one circuit breaker.
#[derive(Clone)]
pub struct BreakerMetrics {
    states: [(StateName, Gauge); 3],
    transitions: [(StateName, Counter); 3],
    rejections: Counter,
}

impl BreakerMetrics {
    /// The breaker is now in `state`.
    pub fn record_state(&self, state: StateName) {
        for (name, gauge) in &self.states {
            gauge.set(i64::from(*name == state));
        }
    }

    /// The breaker entered `state`.
    pub fn record_transition(&self, state: StateName) {
        for (name, counter) in &self.transitions {
            if *name == state {
                counter.inc();
            }
        }
    }

    /// A request was refused.
    pub fn record_rejection(&self) {
        self.rejections.inc();
    }
}
