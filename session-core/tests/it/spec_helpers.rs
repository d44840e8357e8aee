//! The spec's helpers: environment precedence, setup commands, entry-file
//! formatting, the command for an entry, and ignore globs with assets.

use indexmap::IndexMap;
use session_core::Error;
use session_core::assets::{AssetMap, StaticAsset};
use session_core::spec::{EnvironmentSpec, Mode};

fn map(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn full_env_layers_spec_env_then_extra() {
    let mut spec = EnvironmentSpec::new("local", "n");
    spec.environment.env = map(&[("A", "spec"), ("B", "spec")]);
    let env = spec.full_env(&map(&[("B", "extra"), ("C", "extra")]));
    assert_eq!(env, map(&[("A", "spec"), ("B", "extra"), ("C", "extra")]));
    assert_eq!(spec.full_env(&IndexMap::new()), spec.environment.env);
}

#[test]
fn full_env_puts_the_host_environment_underneath() {
    let host: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    assert!(host.len() >= 2, "the test needs two host variables");
    let (overridden, _) = &host[0];
    let (kept, kept_value) = &host[1];

    let mut spec = EnvironmentSpec::new("local", "n");
    spec.environment.env = map(&[(overridden, "spec")]);
    let without_host = spec.full_env(&IndexMap::new());
    assert!(!without_host.contains_key(kept));

    spec.environment.include_os_env = true;
    let env = spec.full_env(&map(&[("BERTH_TEST_EXTRA", "extra")]));
    assert_eq!(env[overridden], "spec", "spec env beats host env");
    assert_eq!(&env[kept], kept_value, "host env is inherited");
    assert_eq!(env["BERTH_TEST_EXTRA"], "extra");
    let extra_wins = spec.full_env(&map(&[(overridden, "extra")]));
    assert_eq!(extra_wins[overridden], "extra", "extra beats spec env");
}

#[test]
fn setup_commands_append_eval_commands_in_evaluation_only() {
    let mut spec = EnvironmentSpec::new("local", "n");
    spec.setup.commands = vec!["a".into(), "b".into()];
    spec.setup.eval_commands = vec!["c".into()];
    spec.setup.resume_commands = vec!["r".into()];
    assert_eq!(spec.setup_commands(Mode::Agent), ["a", "b"]);
    assert_eq!(spec.setup_commands(Mode::Evaluation), ["a", "b", "c"]);
    // Asking twice gives the same answer: nothing accumulates in the spec.
    assert_eq!(spec.setup_commands(Mode::Evaluation), ["a", "b", "c"]);
    assert_eq!(spec.setup.commands, ["a", "b"]);
    assert_eq!(spec.setup.eval_commands, ["c"]);
}

#[test]
fn format_entry_file_accepts_only_the_entry_file_key() {
    let table: &[(&str, &str, Result<&str, &str>)] = &[
        ("{entry_file}", "main", Ok("main")),
        ("{entry_file}.py", "main", Ok("main.py")),
        ("src/{entry_file}/{entry_file}.rs", "m", Ok("src/m/m.rs")),
        ("{{entry_file}}", "main", Ok("{entry_file}")),
        ("{{{entry_file}}}", "main", Ok("{main}")),
        ("run.sh", "ignored", Ok("run.sh")),
        ("{entry_file} --flag", "main", Ok("main --flag")),
        ("{entry_file}", "", Err("gives an empty file name")),
        ("", "main", Err("gives an empty file name")),
        ("{file}", "main", Err("unknown placeholder `{file}`")),
        ("{}", "main", Err("unknown placeholder `{}`")),
        ("{entry_file!r}", "main", Err("unknown placeholder")),
        ("{entry_file", "main", Err("a `{` is not closed")),
        ("main}", "main", Err("a single `}`")),
    ];
    for (format, name, want) in table {
        let mut spec = EnvironmentSpec::new("local", "n");
        spec.commands.entry_file = (*format).to_owned();
        match (spec.format_entry_file(name), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, *want, "{format:?}"),
            (Err(Error::EntryFileFormat { format: f, message }), Err(fragment)) => {
                assert_eq!(f, *format);
                assert!(message.contains(fragment), "{format:?}: {message}");
            }
            (got, want) => panic!("{format:?} with {name:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn command_for_picks_trims_and_joins() {
    let table: &[(&str, Option<&str>, Mode, &str)] = &[
        ("python", None, Mode::Evaluation, "python main.py"),
        ("python", None, Mode::Agent, "python main.py"),
        (
            "uv run",
            Some("python3"),
            Mode::Evaluation,
            "uv run main.py",
        ),
        ("uv run", Some("python3"), Mode::Agent, "python3 main.py"),
        ("  uv   run \n", None, Mode::Evaluation, "uv   run main.py"),
        ("x", Some("  node "), Mode::Agent, "node main.py"),
        // An empty program runs the entry file itself.
        ("", None, Mode::Evaluation, "main.py"),
        ("   ", None, Mode::Agent, "main.py"),
        // An agent_command that is set counts even when empty.
        ("python", Some(""), Mode::Agent, "main.py"),
        ("python", Some(""), Mode::Evaluation, "python main.py"),
    ];
    for (command, agent_command, mode, want) in table {
        let mut spec = EnvironmentSpec::new("local", "n");
        spec.commands.entry_file = "{entry_file}.py".to_owned();
        spec.commands.command = (*command).to_owned();
        spec.commands.agent_command = agent_command.map(str::to_owned);
        assert_eq!(
            spec.command_for("main", *mode).unwrap(),
            *want,
            "{command:?} / {agent_command:?} in {mode}"
        );
    }
    let mut spec = EnvironmentSpec::new("local", "n");
    spec.commands.entry_file = "{nope}".to_owned();
    assert!(matches!(
        spec.command_for("main", Mode::Agent),
        Err(Error::EntryFileFormat { .. })
    ));
}

#[test]
fn ignore_globs_add_each_asset_save_path() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(base.path().join("data/sub")).unwrap();
    std::fs::write(base.path().join("data/sub/x.csv"), "x").unwrap();
    std::fs::write(base.path().join("model.bin"), "m").unwrap();
    std::fs::write(base.path().join("weird[1].txt"), "w").unwrap();
    let mut assets = AssetMap::new();
    assets.insert("data", &StaticAsset::new("data")).unwrap();
    assets
        .insert(
            "model",
            &StaticAsset::new("model.bin").with_save_path("./m/model.bin"),
        )
        .unwrap();
    assets
        .insert("weird", &StaticAsset::new("weird[1].txt"))
        .unwrap();
    let resolved = assets.resolve(base.path()).unwrap();

    let mut spec = EnvironmentSpec::new("local", "n");
    spec.snapshot.ignore_globs = vec!["*.pyc".into(), "data".into()];
    assert_eq!(
        spec.ignore_globs(&resolved),
        ["*.pyc", "data", "data/*", "m/model.bin", "weird[[]1[]].txt"]
    );
    // The configured globs are not changed.
    assert_eq!(spec.snapshot.ignore_globs, ["*.pyc", "data"]);
    assert_eq!(spec.ignore_globs(&Default::default()), ["*.pyc", "data"]);
}
