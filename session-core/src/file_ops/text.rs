//! Text and binary files: content written byte for byte.
//!
//! Raw-bytes content never reaches these functions: it is written as given
//! for both types. These take the JSON form of the content.

use std::borrow::Cow;

use serde_json::Value;

use super::{FileType, InputContent, kind_of, write_error};
use crate::error::Result;

/// Encodes a text file's JSON content: only a string fits, written as its
/// UTF-8 bytes with no newline added or rewritten. Anything else is refused
/// rather than serialised, since guessing a rendering for a `.txt` file would
/// hide a harness bug.
pub(super) fn encode_text<'a>(value: &'a Value, path: &str) -> Result<Cow<'a, [u8]>> {
    match value {
        Value::String(text) => Ok(Cow::Borrowed(text.as_bytes())),
        other => Err(write_error(
            path,
            FileType::Text,
            format!(
                "text content must be a string or raw bytes, got {}",
                kind_of(other)
            ),
        )),
    }
}

/// Encodes a binary file's JSON content: a string is written as its UTF-8
/// bytes; any other value has no byte form and is refused.
pub(super) fn encode_binary<'a>(value: &'a Value, path: &str) -> Result<Cow<'a, [u8]>> {
    match value {
        Value::String(text) => Ok(Cow::Borrowed(text.as_bytes())),
        other => Err(write_error(
            path,
            FileType::Binary,
            format!(
                "binary content must be raw bytes or a string, got {}",
                kind_of(other)
            ),
        )),
    }
}

/// Decodes text: a string when the bytes are UTF-8, the bytes otherwise.
pub(super) fn decode_text(bytes: &[u8]) -> InputContent {
    match std::str::from_utf8(bytes) {
        Ok(text) => InputContent::Json(Value::String(text.to_owned())),
        Err(_) => InputContent::Bytes(bytes.to_vec()),
    }
}

/// [`decode_text`] for a buffer already owned, which it reuses.
pub(super) fn decode_text_owned(bytes: Vec<u8>) -> InputContent {
    match String::from_utf8(bytes) {
        Ok(text) => InputContent::Json(Value::String(text)),
        Err(err) => InputContent::Bytes(err.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::compression::Compression;
    use crate::error::Error;
    use crate::file_ops::{decode_content, encode_content};

    fn encode(content: &InputContent, file_type: FileType) -> crate::error::Result<Vec<u8>> {
        encode_content(content, file_type, Compression::None, "f").map(|bytes| bytes.into_owned())
    }

    #[test]
    fn text_is_written_byte_for_byte_and_reads_back() {
        let text = "line one\r\nline two\n\ttabbed, no final newline";
        let bytes = encode(&InputContent::from(text), FileType::Text).unwrap();
        assert_eq!(bytes, text.as_bytes());
        assert_eq!(
            decode_content(&bytes, FileType::Text, Compression::None, "f").unwrap(),
            InputContent::from(text)
        );
        assert_eq!(
            encode(&InputContent::from(""), FileType::Text).unwrap(),
            b""
        );
    }

    #[test]
    fn text_takes_bytes_as_given_and_reads_non_utf8_back_as_bytes() {
        let raw = vec![0xff, 0xfe, b'a', 0x00];
        let bytes = encode(&InputContent::Bytes(raw.clone()), FileType::Text).unwrap();
        assert_eq!(bytes, raw);
        assert_eq!(
            decode_content(&bytes, FileType::Text, Compression::None, "f").unwrap(),
            InputContent::Bytes(raw)
        );
    }

    #[test]
    fn text_refuses_a_non_string_value() {
        for value in [
            json!({"a": 1}),
            json!([1]),
            json!(3),
            json!(true),
            json!(null),
        ] {
            let err = encode(&InputContent::Json(value.clone()), FileType::Text).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::FileWrite {
                        file_type: FileType::Text,
                        ..
                    }
                ),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn binary_takes_bytes_or_a_string_and_reads_back_bytes() {
        let raw: Vec<u8> = (0..=255).collect();
        let bytes = encode(&InputContent::Bytes(raw.clone()), FileType::Binary).unwrap();
        assert_eq!(bytes, raw);
        assert_eq!(
            decode_content(&bytes, FileType::Binary, Compression::None, "f").unwrap(),
            InputContent::Bytes(raw)
        );
        assert_eq!(
            encode(&InputContent::from("héllo"), FileType::Binary).unwrap(),
            "héllo".as_bytes()
        );
        let err = encode(&InputContent::Json(json!([1, 2])), FileType::Binary).unwrap_err();
        assert!(matches!(
            err,
            Error::FileWrite {
                file_type: FileType::Binary,
                ..
            }
        ));
    }
}
