//! Which requests may be sent twice.
//!
//! A request that reached an endpoint and got no answer may have been acted
//! on. Sending it again is only harmless when doing it twice has the same
//! effect as doing it once: RFC 9110 §9.2.2 lists the methods with that
//! property, and a client or an operator can vouch for any other request.

/// Methods that RFC 9110 defines as idempotent (§9.2.2), which includes the
/// safe ones (§9.2.1). Method names are case-sensitive (§9.1): `get` is not
/// `GET`, so it is not assumed idempotent either.
pub const IDEMPOTENT_METHODS: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

/// Whether a request may be resent after it may already have been acted on.
///
/// True for an RFC 9110 idempotent method, for a request carrying an
/// `Idempotency-Key` header (the client promises that the upstream
/// deduplicates it, as Stripe's API and the IETF draft describe), and for any
/// request on a route or cluster the operator declared idempotent in config.
/// Everything else, POST and PATCH above all, is sent at most once: a lost
/// answer to a payment is a 502, never a second payment.
pub fn is_idempotent(method: &str, has_idempotency_key: bool, declared_idempotent: bool) -> bool {
    has_idempotency_key || declared_idempotent || IDEMPOTENT_METHODS.contains(&method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_9110_idempotent_methods() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(method, false, false), "{method}");
        }
    }

    #[test]
    fn writes_are_not_idempotent() {
        for method in ["POST", "PATCH", "CONNECT", "PROPFIND", ""] {
            assert!(!is_idempotent(method, false, false), "{method}");
        }
    }

    #[test]
    fn methods_are_case_sensitive() {
        for method in ["get", "Get", "put", "delete"] {
            assert!(!is_idempotent(method, false, false), "{method}");
        }
    }

    #[test]
    fn a_key_or_a_declaration_makes_any_request_idempotent() {
        assert!(is_idempotent("POST", true, false));
        assert!(is_idempotent("PATCH", false, true));
        assert!(is_idempotent("POST", true, true));
    }
}
