//! From a YAML or JSON document to an [`EnvironmentSpec`].
//!
//! `#[serde(deny_unknown_fields)]` cannot be combined with
//! `#[serde(flatten)]`, and the backend block's key is only known once `type`
//! is read, so parsing goes in steps: text → `serde_json::Value`; pick
//! `type`; take the block named after it out of the map; refuse any other
//! unknown top-level key; deserialise what is left into [`SharedPart`]
//! through `serde_path_to_error`, which gives every error its field path.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::EnvironmentSpec;
use super::bounds;
use super::sections::{CommandConfig, EnvironmentConfig, Limits, SetupConfig, SnapshotConfig};

/// The top-level keys of the shared part of a spec. None of them can name a
/// backend.
pub(super) const SHARED_KEYS: [&str; 7] = [
    "type",
    "name",
    "environment",
    "setup",
    "commands",
    "snapshot",
    "limits",
];

/// A problem found in a document, before it is tied to an origin.
#[derive(Debug)]
pub(super) struct Problem {
    /// Dotted path of the field at fault, empty for the whole document.
    pub(super) field: String,
    /// What is wrong.
    pub(super) message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The problem as one line, `field: message`, for errors that cannot
    /// carry the field separately (a spec nested in another document).
    pub(super) fn into_message(self) -> String {
        if self.field.is_empty() {
            self.message
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// The shared part of a spec, once `type` and the backend block are taken
/// out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedPart {
    name: String,
    #[serde(default)]
    environment: EnvironmentConfig,
    #[serde(default)]
    setup: SetupConfig,
    #[serde(default)]
    commands: CommandConfig,
    #[serde(default)]
    snapshot: SnapshotConfig,
    #[serde(default)]
    limits: Limits,
}

/// Parses YAML text into a JSON value: syntax errors carry their line and
/// column, merge keys (`<<: *base`) are applied. The text is checked against
/// the bounds of [`bounds`](super::bounds) first, in time proportional to its
/// length, and the value built is bounded too.
pub(super) fn parse_yaml_text(text: &str) -> Result<Value, Problem> {
    // A byte-order mark is allowed before a document, and means nothing.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    bounds::check_yaml(text).map_err(|violation| Problem::new("", violation.to_string()))?;
    let mut yaml =
        bounds::parse_yaml_value(text).map_err(|err| Problem::new("", err.to_string()))?;
    yaml.apply_merge()
        .map_err(|err| Problem::new("", err.to_string()))?;
    yaml_to_json(yaml, "")
}

/// Parses JSON text into a value; syntax errors carry their line and column.
/// The text's size and nesting are checked first, and a key given twice in
/// one object is refused.
pub(super) fn parse_json_text(text: &str) -> Result<Value, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    bounds::check_json(text).map_err(|violation| Problem::new("", violation.to_string()))?;
    bounds::parse_json_value(text).map_err(|err| Problem::new("", err.to_string()))
}

/// Converts a YAML value to JSON, refusing what JSON cannot hold instead of
/// silently changing it: non-finite numbers (`.inf`, `.nan`), tags, and
/// mapping keys that are not scalars. Number and boolean keys take their
/// string form.
pub(super) fn yaml_to_json(value: serde_yaml::Value, path: &str) -> Result<Value, Problem> {
    use serde_yaml::Value as Yaml;
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(flag) => Value::Bool(flag),
        Yaml::Number(number) => {
            if let Some(n) = number.as_u64() {
                Value::from(n)
            } else if let Some(n) = number.as_i64() {
                Value::from(n)
            } else {
                number
                    .as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        Problem::new(path, format!("`{number}` is not a finite number"))
                    })?
            }
        }
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut map = Map::with_capacity(mapping.len());
            for (key, item) in mapping {
                let key = match key {
                    Yaml::String(text) => text,
                    Yaml::Number(number) => number.to_string(),
                    Yaml::Bool(flag) => flag.to_string(),
                    other => {
                        let found = match other {
                            Yaml::Null => "null",
                            Yaml::Sequence(_) => "a list",
                            Yaml::Mapping(_) => "a mapping",
                            _ => "a tagged value",
                        };
                        return Err(Problem::new(
                            path,
                            format!("mapping keys must be strings, found {found}"),
                        ));
                    }
                };
                let item = yaml_to_json(item, &join(path, &key))?;
                map.insert(key, item);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => {
            return Err(Problem::new(
                path,
                format!("YAML tags are not supported (found `{}`)", tagged.tag),
            ));
        }
    })
}

/// Builds a spec from a parsed document.
pub(super) fn from_document(document: Value, origin: String) -> Result<EnvironmentSpec, Problem> {
    let mut map = match document {
        Value::Object(map) => map,
        Value::Null => return Err(Problem::new("", "the spec is empty")),
        other => {
            return Err(Problem::new(
                "",
                format!(
                    "expected a mapping at the top level, found {}",
                    describe(&other)
                ),
            ));
        }
    };
    let backend_type = match map.shift_remove("type") {
        None => return Err(Problem::new("type", "missing required field")),
        Some(Value::String(backend_type)) => backend_type,
        Some(other) => {
            return Err(Problem::new(
                "type",
                format!(
                    "expected a string naming the backend, found {}",
                    describe(&other)
                ),
            ));
        }
    };
    check_backend_type(&backend_type).map_err(|message| Problem::new("type", message))?;
    // A block written with no content (`local:` alone in YAML) is no block.
    let backend = map
        .shift_remove(&backend_type)
        .filter(|block| !block.is_null());
    if let Some(block) = backend.as_ref().filter(|block| !block.is_object()) {
        return Err(Problem::new(
            backend_type,
            format!(
                "expected a mapping of backend settings, found {}",
                describe(block)
            ),
        ));
    }
    if let Some((key, value)) = map
        .iter()
        .find(|(key, _)| !SHARED_KEYS.contains(&key.as_str()))
    {
        return Err(unknown_top_level(key, value, &backend_type));
    }
    // serde lets a struct be written as a list of its fields in order;
    // a spec's sections are mappings only.
    if let Some((section, value)) = map
        .iter()
        .find(|(key, value)| *key != "name" && !value.is_object())
    {
        return Err(Problem::new(
            section,
            format!("expected a mapping, found {}", describe(value)),
        ));
    }
    let shared: SharedPart = serde_path_to_error::deserialize(Value::Object(map))
        .map_err(|err| path_problem(&err, ""))?;
    if shared.name.is_empty() {
        return Err(Problem::new("name", "must not be empty"));
    }
    Ok(EnvironmentSpec {
        backend_type,
        name: shared.name,
        environment: shared.environment,
        setup: shared.setup,
        commands: shared.commands,
        snapshot: shared.snapshot,
        limits: shared.limits,
        backend,
        origin,
    })
}

/// Refuses a `type` that cannot name a backend block.
pub(super) fn check_backend_type(backend_type: &str) -> Result<(), String> {
    if backend_type.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if SHARED_KEYS.contains(&backend_type) {
        return Err(format!(
            "`{backend_type}` cannot name a backend: it is one of the spec's own fields"
        ));
    }
    Ok(())
}

fn unknown_top_level(key: &str, value: &Value, backend_type: &str) -> Problem {
    let shared = SHARED_KEYS
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = if value.is_object() {
        format!(
            "unknown field `{key}`: a backend block must be named after `type` \
             (here `{backend_type}`); the other fields are {shared}"
        )
    } else {
        format!(
            "unknown field `{key}`, expected one of {shared} or the backend block `{backend_type}`"
        )
    };
    Problem::new(key, message)
}

/// Turns a tracked deserialisation error into a problem whose field is the
/// full dotted path under `prefix`. serde reports a missing field at its
/// parent; the path is extended to name the field itself.
pub(super) fn path_problem(
    err: &serde_path_to_error::Error<serde_json::Error>,
    prefix: &str,
) -> Problem {
    let path = err.path().to_string();
    let field = join(prefix, if path == "." { "" } else { &path });
    let message = err.inner().to_string();
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return Problem::new(join(&field, missing), "missing required field");
    }
    Problem::new(field, message)
}

/// Joins two dotted paths; an index (`[2]`) attaches without a dot.
fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else if rest.is_empty() {
        prefix.to_owned()
    } else if rest.starts_with('[') {
        format!("{prefix}{rest}")
    } else {
        format!("{prefix}.{rest}")
    }
}

/// Describes a value for an error message: `null`, `` `-1` ``, `"abc"`,
/// `a list`, `a mapping`.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("`{flag}`"),
        Value::Number(number) => format!("`{number}`"),
        Value::String(text) => format!("{text:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}
