//! What every raw table shares: the [`RawTable`] trait and the
//! [`Section`] that wraps a top-level table as serde could read it. Each
//! section's own raw struct lives in its module.
//!
//! Every key is optional in a raw struct, even required ones: a missing key
//! is reported by validation at the table's header, in levee's own words,
//! instead of stopping serde. Values that need parsing (durations,
//! addresses, enum names) are kept as `Spanned<String>` so that validation
//! can report every bad one at its position, not just the first.
//!
//! There is no `deny_unknown_fields`: unknown keys are collected with
//! `serde_ignored` so that all of them are reported (see `document.rs`).
//! A key added to a raw struct must be documented in `docs/config.md`; a
//! test checks it.

use std::ops::Range;

use serde::de::DeserializeOwned;

use super::keys::fields_of;

/// A table of the file, as serde reads it, and the tables nested in it.
pub(super) trait RawTable: DeserializeOwned + Default {
    /// The keys of the table at `path` inside this one (`[]`: this one
    /// itself), for "did you mean" hints and the documentation test; empty if
    /// `path` leads to no table.
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            _ => &[],
        }
    }
}

/// One table of the file, as far as serde could read it.
#[derive(Debug)]
pub(super) struct Section<T> {
    /// How messages name this table: `[admin]`, `[[cluster]] "app"`,
    /// `[[listener]] #2` (when it has no usable name).
    pub label: String,
    /// The table's header (`[[cluster]]`), or the `{ ... }` of an inline
    /// table: where a missing key is reported.
    pub span: Range<usize>,
    /// The keys serde could read. A key whose value had the wrong type is
    /// `None` here and listed in `unreadable`.
    pub raw: T,
    /// Keys present in the file whose value was already reported as being of
    /// the wrong type; they must not be reported as missing as well. A key
    /// of a nested table is written with its path: `health.http.path`.
    pub unreadable: Vec<String>,
}

impl<T> Section<T> {
    /// Whether `key` is written in this table but could not be read.
    pub fn is_unreadable(&self, key: &str) -> bool {
        self.unreadable.iter().any(|unreadable| unreadable == key)
    }
}
