//! From TOML text to raw sections, reporting syntax errors, misshapen
//! sections, values of the wrong type and unknown keys at their positions.
//!
//! A syntax error stops everything: after one, the parser can only guess
//! what was meant, and a file that is not TOML at all (random text, a binary)
//! would get an error per line. Once the file parses, serde would still stop
//! at the first error, so one typo would hide everything after it. To report
//! every problem in one go:
//! - each top-level section and each `[[listener]]` / `[[cluster]]` element
//!   is deserialized on its own;
//! - inside a table, a key whose value has the wrong type is reported, taken
//!   out (only the innermost key, if the value is in a nested table such as
//!   `health`), and the table deserialized again without it, a bounded
//!   number of times per table (see [`passes_allowed`]);
//! - unknown keys are collected with `serde_ignored` (serde's
//!   `deny_unknown_fields` would stop at the first) and located by walking
//!   the spanned parse of the document.

use std::collections::HashSet;
use std::ops::Range;

use serde_ignored::Path;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};

use super::keys::did_you_mean;
use super::raw::{RawConfig, SECTIONS};
use super::report::Report;
use super::table::{RawTable, Section};

/// Deserializations of one table, at most: the first, and one more after
/// each value of the wrong type. Real mistakes are a handful per table.
const MAX_PASSES: usize = 16;

/// Unknown keys of one table that get a "did you mean" hint: those shown
/// (see [`ConfigErrors::SHOWN`](super::ConfigErrors::SHOWN)). A hint costs an
/// edit distance per known key, which adds up over a table of 500 000 keys.
const HINTED_UNKNOWN_KEYS: usize = super::ConfigErrors::SHOWN;

/// Values that the passes over one table may read in all. Each pass reads
/// the whole table, so without this a huge table of bad values
/// (`min_healthy` with 500 000 entries) would take seconds.
const PASS_BUDGET: usize = 1_000_000;

/// How often `table` may be deserialized: [`MAX_PASSES`], fewer for a table
/// so large that this many passes would exceed [`PASS_BUDGET`], and at least
/// two (the first error is always followed by a look at the rest).
fn passes_allowed(table: &DeTable<'_>) -> usize {
    (PASS_BUDGET / values_in(table).max(1)).clamp(2, MAX_PASSES)
}

/// How many values `table` holds, nested ones included.
fn values_in(table: &DeTable<'_>) -> usize {
    fn count(value: &DeValue<'_>) -> usize {
        1 + match value {
            DeValue::Table(table) => values_in(table),
            DeValue::Array(items) => items.iter().map(|item| count(item.get_ref())).sum(),
            _ => 0,
        }
    }
    table.values().map(|value| count(value.get_ref())).sum()
}

/// The raw sections of `source`, or `None` if it is not valid TOML (then
/// nothing else can be checked, and the first syntax error is the one
/// reported).
pub(super) fn read(source: &str, report: &mut Report<'_>) -> Option<RawConfig> {
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            // toml says "duplicate key" without saying which.
            let culprit = match source.get(span.clone()) {
                Some(text) if !text.is_empty() && error.message() == "duplicate key" => {
                    format!(" {text:?}")
                }
                _ => String::new(),
            };
            report.error(span, format!("invalid TOML: {}{culprit}", error.message()));
            return None;
        }
    };
    let mut config = RawConfig::default();
    let mut unknown_sections = Vec::new();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "admin" => config.admin = table(key, value, "[admin]", report),
            "runtime" => config.runtime = table(key, value, "[runtime]", report),
            "log" => config.log = table(key, value, "[log]", report),
            "listener" => config.listener = array_of_tables(key, value, report),
            "cluster" => config.cluster = array_of_tables(key, value, report),
            "readiness" => config.readiness = table(key, value, "[readiness]", report),
            "alert" => config.alert = array_of_tables(key, value, report),
            "store" => config.store = table(key, value, "[store]", report),
            other => unknown_sections.push((key.span(), other)),
        }
    }
    // In file order, so that the keys that get hints are the first ones.
    unknown_sections.sort_by_key(|(span, _)| span.start);
    for (index, (span, key)) in unknown_sections.into_iter().enumerate() {
        let known: &[&str] = if index < HINTED_UNKNOWN_KEYS {
            &SECTIONS
        } else {
            &[]
        };
        report.error(span, unknown_key("", key, "at the top level", known));
    }
    Some(config)
}

/// A section that is a single table: `[admin]`.
fn table<T: RawTable>(
    key: &Spanned<DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
    label: &str,
    report: &mut Report<'_>,
) -> Option<Section<T>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(section(table, value.span(), label.to_owned(), report)),
        other => {
            let name = key.get_ref();
            let message = format!("{name}: expected a table, found {}", other.type_str());
            report.error(value.span(), message);
            None
        }
    }
}

/// A section that may repeat: `[[cluster]]`.
fn array_of_tables<T: RawTable>(
    key: &Spanned<DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report<'_>,
) -> Vec<Section<T>> {
    let name = key.get_ref();
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| match item.get_ref() {
                DeValue::Table(table) => {
                    let label = element_label(name, table, index);
                    Some(section(table, item.span(), label, report))
                }
                other => {
                    let message = format!("{name}: expected a table, found {}", other.type_str());
                    report.error(item.span(), message);
                    None
                }
            })
            .collect(),
        // `[cluster]` instead of `[[cluster]]`: say so, and still check it.
        DeValue::Table(table) => {
            let message = format!("{name}: write [[{name}]], not [{name}]: there can be several");
            report.error(value.span(), message);
            let label = element_label(name, table, 0);
            vec![section(table, value.span(), label, report)]
        }
        other => {
            let message = format!(
                "{name}: expected an array of tables ([[{name}]]), found {}",
                other.type_str()
            );
            report.error(value.span(), message);
            Vec::new()
        }
    }
}

/// `[[cluster]] "app"`, or `[[cluster]] #2` if it has no usable name.
fn element_label(section: &str, table: &DeTable<'_>, index: usize) -> String {
    match table.get("name").and_then(|name| name.get_ref().as_str()) {
        Some(name) => format!("[[{section}]] {name:?}"),
        None => format!("[[{section}]] #{}", index + 1),
    }
}

/// Deserialize one table into `T`, reporting every value of the wrong type
/// and every unknown key.
fn section<T: RawTable>(
    table: &DeTable<'_>,
    span: Range<usize>,
    label: String,
    report: &mut Report<'_>,
) -> Section<T> {
    // What is left to read; the table itself until a pass fails.
    let mut remaining: Option<DeTable<'_>> = None;
    let mut unreadable = Vec::new();
    let mut unknown: Vec<Vec<Step>> = Vec::new();
    // After a failed pass the unknown keys met are taken out of `remaining`,
    // so the next pass does not meet them again; those inside arrays stay,
    // and are kept here so that they are recorded once.
    let mut left_in: HashSet<Vec<Step>> = HashSet::new();
    let mut passes = 0;
    let max_passes = passes_allowed(table);
    let raw = loop {
        passes += 1;
        let met_before = unknown.len();
        let input = remaining.as_ref().unwrap_or(table).clone();
        let input = Spanned::new(span.clone(), DeValue::Table(input));
        let result = serde_ignored::deserialize(ValueDeserializer::from(input), |path| {
            let mut steps = Vec::new();
            path_steps(&path, &mut steps);
            if !left_in.contains(&steps) {
                unknown.push(steps);
            }
        });
        let error = match result {
            Ok(raw) => break raw,
            Err(error) => error,
        };
        let remaining = remaining.get_or_insert_with(|| table.clone());
        for steps in &unknown[met_before..] {
            if !remove_path(remaining, steps) {
                left_in.insert(steps.clone());
            }
        }
        // Every type error lies inside one key's value: take that key out
        // and try again, so the keys after it are checked too.
        let error_span = error.span().unwrap_or_else(|| span.clone());
        let culprit = take_out(remaining, &error_span);
        if let Some(culprit) = &culprit {
            let culprit = culprit.join(".");
            let message = plain_types(error.message());
            report.error(error_span.clone(), format!("{culprit}: {message}"));
            unreadable.push(culprit);
        }
        if culprit.is_none() || passes == max_passes {
            let message = match culprit {
                Some(_) => format!(
                    "{label}: stopped after {passes} values of the wrong type; the rest of this table is not checked"
                ),
                // Not expected with all-optional raw structs.
                None => format!("{label}: {}", error.message()),
            };
            let at = if culprit.is_some() {
                span.clone()
            } else {
                error_span
            };
            report.error(at, message);
            // Stay safe: no key of this table is reported missing on top.
            unreadable.extend(remaining.keys().map(|key| key.get_ref().to_string()));
            break T::default();
        }
    };
    let mut located: Vec<(Range<usize>, &[Step])> = unknown
        .iter()
        .map(|steps| {
            (
                locate(table, steps).unwrap_or_else(|| span.clone()),
                &steps[..],
            )
        })
        .collect();
    // In file order, so that the keys that get hints are the first ones.
    located.sort_by_key(|(key_span, _)| key_span.start);
    let place = format!("in {label}");
    for (index, (key_span, steps)) in located.into_iter().enumerate() {
        let hinted = index < HINTED_UNKNOWN_KEYS;
        let message = match key_path(steps) {
            // `health.htp`: suggest among the keys of `health`.
            Some((parent, key)) => {
                // Shown as written, array positions included: `route[1].`.
                let prefix = match steps.len() {
                    0 | 1 => String::new(),
                    n => format!("{}.", render(&steps[..n - 1])),
                };
                let known = if hinted { T::keys_at(&parent) } else { &[] };
                unknown_key(&prefix, key, &place, known)
            }
            None => unknown_key("", &render(steps), &place, &[]),
        };
        report.error(key_span, message);
    }
    Section {
        label,
        span,
        raw,
        unreadable,
    }
}

/// Take the key whose value holds `error_span` out of `table`: the innermost
/// one, if that value is a nested table, so the rest of the nested table is
/// still checked. Its path, or `None` if no key holds the span.
fn take_out(table: &mut DeTable<'_>, error_span: &Range<usize>) -> Option<Vec<String>> {
    let holder = table
        .iter()
        .find(|(key, value)| {
            contains(&value.span(), error_span) || contains(&key.span(), error_span)
        })
        .map(|(key, _)| key.get_ref().to_string());
    let Some(key) = holder else {
        // A table written as `[cluster.health]` or through dotted keys
        // (`health.tcp = true`) has a span that does not cover its keys:
        // look inside every nested table.
        return table
            .iter_mut()
            .find_map(|(key, value)| match value.get_mut() {
                DeValue::Table(nested) => take_out(nested, error_span).map(|mut path| {
                    path.insert(0, key.get_ref().to_string());
                    path
                }),
                _ => None,
            });
    };
    if let Some(DeValue::Table(nested)) = table.get_mut(key.as_str()).map(Spanned::get_mut) {
        if let Some(mut path) = take_out(nested, error_span) {
            path.insert(0, key);
            return Some(path);
        }
    }
    table.remove(key.as_str());
    Some(vec![key])
}

/// Remove the key at `steps` from `table`, if the path leads through tables
/// only (an element of an array stays: removing it would renumber the rest).
/// Whether it was removed.
fn remove_path(table: &mut DeTable<'_>, steps: &[Step]) -> bool {
    match steps {
        [Step::Key(key)] => table.remove(key.as_str()).is_some(),
        [Step::Key(key), rest @ ..] => match table.get_mut(key.as_str()).map(Spanned::get_mut) {
            Some(DeValue::Table(nested)) => remove_path(nested, rest),
            _ => false,
        },
        _ => false,
    }
}

/// Serde names Rust types in its messages ("expected usize", "expected
/// struct RawHealth"); say what a TOML writer would. Serde's "expected" is
/// the last one in the message (a quoted value before it may say anything).
fn plain_types(message: &str) -> String {
    let Some((before, after)) = message.rsplit_once("expected ") else {
        return message.to_owned();
    };
    let word_end = after
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    let (word, rest) = after.split_at(word_end);
    let plain = match word {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a non-negative integer",
        "i64" => "an integer",
        "f64" => "a number",
        "struct" => {
            let rest = rest
                .trim_start_matches(' ')
                .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            return format!("{before}expected a table{rest}");
        }
        _ => return message.to_owned(),
    };
    format!("{before}expected {plain}{rest}")
}

/// `unknown key "balanc" in [[cluster]] "app" (did you mean "balance"?)`;
/// with a `prefix` (the nested table, `"health."`), both the key and the
/// suggestion are shown with it.
fn unknown_key(prefix: &str, key: &str, place: &str, known: &[&'static str]) -> String {
    let written = format!("{prefix}{key}");
    match did_you_mean(key, known) {
        Some(suggestion) => {
            let suggestion = format!("{prefix}{suggestion}");
            format!("unknown key {written:?} {place} (did you mean {suggestion:?}?)")
        }
        None => format!("unknown key {written:?} {place}"),
    }
}

/// `health.htp` → (`["health"]`, `"htp"`); `None` if the path goes through
/// an array.
fn key_path(steps: &[Step]) -> Option<(Vec<&str>, &str)> {
    // An element of an array of tables (`[[listener.route]]`) has the keys
    // of the array's table type: the index says nothing about them.
    let mut keys: Vec<&str> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Key(key) => Some(key.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    let key = keys.pop()?;
    Some((keys, key))
}

/// One step of the path to an ignored key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

fn path_steps(path: &Path<'_>, steps: &mut Vec<Step>) {
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            path_steps(parent, steps);
            steps.push(Step::Index(*index));
        }
        Path::Map { parent, key } => {
            path_steps(parent, steps);
            // `toml::Spanned` travels through serde as a map with private
            // keys; they are not part of the document.
            if !key.starts_with("$__serde_spanned_private") {
                steps.push(Step::Key(key.clone()));
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            path_steps(parent, steps);
        }
    }
}

/// `a.b[2].c`
fn render(steps: &[Step]) -> String {
    let mut rendered = String::new();
    for step in steps {
        match step {
            Step::Key(key) if rendered.is_empty() => rendered.push_str(key),
            Step::Key(key) => {
                rendered.push('.');
                rendered.push_str(key);
            }
            Step::Index(index) => rendered.push_str(&format!("[{index}]")),
        }
    }
    rendered
}

/// The span of the key (or array element) at the end of `steps`.
fn locate(table: &DeTable<'_>, steps: &[Step]) -> Option<Range<usize>> {
    let (Step::Key(first), rest) = steps.split_first()? else {
        return None;
    };
    let (key, mut value) = table.get_key_value(first.as_str())?;
    let mut span = key.span();
    for step in rest {
        match (step, value.get_ref()) {
            (Step::Key(name), DeValue::Table(table)) => {
                let (key, next) = table.get_key_value(name.as_str())?;
                span = key.span();
                value = next;
            }
            (Step::Index(index), DeValue::Array(items)) => {
                value = items.get(*index)?;
                span = value.span();
            }
            _ => return None,
        }
    }
    Some(span)
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

#[cfg(test)]
mod tests {
    use super::plain_types;

    #[test]
    fn rust_types_are_named_as_toml_writers_would() {
        for (serde, plain) in [
            (
                "invalid type: string \"two\", expected u32",
                "invalid type: string \"two\", expected a non-negative integer",
            ),
            (
                "invalid type: float `0.5`, expected i64",
                "invalid type: float `0.5`, expected an integer",
            ),
            (
                "invalid type: string \"x\", expected f64",
                "invalid type: string \"x\", expected a number",
            ),
            (
                "invalid type: boolean `false`, expected struct RawOutlier",
                "invalid type: boolean `false`, expected a table",
            ),
            // Only serde's own words change, not a quoted value.
            (
                "invalid type: string \"expected u8\", expected a boolean",
                "invalid type: string \"expected u8\", expected a boolean",
            ),
            ("something else", "something else"),
        ] {
            assert_eq!(plain_types(serde), plain);
        }
    }
}
