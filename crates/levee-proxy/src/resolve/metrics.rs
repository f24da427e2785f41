//! Metrics of endpoint names, per name (`host:port` as configured).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

/// The name metric families, registered once.
#[derive(Default)]
pub struct NameFamilies {
    lookup_failures: Family<NameLabels, Counter>,
    addresses: Family<NameLabels, Gauge>,
}

impl NameFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> NameFamilies {
        let families = NameFamilies::default();
        registry.register(
            "name_lookup_failures",
            "Failed lookups of an endpoint name (the last addresses found stay in use)",
            families.lookup_failures.clone(),
        );
        registry.register(
            "name_addresses",
            "Addresses an endpoint name resolves to now (each one an endpoint)",
            families.addresses.clone(),
        );
        families
    }

    /// Count a failed lookup of `name`.
    pub fn record_failure(&self, name: &str) {
        self.lookup_failures
            .get_or_create(&NameLabels {
                name: name.to_owned(),
            })
            .inc();
    }

    /// How many addresses `name` has now.
    pub fn set_addresses(&self, name: &str, count: usize) {
        self.addresses
            .get_or_create(&NameLabels {
                name: name.to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
