//! YAML files.

use serde_json::{Map, Number, Value};

use super::{FileType, read_error, write_error};
use crate::error::Result;

/// Encodes any JSON value as one YAML document. Strings that YAML would
/// read as something else (`"yes"`, `"1"`, `"null"`) come out quoted, so the
/// value reads back unchanged.
pub(super) fn encode(value: &Value, path: &str) -> Result<Vec<u8>> {
    serde_yaml::to_string(value)
        .map(String::into_bytes)
        .map_err(|err| write_error(path, FileType::Yaml, err.to_string()))
}

/// Decodes one YAML document into a JSON value; an empty document is
/// `null`. Scalar mapping keys become their string form (`1: a` reads as
/// `{"1": "a"}`), since JSON keys are strings. Fails on several documents,
/// on invalid YAML, and on what JSON cannot hold without losing it: `.nan`
/// and `.inf`, tagged values, and sequences or mappings used as keys; and,
/// before parsing, on nesting deeper than the spec's bound or more aliases
/// than it allows (checked in one pass, so hostile text is refused in time
/// proportional to its length).
pub(super) fn decode(bytes: &[u8], path: &str) -> Result<Value> {
    let fail = |message: String| read_error(path, FileType::Yaml, message);
    if let Ok(text) = std::str::from_utf8(bytes) {
        crate::spec::bounds::check_yaml_structure(text)
            .map_err(|violation| fail(violation.to_string()))?;
    }
    let document: serde_yaml::Value =
        serde_yaml::from_slice(bytes).map_err(|err| fail(err.to_string()))?;
    json_of(document).map_err(fail)
}

fn json_of(value: serde_yaml::Value) -> std::result::Result<Value, String> {
    use serde_yaml::Value as Yaml;
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(flag) => Value::Bool(flag),
        Yaml::Number(number) => {
            if let Some(int) = number.as_i64() {
                Value::from(int)
            } else if let Some(int) = number.as_u64() {
                Value::from(int)
            } else {
                let float = number.as_f64().unwrap_or(f64::NAN);
                Number::from_f64(float)
                    .map(Value::Number)
                    .ok_or_else(|| format!("the number {number} has no JSON form"))?
            }
        }
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(json_of)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut object = Map::with_capacity(mapping.len());
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(text) => text,
                    Yaml::Null => "null".to_owned(),
                    Yaml::Bool(flag) => flag.to_string(),
                    Yaml::Number(number) => number.to_string(),
                    Yaml::Sequence(_) | Yaml::Mapping(_) | Yaml::Tagged(_) => {
                        return Err(
                            "a mapping key that is not a scalar has no JSON form".to_owned()
                        );
                    }
                };
                let value = json_of(value).map_err(|message| format!("{key}: {message}"))?;
                object.insert(key, value);
            }
            Value::Object(object)
        }
        Yaml::Tagged(tagged) => {
            return Err(format!(
                "the tagged value `{}` has no JSON form",
                tagged.tag
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::Error;

    #[test]
    fn yaml_round_trips_values_including_strings_yaml_would_retype() {
        let value = json!({
            "name": "berth",
            "count": 3,
            "ratio": 0.25,
            "whole_float": 2.0,
            "flags": [true, false, null],
            "tricky": ["yes", "no", "1", "1.5", "null", "~", "", "true", "0x10", "- dash", "a: b", "#hash"],
            "multi": "line one\nline two\n",
            "nested": {"z": [], "a": {}},
            "unicode": "héllo ✓"
        });
        let bytes = encode(&value, "f.yaml").unwrap();
        assert_eq!(decode(&bytes, "f.yaml").unwrap(), value);
        for scalar in [json!("plain"), json!(42), json!(null), json!([])] {
            let bytes = encode(&scalar, "f.yaml").unwrap();
            assert_eq!(decode(&bytes, "f.yaml").unwrap(), scalar);
        }
    }

    #[test]
    fn yaml_reads_what_json_can_hold_and_refuses_the_rest() {
        assert_eq!(decode(b"", "f.yaml").unwrap(), Value::Null);
        assert_eq!(
            decode(b"1: a\ntrue: b\nbig: 18446744073709551615\n", "f.yaml").unwrap(),
            json!({"1": "a", "true": "b", "big": 18_446_744_073_709_551_615_u64})
        );
        for bad in [
            &b"a: [1, 2"[..],
            b"a: 1\n---\nb: 2\n",
            b"x: .nan\n",
            b"x: .inf\n",
            b"x: !tag 1\n",
            b"? [1]\n: a\n",
        ] {
            let err = decode(bad, "f.yaml").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::FileRead {
                        file_type: FileType::Yaml,
                        ..
                    }
                ),
                "{}: {err}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
