//! Tests of typed input files: reading and writing each type, compressed
//! variants, detection by suffix, and `materialize_input_files`.

use std::os::unix::fs::symlink;

use serde_json::json;

use super::*;

/// Every file under `dir`, as sorted relative slash paths.
fn tree(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            paths::to_slash(entry.path().strip_prefix(dir).unwrap())
        })
        .collect();
    found.sort();
    found
}

#[test]
fn detection_follows_the_suffix_table() {
    use Compression::{Bzip2, Gzip, None as Plain, Xz, Zstd};
    use FileType::*;
    let table = [
        ("a.json", Json, Plain),
        ("a.json.gz", Json, Gzip),
        ("a.json.bz2", Json, Bzip2),
        ("a.json.xz", Json, Xz),
        ("a.json.zst", Json, Zstd),
        ("a.jsonl", Jsonl, Plain),
        ("a.jsonl.gz", Jsonl, Gzip),
        ("a.jsonl.bz2", Jsonl, Bzip2),
        ("a.ndjson", Jsonl, Plain),
        ("a.ndjson.gz", Jsonl, Gzip),
        ("a.ndjson.bz2", Jsonl, Bzip2),
        ("a.csv", Csv, Plain),
        ("a.csv.gz", Csv, Gzip),
        ("a.csv.bz2", Csv, Bzip2),
        ("a.tsv", Tsv, Plain),
        ("a.tsv.gz", Tsv, Gzip),
        ("a.tsv.bz2", Tsv, Bzip2),
        ("a.sqlite", Sqlite, Plain),
        ("a.sqlite3", Sqlite, Plain),
        ("a.db", Sqlite, Plain),
        ("a.yaml", Yaml, Plain),
        ("a.yml", Yaml, Plain),
        ("a.yaml.gz", Yaml, Gzip),
        ("a.parquet", Parquet, Plain),
        ("a.txt", Text, Plain),
        ("a.md", Text, Plain),
        ("a.py", Text, Plain),
        ("a.js", Text, Plain),
        ("a.html", Text, Plain),
        ("a.css", Text, Plain),
        ("a.xml", Text, Plain),
        ("a.txt.gz", Text, Gzip),
        ("a.md.bz2", Text, Bzip2),
        ("a.py.gz", Text, Gzip),
        ("a.js.bz2", Text, Bzip2),
        ("a.html.gz", Text, Gzip),
        ("a.css.bz2", Text, Bzip2),
        ("a.xml.gz", Text, Gzip),
        ("a.bin", Binary, Plain),
        ("a.tar", Binary, Plain),
        ("a.tar.gz", Binary, Plain),
        ("a.tgz", Binary, Plain),
        ("a.tar.bz2", Binary, Plain),
        ("a.tbz2", Binary, Plain),
        ("a.tar.xz", Binary, Plain),
        ("a.db.gz", Binary, Plain),
        ("a.parquet.gz", Binary, Plain),
        ("a.gz", Binary, Plain),
        ("a.unknown.gz", Binary, Plain),
        // Upper and mixed case.
        ("A.JSON", Json, Plain),
        ("Data.CSV.GZ", Csv, Gzip),
        ("LOG.TXT.BZ2", Text, Bzip2),
        ("Backup.TAR.GZ", Binary, Plain),
        ("X.TGZ", Binary, Plain),
        ("Db.SQLite3", Sqlite, Plain),
        ("Conf.YML", Yaml, Plain),
        ("T.Parquet", Parquet, Plain),
        // Anything else is text.
        ("Makefile", Text, Plain),
        ("a.rs", Text, Plain),
        ("image.png", Text, Plain),
        (".bashrc", Text, Plain),
        (".json", Text, Plain),
        ("trailing.", Text, Plain),
        // Only the name counts, not the directories.
        ("dir.json/file", Text, Plain),
        ("deep/dir/rows.tsv.gz", Tsv, Gzip),
        // The last two suffixes decide; earlier ones do not.
        ("a.csv.json", Json, Plain),
        ("a.json.tar.gz", Binary, Plain),
        ("v1.2.csv", Csv, Plain),
    ];
    for (name, file_type, compression) in table {
        assert_eq!(
            detect_file_type(name),
            (file_type, compression),
            "detecting {name}"
        );
    }
}

#[test]
fn file_type_names_display_and_serde_agree() {
    for file_type in FileType::ALL {
        assert_eq!(file_type.to_string(), file_type.name());
        assert_eq!(serde_json::to_value(file_type).unwrap(), file_type.name());
        let parsed: FileType = serde_json::from_value(json!(file_type.name())).unwrap();
        assert_eq!(parsed, file_type);
    }
    for (alias, file_type) in [
        ("ndjson", FileType::Jsonl),
        ("yml", FileType::Yaml),
        ("sqlite3", FileType::Sqlite),
    ] {
        assert_eq!(
            serde_json::from_value::<FileType>(json!(alias)).unwrap(),
            file_type
        );
    }
    assert!(serde_json::from_value::<FileType>(json!("Text")).is_err());
}

#[test]
fn input_file_new_detects_type_and_compression() {
    let file = InputFile::new("out/rows.CSV.gz", json!([{"a": 1}]));
    assert_eq!(
        (file.file_type, file.compression),
        (FileType::Csv, Compression::Gzip)
    );
    let file = file
        .with_file_type(FileType::Json)
        .with_compression(Compression::None);
    assert_eq!(
        (file.file_type, file.compression),
        (FileType::Json, Compression::None)
    );
}

#[test]
fn input_file_parses_from_harness_json() {
    let parse = |value: Value| serde_json::from_value::<InputFile>(value);

    let file = parse(json!({"path": "data/rows.csv.bz2", "content": [{"a": 1}]})).unwrap();
    assert_eq!(file, InputFile::new("data/rows.csv.bz2", json!([{"a": 1}])));
    assert_eq!(
        (file.file_type, file.compression),
        (FileType::Csv, Compression::Bzip2)
    );

    // A JSON object that looks like an encoding wrapper is still content.
    let file = parse(json!({"path": "w.json", "content": {"base64": "AAEC"}})).unwrap();
    assert_eq!(file.content, InputContent::Json(json!({"base64": "AAEC"})));

    let file = parse(json!({"path": "tool.bin", "content_base64": "AAEC/w=="})).unwrap();
    assert_eq!(file.content, InputContent::Bytes(vec![0, 1, 2, 255]));
    assert_eq!(file.file_type, FileType::Binary);

    let file = parse(json!({"path": "n.json", "content": null})).unwrap();
    assert_eq!(file.content, InputContent::Json(Value::Null));

    let file = parse(json!({
        "path": "x.dat", "content": "a,b", "file_type": "text", "compression": "gzip"
    }))
    .unwrap();
    assert_eq!(
        (file.file_type, file.compression),
        (FileType::Text, Compression::Gzip)
    );

    let file = parse(json!({"path": "x.txt.gz", "content": "a", "compression": null})).unwrap();
    assert_eq!(file.compression, Compression::Gzip);

    for bad in [
        json!({"path": "x.txt"}),
        json!({"path": "x.txt", "content": "a", "content_base64": "YQ=="}),
        json!({"path": "x.txt", "content_base64": "not base64!"}),
        json!({"path": "x.txt", "content": "a", "filetype": "json"}),
        json!({"path": "x.txt", "content": "a", "file_type": "excel"}),
        json!({"content": "a"}),
    ] {
        assert!(parse(bad.clone()).is_err(), "{bad} must be refused");
    }
}

#[test]
fn input_file_serializes_to_the_form_it_parses() {
    for file in [
        InputFile::new("a/b.json.gz", json!({"k": [1, 2]})),
        InputFile::new("tool.bin", vec![0u8, 1, 2, 255]),
        InputFile::new("n.txt", json!(null)).with_file_type(FileType::Json),
    ] {
        let value = serde_json::to_value(&file).unwrap();
        assert_eq!(serde_json::from_value::<InputFile>(value).unwrap(), file);
    }
    let value = serde_json::to_value(InputFile::new("t.bin", vec![0u8, 255])).unwrap();
    assert_eq!(
        value,
        json!({"path": "t.bin", "content_base64": "AP8=", "file_type": "binary", "compression": "none"})
    );
}

#[test]
fn text_like_types_round_trip_under_every_compression() {
    let rows = json!([{"id": "1", "name": "ann, the first"}, {"id": "2", "name": "bob\n"}]);
    let samples = [
        (FileType::Text, json!("plain text\r\nwith ünïcode\n")),
        (
            FileType::Json,
            json!({"b": [1, 2.5, null], "a": {"x": "y"}}),
        ),
        (FileType::Jsonl, json!([{"a": 1}, [true], "s"])),
        (FileType::Csv, rows.clone()),
        (FileType::Tsv, rows),
        (
            FileType::Yaml,
            json!({"list": ["yes", 1, 2.5], "map": {"k": null}}),
        ),
    ];
    for compression in Compression::ALL {
        for (file_type, value) in &samples {
            let content = InputContent::Json(value.clone());
            let bytes = encode_content(&content, *file_type, compression, "f").unwrap();
            if compression != Compression::None {
                let plain = encode_content(&content, *file_type, Compression::None, "f").unwrap();
                assert_eq!(compression.decompress(&bytes).unwrap(), plain.as_ref());
            }
            let back = decode_content(&bytes, *file_type, compression, "f").unwrap();
            assert_eq!(back, content, "{file_type} with {compression}");
        }
    }
}

#[test]
fn compressed_text_files_round_trip_through_the_disk() {
    let root = tempfile::tempdir().unwrap();
    let text = "first line\nsecond line\n";
    let files = [
        InputFile::new("notes.txt.gz", text),
        InputFile::new("notes.md.bz2", text),
        InputFile::new("notes.txt.xz", text),
        InputFile::new("rows.csv.gz", json!([{"a": "1"}])),
        InputFile::new("doc.json.bz2", json!({"k": "v"})),
        InputFile::new("lines.jsonl.zst", json!([1, 2])),
    ];
    let written = materialize_input_files(root.path(), &files).unwrap();
    let gz = fs::read(root.path().join("notes.txt.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let bz = fs::read(root.path().join("notes.md.bz2")).unwrap();
    assert_eq!(&bz[..3], b"BZh", "bzip2 magic");
    for (file, path) in files.iter().zip(&written) {
        assert_eq!(
            read_input_file(path).unwrap(),
            file.content,
            "{}",
            path.display()
        );
    }
}

#[test]
fn compression_is_refused_for_binary_sqlite_and_parquet() {
    let cases = [
        (FileType::Binary, InputContent::Bytes(vec![1, 2])),
        (FileType::Sqlite, InputContent::Json(json!({"tables": {}}))),
        (FileType::Parquet, InputContent::Json(json!([]))),
    ];
    for (file_type, content) in cases {
        let err = encode_content(&content, file_type, Compression::Gzip, "f").unwrap_err();
        assert!(
            matches!(&err, Error::FileWrite { file_type: t, .. } if *t == file_type),
            "{err}"
        );
        let err = decode_content(b"", file_type, Compression::Bzip2, "f").unwrap_err();
        assert!(
            matches!(&err, Error::FileRead { file_type: t, .. } if *t == file_type),
            "{err}"
        );
    }
}

#[test]
fn ready_made_bytes_are_written_as_given_only_when_they_decode() {
    let db = sqlite::encode(&json!({"tables": {"t": [{"a": 1}]}}), "t.db").unwrap();
    let content = InputContent::Bytes(db.clone());
    assert_eq!(
        encode_content(&content, FileType::Sqlite, Compression::None, "t.db")
            .unwrap()
            .as_ref(),
        db.as_slice()
    );
    let csv = InputContent::Bytes(b"a,b\n1,2\n".to_vec());
    assert_eq!(
        encode_content(&csv, FileType::Csv, Compression::Gzip, "t.csv.gz")
            .map(|bytes| Compression::Gzip.decompress(&bytes).unwrap())
            .unwrap(),
        b"a,b\n1,2\n"
    );
    for (file_type, bytes) in [
        (FileType::Json, &b"{not json"[..]),
        (FileType::Sqlite, b"not a database at all, only some words"),
        (FileType::Parquet, b"nope"),
        (FileType::Jsonl, b"{}\n{\n"),
    ] {
        let content = InputContent::Bytes(bytes.to_vec());
        let err = encode_content(&content, file_type, Compression::None, "f").unwrap_err();
        assert!(
            matches!(&err, Error::FileWrite { file_type: t, .. } if *t == file_type),
            "{err}"
        );
    }
}

#[test]
fn read_input_file_detects_and_falls_back_to_bytes() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("raw.dat"), [0xff, 0x00, 0xfe]).unwrap();
    fs::write(root.path().join("plain.dat"), "hello").unwrap();
    fs::write(root.path().join("arch.tar.gz"), "not gzip at all").unwrap();
    fs::write(root.path().join("c.csv"), "a\r\n1\r\n").unwrap();
    fs::write(root.path().join("broken.json.gz"), "not gzip").unwrap();
    let read = |name: &str| read_input_file(&root.path().join(name));
    assert_eq!(
        read("raw.dat").unwrap(),
        InputContent::Bytes(vec![0xff, 0x00, 0xfe])
    );
    assert_eq!(read("plain.dat").unwrap(), InputContent::from("hello"));
    assert_eq!(
        read("arch.tar.gz").unwrap(),
        InputContent::Bytes(b"not gzip at all".to_vec())
    );
    assert_eq!(
        read("c.csv").unwrap(),
        InputContent::Json(json!([{"a": "1"}]))
    );
    assert!(matches!(
        read("broken.json.gz").unwrap_err(),
        Error::FileRead {
            file_type: FileType::Json,
            ..
        }
    ));
    assert!(matches!(read("missing.txt").unwrap_err(), Error::Io { .. }));
    assert_eq!(
        read_input_file_as(
            &root.path().join("c.csv"),
            FileType::Text,
            Compression::None
        )
        .unwrap(),
        InputContent::from("a\r\n1\r\n")
    );
}

/// A file larger than the cap is refused from its size, unread; one that
/// decompresses past the cap is refused as soon as it does, whether read
/// from disk or decoded from bytes. Up to the cap, both are read.
#[test]
fn input_files_and_what_they_decompress_to_are_bounded() {
    let root = tempfile::tempdir().unwrap();
    let huge = root.path().join("huge.txt");
    fs::File::create(&huge)
        .unwrap()
        .set_len(MAX_INPUT_SIZE + 1)
        .unwrap();
    let err = read_input_file(&huge).unwrap_err();
    assert!(
        matches!(err, Error::FileTooLarge { size, limit: MAX_INPUT_SIZE, .. } if size == MAX_INPUT_SIZE + 1),
        "{err}"
    );

    let mut writer = Compression::Gzip.writer(Vec::new()).unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..(MAX_INPUT_SIZE >> 20) {
        writer.write_all(&block).unwrap();
    }
    let at_cap = writer.finish().unwrap();
    let mut writer = Compression::Gzip.writer(Vec::new()).unwrap();
    for _ in 0..(MAX_INPUT_SIZE >> 20) {
        writer.write_all(&block).unwrap();
    }
    writer.write_all(b"!").unwrap();
    let bomb = writer.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "a small file");
    fs::write(root.path().join("bomb.txt.gz"), &bomb).unwrap();
    fs::write(root.path().join("fits.txt.gz"), &at_cap).unwrap();

    for err in [
        read_input_file(&root.path().join("bomb.txt.gz")).unwrap_err(),
        decode_content(&bomb, FileType::Text, Compression::Gzip, "bomb.txt.gz").unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::FileRead { path, message, .. }
                if path.ends_with("bomb.txt.gz") && message.contains("decompresses to more than")),
            "{err}"
        );
    }
    let InputContent::Json(Value::String(text)) =
        read_input_file(&root.path().join("fits.txt.gz")).unwrap()
    else {
        panic!("text expected");
    };
    assert_eq!(text.len() as u64, MAX_INPUT_SIZE);
}

#[test]
fn materialize_writes_every_type_and_returns_the_paths() {
    let root = tempfile::tempdir().unwrap();
    let files = [
        InputFile::new("a.txt", "text"),
        InputFile::new("./dir/../b.json", json!({"k": 1})),
        InputFile::new("deep/er/c.csv", json!([{"a": "1", "b": "x"}])),
        InputFile::new("t.db", json!({"tables": {"t": [{"a": 1}]}})),
        InputFile::new("p.parquet", json!([{"a": 1}])),
        InputFile::new("y.yml", json!({"k": [1]})),
        InputFile::new("blob.tar.gz", vec![0x1f, 0x8b, 0, 1]),
    ];
    let written = materialize_input_files(root.path(), &files).unwrap();
    let expected: Vec<PathBuf> = [
        "a.txt",
        "b.json",
        "deep/er/c.csv",
        "t.db",
        "p.parquet",
        "y.yml",
        "blob.tar.gz",
    ]
    .iter()
    .map(|rel| root.path().join(rel))
    .collect();
    assert_eq!(written, expected);
    assert_eq!(
        fs::read(root.path().join("deep/er/c.csv")).unwrap(),
        b"a,b\r\n1,x\r\n"
    );
    assert_eq!(
        fs::read(root.path().join("blob.tar.gz")).unwrap(),
        [0x1f, 0x8b, 0, 1]
    );
    assert_eq!(
        fs::read(root.path().join("b.json")).unwrap(),
        b"{\n  \"k\": 1\n}\n"
    );
    for (file, path) in files.iter().zip(&written).skip(1).take(5) {
        assert_eq!(
            read_input_file(path).unwrap(),
            file.content,
            "{}",
            path.display()
        );
    }

    // Writing again replaces the files.
    materialize_input_files(root.path(), &[InputFile::new("a.txt", "new")]).unwrap();
    assert_eq!(fs::read(root.path().join("a.txt")).unwrap(), b"new");
}

#[test]
fn materialize_refuses_escaping_paths_and_writes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    fs::create_dir(&root).unwrap();
    let outside = base.path().join("outside").join("etc-passwd");
    for bad in [
        outside.to_str().unwrap(),
        "/abs",
        "../x",
        "a/../../x",
        "..",
        "",
    ] {
        let files = [
            InputFile::new("first.txt", "ok"),
            InputFile::new(bad, "evil"),
        ];
        let err = materialize_input_files(&root, &files).unwrap_err();
        assert!(matches!(err, Error::PathEscape { .. }), "{bad:?}: {err}");
    }
    assert_eq!(tree(base.path()), ["root"]);
}

#[test]
fn materialize_refuses_symlinks_on_the_way_and_writes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let outside = base.path().join("outside");
    fs::create_dir_all(root.join("real")).unwrap();
    fs::create_dir(&outside).unwrap();
    symlink(&outside, root.join("link")).unwrap();
    symlink(outside.join("target"), root.join("file-link")).unwrap();
    for bad in ["link/x.txt", "link/deeper/x.json", "file-link"] {
        let files = [
            InputFile::new("real/first.txt", "ok"),
            InputFile::new(bad, "evil"),
        ];
        let err = materialize_input_files(&root, &files).unwrap_err();
        assert!(matches!(err, Error::PathEscape { .. }), "{bad}: {err}");
    }
    assert_eq!(
        tree(base.path()),
        [
            "outside",
            "root",
            "root/file-link",
            "root/link",
            "root/real"
        ]
    );
}

#[test]
fn materialize_writes_nothing_when_a_later_file_has_wrong_content() {
    let root = tempfile::tempdir().unwrap();
    let files = [
        InputFile::new("first.txt", "fine"),
        InputFile::new("second.csv", json!("not rows")),
    ];
    let err = materialize_input_files(root.path(), &files).unwrap_err();
    let Error::FileWrite {
        path, file_type, ..
    } = &err
    else {
        panic!("unexpected {err}");
    };
    assert_eq!((path.as_str(), *file_type), ("second.csv", FileType::Csv));
    assert!(tree(root.path()).is_empty());
}

#[test]
fn materialize_refuses_conflicting_paths_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    for files in [
        vec![InputFile::new("a.txt", "1"), InputFile::new("./a.txt", "2")],
        vec![
            InputFile::new("a", "file"),
            InputFile::new("a/b.txt", "under"),
        ],
        vec![
            InputFile::new("a/b/c.txt", "under"),
            InputFile::new("a/b", "file"),
        ],
    ] {
        let err = materialize_input_files(root.path(), &files).unwrap_err();
        assert!(matches!(err, Error::ConflictingInputFiles { .. }), "{err}");
    }
    assert!(tree(root.path()).is_empty());

    // An existing file standing where a directory must go is caught before
    // anything is written too.
    fs::write(root.path().join("taken"), "x").unwrap();
    let files = [
        InputFile::new("ok.txt", "1"),
        InputFile::new("taken/x.txt", "2"),
    ];
    let err = materialize_input_files(root.path(), &files).unwrap_err();
    assert!(matches!(err, Error::PathEscape { .. }), "{err}");
    assert_eq!(tree(root.path()), ["taken"]);

    // So is an existing directory where a file must go.
    fs::create_dir(root.path().join("dir")).unwrap();
    let files = [InputFile::new("ok.txt", "1"), InputFile::new("dir", "2")];
    let err = materialize_input_files(root.path(), &files).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(tree(root.path()), ["dir", "taken"]);
}

#[test]
fn hostile_yaml_files_are_refused_before_parsing() {
    for (label, text) in [
        ("flow nesting", "[".repeat(200_000)),
        ("mapping nesting", "{".repeat(200_000)),
    ] {
        let err = decode_content(text.as_bytes(), FileType::Yaml, Compression::None, "f.yaml")
            .unwrap_err();
        assert!(err.to_string().contains("nests deeper"), "{label}: {err}");
    }
    // Large but shallow files stay readable.
    let list = format!("[{}1]", "1, ".repeat(200_000));
    let back =
        decode_content(list.as_bytes(), FileType::Yaml, Compression::None, "f.yaml").unwrap();
    assert!(
        matches!(back, InputContent::Json(serde_json::Value::Array(items)) if items.len() == 200_001)
    );
}
