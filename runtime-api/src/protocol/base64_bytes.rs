//! Serde for bytes as standard base64 (RFC 4648, padded), the form raw
//! bytes take in the protocol's JSON: `#[serde(with = "base64_bytes")]`.

use serde::{Deserialize, Deserializer, Serializer};
use session_core::base64;

/// Writes bytes as a base64 string.
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64::encode(bytes))
}

/// Reads a base64 string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    base64::decode(&text).map_err(|err| serde::de::Error::custom(format!("invalid base64: {err}")))
}

/// The same for `Option<Vec<u8>>`, with `null` for `None`.
pub mod option {
    use super::*;

    /// Writes `Some` bytes as base64, `None` as null.
    #[allow(clippy::ref_option, reason = "serde hands `with` modules a reference")]
    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::serialize(bytes, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads base64 or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        base64::decode(&text)
            .map(Some)
            .map_err(|err| serde::de::Error::custom(format!("invalid base64: {err}")))
    }
}
