//! Files that are not levee configs at all, or that have thousands of
//! problems: the answer is one screen at most, and it comes at once.
//!
//! Measured with the release build, `levee validate -c FILE`: CPU time,
//! best of three, on a 2-core machine shared with other builds (load
//! average about 3):
//!
//! | file | before | after |
//! | --- | --- | --- |
//! | 1 MB of random base64 text | 1.2 s, 10 000 lines | 0.00 s, 1 line |
//! | 10 MB of random base64 text | (7.5 MB: 30.5 s, 50 002 lines) | 0.03 s, 1 line |
//! | 10 MB, 600 000 unknown top-level keys | over 60 s | 0.58 s, 51 lines |
//! | 8.3 MB, 500 000 unknown keys in one `[[cluster]]` | | 0.89 s, 51 lines |
//! | 12.4 MB, 700 000 unknown keys in one inline table | | 1.09 s, 51 lines |
//! | 10 MB, 600 000 unknown keys and 3 bad values in `health` | | 0.66 s, 4 lines |
//! | 6.9 MB, `min_healthy` with 500 000 bad values | | 0.54 s, 4 lines |
//! | 8.1 MB, 200 000 `[[cluster]]`s with a bad value each | | 0.99 s, 51 lines |
//! | 10.2 MB, 200 000 clusters of one name | | 0.83 s, 51 lines |
//! | 9.6 MB valid: 60 000 listeners and 60 000 clusters | | 0.69 s |
//!
//! Parsing the TOML alone costs about 250 instructions a byte; the rest
//! grows linearly with the number of keys and problems.
//!
//! The tests run in the debug build of the suite, so their time bound is a
//! guard against quadratic work coming back, not a performance target.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::config::{Config, ConfigErrors};

/// Generous for a debug build on a busy machine; quadratic work on these
/// inputs takes minutes.
const LIMIT: Duration = Duration::from_secs(10);

/// `bytes` of base64-looking text in lines of 76, the same for a seed: what
/// a key or a certificate pasted in place of the config looks like.
fn random_text(bytes: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut text = String::with_capacity(bytes);
    while text.len() < bytes {
        let line: String = (0..76)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Read `source`, which must fail, and how long that took.
fn rejected(source: &str) -> (ConfigErrors, Duration) {
    let started = Instant::now();
    let errors = Config::from_toml_str(source, "levee.toml").expect_err("not a valid config");
    (errors, started.elapsed())
}

#[test]
fn five_megabytes_of_random_text_is_one_syntax_error() {
    let source = random_text(5 << 20, 1);
    let (errors, took) = rejected(&source);
    assert_eq!(errors.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(error.line, 1, "{errors}");
    assert!(error.message.starts_with("invalid TOML: "), "{errors}");
    assert_eq!(errors.to_string().lines().count(), 1);
    assert!(took < LIMIT, "took {took:?}");
}

#[test]
fn thousands_of_bad_keys_and_values_print_fifty_lines_and_a_count() {
    // Valid TOML, but every cluster has a misspelt key and a value of the
    // wrong type, and there is no listener.
    let clusters = 10_000;
    let source: String = (0..clusters)
        .map(|i| {
            format!(
                "[[cluster]]\nname = \"c{i}\"\nendpoints = [\"10.0.0.1:80\"]\nbalanse = \"round-robin\"\nconnect_timeout = 5\n"
            )
        })
        .collect();
    let (errors, took) = rejected(&source);
    assert_eq!(errors.len(), 2 * clusters + 1, "every problem is counted");
    let text = errors.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), ConfigErrors::SHOWN + 1, "{text}");
    assert_eq!(lines[0], "levee.toml:1:1: config defines no [[listener]]");
    assert_eq!(
        lines[1],
        "levee.toml:4:1: unknown key \"balanse\" in [[cluster]] \"c0\" (did you mean \"balance\"?)"
    );
    assert_eq!(
        lines[2],
        "levee.toml:5:19: connect_timeout: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        lines[50],
        format!("… and {} more problems", 2 * clusters + 1 - 50)
    );
    assert!(took < LIMIT, "took {took:?}");
}

#[test]
fn a_table_of_many_bad_values_is_read_a_bounded_number_of_times() {
    let cluster = "[[cluster]]\nname = \"app\"\nendpoints = [\"10.0.0.1:80\"]\n";
    // A few bad values: each is reported.
    let few: String = (0..3).map(|i| format!("c{i} = \"x\"\n")).collect();
    let (errors, _) = rejected(&format!("{cluster}[readiness.min_healthy]\n{few}"));
    let wrong_type = |errors: &ConfigErrors| {
        errors
            .iter()
            .filter(|error| error.message.contains("expected an integer"))
            .count()
    };
    assert_eq!(wrong_type(&errors), 3, "{errors}");
    // Twenty: sixteen are reported, and that the rest was not checked.
    let twenty: String = (0..20).map(|i| format!("c{i:02} = \"x\"\n")).collect();
    let (errors, _) = rejected(&format!("{cluster}[readiness.min_healthy]\n{twenty}"));
    assert_eq!(wrong_type(&errors), 16, "{errors}");
    assert!(
        errors.iter().any(|error| error.message
            == "[readiness]: stopped after 16 values of the wrong type; the rest of this table is not checked"),
        "{errors}"
    );
    // 200 000: the passes stop early rather than read them all 16 times.
    let many: String = (0..200_000).map(|i| format!("c{i} = \"x\"\n")).collect();
    let (errors, took) = rejected(&format!("{cluster}[readiness.min_healthy]\n{many}"));
    assert!(wrong_type(&errors) < 16, "{errors}");
    assert!(errors.to_string().contains("stopped after"), "{errors}");
    assert!(took < LIMIT, "took {took:?}");
}

#[test]
fn thousands_of_listeners_and_clusters_are_cross_checked_in_linear_time() {
    // Every listener names a cluster that is not defined, every second one
    // on the address of the one before; every cluster lists one endpoint
    // twice.
    let n = 5_000;
    let listeners: String = (0..n)
        .map(|i| {
            format!(
                "[[listener]]\nname = \"l{i}\"\nlisten = \"127.0.0.1:{}\"\ncluster = \"x{i}\"\n",
                20_000 + i / 2
            )
        })
        .collect();
    let clusters: String = (0..n)
        .map(|i| {
            format!(
                "[[cluster]]\nname = \"c{i}\"\nendpoints = [\"10.0.0.1:1\", \"10.0.0.2:1\", \"10.0.0.1:1\"]\n"
            )
        })
        .collect();
    let (errors, took) = rejected(&format!("{listeners}{clusters}"));
    let count = |needle: &str| {
        errors
            .iter()
            .filter(|error| error.message.contains(needle))
            .count()
    };
    assert_eq!(count("which is not defined"), n);
    assert_eq!(count("is listed twice"), n);
    assert_eq!(count("cannot listen on"), n / 2);
    assert!(took < LIMIT, "took {took:?}");
}
