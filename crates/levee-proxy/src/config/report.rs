//! Collects problems while a config is read and turns byte spans into the
//! `line:col` a person can jump to.

use std::ops::Range;

use super::error::{ConfigError, ConfigErrors};

/// Every problem found so far in one config source.
pub(super) struct Report<'s> {
    origin: &'s str,
    source: &'s str,
    errors: Vec<ConfigError>,
}

impl<'s> Report<'s> {
    pub(super) fn new(origin: &'s str, source: &'s str) -> Report<'s> {
        Report {
            origin,
            source,
            errors: Vec::new(),
        }
    }

    /// Record a problem at the start of `span` (a byte range of the source).
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    /// 1-based line of a byte offset, for messages such as "first defined at
    /// line 3".
    pub(super) fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.source.len());
        while !self.source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.source[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// `Ok(value)` if nothing was reported, otherwise every problem sorted by
    /// position (problems at one position keep the order they were found in).
    pub(super) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors())
        }
    }

    /// The problems, sorted by position, duplicates removed.
    pub(super) fn into_errors(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|error| (error.line, error.column));
        self.errors.dedup();
        ConfigErrors(self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let report = Report::new("t", "ab\nçd = 1\n");
        assert_eq!(report.position(0), (1, 1));
        assert_eq!(report.position(2), (1, 3));
        assert_eq!(report.position(3), (2, 1));
        // 'ç' is two bytes but one column.
        assert_eq!(report.position(5), (2, 2));
        // Offsets past the end or inside a character are clamped.
        assert_eq!(report.position(4), (2, 1));
        assert_eq!(report.position(100), (3, 1));
    }
}
