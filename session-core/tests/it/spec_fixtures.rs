//! Environment specs in the existing format load unchanged, with every field
//! and default as the `spec` module documents them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::json;
use session_core::compression::Compression;
use session_core::spec::{
    CommandConfig, DEFAULT_OUTPUT_LIMIT, EnvironmentSpec, Limits, Mode, SnapshotConfig,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> EnvironmentSpec {
    let path = fixture(name);
    let spec = EnvironmentSpec::from_path(&path).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(spec.origin(), path.display().to_string());
    spec
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn assert_default_snapshot_and_limits(spec: &EnvironmentSpec) {
    assert_eq!(spec.snapshot, SnapshotConfig::default());
    assert_eq!(spec.snapshot.keep_globs, None);
    assert_eq!(
        spec.snapshot.ignore_globs,
        strings(&["*.pyc", "venv/*", ".venv/*", ".evaluation_tests/*"])
    );
    assert_eq!(spec.snapshot.compression, Compression::Gzip);
    assert_eq!(spec.snapshot.archive_save_dir, None);

    assert_eq!(spec.limits, Limits::default());
    assert_eq!(spec.limits.wall_timeout, None);
    assert_eq!(spec.limits.idle_timeout, None);
    assert_eq!(spec.limits.output_limit, 67_108_864);
    assert_eq!(spec.limits.output_limit, DEFAULT_OUTPUT_LIMIT);
    assert_eq!(spec.limits.memory, None);
    assert_eq!(spec.limits.cpus, None);
    assert_eq!(spec.limits.pids, None);
    assert_eq!(spec.limits.file_size, None);
}

#[test]
fn docker_python_fixture_loads_every_field() {
    let spec = load("docker_python3.12.yaml");
    assert_eq!(spec.backend_type, "docker");
    assert_eq!(spec.name, "python3.12");

    assert_eq!(
        spec.environment.env,
        IndexMap::from([("UV_CACHE_DIR".to_owned(), "/tmp/uv-cache".to_owned())])
    );
    assert!(!spec.environment.include_os_env);

    assert!(spec.setup.commands.is_empty());
    assert_eq!(
        spec.setup.eval_commands,
        strings(&["uv init", "uv add -r requirements.txt"])
    );
    assert_eq!(
        spec.setup.resume_commands,
        strings(&["python -m venv .venv || true"])
    );
    assert!(!spec.setup.allow_failure);

    assert_eq!(
        spec.commands,
        CommandConfig {
            entry_file: "{entry_file}.py".to_owned(),
            command: "uv run".to_owned(),
            agent_command: Some("python".to_owned()),
        }
    );
    assert_default_snapshot_and_limits(&spec);

    assert_eq!(
        spec.backend_block(),
        Some(&json!({
            "image": "ghcr.io/astral-sh/uv:python3.12-trixie-slim",
            "workdir": "/workspace",
            "mount_workspace": true,
        }))
    );

    assert_eq!(
        spec.setup_commands(Mode::Evaluation),
        strings(&["uv init", "uv add -r requirements.txt"])
    );
    assert!(spec.setup_commands(Mode::Agent).is_empty());
    assert_eq!(
        spec.command_for("main", Mode::Evaluation).unwrap(),
        "uv run main.py"
    );
    assert_eq!(
        spec.command_for("main", Mode::Agent).unwrap(),
        "python main.py"
    );
}

#[test]
fn local_python_fixture_loads_every_field() {
    let spec = load("local_python.yaml");
    assert_eq!(spec.backend_type, "local");
    assert_eq!(spec.name, "python");

    assert!(spec.environment.env.is_empty());
    assert!(spec.environment.include_os_env);

    assert!(spec.setup.commands.is_empty());
    assert_eq!(spec.setup.eval_commands, strings(&["uv init"]));
    assert!(spec.setup.resume_commands.is_empty());
    assert!(!spec.setup.allow_failure);

    assert_eq!(spec.commands.entry_file, "{entry_file}.py");
    assert_eq!(spec.commands.command, "uv run");
    assert_eq!(spec.commands.agent_command.as_deref(), Some("python"));
    assert_default_snapshot_and_limits(&spec);
    assert_eq!(spec.backend_block(), None);

    assert_eq!(spec.setup_commands(Mode::Evaluation), strings(&["uv init"]));
    assert_eq!(
        spec.command_for("solution", Mode::Evaluation).unwrap(),
        "uv run solution.py"
    );
}

#[test]
fn a_minimal_spec_takes_every_default() {
    let spec = EnvironmentSpec::from_yaml_str("type: local\nname: bare\n", "<yaml>").unwrap();
    assert_eq!(spec, EnvironmentSpec::new("local", "bare"));
    assert!(spec.environment.env.is_empty());
    assert!(!spec.environment.include_os_env);
    assert_eq!(spec.setup, Default::default());
    assert_eq!(spec.commands.entry_file, "{entry_file}");
    assert_eq!(spec.commands.command, "python");
    assert_eq!(spec.commands.agent_command, None);
    assert_default_snapshot_and_limits(&spec);
    assert_eq!(spec.origin(), "<yaml>");
}

#[test]
fn every_field_can_be_set() {
    let spec = EnvironmentSpec::from_yaml_str(
        r#"
type: myplugin
name: full
environment:
  env: {PORT: 8080, DEBUG: true, RATIO: 0.5, NAME: x}
  include_os_env: true
setup:
  commands: [a]
  eval_commands: [b]
  resume_commands: [c]
  allow_failure: true
commands: {entry_file: "src/{entry_file}.sh", command: "bash", agent_command: null}
snapshot:
  keep_globs: ["src/**/*.py"]
  ignore_globs: []
  compression: zstd
  archive_save_dir: /var/tmp/archives
limits:
  wall_timeout: 30
  idle_timeout: 2.5
  output_limit: 0
  memory: 536870912
  cpus: 1.5
  pids: 64
  file_size: 0
myplugin: {anything: [1, 2]}
"#,
        "<yaml>",
    )
    .unwrap();
    assert_eq!(spec.backend_type, "myplugin");
    let env: Vec<(&str, &str)> = spec
        .environment
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("PORT", "8080"),
            ("DEBUG", "true"),
            ("RATIO", "0.5"),
            ("NAME", "x")
        ]
    );
    assert!(spec.environment.include_os_env);
    assert_eq!(spec.setup.commands, ["a"]);
    assert_eq!(spec.setup.eval_commands, ["b"]);
    assert_eq!(spec.setup.resume_commands, ["c"]);
    assert!(spec.setup.allow_failure);
    assert_eq!(spec.commands.entry_file, "src/{entry_file}.sh");
    assert_eq!(spec.commands.command, "bash");
    assert_eq!(spec.commands.agent_command, None);
    assert_eq!(spec.snapshot.keep_globs, Some(strings(&["src/**/*.py"])));
    assert!(spec.snapshot.ignore_globs.is_empty());
    assert_eq!(spec.snapshot.compression, Compression::Zstd);
    assert_eq!(
        spec.snapshot.archive_save_dir.as_deref(),
        Some(Path::new("/var/tmp/archives"))
    );
    assert_eq!(
        spec.limits,
        Limits {
            wall_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_millis(2500)),
            output_limit: 0,
            memory: Some(536_870_912),
            cpus: Some(1.5),
            pids: Some(64),
            file_size: Some(0),
        }
    );
    assert_eq!(spec.backend_block(), Some(&json!({"anything": [1, 2]})));
}

#[test]
fn compression_names_and_mode_aliases() {
    for (name, want) in [
        ("gz", Compression::Gzip),
        ("bz2", Compression::Bzip2),
        ("xz", Compression::Xz),
        ("zstd", Compression::Zstd),
        ("none", Compression::None),
    ] {
        let text = format!("{{type: local, name: n, snapshot: {{compression: {name}}}}}");
        let spec = EnvironmentSpec::from_yaml_str(&text, "<yaml>").unwrap();
        assert_eq!(spec.snapshot.compression, want, "{name}");
    }
    for (name, want) in [
        ("agent", Mode::Agent),
        ("evaluation", Mode::Evaluation),
        ("eval", Mode::Evaluation),
    ] {
        assert_eq!(serde_json::from_value::<Mode>(json!(name)).unwrap(), want);
    }
    assert_eq!(
        serde_json::to_value(Mode::Evaluation).unwrap(),
        "evaluation"
    );
    assert!(serde_json::from_value::<Mode>(json!("inference")).is_err());
}
