//! What a route matches: host, path, method and a header. Pure functions of
//! the request head, no allocation.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

/// A host a route accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// This host exactly (lower case, no port).
    Exact(String),
    /// Any subdomain of it, at any depth: `*.example.com` is stored as
    /// `.example.com` (and does not match `example.com` itself).
    Subdomains(String),
}

impl HostPattern {
    /// Parse `example.com` or `*.example.com`; `None` if it is neither.
    pub fn parse(text: &str) -> Option<HostPattern> {
        let lower = text.trim().to_ascii_lowercase();
        let valid = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
                && !name.starts_with('.')
                && !name.ends_with('.')
        };
        match lower.strip_prefix("*.") {
            Some(rest) if valid(rest) => Some(HostPattern::Subdomains(format!(".{rest}"))),
            Some(_) => None,
            None if valid(&lower) => Some(HostPattern::Exact(lower)),
            None => None,
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => host.eq_ignore_ascii_case(exact),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// Whether every host this pattern matches is also matched by `other`.
    fn within(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(a), HostPattern::Subdomains(_)) => other.matches(a),
            (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) => a.ends_with(b.as_str()),
            (HostPattern::Subdomains(_), HostPattern::Exact(_)) => false,
        }
    }
}

/// A path a route accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// This path exactly (the query is not part of it).
    Exact(String),
    /// This prefix, at a segment boundary: `/api` matches `/api`,
    /// `/api/` and `/api/v1` but not `/apis`; a prefix ending in `/`
    /// matches whatever starts with it.
    Prefix(String),
}

impl PathPattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Prefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
        }
    }

    fn within(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Exact(a), _) => other.matches(a),
            (PathPattern::Prefix(a), PathPattern::Prefix(_)) => other.matches(a),
            (PathPattern::Prefix(_), PathPattern::Exact(_)) => false,
        }
    }
}

/// A header a route requires: present, or with this exact value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Header name.
    pub name: HeaderName,
    /// Required value; `None`: any value.
    pub value: Option<HeaderValue>,
}

/// Everything a route requires of a request; an empty one matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// Any of these hosts; empty: any host.
    pub hosts: Vec<HostPattern>,
    /// The path; `None`: any path.
    pub path: Option<PathPattern>,
    /// Any of these methods; empty: any method.
    pub methods: Vec<Method>,
    /// A header it must carry.
    pub header: Option<HeaderMatch>,
}

/// The parts of a request head a route looks at.
pub struct RequestView<'a> {
    /// Host without port, from `Host` or the URI's authority (HTTP/2).
    pub host: Option<&'a str>,
    /// Path without query.
    pub path: &'a str,
    /// Method.
    pub method: &'a Method,
    /// Headers.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// The view of a request head.
    pub fn of(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> RequestView<'a> {
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| uri.authority().map(|authority| authority.as_str()))
            .map(strip_port);
        RequestView {
            host,
            path: uri.path(),
            method,
            headers,
        }
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

impl RouteMatch {
    /// Whether the request matches every condition.
    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        (self.hosts.is_empty()
            || request
                .host
                .is_some_and(|host| self.hosts.iter().any(|pattern| pattern.matches(host))))
            && self
                .path
                .as_ref()
                .is_none_or(|pattern| pattern.matches(request.path))
            && (self.methods.is_empty() || self.methods.contains(request.method))
            && self.header.as_ref().is_none_or(|wanted| {
                request.headers.get_all(&wanted.name).iter().any(|value| {
                    wanted
                        .value
                        .as_ref()
                        .is_none_or(|expected| value == expected)
                })
            })
    }

    /// Whether every request this matches is matched by `earlier` too (so
    /// that, after it, this route can never be chosen). Conservative: when
    /// unsure, says false.
    pub fn shadowed_by(&self, earlier: &RouteMatch) -> bool {
        let hosts = earlier.hosts.is_empty()
            || (!self.hosts.is_empty()
                && self
                    .hosts
                    .iter()
                    .all(|mine| earlier.hosts.iter().any(|theirs| mine.within(theirs))));
        let path = match (&self.path, &earlier.path) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => mine.within(theirs),
        };
        let methods = earlier.methods.is_empty()
            || (!self.methods.is_empty()
                && self.methods.iter().all(|m| earlier.methods.contains(m)));
        let header = match (&self.header, &earlier.header) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => {
                mine.name == theirs.name && (theirs.value.is_none() || theirs.value == mine.value)
            }
        };
        hosts && path && methods && header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView::of(method, uri, headers)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn hosts_match_exactly_or_by_subdomain_without_case_or_port() {
        let exact = HostPattern::parse("API.example.com").expect("valid");
        let wild = HostPattern::parse("*.example.com").expect("valid");
        assert!(exact.matches("api.EXAMPLE.com"));
        assert!(!exact.matches("www.example.com"));
        assert!(wild.matches("a.example.com") && wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com") && !wild.matches("badexample.com"));
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(HostPattern::parse("*.*.com"), None);
        assert_eq!(HostPattern::parse("exa mple"), None);
        assert_eq!(HostPattern::parse(""), None);
    }

    #[test]
    fn prefixes_stop_at_segment_boundaries() {
        let api = PathPattern::Prefix("/api".into());
        assert!(api.matches("/api") && api.matches("/api/") && api.matches("/api/v1"));
        assert!(!api.matches("/apis") && !api.matches("/ap"));
        let slash = PathPattern::Prefix("/static/".into());
        assert!(slash.matches("/static/x.css") && !slash.matches("/static"));
        assert!(PathPattern::Prefix("/".into()).matches("/anything"));
        let exact = PathPattern::Exact("/healthz".into());
        assert!(exact.matches("/healthz") && !exact.matches("/healthz/x"));
    }

    #[test]
    fn every_condition_must_hold() {
        let route = RouteMatch {
            hosts: vec![HostPattern::parse("*.example.com").expect("valid")],
            path: Some(PathPattern::Prefix("/api".into())),
            methods: vec![Method::GET, Method::HEAD],
            header: Some(HeaderMatch {
                name: HeaderName::from_static("x-canary"),
                value: Some(HeaderValue::from_static("1")),
            }),
        };
        let uri: Uri = "/api/users?x=1".parse().expect("uri");
        let good = headers(&[("host", "a.example.com:8080"), ("x-canary", "1")]);
        assert!(route.matches(&view(&Method::GET, &uri, &good)));
        assert!(!route.matches(&view(&Method::POST, &uri, &good)));
        let other_value = headers(&[("host", "a.example.com"), ("x-canary", "2")]);
        assert!(!route.matches(&view(&Method::GET, &uri, &other_value)));
        let no_host = headers(&[("x-canary", "1")]);
        assert!(!route.matches(&view(&Method::GET, &uri, &no_host)));
        // HTTP/2: the authority stands for Host.
        let absolute: Uri = "https://b.example.com/api".parse().expect("uri");
        let canary = headers(&[("x-canary", "1")]);
        assert!(route.matches(&view(&Method::GET, &absolute, &canary)));
        assert!(RouteMatch::default().matches(&view(&Method::DELETE, &uri, &no_host)));
    }

    #[test]
    fn a_route_after_a_broader_one_is_shadowed() {
        let everything = RouteMatch::default();
        let api = RouteMatch {
            path: Some(PathPattern::Prefix("/api".into())),
            ..RouteMatch::default()
        };
        let api_v1 = RouteMatch {
            path: Some(PathPattern::Prefix("/api/v1".into())),
            methods: vec![Method::GET],
            ..RouteMatch::default()
        };
        let host_a = RouteMatch {
            hosts: vec![HostPattern::parse("a.example.com").expect("valid")],
            ..RouteMatch::default()
        };
        let wild = RouteMatch {
            hosts: vec![HostPattern::parse("*.example.com").expect("valid")],
            ..RouteMatch::default()
        };
        assert!(api.shadowed_by(&everything));
        assert!(api_v1.shadowed_by(&api));
        assert!(!api.shadowed_by(&api_v1));
        assert!(host_a.shadowed_by(&wild));
        assert!(!wild.shadowed_by(&host_a));
        assert!(!api.shadowed_by(&host_a));
    }
}
