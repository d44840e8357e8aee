//! `docs/spec.md` against the code: its tables name exactly the keys the
//! spec's shared sections and the built-in backends' blocks accept, with
//! the defaults the code gives them, and every example it shows is
//! accepted. (The namespace plugin checks its own table the same way.)
//!
//! The README's tour spec is tested by `readme_tour_cli.rs`.

use std::collections::BTreeMap;

use serde_json::Value;
use session_core::EnvironmentSpec;

/// One row of a key table: `| `key` | type | default | example | what |`.
#[derive(Debug)]
struct Row {
    key: String,
    default: String,
    example: String,
}

fn reference() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/spec.md");
    std::fs::read_to_string(path).expect("docs/spec.md exists")
}

/// Every key row of the document, by key.
fn rows(doc: &str) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 7, "a key row has five cells: {line}");
        let key = cells[1].trim_matches('`').to_owned();
        let row = Row {
            key: key.clone(),
            default: cells[3].to_owned(),
            example: cells[4].to_owned(),
        };
        assert!(rows.insert(key, row).is_none(), "a key twice: {line}");
    }
    rows
}

/// A cell's value: the YAML between its backticks.
fn yaml_cell(row: &Row, cell: &str) -> Value {
    let text = cell
        .strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or_else(|| panic!("{}: `{cell}` is not one backticked value", row.key));
    serde_yaml::from_str(text).unwrap_or_else(|err| panic!("{}: `{text}`: {err}", row.key))
}

/// The keys and default values of a serialised default, prefixed.
fn flatten(prefix: &str, value: &Value) -> BTreeMap<String, Value> {
    value
        .as_object()
        .expect("a mapping")
        .iter()
        .map(|(key, value)| (format!("{prefix}{key}"), value.clone()))
        .collect()
}

/// The keys of the shared part and of each built-in block, with their
/// defaults, as the code has them.
fn code_defaults() -> BTreeMap<String, Value> {
    let spec = serde_json::to_value(EnvironmentSpec::new("local", "x")).unwrap();
    let mut keys = BTreeMap::new();
    for (section, value) in spec.as_object().unwrap() {
        if value.is_object() {
            keys.extend(flatten(&format!("{section}."), value));
        } else {
            keys.insert(section.clone(), Value::Null);
        }
    }
    for (block, value) in [
        (
            "local",
            serde_json::to_value(runtime_local::LocalConfig::default()).unwrap(),
        ),
        (
            "docker",
            serde_json::to_value(runtime_docker::DockerConfig::default()).unwrap(),
        ),
        (
            "api",
            serde_json::to_value(runtime_api::ApiConfig::default()).unwrap(),
        ),
    ] {
        keys.extend(flatten(&format!("{block}."), &value));
    }
    keys
}

#[test]
fn the_reference_names_every_key_of_the_shared_part_and_the_built_in_blocks() {
    let doc = rows(&reference());
    let code = code_defaults();
    let documented: Vec<&String> = doc
        .keys()
        .filter(|k| !k.starts_with("namespace."))
        .collect();
    let accepted: Vec<&String> = code.keys().collect();
    assert_eq!(
        documented, accepted,
        "docs/spec.md's keys (left) differ from those the code accepts (right)"
    );
}

#[test]
fn the_reference_gives_the_codes_defaults() {
    let doc = rows(&reference());
    for (key, default) in code_defaults() {
        let row = doc
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not in docs/spec.md"));
        if row.default == "required" {
            // Nothing to fall back on: the key is the spec's own, or its
            // default is empty and refused.
            assert!(
                matches!(key.as_str(), "type" | "name")
                    || default.is_null()
                    || default == Value::String(String::new()),
                "{key} is documented as required but defaults to {default}"
            );
            continue;
        }
        assert_eq!(
            yaml_cell(row, &row.default),
            default,
            "{key}: docs/spec.md's default (left) is not the code's (right)"
        );
    }
}

#[test]
fn every_example_in_the_reference_is_accepted() {
    let doc = rows(&reference());
    for row in doc.values().filter(|r| !r.key.starts_with("namespace.")) {
        let example = yaml_cell(row, &row.example);
        let example = serde_json::to_string(&example).unwrap();
        let (section, field) = row.key.split_once('.').unwrap_or((row.key.as_str(), ""));
        let text = match section {
            "type" => format!("{{type: {example}, name: t}}"),
            "name" => format!("{{type: local, name: {example}}}"),
            _ => format!("{{type: local, name: t, {section}: {{{field}: {example}}}}}"),
        };
        let spec = match section {
            "docker" | "api" => text.replace("type: local", &format!("type: {section}")),
            _ => text,
        };
        let parsed = EnvironmentSpec::from_yaml_str(&spec, "<docs/spec.md>")
            .unwrap_or_else(|err| panic!("{}: {spec}: {err}", row.key));
        let block = match section {
            "local" => parsed
                .backend_config::<runtime_local::LocalConfig>()
                .map(drop),
            "docker" => parsed
                .backend_config::<runtime_docker::DockerConfig>()
                .map(drop),
            "api" => parsed.backend_config::<runtime_api::ApiConfig>().map(drop),
            _ => Ok(()),
        };
        block.unwrap_or_else(|err| panic!("{}: {spec}: {err}", row.key));
    }
}

#[test]
fn an_unknown_key_in_any_section_is_refused_naming_its_path() {
    // What the reference promises above its tables.
    for section in ["environment", "setup", "commands", "snapshot", "limits"] {
        let text = format!("{{type: local, name: t, {section}: {{no_such_key: 1}}}}");
        let err = EnvironmentSpec::from_yaml_str(&text, "typo.yaml").unwrap_err();
        assert!(
            err.to_string().contains(&format!("{section}.no_such_key")),
            "{err}"
        );
    }
}
