//! Real `git daemon` nodes behind a tcp listener, real `git clone` and
//! `git push` as clients: the case levee was first described for. A node
//! stopped with SIGSTOP (its kernel still accepts) costs a clone one
//! first-byte deadline, a dead node costs nothing, and a push
//! (`git-receive-pack`) is never replayed to another node.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use levee_proxy::config::{BalancePolicy, Config, FirstByteTimeout, Protocol};

/// The first-byte deadline of the tests' listener.
const DEADLINE: Duration = Duration::from_secs(1);

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("levee-git-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `git` with no user or system configuration in the way.
fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "user.name=levee",
            "-c",
            "user.email=levee@test",
            "-c",
            "init.defaultBranch=main",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run(mut command: Command) {
    let output = command.output().expect("git runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A bare repository `repo.git` with one commit, under `root`.
fn repository(root: &Path) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    run({
        let mut c = git(&work);
        c.args(["init", "-q"]);
        c
    });
    std::fs::write(work.join("README"), "levee test repository\n").expect("file");
    run({
        let mut c = git(&work);
        c.args(["add", "README"]);
        c
    });
    run({
        let mut c = git(&work);
        c.args(["commit", "-q", "-m", "first"]);
        c
    });
    run({
        let mut c = git(root);
        c.args(["clone", "-q", "--bare", "work", "repo.git"]);
        c
    });
}

/// A `git daemon` serving `root` (receive-pack on) on a free loopback port.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    root: PathBuf,
}

impl Daemon {
    fn start(root: &Path) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // git-daemon itself, not `git daemon`: that is a parent process
        // waiting for it, and SIGSTOP must reach the daemon.
        let exec_path = git(root)
            .arg("--exec-path")
            .stdout(Stdio::piped())
            .output()
            .expect("git --exec-path");
        let daemon =
            PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-daemon");
        let child = Command::new(daemon)
            .current_dir(root)
            .env("HOME", root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .args([
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts (install the git package)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "git daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            addr,
            root: root.to_owned(),
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Whether its repository has `branch`.
    fn has_branch(&self, branch: &str) -> bool {
        git(&self.root)
            .args(["--git-dir", "repo.git", "rev-parse", "--verify", "-q"])
            .arg(format!("refs/heads/{branch}"))
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A stopped daemon must be woken to die.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two daemons, each with its own copy of the repository.
fn two_nodes(scratch: &Scratch) -> (Daemon, Daemon) {
    let roots = ["a", "b"].map(|name| scratch.0.join(name));
    for root in &roots {
        std::fs::create_dir_all(root).expect("root");
        repository(root);
    }
    (Daemon::start(&roots[0]), Daemon::start(&roots[1]))
}

/// A tcp listener replaying `git-upload-pack` (reads) only, with the
/// first-byte deadline.
fn git_config(nodes: &[&Daemon]) -> Config {
    let mut config = config(
        nodes.iter().map(|node| node.addr).collect(),
        BalancePolicy::RoundRobin,
    );
    let listener = &mut config.listeners[0];
    listener.protocol = Protocol::Tcp;
    listener.tcp_replay = 64 * 1024;
    listener.first_byte_timeout = Some(FirstByteTimeout::Fixed(DEADLINE));
    listener.replay_first_bytes_match = vec![b"????git-upload-pack".to_vec()];
    config
}

/// `git clone` through `addr` into a new directory; how long it took, if
/// it succeeded within `limit`.
fn clone(addr: SocketAddr, into: &Path, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = git(into.parent().expect("parent"))
        .args(["clone", "-q"])
        .arg(format!("git://{addr}/repo.git"))
        .arg(into)
        .spawn()
        .expect("git clone runs");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return if status.success() && into.join("README").exists() {
                Ok(started.elapsed())
            } else {
                Err(format!("clone failed: {status}"))
            };
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("clone still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_succeed_while_a_node_is_stopped_or_dead() {
    let scratch = Scratch::new("clone");
    let (a, b) = two_nodes(&scratch);
    let (gateway, addr) = start(git_config(&[&a, &b])).await;

    // A stopped node: its kernel accepts, nothing answers.
    a.signal("STOP");
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let into = scratch.0.join(format!("stopped-{i}"));
        let took = tokio::task::spawn_blocking(move || clone(addr, &into, Duration::from_secs(15)))
            .await
            .expect("clone task")
            .unwrap_or_else(|error| panic!("clone {i}: {error}"));
        slowest = slowest.max(took);
    }
    assert!(slowest < DEADLINE * 2, "slowest clone {slowest:?}");
    // The stopped node was met (and left after the deadline) at least once.
    assert!(slowest >= DEADLINE, "slowest clone {slowest:?}");
    let metrics = gateway.state().metrics.encode();
    assert!(
        metrics.contains(
            "levee_tcp_reconnects_total{listener=\"web\",reason=\"first-byte-timeout\"} "
        ) && !metrics.contains(
            "levee_tcp_reconnects_total{listener=\"web\",reason=\"first-byte-timeout\"} 0"
        ),
        "{metrics}"
    );
    a.signal("CONT");

    // A dead node: refused at once, every clone lands on the other.
    drop(a);
    for i in 0..10 {
        let into = scratch.0.join(format!("dead-{i}"));
        tokio::task::spawn_blocking(move || clone(addr, &into, Duration::from_secs(15)))
            .await
            .expect("clone task")
            .unwrap_or_else(|error| panic!("clone {i} with a dead node: {error}"));
    }
    drop(b);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_never_replayed_to_another_node() {
    let scratch = Scratch::new("push");
    let (a, b) = two_nodes(&scratch);
    let (gateway, addr) = start(git_config(&[&a, &b])).await;
    let work = scratch.0.join("a").join("work");

    // Round robin: the first session goes to a, which is stopped. Its
    // first bytes say git-receive-pack, a write: levee waits on a rather
    // than give the push to b, and the client gives up.
    a.signal("STOP");
    let push = |branch: &'static str, limit: Duration| {
        let work = work.clone();
        move || {
            let mut child = git(&work)
                .arg("push")
                .arg(format!("git://{addr}/repo.git"))
                .arg(format!("HEAD:refs/heads/{branch}"))
                .spawn()
                .expect("git push runs");
            let started = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    return status.success();
                }
                if started.elapsed() > limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let first = tokio::task::spawn_blocking(push("first", DEADLINE * 3))
        .await
        .expect("push task");
    assert!(
        !first,
        "the push routed to the stopped node waits for it (landed on b: {})",
        b.has_branch("first")
    );
    assert!(
        !b.has_branch("first"),
        "a push is never replayed to another node"
    );

    // The next session goes to b and succeeds there, once.
    let second = tokio::task::spawn_blocking(push("second", Duration::from_secs(15)))
        .await
        .expect("push task");
    assert!(second, "a push to a live node succeeds");
    assert!(b.has_branch("second"));
    a.signal("CONT");
    assert!(!a.has_branch("second"));
    gateway.shutdown().await;
}
