//! The examples run, briefly, and end with success: each checks its own
//! story (served and shed; answered, then failing fast; open for the
//! fleet) and exits non-zero when it does not hold. `cargo test` builds
//! them before the tests run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use levee_testkit::dependency::RealServer;

/// An example's binary, beside this test's.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples"))
        .unwrap_or_else(|| PathBuf::from("target/debug/examples"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (which builds the examples)",
        path.display()
    );
    Command::new(path)
}

/// Run `command` to its end (at most `limit`); its output.
fn run(mut command: Command, limit: Duration) -> std::process::Output {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn example");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("example output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("example still running after {limit:?}");
        }
    }
}

fn assert_ran(output: &std::process::Output, expected: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(expected),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn admission_server_serves_some_and_sheds_the_rest() {
    let output = run(example("admission_server"), Duration::from_secs(60));
    assert_ran(&output, "shed with 503 + Retry-After");
}

#[test]
fn resilient_client_answers_every_get_then_fails_fast() {
    let output = run(example("resilient_client"), Duration::from_secs(60));
    assert_ran(&output, "breaker open: true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fleet_breaker_opens_in_two_processes_through_a_real_redis() {
    let redis = RealServer::redis().await;
    let url = format!("redis://{}", redis.address());
    let mut command = example("redis_fleet_breaker");
    command.arg(url);
    let output = tokio::task::spawn_blocking(move || run(command, Duration::from_secs(60)))
        .await
        .expect("example task");
    assert_ran(&output, "process-a: fails fast");
    drop(redis);
}
