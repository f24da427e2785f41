//! Access logs: one line per request with what a user looks for in it
//! (client, request, status, bytes, duration, route and cluster, the
//! endpoint that answered and every attempt, cache status, the rule that
//! shed or rejected), written off the request path, and reopened for
//! logrotate.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use levee_core::admission::AdmissionParams;
use levee_proxy::config::{
    AccessLogFormat, AccessLogSettings, AccessLogTarget, AdmissionSettings, BalancePolicy,
    CacheSettings, Config,
};
use levee_testkit::backend::Mode;

fn log_file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("levee-access-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("access.log")
}

fn logged(mut config: Config, path: &Path, format: AccessLogFormat) -> Config {
    let mut settings = AccessLogSettings::new(AccessLogTarget::File(path.to_owned()));
    settings.format = format;
    config.listeners[0].access_log = Some(settings);
    config
}

/// The lines of `path` once it holds at least `count` (the writer flushes
/// when it has nothing more to write).
async fn lines(path: &Path, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= count || tokio::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_request_is_one_json_line_with_every_field() {
    let backends = backends(1).await;
    let path = log_file("proxied");
    let config = logged(
        config(vec![backends[0].addr()], BalancePolicy::RoundRobin),
        &path,
        AccessLogFormat::Json,
    );
    let (gateway, addr) = start(config).await;
    let answer = get(&client(), addr, "/hello?x=1").await;
    assert_eq!(answer.status, 200);
    let lines = lines(&path, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = json(&lines[0]);
    assert_eq!(line["listener"], "web");
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], addr.to_string());
    assert_eq!(line["path"], "/hello?x=1");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes"], answer.body.len() as u64);
    assert!(
        line["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    assert!(
        line["time"]
            .as_str()
            .is_some_and(|time| time.ends_with('Z')),
        "{line}"
    );
    assert_eq!(line["route"], "web");
    assert_eq!(line["cluster"], "app");
    let backend = backends[0].addr().to_string();
    assert_eq!(line["endpoint"], backend.as_str());
    assert_eq!(line["attempts"][0]["endpoint"], backend.as_str());
    assert_eq!(line["attempts"][0]["outcome"], "200");
    assert!(
        line["cache"].is_null() && line["levee_error"].is_null(),
        "{line}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_lists_each_attempt_with_its_outcome() {
    let backends = backends(2).await;
    backends[0].set_mode(Mode::Failing).await.expect("mode");
    let path = log_file("retried");
    let config = logged(
        config(
            vec![backends[0].addr(), backends[1].addr()],
            BalancePolicy::RoundRobin,
        ),
        &path,
        AccessLogFormat::Json,
    );
    let (gateway, addr) = start(config).await;
    let client = client();
    for _ in 0..4 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    let lines = lines(&path, 4).await;
    let failing = backends[0].addr().to_string();
    let healthy = backends[1].addr().to_string();
    let retried: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| json(line))
        .filter(|line| line["attempts"].as_array().is_some_and(|a| a.len() == 2))
        .collect();
    assert!(
        !retried.is_empty(),
        "a request went to the failing node first: {lines:?}"
    );
    for line in retried {
        assert_eq!(line["attempts"][0]["endpoint"], failing.as_str(), "{line}");
        assert_eq!(line["attempts"][0]["outcome"], "503", "{line}");
        assert_eq!(line["attempts"][1]["endpoint"], healthy.as_str(), "{line}");
        assert_eq!(line["attempts"][1]["outcome"], "200", "{line}");
        assert_eq!(line["endpoint"], healthy.as_str());
        assert_eq!(line["status"], 200);
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_request_names_the_rule_that_shed_it() {
    let backends = backends(1).await;
    backends[0]
        .set_mode(Mode::Slow(Duration::from_millis(400)))
        .await
        .expect("mode");
    let path = log_file("shed");
    let mut config = logged(
        config(vec![backends[0].addr()], BalancePolicy::RoundRobin),
        &path,
        AccessLogFormat::Json,
    );
    config.clusters[0].admission = Some(AdmissionSettings {
        params: AdmissionParams::builder()
            .max_concurrency(1)
            .max_queue(1)
            .queue_timeout(Duration::from_millis(50))
            .codel_target(Duration::from_millis(5))
            .build()
            .expect("params"),
        adaptive: None,
        priority_header: None,
    });
    let (gateway, addr) = start(config).await;
    let client = client();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, addr, "/").await.status.as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.expect("request"));
    }
    let shed = statuses.iter().filter(|status| **status == 503).count();
    assert!(shed >= 1, "{statuses:?}");
    let lines = lines(&path, 4).await;
    let shed_lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| json(line))
        .filter(|line| line["status"] == 503)
        .collect();
    assert_eq!(shed_lines.len(), shed, "{lines:?}");
    for line in shed_lines {
        assert_eq!(line["levee_error"], "shed", "{line}");
        assert!(
            line["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{line}"
        );
        assert!(
            line["attempts"].as_array().is_some_and(Vec::is_empty),
            "{line}"
        );
        assert!(line["endpoint"].is_null(), "{line}");
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_request_says_hit_and_combined_lines_follow_the_apache_format() {
    let backends = backends(1).await;
    let path = log_file("cached");
    let mut cached = logged(
        config(vec![backends[0].addr()], BalancePolicy::RoundRobin),
        &path,
        AccessLogFormat::Json,
    );
    cached.clusters[0].cache = Some(CacheSettings {
        default_ttl: Duration::from_secs(60),
        ..CacheSettings::default()
    });
    let (gateway, addr) = start(cached).await;
    let client = client();
    let first = get(&client, addr, "/page").await;
    let second = get(&client, addr, "/page").await;
    assert_eq!(second.headers["x-levee-cache"], "hit");
    let written = lines(&path, 2).await;
    let (miss, hit) = (json(&written[0]), json(&written[1]));
    assert_eq!(miss["cache"], "miss");
    assert_eq!(hit["cache"], "hit");
    assert_eq!(hit["bytes"], second.body.len() as u64);
    assert_eq!(miss["bytes"], first.body.len() as u64);
    assert!(
        hit["attempts"].as_array().is_some_and(Vec::is_empty),
        "{hit}"
    );
    gateway.shutdown().await;

    // The same listener in the combined format.
    let path = log_file("combined");
    let config = logged(
        config(vec![backends[0].addr()], BalancePolicy::RoundRobin),
        &path,
        AccessLogFormat::Combined,
    );
    let (gateway, addr) = start(config).await;
    let answer = get(&client, addr, "/c").await;
    let written = lines(&path, 1).await;
    let expected_tail = format!(
        "] \"GET /c HTTP/1.1\" 200 {} \"-\" \"-\"",
        answer.body.len()
    );
    assert!(written[0].starts_with("127.0.0.1 - - ["), "{}", written[0]);
    assert!(written[0].ends_with(&expected_tail), "{}", written[0]);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_file_is_reopened_and_new_lines_go_to_the_new_file() {
    let backends = backends(1).await;
    let path = log_file("rotated");
    let config = logged(
        config(vec![backends[0].addr()], BalancePolicy::RoundRobin),
        &path,
        AccessLogFormat::Json,
    );
    let (gateway, addr) = start(config).await;
    let client = client();
    get(&client, addr, "/before").await;
    assert_eq!(lines(&path, 1).await.len(), 1);
    // logrotate: move the file away, then SIGUSR1 (here: what it calls).
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    assert_eq!(gateway.state().reopen_access_logs(), 1);
    // The writer reopens at its next drain (every 20 ms), before writing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    get(&client, addr, "/after").await;
    let new = lines(&path, 1).await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(json(&new[0])["path"], "/after");
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    gateway.shutdown().await;
}
