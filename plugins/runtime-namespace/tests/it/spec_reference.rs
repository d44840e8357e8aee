//! The `namespace` table of `docs/spec.md` against this crate: exactly the
//! keys [`NamespaceConfig`] accepts, with its defaults, and every example
//! accepted by the block's own checks. (The host's tests check the shared
//! part and the built-in blocks the same way.)

use std::collections::BTreeMap;

use runtime_namespace::NamespaceConfig;
use serde_json::Value;
use session_core::EnvironmentSpec;

/// The `namespace.*` rows: key, then the default and example cells.
fn rows() -> BTreeMap<String, (String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/spec.md");
    let doc = std::fs::read_to_string(path).expect("docs/spec.md exists");
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `namespace.")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 7, "a key row has five cells: {line}");
        let key = cells[1].trim_matches('`').to_owned();
        let cells = (cells[3].to_owned(), cells[4].to_owned());
        assert!(rows.insert(key, cells).is_none(), "a key twice: {line}");
    }
    rows
}

/// The YAML value between a cell's backticks.
fn yaml_cell(key: &str, cell: &str) -> Value {
    let text = cell
        .strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or_else(|| panic!("{key}: `{cell}` is not one backticked value"));
    serde_yaml::from_str(text).unwrap_or_else(|err| panic!("{key}: `{text}`: {err}"))
}

fn code_defaults() -> BTreeMap<String, Value> {
    let value = serde_json::to_value(NamespaceConfig::default()).unwrap();
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (format!("namespace.{key}"), value.clone()))
        .collect()
}

#[test]
fn the_reference_names_every_key_with_its_default() {
    let rows = rows();
    let code = code_defaults();
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        code.keys().collect::<Vec<_>>(),
        "docs/spec.md's namespace keys (left) differ from NamespaceConfig's (right)"
    );
    for (key, default) in code {
        assert_eq!(
            yaml_cell(&key, &rows[&key].0),
            default,
            "{key}: docs/spec.md's default (left) is not the code's (right)"
        );
    }
}

#[test]
fn every_example_is_accepted_by_the_blocks_checks() {
    for (key, (_, example)) in rows() {
        let field = key.strip_prefix("namespace.").unwrap();
        let value = serde_json::to_string(&yaml_cell(&key, &example)).unwrap();
        let text = format!("{{type: namespace, name: t, namespace: {{{field}: {value}}}}}");
        let spec = EnvironmentSpec::from_yaml_str(&text, "<docs/spec.md>")
            .unwrap_or_else(|err| panic!("{key}: {err}"));
        NamespaceConfig::from_spec(&spec).unwrap_or_else(|err| panic!("{key}: {text}: {err}"));
    }
}
