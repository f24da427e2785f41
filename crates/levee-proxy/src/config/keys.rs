//! Which keys a table accepts, asked of serde itself, and which of them a
//! misspelt key was probably meant to be.

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
    let key = key.to_ascii_lowercase();
    candidates
        .iter()
        .map(|&candidate| (edit_distance(&key, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= 2 && 3 * distance <= candidate.len())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance (insertions, deletions, substitutions), over
/// characters. Small enough not to need a crate.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
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
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
