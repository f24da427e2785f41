//! The header fields every attempt of one request sends.

use http::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// The header fields every attempt of a request sends, kept once per
/// request (an attempt's request carries only its own fields).
#[derive(Debug, Default)]
pub struct SharedFields {
    /// The client's fields as they go upstream.
    pub headers: HeaderMap,
    /// Fields levee sets (`X-Forwarded-For`, `X-Forwarded-Proto`), each
    /// replacing the client's of the same name. Kept beside the map rather
    /// than inserted into it: two hashed inserts of custom names cost ~770
    /// instructions per request (callgrind), and the HTTP/1.1 writer only
    /// needs to write them.
    pub set: SmallVec<[(HeaderName, HeaderValue); 2]>,
}

impl SharedFields {
    /// Whether `name` is one levee sets.
    pub fn sets(&self, name: &HeaderName) -> bool {
        self.set.iter().any(|(set, _)| set == name)
    }

    /// Every field as sent: the client's not replaced, then levee's.
    pub fn each<'a>(&'a self, mut field: impl FnMut(&'a HeaderName, &'a HeaderValue)) {
        for (name, value) in &self.headers {
            if !self.sets(name) {
                field(name, value);
            }
        }
        for (name, value) in &self.set {
            field(name, value);
        }
    }

    /// The fields as one map (for hyper's HTTP/2 client, which takes one),
    /// with `own` (an attempt's fields) replacing those of the same name.
    pub fn merged(&self, own: HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        for (name, value) in &self.set {
            headers.insert(name, value.clone());
        }
        let mut last = None;
        for (name, value) in own {
            // `None`: another value of the field before.
            match name {
                Some(name) => {
                    headers.insert(&name, value);
                    last = Some(name);
                }
                None => {
                    if let Some(name) = &last {
                        headers.append(name, value);
                    }
                }
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> SharedFields {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("x"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        let mut set = SmallVec::new();
        set.push((
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        ));
        SharedFields { headers, set }
    }

    #[test]
    fn levee_s_fields_replace_the_client_s() {
        let mut sent = Vec::new();
        fields().each(|name, value| sent.push(format!("{name}: {}", value.to_str().unwrap())));
        assert_eq!(
            sent,
            [
                "host: x",
                "accept: a",
                "accept: b",
                "x-forwarded-proto: http"
            ]
        );
    }

    #[test]
    fn merged_an_attempt_s_own_fields_replace_all_values_of_theirs() {
        let mut own = HeaderMap::new();
        own.append("accept", HeaderValue::from_static("c"));
        own.append("accept", HeaderValue::from_static("d"));
        let merged = fields().merged(own);
        assert_eq!(merged["host"], "x");
        assert_eq!(merged["x-forwarded-proto"], "http");
        let accept: Vec<_> = merged.get_all("accept").iter().collect();
        assert_eq!(accept, ["c", "d"]);
        assert_eq!(merged.len(), 4);
    }
}
