//! Serde for optional durations written as seconds (`30`, `0.5`), the way
//! specs and requests spell timeouts.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serialises `Some(d)` as fractional seconds and `None` as null.
pub(crate) fn serialize<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_f64(d.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

/// Reads a non-negative, finite number of seconds (or null).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let Some(seconds) = Option::<f64>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(serde::de::Error::custom(format!(
            "expected a positive number of seconds, got {seconds}"
        )));
    }
    Duration::try_from_secs_f64(seconds)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
