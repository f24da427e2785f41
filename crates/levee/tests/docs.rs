//! The documentation a user reads stands on its own and says what levee
//! does: no link leaves the repository and every relative link lands, every
//! metric levee registers or emits is in the metrics reference (and the
//! reference lists no metric levee lacks), and every config in the
//! walkthrough is valid.

// Waiting for a child process (`levee demo`) to serve: a blocking test.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md, bench/README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let root = repository();
    let mut pages = vec![root.join("README.md"), root.join("bench/README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            pages.push(path);
        }
    }
    pages
}

/// The text outside fenced code blocks (links in code are examples).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `[text](target)` targets, and `<scheme:...>` autolinks.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b']' && bytes[i + 1] == b'(' {
            if let Some(end) = text[i + 2..].find(')') {
                found.push(text[i + 2..i + 2 + end].trim().to_owned());
            }
        }
        if bytes[i] == b'<' {
            if let Some(end) = text[i + 1..].find('>') {
                let inner = &text[i + 1..i + 1 + end];
                if inner.contains("://") {
                    found.push(inner.to_owned());
                }
            }
        }
        i += 1;
    }
    found
}

/// GitHub's anchor for a heading: lower case, spaces to dashes, other
/// punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| slug(heading.trim_start_matches('#')))
        .collect()
}

#[test]
fn no_link_leaves_the_repository_and_every_relative_link_lands() {
    let mut problems = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let name = page
            .strip_prefix(repository())
            .unwrap_or(&page)
            .display()
            .to_string();
        for target in links(&prose(&text)) {
            // `../` climbs out of the page's folder: from a copy of the docs
            // alone (or a renderer rooted at docs/) it leads nowhere.
            if target.contains("://")
                || target.starts_with("//")
                || target.starts_with("mailto:")
                || target.starts_with('/')
                || target.split('/').any(|part| part == "..")
            {
                problems.push(format!("{name}: link outside the repository: {target}"));
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let landing = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("dir").join(path)
            };
            if !landing.exists() {
                problems.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor
                && landing.extension().is_some_and(|ext| ext == "md")
            {
                let landed = std::fs::read_to_string(&landing).expect("linked page");
                if !anchors(&landed).contains(anchor) {
                    problems.push(format!("{name}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The metric families registered in levee-proxy's source, without the
/// `levee_` prefix.
fn registered_families() -> BTreeSet<String> {
    let mut families = BTreeSet::new();
    let mut dirs = vec![repository().join("crates/levee-proxy/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (at, _) in text.match_indices(".register(") {
                let after = &text[at + ".register(".len()..];
                let Some(start) = after.find('"') else {
                    continue;
                };
                let rest = &after[start + 1..];
                let name = &rest[..rest.find('"').unwrap_or(0)];
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    families.insert(name.to_owned());
                }
            }
        }
    }
    families
}

/// The metric names in the reference table of docs/operations.md.
fn documented_metrics() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(repository().join("docs/operations.md")).expect("operations.md");
    text.lines()
        .filter_map(|line| line.strip_prefix("| `levee_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("levee_{name}"))
        .collect()
}

#[test]
fn every_registered_metric_family_is_in_the_reference_and_only_those() {
    let registered = registered_families();
    assert!(registered.len() >= 40, "{registered:?}");
    let documented = documented_metrics();
    let missing: Vec<&String> = registered
        .iter()
        .filter(|family| {
            !documented.contains(&format!("levee_{family}"))
                && !documented.contains(&format!("levee_{family}_total"))
        })
        .collect();
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
    let stale: Vec<&String> = documented
        .iter()
        .filter(|name| {
            let base = name.trim_start_matches("levee_");
            !registered.contains(base) && !registered.contains(base.trim_end_matches("_total"))
        })
        .collect();
    assert!(stale.is_empty(), "documented but not registered: {stale:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn http_get(address: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn every_family_a_running_levee_emits_is_in_the_reference() {
    let admin = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let mut demo = Command::new(env!("CARGO_BIN_EXE_levee"))
        .env("LEVEE_LOG", "error")
        .args([
            "demo",
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--worker-threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("levee demo");
    let mut metrics = None;
    for _ in 0..100 {
        if let Some(text) = http_get(&admin, "/metrics").filter(|text| text.contains("# TYPE")) {
            metrics = Some(text);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = demo.kill();
    let _ = demo.wait();
    let metrics = metrics.expect("levee demo served /metrics");
    let documented = documented_metrics();
    let mut missing = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let exposed = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        if !documented.contains(&exposed) {
            missing.push(exposed);
        }
    }
    assert!(
        missing.is_empty(),
        "emitted but not in docs/operations.md: {missing:?}"
    );
}

#[test]
fn every_config_in_the_walkthrough_is_valid() {
    let text =
        std::fs::read_to_string(repository().join("docs/walkthrough.md")).expect("walkthrough");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    assert!(blocks.len() >= 6, "{} blocks", blocks.len());
    let dir = std::env::temp_dir().join(format!("levee-walkthrough-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (index, block) in blocks.iter().enumerate() {
        let path = dir.join(format!("step-{index}.toml"));
        std::fs::write(&path, block).expect("write");
        let output = Command::new(env!("CARGO_BIN_EXE_levee"))
            .env("LEVEE_LOG", "error")
            .args(["validate", "-c"])
            .arg(&path)
            .output()
            .expect("levee validate");
        assert!(
            output.status.success(),
            "walkthrough block {index}:\n{block}\n{output:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_link_reader_finds_links_anchors_and_skips_code() {
    let text = "See [a](docs/a.md#b-c) and <https://example.com>.\n```\n[x](https://in-code)\n```\n## B.c d_e\n";
    assert_eq!(
        links(&prose(text)),
        ["docs/a.md#b-c", "https://example.com"]
    );
    assert!(anchors(text).contains("bc-d_e"));
    assert_eq!(slug("[[cluster]]"), "cluster");
    assert_eq!(slug("listener.access_log"), "listeneraccess_log");
}
