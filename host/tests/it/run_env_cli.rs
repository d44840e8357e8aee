//! `berth run`'s variables: `-e KEY=VALUE`, `-e KEY`, `--env-file`, their
//! precedence over the spec and the host, the error for a docker habit
//! (`--env FOO=bar`), and a `HOME` for commands.

use crate::common::{Sandbox, code, docker_spec, stderr, stdout};

fn run_printing(sb: &Sandbox, extra: &[&std::ffi::OsStr], script: &str) -> std::process::Output {
    let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref()];
    args.extend_from_slice(extra);
    args.extend(["-c".as_ref(), std::ffi::OsStr::new(script)]);
    sb.berth(args).output().unwrap()
}

#[test]
fn variables_come_from_flags_and_files_in_order() {
    let sb = Sandbox::new();
    let first = sb.write(
        "first.env",
        "# the first file\nA=file1\nB=file1\nC=file1\nFROM_HOST\n\nQUOTED=\"kept\"\n",
    );
    let second = sb.write("second.env", "B=file2\nC=file2\n");
    let spec = sb.write(
        "spec.yaml",
        "type: local\nname: t\nenvironment:\n  env: {A: spec, S: spec}\n",
    );
    let out = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "--env-file".as_ref(),
            first.as_os_str(),
            "--env-file".as_ref(),
            second.as_os_str(),
            "-e".as_ref(),
            "C=flag".as_ref(),
            "--var".as_ref(),
            "PASSED".as_ref(),
            "-e".as_ref(),
            "EMPTY=".as_ref(),
            "-c".as_ref(),
            "echo \"$S $A $B $C $FROM_HOST $QUOTED $PASSED [$EMPTY]\"".as_ref(),
        ])
        .env("FROM_HOST", "host-value")
        .env("PASSED", "passed-value")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "spec file1 file2 flag host-value \"kept\" passed-value []\n"
    );
    sb.assert_no_session_dirs();
}

#[test]
fn variables_win_over_the_host_environment_and_reach_setup() {
    let sb = Sandbox::new();
    let spec = sb.write(
        "spec.yaml",
        "type: local\nname: t\nenvironment:\n  include_os_env: true\nsetup:\n  commands: ['echo \"$WHO\" > setup-saw']\n",
    );
    let out = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "-e".as_ref(),
            "WHO=flag".as_ref(),
            "-c".as_ref(),
            "echo \"$WHO $(cat setup-saw) $ONLY_HOST\"".as_ref(),
        ])
        .env("WHO", "host")
        .env("ONLY_HOST", "host-only")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "flag flag host-only\n");
}

#[test]
fn an_unset_variable_is_an_error_naming_it() {
    let sb = Sandbox::new();
    let out = sb
        .berth(["run", "-e", "BERTH_TEST_UNSET", "--", "true"])
        .env_remove("BERTH_TEST_UNSET")
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("`BERTH_TEST_UNSET` is not set in berth's environment"),
        "{}",
        stderr(&out)
    );
    let file = sb.write("vars.env", "OK=1\nBERTH_TEST_UNSET\n");
    let out = sb
        .berth([
            "run".as_ref(),
            "--env-file".as_ref(),
            file.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ])
        .env_remove("BERTH_TEST_UNSET")
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("line 2") && err.contains("BERTH_TEST_UNSET"),
        "{err}"
    );
    sb.assert_no_session_dirs();
}

#[test]
fn a_docker_habit_with_env_names_the_flag_for_variables() {
    let sb = Sandbox::new();
    for (word, shown) in [("FOO=bar", "-e FOO=bar"), ("FOO", "-e FOO")] {
        let out = sb.run(["run", "--env", word, "--", "true"]);
        assert_eq!(code(&out), 125, "{out:?}");
        let err = stderr(&out);
        assert!(err.contains("--env names the environment spec"), "{err}");
        assert!(err.contains(shown), "{err}");
    }
    sb.assert_no_session_dirs();
}

#[test]
fn local_commands_get_the_hosts_home_unless_told_otherwise() {
    let sb = Sandbox::new();
    let home = sb.files().join("home");
    let out = sb
        .berth(["run", "-c", "echo \"$HOME\""])
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), format!("{}\n", home.display()));
    let out = run_printing(
        &sb,
        &["-e".as_ref(), "HOME=/elsewhere".as_ref()],
        "echo $HOME",
    );
    assert_eq!(stdout(&out), "/elsewhere\n");
}

#[test]
fn variables_reach_a_docker_command() {
    let sb = Sandbox::new();
    let Some(spec) = docker_spec(&sb, "environment:\n  env: {A: spec, B: spec}") else {
        return;
    };
    let file = sb.write("vars.env", "B=file\nC=file\n");
    let out = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "--env-file".as_ref(),
            file.as_os_str(),
            "-e".as_ref(),
            "C=flag".as_ref(),
            "-c".as_ref(),
            "echo \"$A $B $C\"".as_ref(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "spec file flag\n");
    sb.assert_no_session_dirs();
}
