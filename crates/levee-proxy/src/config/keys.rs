//! Which keys a table accepts, asked of serde itself, and which of them a
//! misspelt key was probably meant to be.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The keys serde's derive accepts for the struct `T`, in declaration order
/// (empty if `T` is not a struct). Used for "did you mean" hints and by the
/// test that checks every key is documented.
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Introspection::Fields(fields)) => fields,
        Ok(_) | Err(Introspection::NotAStruct) => &[],
    }
}

/// The candidate `key` is most likely a typo of: at most two edits away and
/// not mostly different (`"x"` is not a typo of `"n"`).
pub(super) fn did_you_mean<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let key: Vec<char> = key.to_ascii_lowercase().chars().collect();
    let key_letters = letters(key.iter().copied());
    let mut rows = EditRows::default();
    candidates
        .iter()
        // Two edits change the length by two at most, and bring in or take
        // away two kinds of character at most: a key that fails either
        // test (a megabyte of text written as a key, `k123` against
        // `balance`) costs no distance.
        .filter(|candidate| {
            let candidate_letters = letters(candidate.chars());
            candidate.chars().count().abs_diff(key.len()) <= 2
                && (key_letters & !candidate_letters).count_ones() <= 2
                && (candidate_letters & !key_letters).count_ones() <= 2
        })
        .map(|&candidate| (rows.distance(&key, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= 2 && 3 * distance <= candidate.len())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Names the file defines (clusters), looked up by references elsewhere in
/// it: a hash lookup each, and a "did you mean" hint for the first
/// [`ConfigErrors::SHOWN`](super::ConfigErrors::SHOWN) misses only. A hint
/// compares the name with every defined one, so hinting every miss of a
/// file with thousands of clusters and references would take quadratic time
/// for lines nobody is shown.
pub(super) struct DefinedNames<'a, T> {
    by_name: HashMap<&'a str, T>,
    /// In file order, for hints.
    names: Vec<&'a str>,
    hints_left: usize,
}

impl<'a, T> DefinedNames<'a, T> {
    /// The first definition of a name wins (a second one is reported as a
    /// duplicate elsewhere).
    pub(super) fn new(defined: impl IntoIterator<Item = (&'a str, T)>) -> DefinedNames<'a, T> {
        let mut by_name = HashMap::new();
        let mut names = Vec::new();
        for (name, value) in defined {
            names.push(name);
            if let Entry::Vacant(slot) = by_name.entry(name) {
                slot.insert(value);
            }
        }
        DefinedNames {
            by_name,
            names,
            hints_left: super::ConfigErrors::SHOWN,
        }
    }

    /// What `name` is defined as, if it is.
    pub(super) fn get(&self, name: &str) -> Option<&T> {
        self.by_name.get(name)
    }

    /// ` (did you mean "app"?)` for a name that is not defined, or nothing.
    pub(super) fn hint(&mut self, name: &str) -> String {
        if self.hints_left == 0 {
            return String::new();
        }
        self.hints_left -= 1;
        did_you_mean(name, &self.names)
            .map(|suggestion| format!(" (did you mean {suggestion:?}?)"))
            .unwrap_or_default()
    }
}

/// Which kinds of character `text` has: a bit per letter, digit and `_`,
/// one for everything else.
fn letters(text: impl Iterator<Item = char>) -> u64 {
    text.fold(0, |set, c| {
        let bit = match c {
            'a'..='z' => u32::from(c) - u32::from('a'),
            'A'..='Z' => u32::from(c) - u32::from('A'),
            '0'..='9' => 26 + u32::from(c) - u32::from('0'),
            '_' => 36,
            _ => 37,
        };
        set | 1 << bit
    })
}

/// Levenshtein distance (insertions, deletions, substitutions), over
/// characters, up to [`EditRows::ENOUGH`]: a larger one is never a typo, so
/// the work stops there. Small enough not to need a crate; the two rows are
/// kept between calls, since a file with many unknown keys asks for many
/// distances.
#[derive(Default)]
struct EditRows {
    previous: Vec<usize>,
    current: Vec<usize>,
}

impl EditRows {
    /// Distances from here on are all the same: too far for a typo.
    const ENOUGH: usize = 3;

    fn distance(&mut self, a: &[char], b: &str) -> usize {
        self.previous.clear();
        self.previous.extend(0..=a.len());
        for (j, b_char) in b.chars().enumerate() {
            self.current.clear();
            self.current.push(j + 1);
            for (i, &a_char) in a.iter().enumerate() {
                let substitution = self.previous[i] + usize::from(a_char != b_char);
                let next = substitution
                    .min(self.previous[i + 1] + 1)
                    .min(self.current[i] + 1);
                self.current.push(next);
            }
            std::mem::swap(&mut self.previous, &mut self.current);
            // Distances never shrink from one row to the next.
            if self
                .previous
                .iter()
                .all(|&distance| distance >= Self::ENOUGH)
            {
                return Self::ENOUGH;
            }
        }
        self.previous[a.len()].min(Self::ENOUGH)
    }
}

/// A deserializer that holds no data: asked for a struct, it answers with
/// the struct's field names (as an error, which ends deserialization).
struct FieldNames;

#[derive(Debug)]
enum Introspection {
    Fields(&'static [&'static str]),
    NotAStruct,
}

impl fmt::Display for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field name introspection")
    }
}

impl std::error::Error for Introspection {}

impl de::Error for Introspection {
    fn custom<T: fmt::Display>(_: T) -> Introspection {
        Introspection::NotAStruct
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Introspection;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Introspection> {
        Err(Introspection::Fields(fields))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Introspection> {
        Err(Introspection::NotAStruct)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // only its field names are used
    struct Example {
        name: String,
        #[serde(rename = "max-size")]
        max_size: u64,
    }

    #[test]
    fn asks_serde_for_the_field_names() {
        assert_eq!(fields_of::<Example>(), ["name", "max-size"]);
        assert!(fields_of::<u32>().is_empty());
    }

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["name", "balance", "connect_timeout", "endpoints"];
        assert_eq!(did_you_mean("balanc", &keys), Some("balance"));
        assert_eq!(did_you_mean("Balance", &keys), Some("balance"));
        assert_eq!(
            did_you_mean("conect_timout", &keys),
            Some("connect_timeout")
        );
        assert_eq!(
            did_you_mean("connect-timeout", &keys),
            Some("connect_timeout")
        );
        assert_eq!(did_you_mean("endpoint", &keys), Some("endpoints"));
        assert_eq!(did_you_mean("nam", &keys), Some("name"));
        assert_eq!(did_you_mean("x", &keys), None);
        assert_eq!(did_you_mean("weight", &keys), None);
    }

    #[test]
    fn edit_distances() {
        let mut rows = EditRows::default();
        let mut distance = |a: &str, b: &str| rows.distance(&a.chars().collect::<Vec<_>>(), b);
        assert_eq!(distance("", "ab"), 2);
        assert_eq!(distance("ab", ""), 2);
        assert_eq!(distance("kitten", "sittin"), 2);
        assert_eq!(distance("same", "same"), 0);
        assert_eq!(distance("çà", "ca"), 2);
        // Beyond two edits the exact number does not matter.
        assert_eq!(distance("kitten", "sitting"), EditRows::ENOUGH);
        assert_eq!(distance("abcdef", "uvwxyz"), EditRows::ENOUGH);
        assert_eq!(distance("", "abcdef"), EditRows::ENOUGH);
    }

    #[test]
    fn a_huge_key_gets_no_hint_and_costs_little() {
        let key = "n".repeat(1 << 20);
        assert_eq!(did_you_mean(&key, &["name", "endpoints"]), None);
    }
}
