//! Bad specs give an `Error::Spec` naming the field at fault.

use serde::Deserialize;
use session_core::Error;
use session_core::spec::EnvironmentSpec;

/// Parses `yaml` and asserts it fails on `field` with a message containing
/// `fragment`.
#[track_caller]
fn check(yaml: &str, field: &str, fragment: &str) {
    let err = EnvironmentSpec::from_yaml_str(yaml, "bad.yaml")
        .expect_err(&format!("this spec must be refused:\n{yaml}"));
    let Error::Spec {
        origin,
        field: got_field,
        message,
    } = &err
    else {
        panic!("expected Error::Spec, got {err:?}");
    };
    assert_eq!(origin, "bad.yaml");
    assert_eq!(got_field, field, "field of `{err}` for:\n{yaml}");
    assert!(
        message.contains(fragment),
        "`{message}` lacks `{fragment}` for:\n{yaml}"
    );
    let shown = err.to_string();
    let prefix = if field.is_empty() {
        "bad.yaml: ".to_owned()
    } else {
        format!("bad.yaml: {field}: ")
    };
    assert!(shown.starts_with(&prefix), "{shown}");
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let table: &[(&str, &str, &str)] = &[
        (
            "type: local\nname: n\nfoo: 1\n",
            "foo",
            "unknown field `foo`, expected one of `type`, `name`",
        ),
        (
            "type: local\nname: n\nsnapshot: {ignore_glob: ['*.o']}\n",
            "snapshot.ignore_glob",
            "unknown field `ignore_glob`, expected one of",
        ),
        (
            "type: local\nname: n\nenvironment: {evn: {}}\n",
            "environment.evn",
            "unknown field `evn`",
        ),
        (
            "type: local\nname: n\nsetup: {command: [a]}\n",
            "setup.command",
            "unknown field `command`",
        ),
        (
            "type: local\nname: n\ncommands: {agent: x}\n",
            "commands.agent",
            "unknown field `agent`",
        ),
        (
            "type: local\nname: n\nlimits: {timeout: 3}\n",
            "limits.timeout",
            "unknown field `timeout`",
        ),
        (
            "type: local\nname: n\ndocker: {image: x}\n",
            "docker",
            "a backend block must be named after `type` (here `local`)",
        ),
        (
            "type: api\nname: n\nsnapshots: {compression: xz}\n",
            "snapshots",
            "unknown field `snapshots`",
        ),
    ];
    for (yaml, field, fragment) in table {
        check(yaml, field, fragment);
    }
}

#[test]
fn missing_and_malformed_required_fields() {
    let table: &[(&str, &str, &str)] = &[
        ("name: n\n", "type", "missing required field"),
        ("type: local\n", "name", "missing required field"),
        (
            "type: 3\nname: n\n",
            "type",
            "expected a string naming the backend",
        ),
        ("type: ''\nname: n\n", "type", "must not be empty"),
        (
            "type: setup\nname: n\n",
            "type",
            "`setup` cannot name a backend",
        ),
        ("type: local\nname: ''\n", "name", "must not be empty"),
        ("type: local\nname: [a]\n", "name", "invalid type: sequence"),
        ("", "", "the spec is empty"),
        (
            "- a\n- b\n",
            "",
            "expected a mapping at the top level, found a list",
        ),
        (
            "type: local\nname: n\nsetup: [[a], [b]]\n",
            "setup",
            "expected a mapping, found a list",
        ),
        (
            "type: local\nname: n\nsetup: null\n",
            "setup",
            "expected a mapping, found null",
        ),
        (
            "type: docker\nname: n\ndocker: [image]\n",
            "docker",
            "expected a mapping of backend settings, found a list",
        ),
    ];
    for (yaml, field, fragment) in table {
        check(yaml, field, fragment);
    }
}

#[test]
fn wrong_types_and_values() {
    let table: &[(&str, &str, &str)] = &[
        (
            "type: local\nname: n\nsetup: {commands: a}\n",
            "setup.commands",
            "invalid type: string \"a\", expected a sequence",
        ),
        (
            "type: local\nname: n\nsetup: {commands: [a, 3]}\n",
            "setup.commands[1]",
            "invalid type: integer `3`, expected a string",
        ),
        (
            "type: local\nname: n\nsetup: {allow_failure: 'yes'}\n",
            "setup.allow_failure",
            "expected a boolean",
        ),
        (
            "type: local\nname: n\nenvironment: {env: [A]}\n",
            "environment.env",
            "expected a map",
        ),
        (
            "type: local\nname: n\nenvironment: {env: {A: null}}\n",
            "environment.env.A",
            "expected a string, number or boolean, found null",
        ),
        (
            "type: local\nname: n\nenvironment: {env: {A: [1]}}\n",
            "environment.env.A",
            "found a list",
        ),
        (
            "type: local\nname: n\nenvironment: {env: {'A=B': x}}\n",
            "environment.env",
            "`A=B` is not a valid environment variable name",
        ),
        (
            "type: local\nname: n\nsnapshot: {compression: lz4}\n",
            "snapshot.compression",
            "unknown variant `lz4`, expected one of",
        ),
        (
            "type: local\nname: n\nsnapshot: {ignore_globs: ['ok', 'a[']}\n",
            "snapshot.ignore_globs[1]",
            "invalid glob `a[`",
        ),
        (
            "type: local\nname: n\nsnapshot: {keep_globs: ['{a,b']}\n",
            "snapshot.keep_globs[0]",
            "invalid glob `{a,b`",
        ),
        (
            "type: local\nname: n\ncommands: {entry_file: '{name}.py'}\n",
            "commands.entry_file",
            "unknown placeholder `{name}`",
        ),
        (
            "type: local\nname: n\ncommands: {entry_file: 'main}'}\n",
            "commands.entry_file",
            "a single `}`",
        ),
    ];
    for (yaml, field, fragment) in table {
        check(yaml, field, fragment);
    }
}

#[test]
fn limits_refuse_negative_zero_and_non_finite_values() {
    let table: &[(&str, &str, &str)] = &[
        (
            "wall_timeout: -1",
            "limits.wall_timeout",
            "expected a positive number of seconds, found `-1`",
        ),
        (
            "wall_timeout: 0",
            "limits.wall_timeout",
            "expected a positive number of seconds, found `0`",
        ),
        (
            "idle_timeout: '5'",
            "limits.idle_timeout",
            "expected a positive number of seconds, found \"5\"",
        ),
        (
            "idle_timeout: 1.0e300",
            "limits.idle_timeout",
            "too long a timeout",
        ),
        (
            "output_limit: -5",
            "limits.output_limit",
            "expected a non-negative whole number of bytes, found `-5`",
        ),
        (
            "memory: 0",
            "limits.memory",
            "expected a positive whole number of bytes, found `0`",
        ),
        (
            "memory: 1.5",
            "limits.memory",
            "expected a positive whole number of bytes, found `1.5`",
        ),
        (
            "pids: -3",
            "limits.pids",
            "expected a positive whole number of processes",
        ),
        (
            "cpus: 0",
            "limits.cpus",
            "expected a positive number of CPUs, found `0`",
        ),
        (
            "file_size: -1",
            "limits.file_size",
            "non-negative whole number of bytes",
        ),
    ];
    for (limit, field, fragment) in table {
        check(
            &format!("type: local\nname: n\nlimits: {{{limit}}}\n"),
            field,
            fragment,
        );
    }
    // Only YAML can spell infinity and NaN; they are refused, not turned
    // into null (which would mean "no timeout").
    check(
        "type: local\nname: n\nlimits: {wall_timeout: .inf}\n",
        "limits.wall_timeout",
        "`.inf` is not a finite number",
    );
    check(
        "type: local\nname: n\nlimits: {cpus: .nan}\n",
        "limits.cpus",
        "`.nan` is not a finite number",
    );
    // Timeouts no clock can hold are refused too.
    for limit in ["wall_timeout: 1.8e19", "idle_timeout: 1e10"] {
        check(
            &format!("type: local\nname: n\nlimits: {{{limit}}}\n"),
            &format!("limits.{}", limit.split(':').next().unwrap()),
            "too long a timeout: berth takes at most",
        );
    }
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    check(
        "type: local\nname: n\nsetup: {commands: [a\n",
        "",
        "line 4 column 1",
    );
    check("type: local\n  name: n\n", "", "line 2 column");
    check(
        "type: local\nname: n\nenvironment: {env: {[a]: b}}\n",
        "environment.env",
        "mapping keys must be strings, found a list",
    );
    check(
        "type: !custom local\nname: n\n",
        "type",
        "YAML tags are not supported",
    );
}

#[test]
fn json_errors_carry_line_and_column_and_the_origin() {
    let err = EnvironmentSpec::from_json_str("{\"type\": \"local\",\n \"name\": }", "<json>")
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("<json>: "), "{shown}");
    assert!(shown.contains("line 2 column"), "{shown}");

    let err = EnvironmentSpec::from_json_str(
        r#"{"type": "local", "name": "n", "limits": {"pids": 0}}"#,
        "<json>",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("<json>: limits.pids: expected a positive whole number of processes"),
        "{err}"
    );
}

#[test]
fn unreadable_files_are_io_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let err = EnvironmentSpec::from_path(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == missing),
        "{err:?}"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"type": "local", "name": "n", "nmae": 1}"#).unwrap();
    let err = EnvironmentSpec::from_path(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: nmae: unknown field `nmae`, expected one of `type`, `name`, `environment`, \
             `setup`, `commands`, `snapshot`, `limits` or the backend block `local`",
            bad.display()
        )
    );
}

/// A backend's config, strict like the built-in ones.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DockerLike {
    image: String,
    keep_container_after_clean: bool,
    extra_mounts: std::collections::BTreeMap<String, String>,
    ports: Vec<u16>,
}

#[test]
fn backend_block_errors_are_prefixed_with_the_block_name() {
    let table: &[(&str, &str, &str)] = &[
        (
            "{image: x, keep_contaner_after_clean: true}",
            "docker.keep_contaner_after_clean",
            "unknown field `keep_contaner_after_clean`, expected one of",
        ),
        (
            "{image: 3}",
            "docker.image",
            "invalid type: integer `3`, expected a string",
        ),
        (
            "{extra_mounts: {/a: 1}}",
            "docker.extra_mounts./a",
            "invalid type: integer `1`",
        ),
        (
            "{ports: [80, -1]}",
            "docker.ports[1]",
            "invalid value: integer `-1`",
        ),
    ];
    for (block, field, fragment) in table {
        let yaml = format!("type: docker\nname: n\ndocker: {block}\n");
        let spec = EnvironmentSpec::from_yaml_str(&yaml, "spec.yaml").unwrap();
        let err = spec.backend_config::<DockerLike>().unwrap_err();
        let Error::Spec {
            origin,
            field: got,
            message,
        } = &err
        else {
            panic!("expected Error::Spec, got {err:?}");
        };
        assert_eq!(origin, "spec.yaml");
        assert_eq!(got, field, "{err}");
        assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
    }
}

#[test]
fn a_missing_field_in_a_backend_block_is_named() {
    // `url` is required: no `#[serde(default)]`, even though the spec
    // without a block uses `Default`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NeedsUrl {
        #[allow(dead_code)]
        url: String,
    }
    let spec = EnvironmentSpec::from_yaml_str("type: api\nname: n\napi: {}\n", "<yaml>").unwrap();
    let err = spec.backend_config::<NeedsUrl>().unwrap_err();
    assert_eq!(err.to_string(), "<yaml>: api.url: missing required field");
}

#[test]
fn a_key_given_twice_is_refused_not_overwritten() {
    // The second `limits` would silently drop the pids limit.
    let err = EnvironmentSpec::from_yaml_str(
        "type: local\nname: n\nlimits:\n  pids: 5\nlimits: {}\n",
        "twice.yaml",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("the key `limits` appears twice"),
        "{err}"
    );
    let err = EnvironmentSpec::from_json_str(
        r#"{"type": "local", "name": "n", "limits": {"pids": 5}, "limits": {}}"#,
        "twice.json",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("the key `limits` appears twice"),
        "{err}"
    );
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let spec = EnvironmentSpec::from_yaml_str("\u{feff}type: local\nname: bom\n", "bom.yaml")
        .expect("a YAML spec with a byte-order mark");
    assert_eq!(spec.name, "bom");
    let spec = EnvironmentSpec::from_json_str(
        "\u{feff}{\"type\": \"local\", \"name\": \"bom\"}",
        "bom.json",
    )
    .expect("a JSON spec with a byte-order mark");
    assert_eq!(spec.name, "bom");
}
