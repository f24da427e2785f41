//! What a bad config looks like to the user: every problem at once, each as
//! `file:line:col: message`, the format editors and CI logs link to, the
//! first [`ConfigErrors::SHOWN`] of them when there are more.

use std::fmt;

/// One problem in a config file, at the key or value that causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file, as named by the caller of [`Config::load`] or
    /// [`Config::from_toml_str`](super::Config::from_toml_str).
    ///
    /// [`Config::load`]: super::Config::load
    pub origin: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

/// Every problem found in a config, sorted by position; one per line when
/// displayed, the first [`ConfigErrors::SHOWN`] of them and then a line
/// counting the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// How many problems are displayed. A file that is not a levee config at
    /// all (a binary, random text, the wrong TOML) can have a problem per
    /// line; after the first screenful the rest adds nothing, so it is
    /// counted ("… and 1234 more problems") rather than printed.
    pub const SHOWN: usize = 50;

    /// Longest message displayed, in characters; a longer one (a key or
    /// value of megabytes quoted back) is cut with "…".
    pub const MAX_MESSAGE_CHARS: usize = 500;

    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for errors returned by this module.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().take(Self::SHOWN).enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let ConfigError {
                origin,
                line,
                column,
                message,
            } = error;
            write!(f, "{origin}:{line}:{column}: ")?;
            match message.char_indices().nth(Self::MAX_MESSAGE_CHARS) {
                Some((cut, _)) => write!(f, "{}…", &message[..cut])?,
                None => f.write_str(message)?,
            }
        }
        let more = self.0.len().saturating_sub(Self::SHOWN);
        if more > 0 {
            let problems = if more == 1 { "problem" } else { "problems" };
            write!(f, "\n… and {more} more {problems}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, message: &str) -> ConfigError {
        ConfigError {
            origin: "levee.toml".to_owned(),
            line,
            column: 1,
            message: message.to_owned(),
        }
    }

    #[test]
    fn shows_the_first_problems_and_counts_the_rest() {
        let errors = ConfigErrors((1..=53).map(|line| error(line, "bad")).collect());
        let text = errors.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), ConfigErrors::SHOWN + 1, "{text}");
        assert_eq!(lines[0], "levee.toml:1:1: bad");
        assert_eq!(lines[49], "levee.toml:50:1: bad");
        assert_eq!(lines[50], "… and 3 more problems");
        let one_more = ConfigErrors((1..=51).map(|line| error(line, "bad")).collect());
        assert!(one_more.to_string().ends_with("\n… and 1 more problem"));
        let few = ConfigErrors((1..=50).map(|line| error(line, "bad")).collect());
        assert_eq!(few.to_string().lines().count(), 50);
    }

    #[test]
    fn a_huge_message_is_cut() {
        let errors = ConfigErrors(vec![error(1, &"é".repeat(10_000))]);
        let text = errors.to_string();
        assert_eq!(
            text.chars().count(),
            "levee.toml:1:1: ".len() + ConfigErrors::MAX_MESSAGE_CHARS + 1
        );
        assert!(text.ends_with('…'));
    }
}
