//! Hostile spec text is refused with an error naming the bound, the file
//! and the line, before the YAML parser could spend time or memory on it.

use session_core::spec::{
    EnvironmentSpec, MAX_ALIASES, MAX_DOCUMENT_BYTES, MAX_NESTING, MAX_VALUES,
};
use session_core::{Error, assets::AssetMap};

/// The message of the `Error::Spec` that loading `text` from a file named
/// `name` gives, checking that the error names the file.
#[track_caller]
fn refusal(name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let err = EnvironmentSpec::from_path(&path).expect_err("the spec must be refused");
    let Error::Spec {
        origin, message, ..
    } = &err
    else {
        panic!("expected Error::Spec, got {err:?}");
    };
    assert_eq!(origin, &path.display().to_string());
    assert!(err.to_string().contains(name), "{err}");
    message.clone()
}

#[test]
fn two_hundred_kilobytes_of_open_brackets_are_too_deep() {
    let deep = "[".repeat(200 << 10);
    let message = refusal(
        "brackets.yaml",
        &format!("type: local\nname: x\nlocal: {deep}\n"),
    );
    // `local:` opens a block mapping (level 1): the 64th `[` is one too many.
    let column = "local: ".len() + MAX_NESTING;
    assert_eq!(
        message,
        format!("the document nests deeper than {MAX_NESTING} levels at line 3 column {column}")
    );
    let message = refusal("brackets.json", &deep);
    assert_eq!(
        message,
        format!(
            "the document nests deeper than {MAX_NESTING} levels at line 1 column {}",
            MAX_NESTING + 1
        )
    );
}

#[test]
fn two_hundred_kilobytes_of_open_braces_are_too_deep() {
    let deep = "{".repeat(200 << 10);
    let message = refusal("braces.yaml", &deep);
    assert_eq!(
        message,
        format!(
            "the document nests deeper than {MAX_NESTING} levels at line 1 column {}",
            MAX_NESTING + 1
        )
    );
    let json = format!("{{\"type\": \"local\",\n \"local\": {deep}");
    let message = refusal("braces.json", &json);
    assert!(
        message.starts_with(&format!(
            "the document nests deeper than {MAX_NESTING} levels at line 2 column "
        )),
        "{message}"
    );
}

#[test]
fn deep_block_nesting_is_refused_at_the_line_that_goes_too_deep() {
    let mut text = "type: local\nname: x\nlocal:\n".to_owned();
    for level in 1..=MAX_NESTING {
        text.push_str(&" ".repeat(level));
        text.push_str("k:\n");
    }
    // The top-level mapping is level 1, the key at column N level N + 1.
    let too_deep_line = 3 + MAX_NESTING;
    let message = refusal("indented.yaml", &text);
    assert_eq!(
        message,
        format!(
            "the document nests deeper than {MAX_NESTING} levels at line {too_deep_line} column {}",
            MAX_NESTING + 1
        )
    );

    let mut dashes = "type: local\nname: x\nlocal:\n  list:\n    ".to_owned();
    dashes.push_str(&"- ".repeat(MAX_NESTING));
    dashes.push_str("x\n");
    let message = refusal("dashes.yaml", &dashes);
    assert!(
        message.starts_with(&format!(
            "the document nests deeper than {MAX_NESTING} levels at line 5 column "
        )),
        "{message}"
    );
}

#[test]
fn alias_bombs_are_refused() {
    // Few aliases, each naming a big list: half a million values from 9 KB.
    let mut text = "type: local\nname: x\nlocal:\n  a: &a [".to_owned();
    text.push_str(&"x, ".repeat(2000));
    text.push_str("]\n  b: [");
    text.push_str(&"*a, ".repeat(MAX_VALUES / 2000 + 1));
    text.push_str("]\n");
    let message = refusal("wide-bomb.yaml", &text);
    assert!(
        message.contains(&format!(
            "the document holds more than {MAX_VALUES} values once its aliases are expanded \
             at line 4 column "
        )),
        "{message}"
    );

    // Many aliases.
    let mut text = "type: local\nname: x\nlocal:\n  a: &a x\n  b: [".to_owned();
    text.push_str(&"*a, ".repeat(MAX_ALIASES + 1));
    text.push_str("]\n");
    let message = refusal("many-aliases.yaml", &text);
    assert!(
        message.starts_with(&format!(
            "the document uses more than {MAX_ALIASES} aliases at line 5 column "
        )),
        "{message}"
    );

    // Nested: nine levels of nine (the classic billion laughs), which the
    // YAML parser's own limit on alias jumps refuses first.
    let mut text =
        "type: local\nname: x\nlocal:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            .to_owned();
    for level in 1..9 {
        let prev = format!("*l{}", level - 1);
        let items = [prev.as_str(); 9].join(", ");
        text.push_str(&format!("  l{level}: &l{level} [{items}]\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("laughs.yaml");
    std::fs::write(&path, &text).unwrap();
    let err = EnvironmentSpec::from_path(&path).unwrap_err();
    assert!(matches!(err, Error::Spec { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("laughs.yaml: repetition limit exceeded"),
        "{err}"
    );
}

#[test]
fn oversized_documents_are_refused_with_the_line_where_the_limit_falls() {
    let line = "# padding padding padding padding padding padding padding padding\n";
    let lines = MAX_DOCUMENT_BYTES / line.len() + 2;
    let mut text = "type: local\nname: x\n".to_owned();
    text.push_str(&line.repeat(lines));
    let message = refusal("huge.yaml", &text);
    let limit_line = 2 + (MAX_DOCUMENT_BYTES - 20) / line.len() + 1;
    assert!(
        message.starts_with(&format!(
            "the document is {} bytes, more than the {MAX_DOCUMENT_BYTES} allowed at line {limit_line} column ",
            MAX_DOCUMENT_BYTES + 1
        )),
        "{message}"
    );
}

#[test]
fn ordinary_nesting_quotes_and_scripts_still_load() {
    let text = "type: local\nname: x\n\
        setup:\n  commands:\n    - |\n      [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ -f x ]] && echo '{{{'\n\
        \x20   - \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\" # {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\n\
        local: {a: [[b, {c: d}], e], f: 'it''s [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['}\n";
    let spec = EnvironmentSpec::from_yaml_str(text, "ok.yaml").unwrap();
    assert_eq!(spec.setup.commands.len(), 2);
    assert!(spec.setup.commands[0].starts_with("[[[["));
    // Asset maps are YAML documents parsed the same way.
    let deep = format!("a: {}", "[".repeat(200 << 10));
    let err = AssetMap::from_yaml_str(&deep).unwrap_err();
    assert!(err.to_string().contains("nests deeper"), "{err}");
}
