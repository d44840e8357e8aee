//! Rows of JSON objects as tables: the shape checks and column inference
//! shared by CSV, SQLite and Parquet.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::kind_of;

/// A row: one JSON object.
pub(super) type Row = Map<String, Value>;

/// Checks that `value` is an array of objects and returns the objects.
pub(super) fn rows_of(value: &Value) -> Result<Vec<&Row>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "content must be an array of row objects, got {}",
            kind_of(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(row) => Ok(row),
            other => Err(format!(
                "row at index {index} must be an object, got {}",
                kind_of(other)
            )),
        })
        .collect()
}

/// The string form of a cell: strings as they are, numbers and booleans as
/// JSON text, `null` (or a missing key) as the empty string, arrays and
/// objects as compact JSON.
pub(super) fn cell_text(value: Option<&Value>) -> Cow<'_, str> {
    match value {
        None | Some(Value::Null) => Cow::Borrowed(""),
        Some(Value::String(text)) => Cow::Borrowed(text),
        Some(other) => Cow::Owned(other.to_string()),
    }
}

/// What the non-null values of one column have in common, which decides the
/// column's storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ColumnProfile {
    /// At least one value is not null.
    pub(super) any_value: bool,
    /// Every non-null value is a boolean.
    pub(super) all_bool: bool,
    /// Every non-null value is a boolean or an integer that fits in `i64`.
    pub(super) all_int_or_bool: bool,
    /// Every non-null value is a boolean or a number.
    pub(super) all_number_or_bool: bool,
    /// At least one value is a boolean.
    pub(super) any_bool: bool,
}

impl ColumnProfile {
    const EMPTY: ColumnProfile = ColumnProfile {
        any_value: false,
        all_bool: true,
        all_int_or_bool: true,
        all_number_or_bool: true,
        any_bool: false,
    };

    fn add(&mut self, value: &Value) {
        match value {
            Value::Null => return,
            Value::Bool(_) => self.any_bool = true,
            Value::Number(number) => {
                self.all_bool = false;
                if number.as_i64().is_none() {
                    self.all_int_or_bool = false;
                }
            }
            Value::String(_) | Value::Array(_) | Value::Object(_) => {
                self.all_bool = false;
                self.all_int_or_bool = false;
                self.all_number_or_bool = false;
            }
        }
        self.any_value = true;
    }
}

/// The columns of `rows`: the union of their keys in first-seen order, each
/// with the profile of its values. A key missing from a row counts as null.
pub(super) fn profile_columns<'a>(rows: &[&'a Row]) -> IndexMap<&'a str, ColumnProfile> {
    let mut columns: IndexMap<&'a str, ColumnProfile> = IndexMap::new();
    for row in rows {
        for (key, value) in *row {
            columns
                .entry(key.as_str())
                .or_insert(ColumnProfile::EMPTY)
                .add(value);
        }
    }
    columns
}
