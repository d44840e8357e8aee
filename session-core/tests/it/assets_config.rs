//! Asset maps: flat or grouped, validated when loaded, errors naming the
//! asset or group at fault.

use std::path::{Path, PathBuf};

use serde_json::json;
use session_core::Error;
use session_core::assets::{AssetMap, StaticAsset};

/// The map as `(name, path, effective save path)` triples.
fn entries(map: &AssetMap) -> Vec<(String, PathBuf, PathBuf)> {
    map.iter()
        .map(|(name, asset)| {
            (
                name.to_owned(),
                asset.path.clone(),
                asset.effective_save_path().to_path_buf(),
            )
        })
        .collect()
}

fn triple(name: &str, path: &str, save_path: &str) -> (String, PathBuf, PathBuf) {
    (
        name.to_owned(),
        PathBuf::from(path),
        PathBuf::from(save_path),
    )
}

/// Asserts `yaml` is refused with an `Error::Asset` for `name` whose message
/// contains `fragment`.
#[track_caller]
fn check_asset_error(yaml: &str, name: &str, fragment: &str) {
    let err = AssetMap::from_yaml_str(yaml).expect_err(yaml);
    let Error::Asset { name: got, message } = &err else {
        panic!("expected Error::Asset for {yaml:?}, got {err:?}");
    };
    assert_eq!(got, name, "{err}");
    assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
    assert!(
        err.to_string()
            .starts_with(&format!("static asset `{name}`: ")),
        "{err}"
    );
}

#[test]
fn a_flat_map_accepts_the_shorthand_and_normalises_paths() {
    let map = AssetMap::from_yaml_str(
        "
tests: ./tests/data/
model: {path: models/m.bin, save_path: ./weights/m.bin}
docs: {path: a/../docs}
",
    )
    .unwrap();
    assert_eq!(
        entries(&map),
        [
            triple("tests", "tests/data", "tests/data"),
            triple("model", "models/m.bin", "weights/m.bin"),
            triple("docs", "docs", "docs"),
        ]
    );
    assert_eq!(map.len(), 3);
    assert!(!map.is_empty());
    assert_eq!(
        map.get("model"),
        Some(&StaticAsset::new("models/m.bin").with_save_path("weights/m.bin"))
    );
    assert_eq!(map.get("missing"), None);
    assert_eq!(map.get("tests").unwrap().save_path, None);
}

#[test]
fn json_yaml_and_values_agree() {
    let yaml = AssetMap::from_yaml_str("a: x\nb: {path: y, save_path: z}\n").unwrap();
    let json =
        AssetMap::from_json_str(r#"{"a": "x", "b": {"path": "y", "save_path": "z"}}"#).unwrap();
    let value =
        AssetMap::from_value(&json!({"a": {"path": "x"}, "b": {"path": "y", "save_path": "z"}}))
            .unwrap();
    assert_eq!(yaml, json);
    assert_eq!(yaml, value);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assets.json");
    std::fs::write(&path, r#"{"a": "x", "b": {"path": "y", "save_path": "z"}}"#).unwrap();
    assert_eq!(AssetMap::from_path(&path).unwrap(), yaml);
    let path = dir.path().join("assets.yaml");
    std::fs::write(&path, "a: x\nb: {path: y, save_path: z}\n").unwrap();
    assert_eq!(AssetMap::from_path(&path).unwrap(), yaml);

    let anchored = AssetMap::from_yaml_str(
        "ordering: [a, b]\na: &shared {x: x, y: y}\nb: {<<: *shared, y: z}\n",
    )
    .unwrap();
    assert_eq!(
        entries(&anchored),
        [triple("x", "x", "x"), triple("y", "z", "z")]
    );
    assert!(AssetMap::from_yaml_str("").unwrap().is_empty());
    assert!(AssetMap::from_yaml_str("{}").unwrap().is_empty());
}

#[test]
fn grouped_maps_apply_groups_in_order_and_later_wins() {
    let map = AssetMap::from_yaml_str(
        "
ordering: [base, checkpoint_2]
base:
  data: data/v1
  tools: tools
checkpoint_2:
  data: {path: data/v2, save_path: data}
  extra: extra.txt
unused:
  data: nowhere
",
    )
    .unwrap();
    assert_eq!(
        entries(&map),
        [
            triple("data", "data/v2", "data"),
            triple("tools", "tools", "tools"),
            triple("extra", "extra.txt", "extra.txt"),
        ]
    );

    let reversed =
        AssetMap::from_yaml_str("ordering: [b, a]\na: {x: from_a}\nb: {x: from_b, y: only_b}\n")
            .unwrap();
    assert_eq!(
        entries(&reversed),
        [
            triple("x", "from_a", "from_a"),
            triple("y", "only_b", "only_b")
        ]
    );

    let empty = AssetMap::from_yaml_str("ordering: []\na: {x: y}\n").unwrap();
    assert!(empty.is_empty());
}

#[test]
fn shape_errors_name_the_group() {
    check_asset_error(
        "base: {data: data}\nextra: {more: more}\n",
        "base",
        "looks like a group of assets, but the map has no `ordering` list",
    );
    check_asset_error(
        "ordering: [base, missing]\nbase: {data: data}\n",
        "missing",
        "`ordering` names this group, but no such group is defined",
    );
    check_asset_error(
        "ordering: [ordering]\n",
        "ordering",
        "no such group is defined",
    );
    check_asset_error(
        "ordering: [base]\nbase: [data]\n",
        "base",
        "a group must be a mapping of asset names to assets, found a list",
    );

    for (yaml, fragment) in [
        (
            "ordering: base\nbase: {a: a}\n",
            "`ordering` must be a list of group names, found a string",
        ),
        (
            "ordering: [a, 1]\n",
            "`ordering` must be a list of group names, found a number in it",
        ),
        (
            "[a, b]\n",
            "expected a mapping of asset names to assets, found a list",
        ),
        ("a: [b\n", "line 1"),
        ("a: !tagged b\n", "a: YAML tags are not supported"),
    ] {
        let err = AssetMap::from_yaml_str(yaml).unwrap_err();
        let Error::AssetMap { origin, message } = &err else {
            panic!("expected Error::AssetMap for {yaml:?}, got {err:?}");
        };
        assert_eq!(origin, "<yaml>");
        assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
    }
    let err = AssetMap::from_json_str("[1]").unwrap_err();
    assert!(err.to_string().starts_with("asset map <json>: "), "{err}");
}

#[test]
fn paths_are_checked_when_the_map_is_loaded() {
    let table: &[(&str, &str, &str)] = &[
        (
            "abs: /etc/passwd\n",
            "abs",
            "path `/etc/passwd` is not allowed: absolute",
        ),
        (
            "up: ../secret\n",
            "up",
            "path `../secret` is not allowed: it climbs out",
        ),
        ("deep: a/../../secret\n", "deep", "it climbs out with `..`"),
        (
            "dot: .\n",
            "dot",
            "path `.` is not allowed: the path is empty",
        ),
        ("empty: ''\n", "empty", "the path is empty"),
        (
            "s: {path: ok, save_path: /static/x}\n",
            "s",
            "save_path `/static/x` is not allowed: absolute",
        ),
        (
            "s: {path: ok, save_path: ../x}\n",
            "s",
            "save_path `../x` is not allowed: it climbs out",
        ),
        (
            "ordering: [g]\ng: {inner: {path: ok, save_path: ../../x}}\n",
            "inner",
            "save_path `../../x`",
        ),
        (
            "n: 3\n",
            "n",
            "expected a path or a mapping with `path` and `save_path`, found a number",
        ),
        (
            "n: {path: a, save_paht: b}\n",
            "n",
            "unknown field `save_paht`",
        ),
        ("n: {save_path: b}\n", "n", "missing field `path`"),
        (
            "a: {path: x, save_path: same}\nb: {path: y, save_path: ./same}\n",
            "b",
            "save path `same` is also the save path of asset `a`",
        ),
        ("a: same\nb: {path: y, save_path: same}\n", "b", "asset `a`"),
    ];
    for (yaml, name, fragment) in table {
        check_asset_error(yaml, name, fragment);
    }
}

#[test]
fn a_later_group_may_swap_save_paths() {
    let map = AssetMap::from_yaml_str(
        "
ordering: [one, two]
one: {a: {path: x, save_path: s1}, b: {path: y, save_path: s2}}
two: {a: {path: x, save_path: s2}, b: {path: y, save_path: s1}}
",
    )
    .unwrap();
    assert_eq!(
        entries(&map),
        [triple("a", "x", "s2"), triple("b", "y", "s1")]
    );
}

#[test]
fn insert_validates_and_replaces() {
    let mut map = AssetMap::new();
    map.insert("a", &StaticAsset::new("./x/y")).unwrap();
    assert_eq!(map.get("a").unwrap().path, Path::new("x/y"));
    let err = map.insert("b", &StaticAsset::new("/abs")).unwrap_err();
    assert!(
        matches!(&err, Error::Asset { name, .. } if name == "b"),
        "{err:?}"
    );
    let err = map
        .insert("c", &StaticAsset::new("z").with_save_path("x/y"))
        .unwrap_err();
    assert!(
        err.to_string().contains("also the save path of asset `a`"),
        "{err}"
    );
    // Replacing an asset by name keeps its place and may keep its save path.
    map.insert("d", &StaticAsset::new("d")).unwrap();
    map.insert("a", &StaticAsset::new("other").with_save_path("x/y"))
        .unwrap();
    assert_eq!(
        entries(&map),
        [triple("a", "other", "x/y"), triple("d", "d", "d")]
    );
}
