//! What the repository ships for running levee (the systemd unit, the
//! Dockerfile, the compose example and its configs) agrees with the levee
//! that is built: every config validates, every command line exists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn levee(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_levee"))
        .env("LEVEE_LOG", "error")
        .args(args)
        .output()
        .expect("run levee")
}

#[test]
fn every_example_config_validates() {
    let mut configs = Vec::new();
    let mut dirs = vec![repository().join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("examples/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "toml") {
                configs.push(path);
            }
        }
    }
    configs.push(repository().join("docs/levee.example.toml"));
    assert!(configs.len() >= 3, "{configs:?}");
    for config in configs {
        let output = levee(&["validate", "-c", config.to_str().expect("utf-8 path")]);
        assert!(output.status.success(), "{}: {output:?}", config.display());
    }
}

#[test]
fn the_compose_example_mounts_files_that_exist() {
    let compose = read("examples/docker-compose.yml");
    for line in compose.lines() {
        if let Some(start) = line.find("\"./") {
            let mounted = &line[start + 1..];
            let file = mounted.split(':').next().expect("source");
            assert!(
                repository().join("examples").join(file).exists(),
                "{file} in examples/docker-compose.yml"
            );
        }
    }
    assert!(compose.contains("target: testkit") && compose.contains("target: levee"));
}

#[test]
fn the_dockerfile_runs_as_a_user_and_checks_readiness_with_levee_check() {
    let dockerfile = read("Dockerfile");
    let users: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("USER "))
        .collect();
    assert!(
        !users.is_empty() && users.iter().all(|user| *user != "root"),
        "{users:?}"
    );
    assert!(dockerfile.contains("AS testkit") && dockerfile.contains("AS levee"));
    let check = dockerfile
        .lines()
        .find(|line| line.contains("CMD [\"levee\", \"check\""))
        .expect("HEALTHCHECK with levee check");
    // The flag it passes exists.
    assert!(check.contains("--admin"));
    let help = levee(&["check", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--admin"));
}

#[test]
fn the_systemd_unit_notifies_reloads_with_sighup_and_validates_first() {
    let unit = read("packaging/levee.service");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|line| line.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(value("Type"), ["notify"]);
    assert_eq!(value("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(
        value("ExecStartPre"),
        ["/usr/local/bin/levee validate -c /etc/levee/levee.toml"]
    );
    assert_eq!(
        value("ExecStart"),
        ["/usr/local/bin/levee run -c /etc/levee/levee.toml"]
    );
    assert_eq!(value("NoNewPrivileges"), ["yes"]);
    // Its stop timeout outlasts the default drain (30 s).
    let stop: u64 = value("TimeoutStopSec")[0].parse().expect("seconds");
    assert!(stop > 30);
    // The subcommands and flags it uses exist.
    for subcommand in ["run", "validate"] {
        let help = levee(&[subcommand, "--help"]);
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("--config"),
            "{subcommand}"
        );
    }
}

#[test]
fn the_license_is_the_one_cargo_toml_names() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    assert!(read("LICENSE").contains("Apache License\n                        Version 2.0"));
}
