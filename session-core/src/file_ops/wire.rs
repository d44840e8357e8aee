//! The JSON form of an [`InputFile`], as a harness sends it.

use std::path::PathBuf;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{FileType, InputContent, InputFile, detect_file_type};
use crate::base64;
use crate::compression::Compression;

/// `{"path", "content" | "content_base64", "file_type"?, "compression"?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputFileWire {
    path: PathBuf,
    /// `Some(Value::Null)` for `"content": null`, `None` when absent.
    #[serde(default, deserialize_with = "present")]
    content: Option<Value>,
    #[serde(default)]
    content_base64: Option<String>,
    #[serde(default)]
    file_type: Option<FileType>,
    #[serde(default)]
    compression: Option<Compression>,
}

/// Keeps an explicit `null` apart from an absent field, which plain
/// `Option<Value>` would merge.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl TryFrom<InputFileWire> for InputFile {
    type Error = String;

    fn try_from(wire: InputFileWire) -> Result<InputFile, String> {
        let content = match (wire.content, wire.content_base64) {
            (Some(value), None) => InputContent::Json(value),
            (None, Some(encoded)) => InputContent::Bytes(
                base64::decode(&encoded).map_err(|err| format!("content_base64: {err}"))?,
            ),
            (Some(_), Some(_)) => {
                return Err("give either `content` or `content_base64`, not both".to_owned());
            }
            (None, None) => {
                return Err(
                    "missing `content` (a JSON value) or `content_base64` (bytes)".to_owned(),
                );
            }
        };
        let (detected_type, detected_compression) = detect_file_type(&wire.path);
        Ok(InputFile {
            path: wire.path,
            content,
            file_type: wire.file_type.unwrap_or(detected_type),
            compression: wire.compression.unwrap_or(detected_compression),
        })
    }
}

/// Writes the same form the deserialiser reads: bytes as `content_base64`,
/// type and compression always spelt out.
impl Serialize for InputFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("InputFile", 4)?;
        out.serialize_field("path", &self.path)?;
        match &self.content {
            InputContent::Json(value) => out.serialize_field("content", value)?,
            InputContent::Bytes(bytes) => {
                out.serialize_field("content_base64", &base64::encode(bytes))?;
            }
        }
        out.serialize_field("file_type", &self.file_type)?;
        out.serialize_field("compression", &self.compression)?;
        out.end()
    }
}
