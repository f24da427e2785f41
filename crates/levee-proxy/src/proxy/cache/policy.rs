//! Whether an upstream response may be cached, and for how long.
//!
//! Storability and freshness follow RFC 9111 for a shared cache, by
//! `http-cache-semantics` (`max-age`, `s-maxage`, `Expires`, `no-store`,
//! `private`, `Authorization`, `Vary: *`, cacheable statuses). Two things are
//! levee's own: the configured default TTL for a response that gives no
//! freshness at all, and the `stale-while-revalidate` / `stale-if-error`
//! windows (RFC 5861), which that crate does not expose and which are read
//! here from `Cache-Control`.

use std::time::{Duration, SystemTime};

use http::header::{CACHE_CONTROL, EXPIRES, HeaderMap};
use http::{request, response};
use http_cache_semantics::{CacheOptions, CachePolicy};

/// The statuses `http-cache-semantics` stores (its `UNDERSTOOD_STATUSES`).
const CRATE_STATUSES: [u16; 14] = [
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// How long a stored response stays usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage` (which implies
    /// `proxy-revalidate` for a shared cache, RFC 9111 §5.2.2.10): never
    /// served stale, whatever the config or the other directives say
    /// (RFC 5861 §4).
    pub never_stale: bool,
    /// Seconds the response had spent in caches before levee (`Age`).
    pub age: u64,
    /// Fresh for this long from now.
    pub ttl: Duration,
    /// Then served stale while one background refresh runs, if the response
    /// says so (`stale-while-revalidate=N`); `None`: the configured default.
    pub stale_while_revalidate: Option<Duration>,
    /// Served stale while the upstream fails, if the response says so
    /// (`stale-if-error=N`); `None`: the configured default.
    pub stale_if_error: Option<Duration>,
}

/// The verdict on one response.
#[derive(Debug)]
pub enum Verdict {
    /// Store it.
    Store(Freshness, Box<CachePolicy>),
    /// Do not store it, for this reason (for logs and tests).
    Skip(&'static str),
}

/// Judge `response` to `request` at `now`; `default_ttl` applies when the
/// response gives no freshness of its own (zero: such a response is not
/// cached).
pub fn judge(
    request: &request::Parts,
    response: &response::Parts,
    default_ttl: Duration,
    now: SystemTime,
) -> Verdict {
    // Directive names are case-insensitive (RFC 9111 §5.2); the crate
    // reads them as written.
    let lowered;
    let response = match normalized(&response.headers) {
        Some(headers) => {
            let (mut parts, ()) = http::Response::new(()).into_parts();
            parts.status = response.status;
            parts.version = response.version;
            parts.headers = headers;
            lowered = parts;
            &lowered
        }
        None => response,
    };
    if response
        .headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|field| field.trim() == "*")
    {
        return Verdict::Skip("Vary: * (varies on everything)");
    }
    // An Age that does not parse cannot be trusted: the response may be
    // older than it says (RFC 9111 §5.1).
    let age = match response.headers.get(http::header::AGE) {
        None => 0,
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|age| age.trim().parse::<u64>().ok())
        {
            Some(age) => age,
            None => return Verdict::Skip("invalid Age"),
        },
    };
    let directives = directives(&response.headers);
    let explicit = directives
        .iter()
        .any(|(name, _)| name == "max-age" || name == "s-maxage")
        || response.headers.contains_key(EXPIRES);
    // RFC 9111 §3 lets a cache store any final status with explicit
    // freshness (unless `must-understand`); the crate follows RFC 7234 and
    // stores only the statuses it knows, so another one (a `299`, a `418`)
    // is judged as a `200` would be. Never a `206` or `304`, whose meaning
    // a cache must understand, nor a 5xx: those are failures here.
    let as_ok;
    let response = if explicit
        && !CRATE_STATUSES.contains(&response.status.as_u16())
        && !matches!(response.status.as_u16(), 206 | 304 | 500..)
        && !directives.iter().any(|(name, _)| name == "must-understand")
    {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = http::StatusCode::OK;
        parts.version = response.version;
        parts.headers = response.headers.clone();
        as_ok = parts;
        &as_ok
    } else {
        response
    };
    let policy = CachePolicy::new_options(request, response, now, CacheOptions::default());
    if !policy.is_storable() {
        return Verdict::Skip(
            "not storable (no-store, private, Authorization, Vary: *, or status)",
        );
    }
    if directives.iter().any(|(name, _)| name == "no-cache") {
        // Stored, but asked about again before every use (RFC 9111
        // §5.2.2.4), which needs a validator to ask with. A `no-cache`
        // naming fields is treated as the whole response's.
        let validator = response.headers.contains_key(http::header::ETAG)
            || response.headers.contains_key(http::header::LAST_MODIFIED);
        if !validator {
            return Verdict::Skip("no-cache without a validator (ETag or Last-Modified)");
        }
        return Verdict::Store(
            Freshness {
                never_stale: true,
                age,
                ttl: Duration::ZERO,
                stale_while_revalidate: None,
                stale_if_error: None,
            },
            Box::new(policy),
        );
    }
    let ttl = match policy.time_to_live(now) {
        ttl if explicit => ttl,
        _ => default_ttl,
    };
    if ttl.is_zero() {
        return Verdict::Skip("no freshness lifetime");
    }
    let seconds = |wanted: &str| {
        directives
            .iter()
            .find(|(name, _)| name == wanted)
            .and_then(|(_, value)| value.as_deref()?.parse::<u64>().ok())
            .map(Duration::from_secs)
    };
    let never_stale = directives.iter().any(|(name, _)| {
        matches!(
            name.as_str(),
            "must-revalidate" | "proxy-revalidate" | "s-maxage"
        )
    });
    Verdict::Store(
        Freshness {
            never_stale,
            age,
            ttl,
            stale_while_revalidate: seconds("stale-while-revalidate"),
            stale_if_error: seconds("stale-if-error"),
        },
        Box::new(policy),
    )
}

/// Whether a stored response answers `request`: its `Vary` headers match.
pub fn matches(policy: &CachePolicy, request: &request::Parts, now: SystemTime) -> bool {
    match policy.before_request(request, now) {
        http_cache_semantics::BeforeRequest::Fresh(_) => true,
        http_cache_semantics::BeforeRequest::Stale { matches, .. } => matches,
    }
}

/// The headers as `http-cache-semantics` reads them right, if they need
/// rewriting: `Cache-Control` directive names lower-cased (RFC 9111 §5.2
/// says they are case-insensitive), and `Expires` in IMF-fixdate. The
/// crate reads only RFC 2822 dates, where an HTTP date may be in RFC 850 or
/// asctime form too (RFC 9110 §5.6.7); an `Expires` that is none of the
/// three means "already expired" (RFC 9111 §5.3).
fn normalized(headers: &HeaderMap) -> Option<HeaderMap> {
    let uppercase = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .any(|value| value.as_bytes().iter().any(u8::is_ascii_uppercase));
    let expires = headers.get(EXPIRES).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|text| httpdate::parse_http_date(text).ok())
            .map(httpdate::fmt_http_date)
    });
    let expires_rewritten = match (&expires, headers.get(EXPIRES)) {
        (Some(Some(imf)), Some(original)) => original.as_bytes() != imf.as_bytes(),
        (Some(None), _) => true,
        _ => false,
    };
    if !uppercase && !expires_rewritten {
        return None;
    }
    let mut rewritten = headers.clone();
    if expires_rewritten {
        // An invalid date: the Unix epoch, long expired.
        let imf = expires
            .flatten()
            .unwrap_or_else(|| httpdate::fmt_http_date(std::time::UNIX_EPOCH));
        if let Ok(value) = http::HeaderValue::from_str(&imf) {
            rewritten.insert(EXPIRES, value);
        }
    }
    if !uppercase {
        return Some(rewritten);
    }
    let mut lowered = rewritten;
    lowered.remove(CACHE_CONTROL);
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        let rewritten: Vec<String> = text
            .split(',')
            .map(|part| match part.split_once('=') {
                Some((name, value)) => format!("{}={value}", name.trim().to_ascii_lowercase()),
                None => part.trim().to_ascii_lowercase(),
            })
            .collect();
        if let Ok(value) = http::HeaderValue::from_str(&rewritten.join(", ")) {
            lowered.append(CACHE_CONTROL, value);
        }
    }
    Some(lowered)
}

/// `Cache-Control` directives, lower-cased, with their values.
fn directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| {
            let mut pieces = part.trim().splitn(2, '=');
            let name = pieces.next()?.trim().to_ascii_lowercase();
            let value = pieces
                .next()
                .map(|value| value.trim().trim_matches('"').to_owned());
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge_with(cache_control: Option<&str>, default_ttl: Duration) -> Verdict {
        let request = http::Request::get("http://example.com/a")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let mut response = http::Response::builder().status(200);
        if let Some(value) = cache_control {
            response = response.header(CACHE_CONTROL, value);
        }
        let response = response.body(()).unwrap().into_parts().0;
        judge(&request, &response, default_ttl, SystemTime::now())
    }

    fn freshness(verdict: Verdict) -> Freshness {
        match verdict {
            Verdict::Store(freshness, _) => freshness,
            Verdict::Skip(why) => panic!("not stored: {why}"),
        }
    }

    #[test]
    fn max_age_and_s_maxage_set_the_lifetime() {
        let fresh = freshness(judge_with(Some("max-age=60"), Duration::ZERO));
        assert_eq!(fresh.ttl, Duration::from_secs(60));
        let shared = freshness(judge_with(Some("max-age=60, s-maxage=5"), Duration::ZERO));
        assert_eq!(shared.ttl, Duration::from_secs(5));
    }

    #[test]
    fn stale_windows_come_from_the_response() {
        let fresh = freshness(judge_with(
            Some("max-age=1, stale-while-revalidate=30, stale-if-error=300"),
            Duration::ZERO,
        ));
        assert_eq!(fresh.stale_while_revalidate, Some(Duration::from_secs(30)));
        assert_eq!(fresh.stale_if_error, Some(Duration::from_secs(300)));
    }

    #[test]
    fn no_store_private_and_no_cache_are_not_stored() {
        for value in [
            "no-store",
            "private, max-age=60",
            "no-cache",
            "no-store, no-cache",
        ] {
            assert!(
                matches!(
                    judge_with(Some(value), Duration::from_secs(10)),
                    Verdict::Skip(_)
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn no_cache_with_a_validator_is_stored_for_revalidation_only() {
        let request = http::Request::get("http://example.com/a")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let response = http::Response::builder()
            .header(CACHE_CONTROL, "No-Cache, max-age=60")
            .header("etag", "\"v1\"")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let fresh = freshness(judge(
            &request,
            &response,
            Duration::from_secs(10),
            SystemTime::now(),
        ));
        assert_eq!(fresh.ttl, Duration::ZERO);
        assert!(fresh.never_stale);
    }

    #[test]
    fn the_default_ttl_applies_only_without_freshness() {
        assert!(matches!(
            judge_with(None, Duration::ZERO),
            Verdict::Skip("no freshness lifetime")
        ));
        let fresh = freshness(judge_with(None, Duration::from_secs(7)));
        assert_eq!(fresh.ttl, Duration::from_secs(7));
        // An explicit max-age=0 is not overridden by the default.
        assert!(matches!(
            judge_with(Some("max-age=0"), Duration::from_secs(7)),
            Verdict::Skip(_)
        ));
    }

    #[test]
    fn vary_star_is_never_stored() {
        let request = http::Request::get("http://example.com/a")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let response = http::Response::builder()
            .header(CACHE_CONTROL, "max-age=60")
            .header("vary", "*")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(matches!(
            judge(&request, &response, Duration::ZERO, SystemTime::now()),
            Verdict::Skip(_)
        ));
    }

    #[test]
    fn vary_headers_must_match() {
        let request = |language: &str| {
            http::Request::get("http://example.com/a")
                .header("accept-language", language)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let response = http::Response::builder()
            .header(CACHE_CONTROL, "max-age=60")
            .header("vary", "accept-language")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let now = SystemTime::now();
        let Verdict::Store(_, policy) = judge(&request("en"), &response, Duration::ZERO, now)
        else {
            panic!("stored")
        };
        assert!(matches(&policy, &request("en"), now));
        assert!(!matches(&policy, &request("fr"), now));
    }
}
