//! `{{static:NAME}}` substitution in JSON values.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};
use session_core::Error;
use session_core::assets::{ResolvedAsset, ResolvedAssets};
use session_core::paths::to_slash;
use session_core::placeholders::{resolve_static_placeholders, resolve_static_placeholders_in_str};

/// Two assets that need no files: substitution only reads names and paths.
fn assets() -> &'static ResolvedAssets {
    static ASSETS: OnceLock<ResolvedAssets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        ResolvedAssets::new([
            ResolvedAsset {
                name: "data".into(),
                absolute_path: "/problems/p1/data".into(),
                save_path: "inputs/data".into(),
                is_dir: true,
            },
            ResolvedAsset {
                name: "model.v2".into(),
                absolute_path: "/problems/p1/m.bin".into(),
                save_path: "m.bin".into(),
                is_dir: false,
            },
        ])
        .unwrap()
    })
}

/// Where a container backend shows an asset.
fn container_path(asset: &ResolvedAsset) -> String {
    format!("/static/{}", to_slash(&asset.save_path))
}

/// Substitutes with container paths and compares with `expected`.
#[track_caller]
fn check(input: &Value, expected: &Value) {
    let got = resolve_static_placeholders(input, assets(), container_path)
        .unwrap_or_else(|err| panic!("{input}: {err}"));
    assert_eq!(&got, expected, "input: {input}");
}

/// Substitutes and asserts the error.
#[track_caller]
fn check_err(input: &Value, want: impl Fn(&Error) -> bool) {
    let err = resolve_static_placeholders(input, assets(), container_path).unwrap_err();
    assert!(want(&err), "{input}: {err:?}");
}

#[test]
fn strings_are_substituted_with_the_text_around_kept() {
    check(&json!("{{static:data}}"), &json!("/static/inputs/data"));
    check(
        &json!("--input={{static:data}}/train.csv"),
        &json!("--input=/static/inputs/data/train.csv"),
    );
    check(
        &json!("{{static:data}} and {{static:model.v2}}{{static:data}}"),
        &json!("/static/inputs/data and /static/m.bin/static/inputs/data"),
    );
    check(&json!("no placeholder"), &json!("no placeholder"));
    check(&json!(""), &json!(""));
    check(
        &json!("héllo {{static:data}} ✓"),
        &json!("héllo /static/inputs/data ✓"),
    );
}

#[test]
fn things_that_are_not_placeholders_stay() {
    check(&json!("{{static:}}"), &json!("{{static:}}"));
    check(&json!("{{static:data}"), &json!("{{static:data}"));
    check(&json!("{{static:data"), &json!("{{static:data"));
    check(&json!("{static:data}"), &json!("{static:data}"));
    check(&json!("{{ static:data }}"), &json!("{{ static:data }}"));
    check(&json!("{{STATIC:data}}"), &json!("{{STATIC:data}}"));
    check(&json!("{{static:da}ta}}"), &json!("{{static:da}ta}}"));
    // A failed candidate does not hide a real placeholder after it.
    check(
        &json!("{{static:}}{{static:data}}"),
        &json!("{{static:}}/static/inputs/data"),
    );
    check(
        &json!("{{static:x}y {{static:data}}"),
        &json!("{{static:x}y /static/inputs/data"),
    );
    check(&json!("{{{static:data}}}"), &json!("{/static/inputs/data}"));
}

#[test]
fn other_scalars_pass_unchanged() {
    for scalar in [
        json!(null),
        json!(true),
        json!(0),
        json!(-3.5),
        json!(u64::MAX),
    ] {
        check(&scalar, &scalar);
    }
}

#[test]
fn arrays_and_objects_are_walked_recursively() {
    check(
        &json!({
            "args": ["--data", "{{static:data}}", 3, null, ["{{static:model.v2}}", {"k": "{{static:data}}"}]],
            "nested": {"deeper": {"path": "{{static:model.v2}}", "n": 1.5, "ok": false}},
            "plain": "text"
        }),
        &json!({
            "args": ["--data", "/static/inputs/data", 3, null, ["/static/m.bin", {"k": "/static/inputs/data"}]],
            "nested": {"deeper": {"path": "/static/m.bin", "n": 1.5, "ok": false}},
            "plain": "text"
        }),
    );
    check(&json!([]), &json!([]));
    check(&json!({}), &json!({}));
}

#[test]
fn object_keys_are_substituted_in_place() {
    let got = resolve_static_placeholders(
        &json!({"first": 1, "{{static:data}}/x.csv": "{{static:data}}", "last": 2}),
        assets(),
        container_path,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({"first": 1, "/static/inputs/data/x.csv": "/static/inputs/data", "last": 2})
    );
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["first", "/static/inputs/data/x.csv", "last"]);
}

#[test]
fn unknown_names_are_errors_naming_them() {
    check_err(
        &json!("{{static:nope}}"),
        |err| matches!(err, Error::UnknownAsset { name } if name == "nope"),
    );
    check_err(
        &json!({"ok": ["a", {"deep": "x {{static:Data}}"}]}),
        |err| matches!(err, Error::UnknownAsset { name } if name == "Data"),
    );
    check_err(
        &json!({"{{static:missing}}": 1}),
        |err| matches!(err, Error::UnknownAsset { name } if name == "missing"),
    );
    // The name is taken as written: no trimming.
    check_err(
        &json!("{{static: data}}"),
        |err| matches!(err, Error::UnknownAsset { name } if name == " data"),
    );
    let err = resolve_static_placeholders(&json!("{{static:nope}}"), assets(), container_path)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "placeholder `{{static:nope}}` names an unknown static asset `nope`"
    );
}

#[test]
fn keys_that_become_equal_are_a_collision() {
    check_err(
        &json!({"/static/m.bin": 1, "{{static:model.v2}}": 2}),
        |err| {
            matches!(err, Error::PlaceholderKeyCollision { key, resolved }
                if key == "{{static:model.v2}}" && resolved == "/static/m.bin")
        },
    );
    check_err(
        &json!({"{{static:model.v2}}": 1, "/static/m.bin": 2}),
        |err| {
            matches!(err, Error::PlaceholderKeyCollision { key, resolved }
                if key == "{{static:model.v2}}" && resolved == "/static/m.bin")
        },
    );
    check_err(
        &json!({"a": {"{{static:data}}": 1, "/static/{{static:data}}": 2, "/static/inputs/data": 3}}),
        |err| matches!(err, Error::PlaceholderKeyCollision { .. }),
    );
}

#[test]
fn the_backend_decides_the_path() {
    let host = |asset: &ResolvedAsset| asset.absolute_path.display().to_string();
    let input = json!(["{{static:data}}", "{{static:model.v2}}"]);
    assert_eq!(
        resolve_static_placeholders(&input, assets(), host).unwrap(),
        json!(["/problems/p1/data", "/problems/p1/m.bin"])
    );
    assert_eq!(
        resolve_static_placeholders_in_str("cat {{static:model.v2}}", assets(), host).unwrap(),
        "cat /problems/p1/m.bin"
    );
    // A replacement is not scanned again.
    let tricky = |_: &ResolvedAsset| "{{static:nope}}".to_owned();
    assert_eq!(
        resolve_static_placeholders(&json!("{{static:data}}"), assets(), tricky).unwrap(),
        json!("{{static:nope}}")
    );
    assert_eq!(
        resolve_static_placeholders(&json!("{{static:data}}"), &ResolvedAssets::default(), host)
            .unwrap_err()
            .to_string(),
        "placeholder `{{static:data}}` names an unknown static asset `data`"
    );
    assert!(Path::new(&host(assets().get("data").unwrap())).is_absolute());
}

#[test]
fn many_unterminated_prefixes_are_scanned_in_linear_time() {
    // Quadratic scanning would take minutes here; linear takes milliseconds.
    let text = "{{static:".repeat(200_000) + "}}";
    let err = resolve_static_placeholders_in_str(&text, assets(), container_path).unwrap_err();
    assert!(matches!(err, Error::UnknownAsset { .. }), "{err:?}");
    let text = "{{static:".repeat(200_000);
    assert_eq!(
        resolve_static_placeholders_in_str(&text, assets(), container_path).unwrap(),
        text
    );
}
