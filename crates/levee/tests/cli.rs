//! The `levee` command as a user runs it: exit codes, messages, signals.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn levee() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_levee"));
    command.env("LEVEE_LOG", "warn");
    command
}

/// A config file in a fresh temp dir (removed by the OS's tmp cleanup; names
/// are unique per test).
fn write_config(test: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("levee-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("levee.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn validate_accepts_a_good_config() {
    let path = write_config(
        "good",
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:8000\"]\n",
    );
    let output = levee()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn validate_reports_every_problem_with_its_location_and_exits_2() {
    let text = "\
[admin]
listen = \"127.0.0.1:9901\"
colour = \"blue\"

[[listener]]
name = \"web\"
listen = \"127.0.0.1:notaport\"
cluster = \"ap\"

[[cluster]]
name = \"app\"
endpoints = []
connect_timeout = \"10 parsecs\"
";
    let path = write_config("bad", text);
    let output = levee()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = path.display().to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    // unknown key, bad address, missing cluster, empty cluster, bad duration
    assert!(lines.len() >= 5, "expected every problem, got:\n{stderr}");
    for (needle, line) in [
        ("colour", 3),
        ("notaport", 7),
        ("\"ap\"", 8),
        ("parsecs", 13),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(needle) && l.starts_with(&format!("{file}:{line}:"))),
            "no error about {needle} at line {line}:\n{stderr}"
        );
    }
}

/// Run `command` to its end, or kill it and fail after `limit`: a config
/// that took quadratic time once kept `validate` busy for minutes.
fn output_within(mut command: Command, limit: Duration) -> std::process::Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("still running after {limit:?}");
        }
    }
}

#[test]
fn validate_answers_five_megabytes_of_random_text_with_one_line() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = SmallRng::seed_from_u64(7);
    let mut text = String::new();
    while text.len() < 5 << 20 {
        text.extend((0..76).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])));
        text.push('\n');
    }
    let path = write_config("garbage", &text);
    let mut command = levee();
    command.args(["validate", "-c"]).arg(&path);
    let output = output_within(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{}:1:", path.display()))
            && lines[0].contains("invalid TOML"),
        "{stderr}"
    );
}

#[test]
fn validate_prints_fifty_problems_and_counts_the_rest() {
    let text: String = (0..3000)
        .map(|i| format!("[[cluster]]\nname = \"c{i}\"\nendpoints = [\"10.0.0.1:80\"]\ncolour = \"blue\"\nconnect_timeout = 5\n"))
        .collect();
    let path = write_config("thousands", &text);
    let mut command = levee();
    command.args(["validate", "-c"]).arg(&path);
    let output = output_within(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 51, "{stderr}");
    let file = path.display().to_string();
    assert!(
        lines[..50].iter().all(|line| line.starts_with(&file)),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        format!("{file}:4:1: unknown key \"colour\" in [[cluster]] \"c0\"")
    );
    // Two problems per cluster and the missing listener.
    assert_eq!(lines[50], "… and 5951 more problems");
}

#[test]
fn validate_warns_about_a_name_that_does_not_resolve_and_run_logs_it() {
    let admin = free_port();
    let path = write_config(
        "unresolvable",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:8000\", \"no-such-host.invalid:80\"]\n"
        ),
    );
    let mut command = levee();
    command.args(["validate", "-c"]).arg(&path);
    let output = output_within(command, Duration::from_secs(30));
    // levee starts with such a name (it may appear later): not an error.
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with(&format!("{}: warning: ", path.display()))
            && warnings[0].contains("\"no-such-host.invalid:80\" does not resolve"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).ends_with(": ok\n"));

    // `run` starts, and logs an error naming the endpoint.
    let mut child = Running(
        levee()
            .args(["run", "-c"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    wait_for_line(&mut child.0, "admin on");
    let _ = child.0.kill();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    let error = stderr
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("no-such-host.invalid:80"))
        .unwrap_or_else(|| panic!("no error line about the name: {stderr}"));
    assert!(error.contains("does not resolve"), "{error}");
}

#[test]
fn run_refuses_a_bad_config_before_binding_anything() {
    let port = free_port();
    let path = write_config(
        "run-bad",
        &format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{port}\"\ncluster = \"missing\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:8000\"]\n"
        ),
    );
    let output = levee()
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing"));
}

#[test]
fn run_exits_nonzero_naming_the_address_when_a_port_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr");
    let admin = free_port();
    let path = write_config(
        "taken",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"{address}\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:8000\"]\n"
        ),
    );
    let output = levee()
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address.to_string()), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("address already in use"),
        "{stderr}"
    );
    // Nothing else was left listening: the admin port is free again.
    assert!(TcpListener::bind(("127.0.0.1", admin)).is_ok());
}

/// Kills the child if a test fails midway.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Read stdout lines until one contains `needle` (bounded by the test timeout
/// of the reader thread).
fn wait_for_line(child: &mut Child, needle: &str) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("never printed {needle:?}; got {seen:?}");
}

fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
// A plain blocking test driving a child process: no tokio clock to pause here.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn demo_serves_through_the_gateway_and_stops_on_sigterm() {
    let (listen, admin) = (free_port(), free_port());
    let mut child = Running(
        levee()
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let banner = wait_for_line(&mut child.0, "Stop with Ctrl-C");
    assert!(
        banner
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{listen}"))),
        "{banner:?}"
    );
    let response = http_get(&format!("127.0.0.1:{listen}"), "/");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("hello from b"), "{response}");
    let ready = http_get(&format!("127.0.0.1:{admin}"), "/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "levee did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_post(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn check(admin: &str) -> std::process::Output {
    levee()
        .args(["check", "--admin", admin, "--timeout", "5s"])
        .output()
        .expect("run levee check")
}

#[test]
fn check_exits_0_when_ready_1_when_impaired_and_2_when_absent() {
    let admin = format!("127.0.0.1:{}", free_port());
    let path = write_config(
        "check",
        &format!(
            "[admin]\nlisten = \"{admin}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:9\"]\n"
        ),
    );
    let mut child = Running(
        levee()
            .args(["run", "-c"])
            .arg(&path)
            .stdout(Stdio::piped())
            // The drain is logged at warn/error level: keep test output clean.
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for_line(&mut child.0, "admin on");

    let ready = check(&admin);
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert!(
        String::from_utf8_lossy(&ready.stdout).starts_with("ready"),
        "{ready:?}"
    );

    let drained = http_post(&admin, "/drain?reason=maintenance");
    assert!(drained.starts_with("HTTP/1.1 200"), "{drained}");
    let impaired = check(&admin);
    assert_eq!(impaired.status.code(), Some(1), "{impaired:?}");
    let stdout = String::from_utf8_lossy(&impaired.stdout);
    assert!(stdout.contains("not ready (impaired)"), "{stdout}");
    assert!(stdout.contains("drain: maintenance"), "{stdout}");

    drop(child);
    let absent = check(&admin);
    assert_eq!(absent.status.code(), Some(2), "{absent:?}");
    let stdout = String::from_utf8_lossy(&absent.stdout);
    assert!(
        stdout.contains("unreachable") && stdout.contains(&admin),
        "{stdout}"
    );
}

#[test]
fn run_exits_nonzero_naming_the_admin_address_when_it_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr");
    let listen = free_port();
    let path = write_config(
        "admin-taken",
        &format!(
            "[admin]\nlisten = \"{address}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{listen}\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:8000\"]\n"
        ),
    );
    let output = levee()
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address} (admin)")),
        "{stderr}"
    );
    // The traffic listener bound first was released again.
    assert!(TcpListener::bind(("127.0.0.1", listen)).is_ok());
}

#[test]
#[cfg(unix)]
fn run_tells_systemd_ready_after_binding_and_stopping_on_shutdown() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("levee-cli-{}-notify", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let admin = free_port();
    let path = write_config(
        "notify",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:9\"]\n"
        ),
    );
    let child = Running(
        levee()
            .args(["run", "-c"])
            .arg(&path)
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let mut message = [0; 256];
    let read = socket.recv(&mut message).expect("READY=1 within 20 s");
    assert!(String::from_utf8_lossy(&message[..read]).contains("READY=1"));
    // Ready means bound: the admin port answers.
    let ready = http_get(&format!("127.0.0.1:{admin}"), "/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let read = socket.recv(&mut message).expect("STOPPING=1 within 20 s");
    assert!(String::from_utf8_lossy(&message[..read]).contains("STOPPING=1"));
}

/// The config generation `/status` reports.
fn generation(admin: &str) -> u64 {
    let response = http_get(admin, "/status");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(body).expect("status JSON");
    status["config"]["generation"].as_u64().expect("generation")
}

#[test]
// A plain blocking test driving a child process: no tokio clock to pause here.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn sighup_reloads_the_file_and_a_broken_one_keeps_the_running_config() {
    let admin = format!("127.0.0.1:{}", free_port());
    let extra = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[admin]\nlisten = \"{admin}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:9\"]\n"
    );
    let path = write_config("sighup", &config);
    let mut child = Running(
        levee()
            .args(["run", "-c"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for_line(&mut child.0, "admin on");
    assert_eq!(generation(&admin), 1);
    let hup = || {
        let sent = Command::new("kill")
            .args(["-HUP", &child.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    };

    // A second listener.
    let with_extra = format!(
        "{config}\n[[listener]]\nname = \"extra\"\nlisten = \"{extra}\"\ncluster = \"app\"\n"
    );
    std::fs::write(&path, with_extra).expect("write config");
    hup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while generation(&admin) != 2 {
        assert!(std::time::Instant::now() < deadline, "no reload on SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its only endpoint refuses: levee's own 502 proves the listener is up.
    let response = http_get(&extra, "/");
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");

    // A broken file: levee keeps running the second generation.
    std::fs::write(&path, "[[listener]]\nname = 3\n").expect("write config");
    hup();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.0.try_wait().expect("wait").is_none(), "still running");
    assert_eq!(generation(&admin), 2);
    let response = http_get(&extra, "/");
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
    let metrics = http_get(&admin, "/metrics");
    assert!(
        metrics.contains(r#"levee_config_reloads_total{result="error"} 1"#),
        "{metrics}"
    );
}

#[test]
fn version_names_the_git_revision() {
    let output = levee().arg("--version").output().expect("run");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let expected = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    match expected {
        // The build's revision; HEAD may have moved since, but its prefix
        // is a hex revision either way.
        Some(_) => {
            let revision = text
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(revision, _)| revision)
                .unwrap_or_default();
            assert_eq!(revision.len(), 12, "{text}");
            assert!(revision.chars().all(|c| c.is_ascii_hexdigit()), "{text}");
        }
        None => assert!(text.contains("(unknown)"), "{text}"),
    }
    assert!(
        text.starts_with(&format!("levee {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef levee"),
        ("fish", "complete -c levee"),
    ] {
        let output = levee().args(["completions", shell]).output().expect("run");
        assert!(output.status.success(), "{shell}: {output:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("validate"), "{shell}: subcommands listed");
    }
}

/// Start `levee run` on `config` (with `LEVEE_LOG` unset so that `[log]`
/// applies), wait for its admin line, stop it; its standard error.
fn run_and_collect_stderr(test: &str, config: &str) -> String {
    let path = write_config(test, config);
    let mut child = Command::new(env!("CARGO_BIN_EXE_levee"))
        .env_remove("LEVEE_LOG")
        .env_remove("NO_COLOR")
        .args(["run", "-c"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for_line(&mut child, "levee: admin on");
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let output = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn log_config(log: &str) -> String {
    let (web, admin) = (free_port(), free_port());
    format!(
        "{log}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{web}\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:9\"]\n"
    )
}

#[test]
fn logs_have_no_colour_codes_off_a_terminal_and_json_lines_parse() {
    let text = run_and_collect_stderr("log-text", &log_config(""));
    assert!(text.contains("shutdown signal received"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no ANSI escape codes in a pipe:\n{text}"
    );

    let json = run_and_collect_stderr(
        "log-json",
        &log_config("[log]\nformat = \"json\"\nlevel = \"info\""),
    );
    let lines: Vec<&str> = json
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "{json}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|line| line.contains("shutdown signal received")),
        "{json}"
    );

    let quiet = run_and_collect_stderr("log-level", &log_config("[log]\nlevel = \"error\""));
    assert!(
        !quiet.contains("shutdown signal received"),
        "level error hides info:\n{quiet}"
    );
}

#[test]
// A plain blocking test driving a child process: no tokio clock to pause here.
#[allow(clippy::disallowed_methods)]
fn sigusr1_reopens_access_logs_moved_away_by_logrotate() {
    let (web, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("levee-cli-{}-usr1", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("web.log");
    // The endpoint refuses: every request is a 502, logged all the same.
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{web}\"\ncluster = \"app\"\naccess_log = {{ path = \"{}\" }}\n\n[[cluster]]\nname = \"app\"\nendpoints = [\"127.0.0.1:9\"]\n",
        log.display()
    );
    let path = write_config("usr1", &config);
    let mut child = levee()
        .args(["run", "-c"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_line(&mut child, "levee: admin on");
    let address = format!("127.0.0.1:{web}");
    let wait_for_lines = |file: &std::path::Path, count: usize| {
        for _ in 0..100 {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if text.lines().count() >= count {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(file).unwrap_or_default()
    };
    http_get(&address, "/before");
    assert!(wait_for_lines(&log, 1).contains("/before"));
    let rotated = dir.join("web.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-USR1", &pid]).status();
    // The writer reopens at its next drain (every 20 ms).
    std::thread::sleep(Duration::from_millis(200));
    http_get(&address, "/after");
    let fresh = wait_for_lines(&log, 1);
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
    assert!(
        fresh.contains("/after") && !fresh.contains("/before"),
        "{fresh}"
    );
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    let _ = std::fs::remove_dir_all(&dir);
}
