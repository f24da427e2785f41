//! Which endpoints the balancer may pick from, given what health checks,
//! outlier detection and reachability say, and the panic threshold.

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

/// What routing needs to know of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Standing {
    /// Passing its checks (or not checked), not ejected, its name resolved.
    Available,
    /// Failing its checks or ejected: out of rotation, but panic mode still
    /// sends to it, because checks can be wrong.
    Unavailable,
    /// Not available, and refusing connections (see
    /// [`Reachability`](super::Reachability)): out even in panic mode, since
    /// a request sent there fails at once. Only when every endpoint that
    /// resolves refuses are they tried anyway: a refusal may be over (the
    /// whole cluster restarting), and a request sent nowhere cannot succeed.
    Refusing,
    /// Its name does not resolve: never a candidate, there is no address.
    Unresolved,
}

impl Standing {
    /// Known to take no connections: refusing or unresolved.
    pub fn is_unreachable(self) -> bool {
        matches!(self, Standing::Refusing | Standing::Unresolved)
    }
}

/// The balancer's candidates for the next request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    /// Indices of the endpoints to pick from, ascending.
    pub candidates: Vec<usize>,
    /// True when too few endpoints were available and every endpoint but the
    /// unreachable ones is a candidate (worth a metric and an event: the
    /// cluster is in trouble).
    pub panic: bool,
    /// The available endpoints, ascending: the candidates outside panic
    /// mode, and where a retry goes first in panic mode.
    pub available: Vec<usize>,
    /// How many endpoints are known to take no connections (left out even
    /// in panic mode).
    pub unreachable: usize,
}

impl Routing {
    /// Where a further attempt of a request (retry, hedge, reconnect) may
    /// go, given the endpoints it `tried`: the candidates not tried yet, and
    /// in panic mode the available ones among them if there are any. In
    /// panic most candidates may be failing; a request's second chance
    /// should go where the checks say it will work.
    pub fn untried(&self, tried: impl Fn(usize) -> bool) -> Vec<usize> {
        if self.panic {
            let available: Vec<usize> = self
                .available
                .iter()
                .copied()
                .filter(|&i| !tried(i))
                .collect();
            if !available.is_empty() {
                return available;
            }
        }
        self.candidates
            .iter()
            .copied()
            .filter(|&i| !tried(i))
            .collect()
    }
}

/// The candidates, given each endpoint's standing.
///
/// Panics (in the routing sense) when the available share is below the
/// threshold, and whenever no endpoint is available at all: a request sent
/// to a maybe-broken node may succeed, a request sent nowhere cannot. In
/// panic every endpoint that is available or [`Standing::Unavailable`] is a
/// candidate; if there is none, the [`Standing::Refusing`] ones are; an
/// unresolved endpoint never is. An empty cluster has no candidates and no
/// panic.
pub fn routable(standings: &[Standing], panic: PanicParams) -> Routing {
    let indices_where = |wanted: fn(Standing) -> bool| -> Vec<usize> {
        (0..standings.len())
            .filter(|&i| wanted(standings[i]))
            .collect()
    };
    let available = indices_where(|standing| standing == Standing::Available);
    let unreachable = standings
        .iter()
        .filter(|standing| standing.is_unreachable())
        .count();
    let total = standings.len();
    let too_few = available.len() * 100 < usize::from(panic.threshold_percent) * total;
    if total > 0 && (available.is_empty() || too_few) {
        let mut candidates = indices_where(|standing| !standing.is_unreachable());
        if candidates.is_empty() {
            candidates = indices_where(|standing| standing == Standing::Refusing);
        }
        Routing {
            candidates,
            panic: true,
            available,
            unreachable,
        }
    } else {
        Routing {
            candidates: available.clone(),
            panic: false,
            available,
            unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Standing = Standing::Available;
    const U: Standing = Standing::Unavailable;
    const X: Standing = Standing::Refusing;
    const N: Standing = Standing::Unresolved;

    fn routing(available: &[bool], threshold: u8) -> Routing {
        let standings: Vec<Standing> = available.iter().map(|&a| if a { A } else { U }).collect();
        routable(&standings, PanicParams::new(threshold).expect("valid"))
    }

    fn of(standings: &[Standing], threshold: u8) -> Routing {
        routable(standings, PanicParams::new(threshold).expect("valid"))
    }

    #[test]
    fn available_endpoints_are_the_candidates() {
        let r = routing(&[true, false, true, true], 50);
        assert_eq!(r.candidates, vec![0, 2, 3]);
        assert_eq!(r.available, vec![0, 2, 3]);
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
    fn panic_leaves_out_unreachable_endpoints() {
        // 500 endpoints, 10 available, 490 refusing: still a panic (2%
        // available), but only the 10 are candidates.
        let mut standings = vec![X; 500];
        for standing in standings.iter_mut().step_by(50) {
            *standing = A;
        }
        let r = of(&standings, 50);
        assert!(r.panic);
        assert_eq!(r.candidates.len(), 10);
        assert_eq!(r.candidates, r.available);
        assert_eq!(r.unreachable, 490);
        // Unavailable but reachable endpoints are still spread over.
        let r = of(&[A, U, X, U, N], 50);
        let summary = (r.candidates, r.panic, r.unreachable);
        assert_eq!(summary, (vec![0, 1, 3], true, 2));
        // Every endpoint that resolves refuses: they are tried anyway (the
        // whole cluster may just have restarted); never an unresolved one.
        let r = of(&[X, N, X], 50);
        assert_eq!(
            (r.candidates, r.panic, r.unreachable),
            (vec![0, 2], true, 3)
        );
        let r = of(&[N, N], 50);
        assert_eq!((r.candidates, r.panic, r.unreachable), (vec![], true, 2));
        // Outside panic an unreachable endpoint is just not available.
        let r = of(&[A, A, X, N], 25);
        let summary = (r.candidates, r.panic, r.unreachable);
        assert_eq!(summary, (vec![0, 1], false, 2));
    }

    #[test]
    fn retries_in_panic_go_to_available_endpoints_first() {
        let r = of(&[U, A, U, A, U], 50);
        assert!(r.panic);
        let tried = |tried: &'static [usize]| move |i| tried.contains(&i);
        assert_eq!(r.untried(tried(&[0])), vec![1, 3]);
        assert_eq!(r.untried(tried(&[1])), vec![3]);
        // Every available one tried: the rest of the candidates.
        assert_eq!(r.untried(tried(&[1, 3])), vec![0, 2, 4]);
        assert_eq!(r.untried(tried(&[0, 1, 2, 3, 4])), Vec::<usize>::new());
        // Outside panic: the candidates not tried.
        let r = of(&[A, U, A, A], 50);
        assert_eq!(r.untried(tried(&[0])), vec![2, 3]);
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
