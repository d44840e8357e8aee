//! Resolving assets against a base directory, fingerprinting their content,
//! and copying them into a workspace.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use session_core::Error;
use session_core::assets::{AssetMap, ResolvedAsset, ResolvedAssets, StaticAsset};
use tempfile::TempDir;

/// A base directory with a file, an executable, a nested directory with a
/// relative symlink, and the asset map naming them.
fn base() -> (TempDir, AssetMap) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("config.json"), "{\"a\": 1}\n").unwrap();
    fs::create_dir_all(root.join("data/nested/deeper")).unwrap();
    fs::write(root.join("data/top.csv"), "a,b\n1,2\n").unwrap();
    fs::write(root.join("data/nested/deeper/leaf.txt"), "leaf").unwrap();
    fs::write(root.join("data/nested/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        root.join("data/nested/run.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::create_dir(root.join("data/empty")).unwrap();
    symlink("top.csv", root.join("data/link.csv")).unwrap();
    let map = AssetMap::from_yaml_str(
        "config: config.json\ndata: {path: ./data, save_path: inputs/data}\n",
    )
    .unwrap();
    (dir, map)
}

#[test]
fn resolve_gives_canonical_paths_in_order() {
    let (dir, map) = base();
    let resolved = map.resolve(dir.path()).unwrap();
    let canonical = fs::canonicalize(dir.path()).unwrap();
    let got: Vec<&ResolvedAsset> = resolved.iter().collect();
    assert_eq!(
        got,
        [
            &ResolvedAsset {
                name: "config".into(),
                absolute_path: canonical.join("config.json"),
                save_path: "config.json".into(),
                is_dir: false,
            },
            &ResolvedAsset {
                name: "data".into(),
                absolute_path: canonical.join("data"),
                save_path: "inputs/data".into(),
                is_dir: true,
            },
        ]
    );
    assert_eq!(resolved.len(), 2);
    assert!(!resolved.is_empty());
    assert_eq!(
        resolved.get("data").unwrap().save_path,
        Path::new("inputs/data")
    );
    assert!(resolved.get("nope").is_none());
    let names: Vec<&str> = (&resolved).into_iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["config", "data"]);
    assert_eq!(resolved.clone(), resolved);
    assert!(ResolvedAssets::default().is_empty());
}

#[test]
fn resolve_names_the_asset_and_the_path_tried() {
    let (dir, _) = base();
    let mut map = AssetMap::new();
    map.insert("ghost", &StaticAsset::new("missing/file.txt"))
        .unwrap();
    let err = map.resolve(dir.path()).unwrap_err();
    let Error::Asset { name, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(name, "ghost");
    let tried = fs::canonicalize(dir.path())
        .unwrap()
        .join("missing/file.txt");
    assert!(
        message.contains(&format!("looked for `{}`", tried.display())),
        "{message}"
    );
}

#[test]
fn resolve_refuses_a_symlink_out_of_the_base_directory() {
    let (dir, _) = base();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "s").unwrap();
    symlink(outside.path().join("secret"), dir.path().join("escape")).unwrap();
    let mut map = AssetMap::new();
    map.insert("escape", &StaticAsset::new("escape")).unwrap();
    let err = map.resolve(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Asset { name, message } if name == "escape" && message.contains("outside the base directory")),
        "{err:?}"
    );
    // A symlink that stays inside is followed.
    let mut map = AssetMap::new();
    map.insert("alias", &StaticAsset::new("data/link.csv"))
        .unwrap();
    let resolved = map.resolve(dir.path()).unwrap();
    let alias = resolved.get("alias").unwrap();
    assert!(alias.absolute_path.ends_with("data/top.csv"));
    assert!(!alias.is_dir);
    assert_eq!(alias.save_path, Path::new("data/link.csv"));
}

#[test]
fn an_unchanged_asset_passes_the_check() {
    let (dir, map) = base();
    let resolved = map.resolve(dir.path()).unwrap();
    let before = resolved.fingerprint().unwrap();
    let after = resolved.fingerprint().unwrap();
    assert_eq!(before, after);
    before.check(&after).unwrap();
    let digest = before.digest("data").unwrap();
    assert_eq!(digest.len(), 64);
    assert_ne!(Some(digest), before.digest("config"));
    assert_eq!(before.digest("nope"), None);
}

/// Applies `change` to the base directory and asserts the check then names
/// `asset`.
#[track_caller]
fn assert_detected(asset: &str, change: impl FnOnce(&Path)) {
    let (dir, map) = base();
    let resolved = map.resolve(dir.path()).unwrap();
    let before = resolved.fingerprint().unwrap();
    change(dir.path());
    let after = resolved.fingerprint().unwrap();
    let err = before.check(&after).unwrap_err();
    let Error::AssetTampered { name, path } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(name, asset);
    assert_eq!(path, &resolved.get(asset).unwrap().absolute_path);
}

#[test]
fn the_check_detects_changed_bytes_modes_and_entries() {
    assert_detected("config", |root| {
        fs::write(root.join("config.json"), "{\"a\": 2}\n").unwrap();
    });
    assert_detected("data", |root| {
        fs::write(root.join("data/nested/deeper/leaf.txt"), "lead").unwrap();
    });
    assert_detected("config", |root| {
        fs::set_permissions(root.join("config.json"), fs::Permissions::from_mode(0o755)).unwrap();
    });
    assert_detected("data", |root| {
        fs::set_permissions(
            root.join("data/nested/run.sh"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    });
    assert_detected("data", |root| {
        fs::write(root.join("data/new.txt"), "").unwrap();
    });
    assert_detected("data", |root| {
        fs::remove_dir(root.join("data/empty")).unwrap();
    });
    assert_detected("data", |root| {
        fs::remove_file(root.join("data/link.csv")).unwrap();
        symlink("nested/run.sh", root.join("data/link.csv")).unwrap();
    });
    assert_detected("data", |root| {
        fs::rename(root.join("data/top.csv"), root.join("data/top2.csv")).unwrap();
    });
    // A deleted asset is a change, not an I/O error.
    assert_detected("config", |root| {
        fs::remove_file(root.join("config.json")).unwrap();
    });
}

#[test]
fn fingerprints_of_different_asset_sets_do_not_match() {
    let (dir, map) = base();
    let both = map.resolve(dir.path()).unwrap();
    let mut only_config = AssetMap::new();
    only_config
        .insert("config", &StaticAsset::new("config.json"))
        .unwrap();
    let one = only_config.resolve(dir.path()).unwrap();
    let err = both
        .fingerprint()
        .unwrap()
        .check(&one.fingerprint().unwrap())
        .unwrap_err();
    assert!(
        matches!(&err, Error::AssetTampered { name, .. } if name == "data"),
        "{err:?}"
    );
    let err = one
        .fingerprint()
        .unwrap()
        .check(&both.fingerprint().unwrap())
        .unwrap_err();
    assert!(
        matches!(&err, Error::AssetTampered { name, .. } if name == "data"),
        "{err:?}"
    );
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn materialize_copies_files_and_trees_at_their_save_paths() {
    let (dir, map) = base();
    let resolved = map.resolve(dir.path()).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    resolved.materialize_into(root).unwrap();

    assert_eq!(
        fs::read_to_string(root.join("config.json")).unwrap(),
        "{\"a\": 1}\n"
    );
    let data = root.join("inputs/data");
    assert_eq!(
        fs::read_to_string(data.join("top.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    assert_eq!(
        fs::read_to_string(data.join("nested/deeper/leaf.txt")).unwrap(),
        "leaf"
    );
    assert_eq!(mode(&data.join("nested/run.sh")), 0o755);
    assert_eq!(mode(&data.join("top.csv")) & 0o111, 0);
    assert!(data.join("empty").is_dir());
    assert!(
        fs::symlink_metadata(data.join("link.csv"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_link(data.join("link.csv")).unwrap(),
        PathBuf::from("top.csv")
    );

    // Materialising again restores what the workspace changed.
    fs::write(data.join("top.csv"), "changed").unwrap();
    fs::remove_file(data.join("link.csv")).unwrap();
    fs::write(data.join("link.csv"), "now a file").unwrap();
    resolved.materialize_into(root).unwrap();
    assert_eq!(
        fs::read_to_string(data.join("top.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    assert_eq!(
        fs::read_link(data.join("link.csv")).unwrap(),
        PathBuf::from("top.csv")
    );

    // The sources are untouched.
    resolved
        .fingerprint()
        .unwrap()
        .check(&map.resolve(dir.path()).unwrap().fingerprint().unwrap())
        .unwrap();
}

#[test]
fn materialize_refuses_a_symlinked_parent_in_the_workspace() {
    let (dir, map) = base();
    let resolved = map.resolve(dir.path()).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), workspace.path().join("inputs")).unwrap();
    let err = resolved.materialize_into(workspace.path()).unwrap_err();
    assert!(matches!(err, Error::PathEscape { .. }), "{err:?}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn materialize_refuses_to_replace_a_directory_with_a_file() {
    let (dir, map) = base();
    let resolved = map.resolve(dir.path()).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    fs::create_dir(workspace.path().join("config.json")).unwrap();
    let err = resolved.materialize_into(workspace.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Asset { name, message } if name == "config" && message.contains("cannot copy over the directory")),
        "{err:?}"
    );
}

#[test]
fn resolved_assets_round_trip_through_json_and_are_checked() {
    let (dir, map) = base();
    let resolved = map.resolve(dir.path()).unwrap();
    let json = serde_json::to_value(&resolved).unwrap();
    assert!(json.is_array());
    assert_eq!(json[1]["save_path"], "inputs/data");
    assert_eq!(
        serde_json::from_value::<ResolvedAssets>(json).unwrap(),
        resolved
    );

    let asset = |name: &str, absolute: &str, save: &str| ResolvedAsset {
        name: name.into(),
        absolute_path: absolute.into(),
        save_path: save.into(),
        is_dir: false,
    };
    for (assets, fragment) in [
        (
            vec![asset("a", "rel/x", "x")],
            "absolute_path `rel/x` is relative",
        ),
        (
            vec![asset("a", "/x", "../x")],
            "save_path `../x` is not allowed",
        ),
        (
            vec![asset("a", "/x", "./x")],
            "save_path `./x` is not normalised",
        ),
        (
            vec![asset("a", "/x", "x"), asset("a", "/y", "y")],
            "the name appears twice",
        ),
    ] {
        let err = ResolvedAssets::new(assets).unwrap_err();
        assert!(err.to_string().contains(fragment), "{err}");
    }
    let err = serde_json::from_str::<ResolvedAssets>(
        r#"[{"name": "a", "absolute_path": "/x", "save_path": "/etc", "is_dir": false}]"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("static asset `a`"), "{err}");
}
