//! Priority classes: under overload, low-priority traffic (batch jobs,
//! prefetches, other systems' probes) is shed first and interactive traffic
//! kept. Each class has its own queue with its own adaptive-LIFO and CoDel
//! rules; a slot goes to the highest class waiting, and a full queue makes
//! room for a request by shedding one of a lower class.

use std::fmt;
use std::str::FromStr;

/// How many classes there are.
pub const CLASSES: usize = 3;

/// A request's priority class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Served before any other, shed last.
    Critical,
    /// Everything not marked otherwise.
    #[default]
    Default,
    /// Shed first: work that can be done later or not at all.
    Sheddable,
}

impl Priority {
    /// Every class, highest first.
    pub const ALL: [Priority; CLASSES] =
        [Priority::Critical, Priority::Default, Priority::Sheddable];

    /// Its place, 0 for the highest.
    pub fn index(self) -> usize {
        match self {
            Priority::Critical => 0,
            Priority::Default => 1,
            Priority::Sheddable => 2,
        }
    }

    /// `critical`, `default` or `sheddable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Default => "default",
            Priority::Sheddable => "sheddable",
        }
    }

    /// `self`, but no higher than `cap`: what a client may claim for itself
    /// on a route that allows at most `cap`.
    pub fn capped_at(self, cap: Priority) -> Priority {
        self.max(cap)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPriority(pub String);

impl fmt::Display for UnknownPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a priority: expected \"critical\", \"default\" or \"sheddable\"",
            self.0
        )
    }
}

impl std::error::Error for UnknownPriority {}

impl FromStr for Priority {
    type Err = UnknownPriority;

    fn from_str(text: &str) -> Result<Priority, UnknownPriority> {
        match text.trim().to_ascii_lowercase().as_str() {
            "critical" => Ok(Priority::Critical),
            "default" => Ok(Priority::Default),
            "sheddable" => Ok(Priority::Sheddable),
            _ => Err(UnknownPriority(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse_order_and_cap() {
        assert_eq!("Critical".parse(), Ok(Priority::Critical));
        assert!("urgent".parse::<Priority>().is_err());
        assert!(Priority::Critical < Priority::Sheddable);
        // A client asking for critical on a default route gets default; one
        // asking for sheddable gets sheddable.
        assert_eq!(
            Priority::Critical.capped_at(Priority::Default),
            Priority::Default
        );
        assert_eq!(
            Priority::Sheddable.capped_at(Priority::Default),
            Priority::Sheddable
        );
    }
}
