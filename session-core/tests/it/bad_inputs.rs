//! Every public entry point fed its bad inputs: each gives a clear, typed
//! error, nothing panics or hangs, and nothing is written outside the place
//! it was meant for.

use std::fs;
use std::path::Path;

use session_core::assets::AssetMap;
use session_core::compression::Compression;
use session_core::file_ops::{InputFile, materialize_input_files};
use session_core::placeholders::resolve_static_placeholders;
use session_core::snapshot::{ExtractMode, Snapshot};
use session_core::{EnvironmentSpec, Error};

/// A directory with an `inside/` (the intended place) and an `outside/`
/// that must stay empty.
struct Arena {
    dir: tempfile::TempDir,
}

impl Arena {
    fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("inside")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        Arena { dir }
    }
    fn inside(&self) -> std::path::PathBuf {
        self.dir.path().join("inside")
    }
    fn outside(&self) -> std::path::PathBuf {
        self.dir.path().join("outside")
    }
    fn assert_outside_untouched(&self, label: &str) {
        let found: Vec<_> = fs::read_dir(self.outside())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(found.is_empty(), "{label}: wrote outside: {found:?}");
        let beside: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "inside" && n != "outside" && n != "secrets" && !n.ends_with(".tar"))
            .collect();
        assert!(beside.is_empty(), "{label}: wrote beside: {beside:?}");
    }
}

#[test]
fn hostile_specs_are_errors_naming_what_is_wrong() {
    let deep_json = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let alias_bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), ""),
        ("not a mapping", "- a\n- b\n".into(), ""),
        ("syntax", "type: local\nname: [unclosed\n".into(), ""),
        ("tabs", "type: local\n\tname: x\n".into(), ""),
        (
            "unknown key",
            "type: local\nname: x\nsnapshot: {ignore_glob: []}\n".into(),
            "snapshot.ignore_glob",
        ),
        (
            "wrong type",
            "type: local\nname: x\nlimits: {wall_timeout: soon}\n".into(),
            "limits.wall_timeout",
        ),
        (
            "negative",
            "type: local\nname: x\nlimits: {wall_timeout: -1}\n".into(),
            "limits.wall_timeout",
        ),
        (
            "infinite",
            "type: local\nname: x\nlimits: {wall_timeout: .inf}\n".into(),
            "limits.wall_timeout",
        ),
        (
            "huge number",
            "type: local\nname: x\nlimits: {memory: 1e400}\n".into(),
            "limits.memory",
        ),
        (
            "nul in env",
            "type: local\nname: x\nenvironment: {env: {\"A\\0B\": x}}\n".into(),
            "environment.env",
        ),
        (
            "bad glob",
            "type: local\nname: x\nsnapshot: {ignore_globs: [\"a[\"]}\n".into(),
            "snapshot.ignore_globs",
        ),
        (
            "bad entry format",
            "type: local\nname: x\ncommands: {entry_file: \"{other}\"}\n".into(),
            "commands.entry_file",
        ),
        (
            "foreign block",
            "type: local\nname: x\ndocker: {image: x}\n".into(),
            "docker",
        ),
        (
            "deep nesting",
            format!("type: local\nname: x\nlocal: {deep_json}\n"),
            "",
        ),
        (
            "alias bomb",
            format!(
                "type: local\nname: x\nlocal:\n  {}",
                alias_bomb.replace('\n', "\n  ")
            ),
            "",
        ),
    ];
    for (label, text, field) in cases {
        let result = std::panic::catch_unwind(|| EnvironmentSpec::from_yaml_str(&text, "<bad>"));
        let outcome = result.unwrap_or_else(|_| panic!("{label}: panicked"));
        match outcome {
            Err(Error::Spec {
                field: got,
                message,
                ..
            }) => {
                assert!(
                    got.starts_with(field),
                    "{label}: field {got:?}, expected {field:?} ({message})"
                );
                assert!(!message.is_empty(), "{label}");
            }
            // A deep or aliased block may parse: it is data for the backend,
            // which then refuses it.
            Ok(spec) if matches!(label, "deep nesting" | "alias bomb") => {
                #[derive(Debug, Default, serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Block {
                    #[allow(dead_code)]
                    shell: Option<String>,
                }
                assert!(spec.backend_config::<Block>().is_err(), "{label}");
            }
            other => panic!("{label}: {other:?}"),
        }
    }
}

#[test]
fn hostile_asset_maps_are_refused() {
    let arena = Arena::new();
    let secrets = arena.dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    fs::write(secrets.join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(secrets.join("secret"), arena.inside().join("link")).unwrap();
    for (label, yaml) in [
        ("absolute", "a: /etc/passwd"),
        ("climbing", "a: ../secrets/secret"),
        ("climbing save path", "a: {path: x, save_path: ../../x}"),
        ("absolute save path", "a: {path: x, save_path: /x}"),
        ("groups without ordering", "g1: {a: {path: x}}"),
        (
            "ordering names a missing group",
            "ordering: [nope]\ng1: {a: x}",
        ),
        ("not a map", "[1, 2]"),
    ] {
        let err = AssetMap::from_yaml_str(yaml).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Asset { .. } | Error::AssetMap { .. } | Error::PathEscape { .. }
            ),
            "{label}: {err}"
        );
    }
    // A symlink out of the base directory is refused at resolution.
    let err = AssetMap::from_yaml_str("a: link")
        .unwrap()
        .resolve(arena.inside())
        .unwrap_err();
    assert!(err.to_string().contains('a'), "{err}");
    arena.assert_outside_untouched("assets");
    assert_eq!(fs::read_to_string(secrets.join("secret")).unwrap(), "s");
}

#[test]
fn input_files_never_land_outside_the_workspace() {
    let arena = Arena::new();
    std::os::unix::fs::symlink(arena.outside(), arena.inside().join("out")).unwrap();
    for path in [
        "../x.txt",
        "/tmp/berth-bad-input.txt",
        "a/../../x.txt",
        "out/x.txt",
        "",
        ".",
    ] {
        let files = [InputFile::new(path, serde_json::json!("data"))];
        let err = materialize_input_files(&arena.inside(), &files).unwrap_err();
        assert!(matches!(err, Error::PathEscape { .. }), "{path:?}: {err}");
    }
    assert!(!Path::new("/tmp/berth-bad-input.txt").exists());
    // Wrong content for a type is an error, and the good file before it is
    // not written either.
    let files = [
        InputFile::new("good.txt", serde_json::json!("fine")),
        InputFile::new("rows.csv", serde_json::json!("not rows")),
    ];
    assert!(matches!(
        materialize_input_files(&arena.inside(), &files),
        Err(Error::FileWrite { .. })
    ));
    assert!(!arena.inside().join("good.txt").exists());
    arena.assert_outside_untouched("input files");
}

/// Writes a raw tar member with any name.
fn member(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn hostile_archives_are_refused() {
    use tar::EntryType::{Block, Fifo, Link, Regular, Symlink};
    let arena = Arena::new();
    let outside = arena.outside().display().to_string();
    type Member = (String, tar::EntryType, String);
    let cases: Vec<(&str, Vec<Member>)> = vec![
        (
            "absolute",
            vec![("/tmp/berth-bad-archive".into(), Regular, String::new())],
        ),
        (
            "climbing",
            vec![("../outside/x".into(), Regular, String::new())],
        ),
        (
            "climbing inside",
            vec![("a/b/../../../outside/x".into(), Regular, String::new())],
        ),
        (
            "symlink then file",
            vec![
                ("l".into(), Symlink, outside.clone()),
                ("l/x".into(), Regular, String::new()),
            ],
        ),
        (
            "symlink then dir",
            vec![
                ("l".into(), Symlink, outside),
                ("l/d/".into(), tar::EntryType::Directory, String::new()),
            ],
        ),
        ("hard link", vec![("h".into(), Link, "/etc/passwd".into())]),
        ("device", vec![("dev".into(), Block, String::new())]),
        ("fifo", vec![("fifo".into(), Fifo, String::new())]),
    ];
    for (label, members) in cases {
        let mut raw = Vec::new();
        for (name, kind, link) in &members {
            member(&mut raw, name, *kind, link, b"evil");
        }
        raw.extend_from_slice(&[0; 1024]);
        let archive = arena
            .dir
            .path()
            .join(format!("{}.tar", label.replace(' ', "-")));
        fs::write(&archive, raw).unwrap();
        let err = Snapshot::open_archive(&archive, Compression::None)
            .and_then(|s| s.extract(&arena.inside(), ExtractMode::Merge))
            .unwrap_err();
        assert!(
            matches!(err, Error::UnsafeArchiveMember { .. }),
            "{label}: {err}"
        );
        arena.assert_outside_untouched(label);
    }
    // Garbage and truncated archives are errors, not panics.
    fs::write(arena.dir.path().join("garbage.tar"), vec![0x42; 3000]).unwrap();
    for compression in Compression::ALL {
        let result = Snapshot::open_archive(&arena.dir.path().join("garbage.tar"), compression);
        assert!(result.is_err(), "{compression}: garbage accepted");
    }
    assert!(!Path::new("/tmp/berth-bad-archive").exists());
}

#[test]
fn placeholder_edge_cases() {
    let arena = Arena::new();
    fs::write(arena.inside().join("a.txt"), "a").unwrap();
    let assets = AssetMap::from_yaml_str("a: a.txt")
        .unwrap()
        .resolve(arena.inside())
        .unwrap();
    let resolve = |value: serde_json::Value| {
        resolve_static_placeholders(&value, &assets, |a| format!("/s/{}", a.name))
    };
    let same = |text: &str| {
        assert_eq!(
            resolve(serde_json::json!(text)).unwrap(),
            serde_json::json!(text),
            "{text:?}"
        );
    };
    same("{{static:}}");
    same("{{static:a");
    same("{static:a}");
    same("{{ static:a }}");
    assert_eq!(
        resolve(serde_json::json!("{{static:a}}{{static:a}}")).unwrap(),
        serde_json::json!("/s/a/s/a")
    );
    // The name runs to the first `}}`: `{{static:a` names no asset.
    assert!(matches!(
        resolve(serde_json::json!("{{static:{{static:a}}}}")),
        Err(Error::UnknownAsset { .. })
    ));
    assert!(matches!(
        resolve(serde_json::json!({"x": ["{{static:nope}}"]})),
        Err(Error::UnknownAsset { .. })
    ));
    assert!(matches!(
        resolve(serde_json::json!({"{{static:a}}": 1, "/s/a": 2})),
        Err(Error::PlaceholderKeyCollision { .. })
    ));
    let long = "{{static:".repeat(100_000);
    same(&long);
}
