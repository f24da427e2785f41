//! Which endpoints the balancer may pick from, given what health checks and
//! outlier detection say, and the panic threshold.

use super::params::BadOutlierParams;

/// When too few endpoints look available, route to all of them.
///
/// If two of five nodes are out and the other three could not carry the load
/// anyway, sending everything to the three crushes them too; and when the
/// checks themselves are wrong (a shared dependency blip makes every probe
/// fail) obeying them takes the whole cluster down. Below the threshold the
/// view of health is not trusted and load is spread over every endpoint
/// (Envoy's panic threshold, 50% by default there too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PanicParams {
    threshold_percent: u8,
}

impl PanicParams {
    /// Default threshold: panic when fewer than half the endpoints are
    /// available.
    pub const DEFAULT_THRESHOLD_PERCENT: u8 = 50;

    /// Panic when fewer than `threshold_percent` % of the endpoints are
    /// available (0–100; 0 panics only when none is).
    pub fn new(threshold_percent: u8) -> Result<PanicParams, BadOutlierParams> {
        if threshold_percent > 100 {
            return Err(BadOutlierParams {
                key: "panic_threshold",
                message: format!("must be at most 100, got {threshold_percent}"),
            });
        }
        Ok(PanicParams { threshold_percent })
    }

    /// The threshold, in percent.
    pub fn threshold_percent(self) -> u8 {
        self.threshold_percent
    }
}

impl Default for PanicParams {
    fn default() -> PanicParams {
        PanicParams {
            threshold_percent: PanicParams::DEFAULT_THRESHOLD_PERCENT,
        }
    }
}

/// The balancer's candidates for the next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// Indices of the endpoints to pick from, ascending.
    pub candidates: Vec<usize>,
    /// True when too few endpoints were available and every endpoint is a
    /// candidate (worth a metric and an event: the cluster is in trouble).
    pub panic: bool,
}

/// The candidates, given `available[i]`: endpoint `i` is healthy by its checks
/// and not ejected.
///
/// Panics (in the routing sense) when the available share is below the
/// threshold, and whenever no endpoint is available at all: a request sent to
/// a maybe-broken node may succeed, a request sent nowhere cannot. An empty
/// cluster has no candidates and no panic.
pub fn routable(available: &[bool], panic: PanicParams) -> Routing {
    let candidates: Vec<usize> = (0..available.len()).filter(|&i| available[i]).collect();
    let total = available.len();
    let too_few = candidates.len() * 100 < usize::from(panic.threshold_percent) * total;
    if total > 0 && (candidates.is_empty() || too_few) {
        Routing {
            candidates: (0..total).collect(),
            panic: true,
        }
    } else {
        Routing {
            candidates,
            panic: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(available: &[bool], threshold: u8) -> Routing {
        routable(available, PanicParams::new(threshold).expect("valid"))
    }

    #[test]
    fn available_endpoints_are_the_candidates() {
        let r = routing(&[true, false, true, true], 50);
        assert_eq!(r.candidates, vec![0, 2, 3]);
        assert!(!r.panic);
    }

    #[test]
    fn panic_at_the_threshold() {
        // 2 of 4 is 50%: not below the threshold.
        let r = routing(&[true, true, false, false], 50);
        assert_eq!((r.candidates, r.panic), (vec![0, 1], false));
        // 1 of 4 is 25%: spread over everyone.
        let r = routing(&[true, false, false, false], 50);
        assert_eq!((r.candidates, r.panic), (vec![0, 1, 2, 3], true));
        // 1 of 3 is 33% < 50%; 2 of 3 is 67%.
        assert!(routing(&[false, true, false], 50).panic);
        assert!(!routing(&[true, true, false], 50).panic);
    }

    #[test]
    fn no_available_endpoint_always_panics() {
        let r = routing(&[false, false], 0);
        assert_eq!((r.candidates, r.panic), (vec![0, 1], true));
        // Threshold 0: otherwise never.
        assert!(!routing(&[true, false, false, false], 0).panic);
        // Threshold 100: any endpoint out is a panic.
        assert!(routing(&[true, true, false], 100).panic);
        assert!(!routing(&[true, true, true], 100).panic);
    }

    #[test]
    fn an_empty_cluster_has_no_candidates() {
        let r = routing(&[], 50);
        assert_eq!((r.candidates, r.panic), (vec![], false));
    }

    #[test]
    fn threshold_above_100_is_rejected() {
        let error = PanicParams::new(101).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "panic_threshold must be at most 100, got 101"
        );
        assert_eq!(PanicParams::default().threshold_percent(), 50);
    }
}
