//! Reading an answer into its type. When the answer is shaped otherwise (an older or newer
//! server, a proxy's page), the error names where (the JSON path), what evoctl expected there and
//! which JSON type it found, and quotes no value: an answer can hold an instance token or an API
//! key anywhere, and serde's own messages quote the unexpected string.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a value did not read as `T`, as facts: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The JSON path (`.`, `[0].instance`, `instance.state`).
    pub path: String,
    /// What the type wanted there (`missing field `id``, `expected a string`).
    pub expected: String,
    /// The JSON type at that path (`a string of 36 characters`, `an object`), if any.
    pub found: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", self.path, self.expected)?;
        if let Some(found) = &self.found {
            write!(f, ", found {found}")?;
        }
        Ok(())
    }
}

/// `value` read as `T`, or the [`Mismatch`].
pub fn read<T: DeserializeOwned>(value: &Value) -> Result<T, Mismatch> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let found = lookup(value, error.path()).map(describe);
        let message = error.inner().to_string();
        let expected = if message.starts_with("missing field") {
            message
        } else if let Some((_, wanted)) = message.rsplit_once(", expected ") {
            format!("expected {wanted}")
        } else {
            "a value of another kind than expected".to_owned()
        };
        // A missing field is about the object it is missing from; its type says nothing more.
        let found = if expected.starts_with("missing field") { None } else { found };
        Mismatch { path: error.path().to_string(), expected, found }
    })
}

/// The value at `path` in `value`.
fn lookup<'a>(value: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    use serde_path_to_error::Segment;
    path.iter().try_fold(value, |node, segment| match segment {
        Segment::Seq { index } => node.get(*index),
        Segment::Map { key } => node.get(key.as_str()),
        Segment::Enum { .. } | Segment::Unknown => Some(node),
    })
}

/// A JSON value's type (and size), never its content.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(text) => format!("a string of {}", count(text.chars().count(), "character")),
        Value::Array(items) => format!("an array of {}", count(items.len(), "item")),
        Value::Object(map) => format!("an object with {}", count(map.len(), "field")),
    }
}

/// `1 field`, `2 fields`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Row {
        id: String,
        count: u64,
    }

    #[test]
    fn a_mismatch_names_the_place_and_the_types_and_quotes_nothing() {
        let secret = "SECRET-INSTANCE-KEY-0123456789";
        let old_shape = serde_json::json!([{"instance": {"apikey": secret, "instanceName": "x"}}]);
        let mismatch = read::<Vec<Row>>(&old_shape).unwrap_err();
        assert_eq!(mismatch.to_string(), "at [0]: missing field `id`");
        let wrong_type = serde_json::json!([{"id": 7, "count": 1}, {"id": "x", "count": secret}]);
        let mismatch = read::<Vec<Row>>(&wrong_type).unwrap_err();
        assert_eq!(mismatch.to_string(), "at [0].id: expected a string, found a number");
        let mismatch = read::<Vec<Row>>(&serde_json::json!([{"id": "x", "count": secret}])).unwrap_err();
        assert_eq!(mismatch.to_string(), "at [0].count: expected u64, found a string of 30 characters");
        assert!(!format!("{mismatch:?}").contains(secret));
    }
}
