//! Properties of reading any text as a config: it never panics, and it
//! ends in a config or in problems that point into the file and fit on a
//! screen. Inputs are arbitrary text, and TOML documents built from levee's
//! own tables and keys with values of every type, plausible and not.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::every_table;
use crate::config::{Config, ConfigErrors};

/// Cases per property: enough to walk every table and value kind many
/// times, few enough to keep the suite fast.
const CASES: u32 = 256;

/// Strings levee gives meaning to, and near misses.
const PLAUSIBLE: &[&str] = &[
    "",
    " ",
    "0",
    "1s",
    "0s",
    "-1s",
    "250ms",
    "10 parsecs",
    "64KiB",
    "0B",
    "1PB",
    "127.0.0.1:0",
    "127.0.0.1:8080",
    "0.0.0.0:80",
    "[::1]:80",
    "[::]:notaport",
    "no-such-host.invalid:80",
    "host:99999",
    "http://host:80/path",
    "redis://127.0.0.1:6379",
    "/healthz",
    "healthz",
    "GET",
    "get",
    "http",
    "tcp",
    "redis",
    "memcached",
    "p2c-ewma",
    "round-robin",
    "least-request",
    "p95",
    "off",
    "serve",
    "close",
    "reject-all",
    "reject-writes",
    "memory",
    "local",
    "open",
    "closed",
    "app",
    "web",
    "app/10.0.0.1:8000",
    "a\nb",
    "ç\u{0}\u{7f}",
];

/// Where a pair of problems' line numbers may point: the lines of `source`.
fn lines_in(source: &str) -> usize {
    source.split('\n').count()
}

/// The property every input must have.
fn answered(source: &str) -> Result<(), TestCaseError> {
    let Err(errors) = Config::from_toml_str(source, "p.toml") else {
        return Ok(());
    };
    prop_assert!(!errors.is_empty());
    for error in &errors {
        prop_assert!(error.line >= 1 && error.column >= 1, "{error}");
        prop_assert!(error.line <= lines_in(source), "{error}");
    }
    let shown = errors.to_string();
    prop_assert!(
        shown.lines().count() <= ConfigErrors::SHOWN + 1,
        "{} lines",
        shown.lines().count()
    );
    Ok(())
}

fn value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![
            Just(-1_i64),
            Just(0),
            Just(1),
            Just(2),
            Just(100),
            Just(101),
            0_i64..70_000
        ]
        .prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        (-1.0_f64..2.0).prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        prop::sample::select(PLAUSIBLE).prop_map(|text| toml::Value::String(text.to_owned())),
        any::<String>().prop_map(toml::Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|table| toml::Value::Table(table.into_iter().collect())),
        ]
    })
}

/// A key as written in TOML: bare when it can be.
fn written_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

/// The keys written in the table called `name`: its own, dotted ones of the
/// tables nested in it, and unknown ones.
fn key(name: &str, keys: &'static [&'static str]) -> impl Strategy<Value = String> + use<> {
    let nested: Vec<String> = every_table()
        .into_iter()
        .filter_map(|table| {
            let rest = table.name.strip_prefix(name)?.strip_prefix('.')?.to_owned();
            Some(table.keys.iter().map(move |key| format!("{rest}.{key}")))
        })
        .flatten()
        .collect();
    let own = prop::sample::select(keys.to_vec()).prop_map(str::to_owned);
    let nested = match nested.is_empty() {
        true => own.clone().boxed(),
        false => prop::sample::select(nested).boxed(),
    };
    prop_oneof![
        4 => own,
        2 => nested,
        1 => "[a-z_]{1,12}",
        1 => any::<String>().prop_map(|key| written_key(&key)),
    ]
}

/// One table of a document: its header and entries.
fn part() -> impl Strategy<Value = String> {
    let tables = every_table();
    (0..tables.len()).prop_flat_map(move |index| {
        let table = &tables[index];
        let name = table.name.as_str();
        let header = match name {
            "listener" | "cluster" | "alert" | "readiness.probe" => format!("[[{name}]]"),
            _ => format!("[{name}]"),
        };
        prop::collection::vec((key(name, table.keys), value()), 0..6).prop_map(move |entries| {
            let mut text = format!("{header}\n");
            for (key, value) in entries {
                text.push_str(&format!("{key} = {value}\n"));
            }
            text
        })
    })
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(part(), 0..8).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_is_answered(source in any::<String>()) {
        answered(&source)?;
    }

    #[test]
    fn toml_looking_text_is_answered(source in "[a-z_=\\[\\]\\.\"' \n0-9{},#-]{0,300}") {
        answered(&source)?;
    }

    #[test]
    fn documents_of_known_keys_are_answered(source in document()) {
        answered(&source)?;
    }
}
