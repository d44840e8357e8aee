//! `{{static:NAME}}` placeholders: how inputs refer to static
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
/// `asset_path(asset)`, in strings, array items and object values at any
/// depth, and object keys.
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

/// A collection being rebuilt by [`resolve_value`].
enum Frame<'v> {
    Array {
        items: std::slice::Iter<'v, Value>,
        out: Vec<Value>,
    },
    Object {
        entries: serde_json::map::Iter<'v>,
        out: Map<String, Value>,
        /// Each resolved key's key as written, to name the placeholder at
        /// fault when two keys meet.
        written: HashMap<String, &'v str>,
        /// The resolved key of the entry whose value is being rebuilt.
        key: String,
    },
}

/// Rebuilds `value` with `replace` applied to every string and object key,
/// with an explicit stack: how deep a value nests decides no recursion.
fn resolve_value(value: &Value, replace: &Replace<'_>) -> Result<Value> {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut next = Some(value);
    loop {
        // Descend into `next` when it is a collection; otherwise it is done.
        let mut done = match next.take() {
            Some(Value::String(text)) => Some(Value::String(replace(text)?.into_owned())),
            Some(Value::Array(items)) => {
                stack.push(Frame::Array {
                    items: items.iter(),
                    out: Vec::with_capacity(items.len()),
                });
                None
            }
            Some(Value::Object(object)) => {
                stack.push(Frame::Object {
                    entries: object.iter(),
                    out: Map::with_capacity(object.len()),
                    written: HashMap::with_capacity(object.len()),
                    key: String::new(),
                });
                None
            }
            Some(scalar) => Some(scalar.clone()),
            None => None,
        };
        // Hand finished values to their parents until one has more to do.
        loop {
            let Some(frame) = stack.last_mut() else {
                return Ok(done.expect("the root is finished last"));
            };
            match frame {
                Frame::Array { items, out } => {
                    if let Some(value) = done.take() {
                        out.push(value);
                    }
                    if let Some(item) = items.next() {
                        next = Some(item);
                        break;
                    }
                    done = Some(Value::Array(std::mem::take(out)));
                }
                Frame::Object {
                    entries,
                    out,
                    written,
                    key,
                } => {
                    if let Some(value) = done.take() {
                        out.insert(std::mem::take(key), value);
                    }
                    if let Some((raw, item)) = entries.next() {
                        let resolved = replace(raw)?.into_owned();
                        if let Some(earlier) = written.get(&resolved) {
                            let raw = if *raw == resolved { *earlier } else { raw };
                            return Err(Error::PlaceholderKeyCollision {
                                key: raw.to_owned(),
                                resolved,
                            });
                        }
                        written.insert(resolved.clone(), raw);
                        *key = resolved;
                        next = Some(item);
                        break;
                    }
                    done = Some(Value::Object(std::mem::take(out)));
                }
            }
            stack.pop();
        }
    }
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
