//! Collects problems while a config is read and turns byte spans into the
//! `line:col` a person can jump to.
//!
//! Positions are cheap however many problems a file has: a problem keeps its
//! byte offset until [`Report::into_errors`], which sorts them and finds every
//! line and column in one pass over the source. (Scanning from the start for
//! each problem made a 7.5 MB file of garbage take 30 s.)

use std::ops::Range;

use super::error::{ConfigError, ConfigErrors};

/// Every problem found so far in one config source.
pub(super) struct Report<'s> {
    origin: &'s str,
    source: &'s str,
    /// Byte offset of the start of every line, built on the first call to
    /// [`Report::line`].
    line_starts: Option<Vec<usize>>,
    problems: Vec<Problem>,
    /// Allowed, but probably not what the writer meant.
    warnings: Vec<Problem>,
}

/// A problem before its position is known in lines and columns.
#[derive(PartialEq, Eq)]
struct Problem {
    /// Byte offset in the source, on a character boundary.
    offset: usize,
    message: String,
}

impl<'s> Report<'s> {
    pub(super) fn new(origin: &'s str, source: &'s str) -> Report<'s> {
        Report {
            origin,
            source,
            line_starts: None,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Record a problem at the start of `span` (a byte range of the source).
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = char_boundary(self.source, span.start);
        self.problems.push(Problem {
            offset,
            message: one_line(message.into()),
        });
    }

    /// Record a warning at the start of `span`: the config is valid, but
    /// this is probably a mistake.
    pub(super) fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = char_boundary(self.source, span.start);
        self.warnings.push(Problem {
            offset,
            message: one_line(message.into()),
        });
    }

    /// The warnings, sorted by position, with their lines and columns.
    pub(super) fn take_warnings(&mut self) -> Vec<ConfigError> {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.sort_by_key(|warning| warning.offset);
        warnings.dedup();
        let mut cursor = Cursor::new(self.source);
        warnings
            .into_iter()
            .map(|warning| {
                let (line, column) = cursor.advance_to(warning.offset);
                ConfigError {
                    origin: self.origin.to_owned(),
                    line,
                    column,
                    message: warning.message,
                }
            })
            .collect()
    }

    /// 1-based line of a byte offset, for messages such as "first defined at
    /// line 3".
    pub(super) fn line(&mut self, offset: usize) -> usize {
        let source = self.source;
        let starts = self.line_starts.get_or_insert_with(|| {
            std::iter::once(0)
                .chain(source.match_indices('\n').map(|(newline, _)| newline + 1))
                .collect()
        });
        // The number of lines starting at or before `offset`.
        starts.partition_point(|&start| start <= offset)
    }

    /// `Ok(value)` if nothing was reported, otherwise every problem sorted by
    /// position (problems at one position keep the order they were found in).
    pub(super) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors())
        }
    }

    /// The problems, sorted by position, duplicates removed.
    pub(super) fn into_errors(mut self) -> ConfigErrors {
        // Stable: problems at one offset keep the order they were found in.
        self.problems.sort_by_key(|problem| problem.offset);
        self.problems.dedup();
        let mut cursor = Cursor::new(self.source);
        let errors = self
            .problems
            .into_iter()
            .map(|problem| {
                let (line, column) = cursor.advance_to(problem.offset);
                ConfigError {
                    origin: self.origin.to_owned(),
                    line,
                    column,
                    message: problem.message,
                }
            })
            .collect();
        ConfigErrors(errors)
    }
}

/// Walks the source forwards, counting lines and characters, so that the
/// positions of sorted offsets cost one pass in all.
struct Cursor<'s> {
    source: &'s str,
    offset: usize,
    line: usize,
    line_start: usize,
    /// Characters between `line_start` and `offset`.
    column_chars: usize,
}

impl<'s> Cursor<'s> {
    fn new(source: &'s str) -> Cursor<'s> {
        Cursor {
            source,
            offset: 0,
            line: 1,
            line_start: 0,
            column_chars: 0,
        }
    }

    /// 1-based line and column (in characters) of `offset`, which must not
    /// be before the previous one and must be on a character boundary.
    fn advance_to(&mut self, offset: usize) -> (usize, usize) {
        let offset = offset.max(self.offset);
        let skipped = &self.source[self.offset..offset];
        match skipped.rfind('\n') {
            Some(last_newline) => {
                self.line += skipped.matches('\n').count();
                self.line_start = self.offset + last_newline + 1;
                self.column_chars = self.source[self.line_start..offset].chars().count();
            }
            None => self.column_chars += skipped.chars().count(),
        }
        self.offset = offset;
        (self.line, self.column_chars + 1)
    }
}

/// `offset`, clamped to the source and moved back to a character boundary.
fn char_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One problem is one line of output: control characters that reach a
/// message from the file (a newline inside a quoted value) are escaped.
fn one_line(message: String) -> String {
    if !message.contains(char::is_control) {
        return message;
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line and column of each offset, as the report computes them.
    fn positions(source: &str, offsets: &[usize]) -> Vec<(usize, usize)> {
        let mut report = Report::new("t", source);
        for &offset in offsets {
            report.error(offset..offset, format!("at {offset}"));
        }
        let errors = report.into_errors();
        offsets
            .iter()
            .map(|offset| {
                let error = errors
                    .iter()
                    .find(|error| error.message == format!("at {offset}"))
                    .expect("reported");
                (error.line, error.column)
            })
            .collect()
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        // 'ç' is two bytes but one column; offsets past the end or inside a
        // character are clamped.
        assert_eq!(
            positions("ab\nçd = 1\n", &[0, 2, 3, 5, 4, 100]),
            [(1, 1), (1, 3), (2, 1), (2, 2), (2, 1), (3, 1)]
        );
    }

    #[test]
    fn positions_do_not_depend_on_the_order_problems_are_found_in() {
        let source = "a\nbb\nccc\n\nd";
        let forwards = positions(source, &[0, 3, 6, 9, 10]);
        let backwards = positions(source, &[10, 9, 6, 3, 0]);
        assert_eq!(forwards, [(1, 1), (2, 2), (3, 2), (4, 1), (5, 1)]);
        assert_eq!(backwards, [(5, 1), (4, 1), (3, 2), (2, 2), (1, 1)]);
    }

    #[test]
    fn lines_for_messages() {
        let mut report = Report::new("t", "a\nb\n\nc");
        let lines: Vec<usize> = [0, 1, 2, 4, 5, 99].map(|o| report.line(o)).to_vec();
        assert_eq!(lines, [1, 1, 2, 3, 4, 4]);
    }

    #[test]
    fn a_message_is_one_line() {
        let mut report = Report::new("t", "x");
        report.error(0..0, "value \"a\nb\"");
        let errors = report.into_errors();
        assert_eq!(errors.to_string().lines().count(), 1, "{errors}");
        assert!(errors.to_string().contains(r"a\nb"), "{errors}");
    }
}
