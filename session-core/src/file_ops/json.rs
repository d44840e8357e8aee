//! JSON and JSON Lines files.

use serde_json::Value;

use super::{FileType, kind_of, read_error, write_error};
use crate::error::Result;

/// Encodes one document pretty-printed with a two-space indent, keys in
/// their insertion order, and a trailing newline.
pub(super) fn encode_json(value: &Value, path: &str) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(value)
        .map_err(|err| write_error(path, FileType::Json, err.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Decodes one document; surrounding whitespace is allowed, trailing content
/// is not.
pub(super) fn decode_json(bytes: &[u8], path: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|err| read_error(path, FileType::Json, err.to_string()))
}

/// Encodes an array as one compact value per line, each line ending in
/// `\n`; an empty array is an empty file. Any other value is refused, since
/// a lone value has no line structure to keep.
pub(super) fn encode_jsonl(value: &Value, path: &str) -> Result<Vec<u8>> {
    let Value::Array(items) = value else {
        return Err(write_error(
            path,
            FileType::Jsonl,
            format!(
                "JSON Lines content must be an array of values, got {}",
                kind_of(value)
            ),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item)
            .map_err(|err| write_error(path, FileType::Jsonl, err.to_string()))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Decodes one value per line into an array. Blank lines (whitespace only)
/// are skipped; a line that is not one JSON value is an error naming its
/// 1-based line number.
pub(super) fn decode_jsonl(bytes: &[u8], path: &str) -> Result<Value> {
    let mut items = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = serde_json::from_slice(line).map_err(|err| {
            read_error(path, FileType::Jsonl, format!("line {}: {err}", index + 1))
        })?;
        items.push(item);
    }
    Ok(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::Error;

    #[test]
    fn json_is_pretty_with_two_spaces_key_order_and_a_final_newline() {
        let value = json!({"zeta": 1, "alpha": [true, null], "mid": {"b": "x", "a": 2.5}});
        let bytes = encode_json(&value, "f.json").unwrap();
        let expected = "{\n  \"zeta\": 1,\n  \"alpha\": [\n    true,\n    null\n  ],\n  \"mid\": {\n    \"b\": \"x\",\n    \"a\": 2.5\n  }\n}\n";
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        let back = decode_json(&bytes, "f.json").unwrap();
        assert_eq!(back, value);
        let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
    }

    #[test]
    fn json_read_error_is_typed() {
        let err = decode_json(b"{\"a\": ", "f.json").unwrap_err();
        assert!(
            matches!(
                err,
                Error::FileRead {
                    file_type: FileType::Json,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn jsonl_writes_one_compact_value_per_line_and_round_trips() {
        let value = json!([{"a": 1, "b": [1, 2]}, "text", 3, null, {"nested": {"x": "y\nz"}}]);
        let bytes = encode_jsonl(&value, "f.jsonl").unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "{\"a\":1,\"b\":[1,2]}\n\"text\"\n3\nnull\n{\"nested\":{\"x\":\"y\\nz\"}}\n"
        );
        assert_eq!(decode_jsonl(&bytes, "f.jsonl").unwrap(), value);
        assert_eq!(encode_jsonl(&json!([]), "f.jsonl").unwrap(), b"");
        assert_eq!(decode_jsonl(b"", "f.jsonl").unwrap(), json!([]));
    }

    #[test]
    fn jsonl_skips_blank_lines_and_names_the_bad_line() {
        let value = decode_jsonl(b"\n{\"a\":1}\r\n  \n\t\n[2]\n", "f.jsonl").unwrap();
        assert_eq!(value, json!([{"a": 1}, [2]]));
        let err = decode_jsonl(b"{\"a\":1}\n\n{oops}\n", "f.jsonl").unwrap_err();
        let Error::FileRead {
            message,
            file_type: FileType::Jsonl,
            ..
        } = &err
        else {
            panic!("unexpected {err}");
        };
        assert!(message.starts_with("line 3:"), "{message}");
    }

    #[test]
    fn jsonl_refuses_content_that_is_not_an_array() {
        let err = encode_jsonl(&json!({"a": 1}), "f.jsonl").unwrap_err();
        assert!(
            matches!(
                err,
                Error::FileWrite {
                    file_type: FileType::Jsonl,
                    ..
                }
            ),
            "{err}"
        );
    }
}
