//! `{{static:NAME}}` placeholders (SPEC §3): how inputs refer to static
//! assets without knowing where a backend puts them.
//!
//! Substitution walks a JSON value and replaces every placeholder in its
//! strings, in the strings of arrays at any depth, and in object keys; other
//! scalars pass unchanged. What a placeholder becomes is the caller's
//! `asset_path` function — the runtime's answer (a host path for `local`,
//! `/static/<save_path>` for `docker`) — so nothing here knows a backend.
//!
//! A placeholder is `{{static:` then a name of one or more characters other
//! than `}`, then `}}`. `{{static:}}` (no name) is not a placeholder and
//! stays as written. A replacement is not scanned again.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::assets::{ResolvedAsset, ResolvedAssets};
use crate::error::{Error, Result};

/// What every placeholder starts with.
pub const PLACEHOLDER_PREFIX: &str = "{{static:";

/// Returns `value` with every `{{static:NAME}}` replaced by
/// `asset_path(asset)`, in strings, array items (recursively) and object
/// keys.
///
/// Fails with [`Error::UnknownAsset`] for a name `assets` does not hold, and
/// [`Error::PlaceholderKeyCollision`] when substitution makes two keys of
/// one object equal.
pub fn resolve_static_placeholders(
    value: &Value,
    assets: &ResolvedAssets,
    asset_path: impl Fn(&ResolvedAsset) -> String,
) -> Result<Value> {
    resolve_value(value, &|text| replace_in_str(text, assets, &asset_path))
}

/// Replaces every `{{static:NAME}}` in one string, as
/// [`resolve_static_placeholders`] does for each string of a value.
///
/// Fails with [`Error::UnknownAsset`] for a name `assets` does not hold.
pub fn resolve_static_placeholders_in_str(
    text: &str,
    assets: &ResolvedAssets,
    asset_path: impl Fn(&ResolvedAsset) -> String,
) -> Result<String> {
    replace_in_str(text, assets, &asset_path).map(Cow::into_owned)
}

type Replace<'a> = dyn Fn(&str) -> Result<Cow<'_, str>> + 'a;

fn resolve_value(value: &Value, replace: &Replace<'_>) -> Result<Value> {
    Ok(match value {
        Value::String(text) => Value::String(replace(text)?.into_owned()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve_value(item, replace))
                .collect::<Result<_>>()?,
        ),
        Value::Object(object) => {
            let mut out = Map::with_capacity(object.len());
            // Each resolved key's key as written, to name the placeholder at
            // fault when two keys meet.
            let mut written: HashMap<String, &str> = HashMap::with_capacity(object.len());
            for (key, item) in object {
                let resolved = replace(key)?.into_owned();
                if let Some(earlier) = written.get(&resolved) {
                    let key = if *key == resolved { *earlier } else { key };
                    return Err(Error::PlaceholderKeyCollision {
                        key: key.to_owned(),
                        resolved,
                    });
                }
                written.insert(resolved.clone(), key);
                out.insert(resolved, resolve_value(item, replace)?);
            }
            Value::Object(out)
        }
        scalar => scalar.clone(),
    })
}

/// Replaces the placeholders of `text`, borrowing it when it has none.
///
/// The scan is linear: the position of the next `}` is remembered, so a
/// string of many unterminated prefixes is not rescanned for each.
fn replace_in_str<'t>(
    text: &'t str,
    assets: &ResolvedAssets,
    asset_path: &dyn Fn(&ResolvedAsset) -> String,
) -> Result<Cow<'t, str>> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut search = 0;
    let mut next_close: Option<usize> = None;
    while let Some(found) = text[search..].find(PLACEHOLDER_PREFIX) {
        let start = search + found;
        let name_start = start + PLACEHOLDER_PREFIX.len();
        let close = match next_close {
            Some(close) if close >= name_start => close,
            _ => match text[name_start..].find('}') {
                Some(offset) => name_start + offset,
                // No `}` left: no placeholder can end in this string.
                None => break,
            },
        };
        next_close = Some(close);
        if close > name_start && text[close..].starts_with("}}") {
            let name = &text[name_start..close];
            let asset = assets.get(name).ok_or_else(|| Error::UnknownAsset {
                name: name.to_owned(),
            })?;
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
            buf.push_str(&text[copied..start]);
            buf.push_str(&asset_path(asset));
            copied = close + 2;
            search = copied;
        } else {
            // `{` is one byte, so `start + 1` is a character boundary.
            search = start + 1;
        }
    }
    Ok(match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
    })
}
