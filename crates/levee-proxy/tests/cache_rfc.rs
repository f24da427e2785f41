//! The response cache against an origin that says exactly what RFC 9111
//! lets it say: stale copies only where the origin allows them (or the
//! config widens the window), never past `must-revalidate`, `Vary: *` in
//! any form passed through, directive names in any case, and `Age` kept
//! honest. The origin is a small hyper server answering each path with the
//! headers the test gives it.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use levee_proxy::config::{BalancePolicy, CacheSettings, Config};
use tokio::net::TcpListener;

/// A hyper origin on loopback: `answer(n, request)` makes the response to
/// its `n`th request (from 1). Returns its address and the request count.
async fn serve(
    answer: impl Fn(u64, &Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let count = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&count);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let n = counted.fetch_add(1, Ordering::Relaxed) + 1;
                    let response = answer(n, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, count)
}

/// A response with `status`, `headers` and `body`.
fn response(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Full::new(body.into())).expect("response")
}

/// An origin answering every request `200` with `headers` and the body
/// `answer N`; counts requests.
async fn origin(headers: &'static [(&'static str, &'static str)]) -> (SocketAddr, Arc<AtomicU64>) {
    serve(move |n, _| response(200, headers, format!("answer {n}\n"))).await
}

fn cached(origin: SocketAddr, cache: CacheSettings) -> Config {
    let mut config = config(vec![origin], BalancePolicy::RoundRobin);
    config.clusters[0].cache = Some(cache);
    config.clusters[0].retry.hedge = None;
    config
}

fn cache_state(answer: &Answer) -> String {
    answer.headers["x-levee-cache"]
        .to_str()
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_response_is_served_stale_only_when_the_origin_allows_it() {
    // Only max_size set: no stale window unless the origin gives one.
    let cache = CacheSettings {
        max_size: 1024 * 1024,
        ..CacheSettings::default()
    };
    let (strict, strict_count) = origin(&[("cache-control", "max-age=1")]).await;
    let (gateway, addr) = start(cached(strict, cache)).await;
    let client = client();
    assert_eq!(cache_state(&get(&client, addr, "/a").await), "miss");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let later = get(&client, addr, "/a").await;
    assert_eq!(cache_state(&later), "miss", "{:?}", later.headers);
    assert_eq!(later.body, "answer 2\n");
    assert_eq!(strict_count.load(Ordering::Relaxed), 2);
    gateway.shutdown().await;

    let (lenient, _) = origin(&[("cache-control", "max-age=1, stale-while-revalidate=30")]).await;
    let (gateway, addr) = start(cached(lenient, cache)).await;
    assert_eq!(cache_state(&get(&client, addr, "/a").await), "miss");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(cache_state(&get(&client, addr, "/a").await), "stale");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_revalidate_and_s_maxage_are_never_served_stale() {
    // The config asks for stale windows; the origin forbids them.
    let cache = CacheSettings {
        stale_while_revalidate: Duration::from_secs(30),
        stale_if_error: Duration::from_secs(300),
        ..CacheSettings::default()
    };
    let client = client();
    for headers in [
        &[("cache-control", "max-age=1, must-revalidate")][..],
        &[("cache-control", "max-age=1, proxy-revalidate")][..],
        &[("cache-control", "s-maxage=1, stale-while-revalidate=30")][..],
    ] {
        let headers: &'static [(&'static str, &'static str)] = headers;
        let (node, count) = origin(headers).await;
        let (gateway, addr) = start(cached(node, cache)).await;
        assert_eq!(cache_state(&get(&client, addr, "/a").await), "miss");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let later = get(&client, addr, "/a").await;
        assert_eq!(cache_state(&later), "miss", "{headers:?}");
        assert_eq!(count.load(Ordering::Relaxed), 2, "{headers:?}");
        gateway.shutdown().await;
    }
    // Without such a directive the configured window applies.
    let (node, _) = origin(&[("cache-control", "max-age=1")]).await;
    let (gateway, addr) = start(cached(node, cache)).await;
    assert_eq!(cache_state(&get(&client, addr, "/a").await), "miss");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(cache_state(&get(&client, addr, "/a").await), "stale");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_anywhere_in_vary_passes_the_response_through() {
    let client = client();
    for vary in ["*, *", "*, Foo", "Foo, *", ", *"] {
        let headers: &'static [(&'static str, &'static str)] = match vary {
            "*, *" => &[("cache-control", "max-age=60"), ("vary", "*, *")],
            "*, Foo" => &[("cache-control", "max-age=60"), ("vary", "*, Foo")],
            "Foo, *" => &[("cache-control", "max-age=60"), ("vary", "Foo, *")],
            _ => &[("cache-control", "max-age=60"), ("vary", ", *")],
        };
        let (node, count) = origin(headers).await;
        let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
        for _ in 0..2 {
            let answer = get(&client, addr, "/a").await;
            assert_eq!(answer.status, 200, "Vary: {vary}: {}", answer.body);
        }
        assert_eq!(
            count.load(Ordering::Relaxed),
            2,
            "Vary: {vary} is never stored"
        );
        gateway.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directive_names_are_case_insensitive_and_hits_carry_their_age() {
    let (node, count) = origin(&[("cache-control", "MaX-AgE=600"), ("age", "30")]).await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    let client = client();
    assert_eq!(cache_state(&get(&client, addr, "/a").await), "miss");
    let hit = get(&client, addr, "/a").await;
    assert_eq!(cache_state(&hit), "hit");
    let age = |answer: &Answer| -> u64 {
        answer.headers["age"]
            .to_str()
            .expect("text")
            .parse()
            .expect("a number")
    };
    assert!(age(&hit) >= 30, "{:?}", hit.headers);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = get(&client, addr, "/a").await;
    assert!(
        age(&later) > age(&hit),
        "time in the cache counts: {:?}",
        later.headers
    );
    assert_eq!(count.load(Ordering::Relaxed), 1);
    gateway.shutdown().await;

    // An Age that does not parse: not trusted, not stored.
    let (node, count) = origin(&[("cache-control", "max-age=600"), ("age", "old, 0")]).await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    for _ in 0..2 {
        assert_eq!(get(&client, addr, "/a").await.status, 200);
    }
    assert_eq!(count.load(Ordering::Relaxed), 2);
    gateway.shutdown().await;
}

/// An origin whose GETs are cacheable for 10 minutes and whose POSTs create
/// `/items/7` (201, `Location`); counts GETs.
async fn writable_origin() -> (SocketAddr, Arc<AtomicU64>) {
    let gets = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&gets);
    let (addr, _) = serve(move |_, request| {
        if request.method() == http::Method::POST {
            return response(201, &[("location", "/items/7")], "created\n");
        }
        let n = counted.fetch_add(1, Ordering::Relaxed) + 1;
        response(
            200,
            &[("cache-control", "max-age=600")],
            format!("version {n}\n"),
        )
    })
    .await;
    (addr, gets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_write_invalidates_its_target_and_its_location() {
    let (node, gets) = writable_origin().await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    let client = client();
    for path in ["/items", "/items/7"] {
        assert_eq!(cache_state(&get(&client, addr, path).await), "miss");
        assert_eq!(cache_state(&get(&client, addr, path).await), "hit");
    }
    assert_eq!(gets.load(Ordering::Relaxed), 2);
    let created = send(
        &client,
        Request::post(format!("http://{addr}/items"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request"),
    )
    .await;
    assert_eq!(created.status, 201);
    for path in ["/items", "/items/7"] {
        let after = get(&client, addr, path).await;
        assert_eq!(
            cache_state(&after),
            "miss",
            "{path} was invalidated by the POST"
        );
    }
    assert_eq!(gets.load(Ordering::Relaxed), 4);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_cannot_be_stored_is_passed_through_without_a_fill() {
    // No freshness at all: nothing to store.
    let (node, count) = origin(&[("x-origin", "plain")]).await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    let client = client();
    assert_eq!(get(&client, addr, "/plain").await.status, 200);
    let loads = || gateway.state().caches()[0].1.stats().loads;
    let after_first = loads();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        requests.spawn(async move { get(&client, addr, "/plain").await.status });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.expect("request"), 200);
    }
    assert_eq!(
        loads(),
        after_first,
        "no request waited on a fill for a key known not to store"
    );
    assert_eq!(count.load(Ordering::Relaxed), 11);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_that_fills_waits_for_its_own_answer_past_fill_wait() {
    use levee_testkit::backend::{Backend, Mode};
    let backend = Backend::start("slow", LOOPBACK).await.expect("backend");
    backend
        .set_mode(Mode::Slow(Duration::from_millis(800)))
        .await
        .expect("slow");
    let cache = CacheSettings {
        default_ttl: Duration::from_secs(60),
        fill_wait: Duration::from_millis(300),
        ..CacheSettings::default()
    };
    let (gateway, addr) = start(cached(backend.addr(), cache)).await;
    let client = client();
    let filler = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, addr, "/slow-key").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiter = get(&client, addr, "/slow-key").await;
    assert_eq!(
        waiter.status, 504,
        "a waiter gives up after fill_wait: {}",
        waiter.body
    );
    let filled = filler.await.expect("filler");
    assert_eq!(
        filled.status, 200,
        "the filling request is answered: {}",
        filled.body
    );
    assert_eq!(cache_state(&filled), "miss");
    assert_eq!(cache_state(&get(&client, addr, "/slow-key").await), "hit");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_501_with_explicit_freshness_is_stored() {
    let (node, count) =
        serve(|_, _| response(501, &[("cache-control", "max-age=600")], "not here\n")).await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    let client = client();
    assert_eq!(get(&client, addr, "/x").await.status, 501);
    let again = get(&client, addr, "/x").await;
    assert_eq!(
        (again.status.as_u16(), cache_state(&again)),
        (501, "hit".to_owned())
    );
    assert_eq!(count.load(Ordering::Relaxed), 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_vary_variant_is_stored_beside_the_others() {
    // The origin's answer depends on Accept-Language, and says so.
    let (node, count) = serve(|_, request| {
        let language = request
            .headers()
            .get("accept-language")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("none");
        response(
            200,
            &[
                ("cache-control", "max-age=600"),
                ("vary", "Accept-Language"),
            ],
            format!("in {language}\n"),
        )
    })
    .await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    let client = client();
    let ask = |language: &'static str| {
        let client = client.clone();
        async move {
            send(
                &client,
                Request::get(format!("http://{addr}/page"))
                    .header("accept-language", language)
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
        }
    };
    // Learning the variants costs one fill more than there are variants.
    for language in ["en", "fr", "en"] {
        let answer = ask(language).await;
        assert_eq!(answer.body, format!("in {language}\n"));
    }
    let learned = count.load(Ordering::Relaxed);
    assert!(learned <= 3, "{learned}");
    for _ in 0..3 {
        for language in ["en", "fr"] {
            let answer = ask(language).await;
            assert_eq!(answer.body, format!("in {language}\n"), "the right variant");
            assert_eq!(cache_state(&answer), "hit", "{language}");
        }
    }
    assert_eq!(
        count.load(Ordering::Relaxed),
        learned,
        "both variants are hits"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_conditional_request_gets_304_from_a_stored_response() {
    let (node, count) = origin(&[
        ("cache-control", "max-age=600"),
        ("etag", "\"v1\""),
        ("last-modified", "Mon, 30 Nov 2026 10:00:00 GMT"),
    ])
    .await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    let client = client();
    let conditional = |name: &'static str, value: &'static str| {
        let client = client.clone();
        async move {
            send(
                &client,
                Request::get(format!("http://{addr}/doc"))
                    .header(name, value)
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
        }
    };
    // Even the first request (a miss) is answered from what the fill stored.
    let first = conditional("if-none-match", "\"v1\"").await;
    assert_eq!(first.status, 304, "{:?}", first.headers);
    assert!(first.body.is_empty());
    assert_eq!(first.headers["etag"], "\"v1\"");
    assert_eq!(
        conditional("if-none-match", "W/\"v1\", \"v0\"")
            .await
            .status,
        304
    );
    assert_eq!(conditional("if-none-match", "\"v2\"").await.status, 200);
    assert_eq!(
        conditional("if-modified-since", "Mon, 30 Nov 2026 10:00:00 GMT")
            .await
            .status,
        304
    );
    let full = get(&client, addr, "/doc").await;
    assert_eq!(
        (full.status.as_u16(), cache_state(&full)),
        (200, "hit".to_owned())
    );
    assert_eq!(
        count.load(Ordering::Relaxed),
        1,
        "one origin request for all of them"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_in_any_http_date_format_gives_freshness() {
    let client = client();
    for expires in [
        "Wed, 01 Jan 2048 00:00:00 GMT",
        // RFC 850, with its two-digit year (RFC 9110 §5.6.7).
        "Wednesday, 01-Jan-48 00:00:00 GMT",
        // ANSI C asctime().
        "Wed Jan  1 00:00:00 2048",
    ] {
        let headers: &'static [(&'static str, &'static str)] = match expires {
            "Wed, 01 Jan 2048 00:00:00 GMT" => &[("expires", "Wed, 01 Jan 2048 00:00:00 GMT")],
            "Wednesday, 01-Jan-48 00:00:00 GMT" => {
                &[("expires", "Wednesday, 01-Jan-48 00:00:00 GMT")]
            }
            _ => &[("expires", "Wed Jan  1 00:00:00 2048")],
        };
        let (node, count) = origin(headers).await;
        let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
        assert_eq!(cache_state(&get(&client, addr, "/e").await), "miss");
        assert_eq!(
            cache_state(&get(&client, addr, "/e").await),
            "hit",
            "Expires: {expires}"
        );
        assert_eq!(count.load(Ordering::Relaxed), 1);
        gateway.shutdown().await;
    }
    // Not an HTTP date (an extra space): already expired, never stored.
    let (node, count) = origin(&[("expires", "Wed,  01 Jan 2048 00:00:00 GMT")]).await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    for _ in 0..2 {
        assert_eq!(get(&client, addr, "/e").await.status, 200);
    }
    assert_eq!(count.load(Ordering::Relaxed), 2);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_299_404_or_410_is_stored_like_a_200() {
    let client = client();
    for status in [299u16, 404, 410] {
        let (node, count) =
            serve(move |_, _| response(status, &[("cache-control", "max-age=600")], "gone\n"))
                .await;
        let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
        assert_eq!(get(&client, addr, "/missing").await.status.as_u16(), status);
        let again = get(&client, addr, "/missing").await;
        assert_eq!(
            (again.status.as_u16(), cache_state(&again)),
            (status, "hit".to_owned())
        );
        assert_eq!(count.load(Ordering::Relaxed), 1, "{status}");
        gateway.shutdown().await;
    }
}

/// What a revalidating origin has seen: every request, the conditional
/// ones, and the `304`s it sent.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    conditional: AtomicU64,
    not_modified: AtomicU64,
}

/// An origin with one document at version `version` (`ETag: "v<version>"`),
/// answering a matching `If-None-Match` with `304`. Every answer carries
/// `cache-control` and `x-answer: <request number>`, so a test sees which
/// answer's headers it was given.
async fn revalidating_origin(
    cache_control: &'static str,
    version: Arc<AtomicU64>,
) -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let counted = Arc::clone(&seen);
    let (addr, _) = serve(move |n, request| {
        counted.requests.fetch_add(1, Ordering::Relaxed);
        let etag = format!("\"v{}\"", version.load(Ordering::Relaxed));
        let condition = request.headers().get("if-none-match");
        if condition.is_some() {
            counted.conditional.fetch_add(1, Ordering::Relaxed);
        }
        let unchanged = condition.is_some_and(|wanted| wanted == etag.as_str());
        let headers = [
            ("cache-control", cache_control),
            ("etag", etag.as_str()),
            ("x-answer", &n.to_string()),
        ];
        if unchanged {
            counted.not_modified.fetch_add(1, Ordering::Relaxed);
            return response(304, &headers, Bytes::new());
        }
        response(200, &headers, format!("version {etag} from answer {n}\n"))
    })
    .await;
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_response_is_revalidated_and_updated_from_the_304() {
    let version = Arc::new(AtomicU64::new(1));
    let (node, seen) = revalidating_origin("max-age=1", Arc::clone(&version)).await;
    let (gateway, addr) = start(cached(node, CacheSettings::default())).await;
    let client = client();
    let first = get(&client, addr, "/doc").await;
    assert_eq!(cache_state(&first), "miss");
    assert_eq!(first.body, "version \"v1\" from answer 1\n");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // Expired: levee asks "still v1?", the origin says 304, the client gets
    // the stored body under the 304's headers.
    let second = get(&client, addr, "/doc").await;
    assert_eq!(cache_state(&second), "revalidated", "{:?}", second.headers);
    assert_eq!(second.status, 200);
    assert_eq!(second.body, "version \"v1\" from answer 1\n");
    assert_eq!(
        second.headers["x-answer"], "2",
        "headers updated from the 304"
    );
    assert_eq!(seen.requests.load(Ordering::Relaxed), 2);
    assert_eq!(seen.not_modified.load(Ordering::Relaxed), 1);
    // Fresh again for max-age from the 304, with its headers stored.
    let third = get(&client, addr, "/doc").await;
    assert_eq!(cache_state(&third), "hit");
    assert_eq!(third.headers["x-answer"], "2");
    assert_eq!(
        seen.requests.load(Ordering::Relaxed),
        2,
        "one origin request per expiry"
    );
    // A changed document comes back whole.
    version.store(2, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let changed = get(&client, addr, "/doc").await;
    assert_eq!(cache_state(&changed), "miss");
    assert_eq!(changed.body, "version \"v2\" from answer 3\n");
    assert_eq!(seen.conditional.load(Ordering::Relaxed), 2);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_cache_response_is_stored_and_revalidated_before_every_use() {
    let version = Arc::new(AtomicU64::new(1));
    let (node, seen) = revalidating_origin("no-cache", Arc::clone(&version)).await;
    // The config's stale windows do not apply to a no-cache response.
    let cache = CacheSettings {
        stale_while_revalidate: Duration::from_secs(30),
        stale_if_error: Duration::from_secs(300),
        ..CacheSettings::default()
    };
    let (gateway, addr) = start(cached(node, cache)).await;
    let client = client();
    assert_eq!(cache_state(&get(&client, addr, "/doc").await), "miss");
    for n in 2..=4u64 {
        let answer = get(&client, addr, "/doc").await;
        assert_eq!(cache_state(&answer), "revalidated");
        assert_eq!(answer.body, "version \"v1\" from answer 1\n");
        assert_eq!(seen.requests.load(Ordering::Relaxed), n);
        assert_eq!(seen.not_modified.load(Ordering::Relaxed), n - 1);
    }
    version.store(2, Ordering::Relaxed);
    let changed = get(&client, addr, "/doc").await;
    assert_eq!(cache_state(&changed), "miss");
    assert_eq!(changed.body, "version \"v2\" from answer 5\n");
    // Concurrent requests share one revalidation.
    let answers = futures_util::future::join_all((0..8).map(|_| get(&client, addr, "/doc"))).await;
    for answer in &answers {
        assert_eq!(answer.body, "version \"v2\" from answer 5\n");
    }
    let asked = seen.requests.load(Ordering::Relaxed) - 5;
    assert!(
        (1..8).contains(&asked),
        "{asked} origin requests for 8 clients"
    );
    gateway.shutdown().await;
}
