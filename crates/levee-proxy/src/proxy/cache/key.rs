//! What a cached response is stored under: method, host, path and query.

use http::Request;
use http::header::HOST;

/// `GET example.com/path?query`. The method is part of the key because a
/// `HEAD` response has no body to give a `GET`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of `request`: its `Host` (or URI authority), path and query.
    pub fn of<B>(request: &Request<B>) -> CacheKey {
        let host = request
            .headers()
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| {
                request
                    .uri()
                    .authority()
                    .map(|authority| authority.as_str())
            })
            .unwrap_or("");
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        CacheKey(format!(
            "{} {}{}",
            request.method(),
            host.to_ascii_lowercase(),
            target
        ))
    }

    /// The key of `method` for `target` (`host/path?query`, host
    /// lower-cased).
    pub fn for_target(method: &http::Method, target: &str) -> CacheKey {
        CacheKey(format!("{method} {target}"))
    }

    /// The key of one variant of this key: the values `request` has for
    /// the header fields the stored responses vary on (`Vary`), so that
    /// each variant is stored beside the others.
    pub fn variant<B>(
        &self,
        request: &Request<B>,
        fields: &[http::header::HeaderName],
    ) -> CacheKey {
        let mut key = self.0.clone();
        for field in fields {
            key.push('\n');
            key.push_str(field.as_str());
            key.push(':');
            for value in request.headers().get_all(field) {
                key.push_str(value.to_str().unwrap_or("?").trim());
                key.push(',');
            }
        }
        CacheKey(key)
    }

    /// The key without its variant part, if it has one.
    pub fn primary(&self) -> CacheKey {
        CacheKey(self.0.split('\n').next().unwrap_or_default().to_owned())
    }

    /// The host, path and query, without the method (or a variant's
    /// header values): what purges match.
    pub fn target(&self) -> &str {
        let primary = self.0.split('\n').next().unwrap_or_default();
        primary.split_once(' ').map_or("", |(_, target)| target)
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_host_path_and_query_make_the_key() {
        let request = Request::get("/a/b?x=1")
            .header(HOST, "Example.com")
            .body(())
            .unwrap();
        let key = CacheKey::of(&request);
        assert_eq!(key.as_ref(), "GET example.com/a/b?x=1");
        assert_eq!(key.target(), "example.com/a/b?x=1");
        let head = Request::head("/a/b?x=1")
            .header(HOST, "example.com")
            .body(())
            .unwrap();
        assert_ne!(CacheKey::of(&head), key);
        let other_query = Request::get("/a/b?x=2")
            .header(HOST, "example.com")
            .body(())
            .unwrap();
        assert_ne!(CacheKey::of(&other_query), key);
    }
}
