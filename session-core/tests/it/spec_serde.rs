//! JSON and YAML give the same spec; `Serialize` writes the file format back;
//! a spec nested in another document follows the same rules.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use session_core::Error;
use session_core::spec::EnvironmentSpec;

const FULL_YAML: &str = r#"
type: docker
name: full
environment: {env: {PORT: 8080, A: b}, include_os_env: true}
setup: {commands: [a], eval_commands: [b], resume_commands: [c], allow_failure: true}
commands: {entry_file: "{{{entry_file}}}.py", command: uv run, agent_command: python}
snapshot:
  keep_globs: ["src/**"]
  ignore_globs: ["*.o"]
  compression: xz
  archive_save_dir: archives
limits: {wall_timeout: 30, idle_timeout: 0.25, output_limit: 1024, memory: 1000000,
         cpus: 0.5, pids: 10, file_size: 4096}
docker: {image: "busybox:latest", extra_mounts: {/data: /mnt/data}, network: null}
"#;

fn fixture_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn specs() -> Vec<EnvironmentSpec> {
    vec![
        EnvironmentSpec::from_yaml_str(&fixture_text("docker_python3.12.yaml"), "<yaml>").unwrap(),
        EnvironmentSpec::from_yaml_str(&fixture_text("local_python.yaml"), "<yaml>").unwrap(),
        EnvironmentSpec::from_yaml_str(FULL_YAML, "<yaml>").unwrap(),
        EnvironmentSpec::new("plugin", "bare"),
    ]
}

#[test]
fn json_and_yaml_give_the_same_spec() {
    let yaml =
        EnvironmentSpec::from_yaml_str(&fixture_text("docker_python3.12.yaml"), "<yaml>").unwrap();
    let json = EnvironmentSpec::from_json_str(
        r#"{
            "type": "docker",
            "name": "python3.12",
            "docker": {"image": "ghcr.io/astral-sh/uv:python3.12-trixie-slim",
                       "workdir": "/workspace", "mount_workspace": true},
            "environment": {"env": {"UV_CACHE_DIR": "/tmp/uv-cache"}},
            "setup": {"eval_commands": ["uv init", "uv add -r requirements.txt"],
                      "resume_commands": ["python -m venv .venv || true"]},
            "commands": {"entry_file": "{entry_file}.py", "command": "uv run",
                         "agent_command": "python"}
        }"#,
        "<json>",
    )
    .unwrap();
    assert_eq!(yaml, json);
    assert_eq!(json.origin(), "<json>");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.JSON");
    std::fs::write(&path, serde_json::to_string(&yaml).unwrap()).unwrap();
    assert_eq!(EnvironmentSpec::from_path(&path).unwrap(), yaml);
}

#[test]
fn every_spec_round_trips_through_json_and_yaml() {
    for spec in specs() {
        let json_text = serde_json::to_string_pretty(&spec).unwrap();
        assert_eq!(
            EnvironmentSpec::from_json_str(&json_text, "<json>").unwrap(),
            spec,
            "{json_text}"
        );
        let yaml_text = serde_yaml::to_string(&spec).unwrap();
        assert_eq!(
            EnvironmentSpec::from_yaml_str(&yaml_text, "<yaml>").unwrap(),
            spec,
            "{yaml_text}"
        );
        let value = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            serde_json::from_value::<EnvironmentSpec>(value).unwrap(),
            spec
        );
        assert_eq!(yaml_text.parse::<EnvironmentSpec>().unwrap(), spec);
    }
}

#[test]
fn serialize_writes_the_file_format() {
    let spec = EnvironmentSpec::from_yaml_str(FULL_YAML, "<yaml>").unwrap();
    let value = serde_json::to_value(&spec).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "name",
            "environment",
            "setup",
            "commands",
            "snapshot",
            "limits",
            "docker"
        ]
    );
    assert_eq!(value["type"], "docker");
    assert_eq!(
        value["docker"],
        json!({"image": "busybox:latest", "extra_mounts": {"/data": "/mnt/data"}, "network": null})
    );
    assert_eq!(
        value["environment"]["env"],
        json!({"PORT": "8080", "A": "b"})
    );
    assert_eq!(value["snapshot"]["compression"], "xz");
    assert_eq!(value["snapshot"]["archive_save_dir"], "archives");
    // Whole seconds stay integers, fractions stay decimals.
    assert_eq!(value["limits"]["wall_timeout"], json!(30));
    assert_eq!(value["limits"]["idle_timeout"], json!(0.25));
    assert_eq!(value["commands"]["entry_file"], "{{{entry_file}}}.py");

    let bare = serde_json::to_value(EnvironmentSpec::new("local", "n")).unwrap();
    assert_eq!(bare["limits"]["wall_timeout"], Value::Null);
    assert_eq!(bare["snapshot"]["keep_globs"], Value::Null);
    assert!(bare.get("local").is_none());
}

#[test]
fn serialize_refuses_a_type_that_cannot_name_a_block() {
    let mut spec = EnvironmentSpec::new("local", "n");
    spec.backend_type = "limits".to_owned();
    let err = serde_json::to_value(&spec).unwrap_err();
    assert!(
        err.to_string()
            .contains("type: `limits` cannot name a backend"),
        "{err}"
    );
}

#[test]
fn backend_block_can_be_replaced_and_null_means_none() {
    let mut spec =
        EnvironmentSpec::from_yaml_str("type: local\nname: n\nlocal:\n", "<yaml>").unwrap();
    assert_eq!(spec.backend_block(), None);
    spec.set_backend_block(Some(json!({"shell": "/bin/bash"})));
    assert_eq!(spec.backend_block(), Some(&json!({"shell": "/bin/bash"})));
    spec.set_backend_block(Some(Value::Null));
    assert_eq!(spec.backend_block(), None);
}

/// A backend config that carries a whole spec, like the api backend's.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RemoteConfig {
    url: String,
    remote: Option<EnvironmentSpec>,
}

#[test]
fn a_nested_spec_follows_the_same_rules() {
    let spec = EnvironmentSpec::from_yaml_str(
        r"
type: api
name: outer
api:
  url: http://127.0.0.1:7000
  remote:
    type: docker
    name: inner
    limits: {wall_timeout: 5}
    docker: {image: busybox}
",
        "outer.yaml",
    )
    .unwrap();
    let config: RemoteConfig = spec.backend_config().unwrap();
    assert_eq!(config.url, "http://127.0.0.1:7000");
    let remote = config.remote.unwrap();
    assert_eq!(remote.backend_type, "docker");
    assert_eq!(remote.name, "inner");
    assert_eq!(remote.limits.wall_timeout, Some(Duration::from_secs(5)));
    assert_eq!(remote.backend_block(), Some(&json!({"image": "busybox"})));
    assert_eq!(remote.origin(), session_core::spec::NESTED_ORIGIN);
    assert_eq!(remote.with_origin("request 7").origin(), "request 7");

    let bad = EnvironmentSpec::from_yaml_str(
        "type: api\nname: outer\napi:\n  remote: {type: local, name: i, snapshot: {ignore_glob: []}}\n",
        "outer.yaml",
    )
    .unwrap();
    let err = bad.backend_config::<RemoteConfig>().unwrap_err();
    let Error::Spec { field, message, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(field, "api.remote");
    assert!(
        message.starts_with("snapshot.ignore_glob: unknown field `ignore_glob`"),
        "{message}"
    );

    let bad = EnvironmentSpec::from_yaml_str(
        "type: api\nname: outer\napi:\n  remote: {type: local, name: i, docker: {}}\n",
        "outer.yaml",
    )
    .unwrap();
    let err = bad.backend_config::<RemoteConfig>().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("outer.yaml: api.remote: docker: unknown field `docker`"),
        "{err}"
    );
}

#[test]
fn yaml_anchors_and_merge_keys_are_applied() {
    let spec = EnvironmentSpec::from_yaml_str(
        r"
type: local
name: merged
environment:
  env: &base {A: '1', B: '2'}
setup:
  commands: &cmds [one, two]
  eval_commands: *cmds
local:
  <<: {shell: /bin/sh, requires_tty: false}
  requires_tty: true
",
        "<yaml>",
    )
    .unwrap();
    assert_eq!(spec.environment.env.len(), 2);
    assert_eq!(spec.setup.eval_commands, ["one", "two"]);
    assert_eq!(
        spec.backend_block(),
        Some(&json!({"requires_tty": true, "shell": "/bin/sh"}))
    );
}
