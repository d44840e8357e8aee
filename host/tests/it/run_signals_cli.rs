//! The argv form runs the program itself (no shell in between), so a
//! signal that kills it is reported as that signal, on every backend; and
//! number arguments take a leading `-` as a value.

use crate::common::{Sandbox, code, docker_spec, stderr};

/// `berth run --json [--env SPEC] -- sh -c 'kill -TERM $$'`: the program
/// kills itself.
fn killed_by_term(sb: &Sandbox, spec: Option<&std::path::Path>) -> std::process::Output {
    let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), "--json".as_ref()];
    if let Some(spec) = spec {
        args.extend(["--env".as_ref(), spec.as_os_str()]);
    }
    args.extend(["--", "sh", "-c", "kill -TERM $$"].map(std::ffi::OsStr::new));
    sb.run(args)
}

fn assert_signaled_by_term(out: &std::process::Output) {
    assert_eq!(code(out), 128 + libc::SIGTERM, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["status"], "signaled", "{json}");
    assert_eq!(json["signal"], libc::SIGTERM, "{json}");
    assert_eq!(json["exit_code"], -libc::SIGTERM, "{json}");
    // No shell was left to report the signal: berth's own line only.
    let err = stderr(out);
    assert!(!err.contains("Terminated"), "{err}");
    assert_eq!(err, "berth: the command was killed by SIGTERM\n");
}

#[test]
fn a_signal_that_kills_the_program_is_the_commands() {
    let sb = Sandbox::new();
    assert_signaled_by_term(&killed_by_term(&sb, None));
    sb.assert_no_session_dirs();
}

#[test]
fn a_signal_that_kills_the_program_is_the_commands_in_docker() {
    let sb = Sandbox::new();
    let Some(spec) = docker_spec(&sb, "") else {
        return;
    };
    assert_signaled_by_term(&killed_by_term(&sb, Some(&spec)));
    sb.assert_no_session_dirs();
}

#[test]
fn the_program_replaces_the_shell_and_a_shell_string_stays_one() {
    let sb = Sandbox::new();
    // The program runs as the session's shell process itself: its parent
    // is what started that shell, not a shell running it.
    let out = sb.run([
        "run",
        "--",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/$PPID/cmdline",
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let parent = String::from_utf8_lossy(&out.stdout);
    assert!(
        !parent.starts_with("/bin/sh"),
        "the program's parent: {parent}"
    );
    // `-c` is handed to the shell as it is: `$0`, `&&` and builtins work.
    let out = sb.run(["run", "-c", "cd / && pwd && exit 3"]);
    assert_eq!(code(&out), 3, "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/\n");
    // A builtin is not a program: as with `docker run`, use -c for it.
    let out = sb.run(["run", "--", "cd", "/"]);
    assert_eq!(code(&out), 127, "{out:?}");
}

#[test]
fn a_negative_number_is_a_value_and_refused_as_one() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "--timeout", "-1", "--", "true"]);
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("invalid value '-1' for '--timeout <SECONDS>'"),
        "{err}"
    );
    assert!(!err.contains("unexpected argument"), "{err}");
    let out = sb.run(["run", "--timeout", "-0.5", "--", "true"]);
    assert!(stderr(&out).contains("invalid value '-0.5'"), "{out:?}");
}
