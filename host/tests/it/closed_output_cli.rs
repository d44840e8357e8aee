//! A closed stdout or stderr ends berth at once and quietly: no message, no
//! panic, exit 141 (128 + SIGPIPE) when something was left unwritten, never
//! 101.

use std::process::Stdio;

use crate::common::{Sandbox, closed_pipe, code, stderr};

/// Every command and the way it writes a lot or a little.
fn commands(sb: &Sandbox) -> Vec<Vec<std::ffi::OsString>> {
    let a = sb.write("a/file.txt", "a\n");
    let b = sb.write("b/file.txt", "b\n");
    let os = |words: &[&str]| words.iter().map(Into::into).collect::<Vec<_>>();
    vec![
        os(&["plugins"]),
        os(&["plugins", "--json"]),
        os(&["gc", "--dry-run"]),
        os(&["gc", "--dry-run", "--json"]),
        os(&["doctor"]),
        os(&["doctor", "--json"]),
        vec![
            "diff".into(),
            a.parent().unwrap().into(),
            b.parent().unwrap().into(),
        ],
        os(&["run", "--", "echo", "hi"]),
        os(&["run", "--json", "--", "echo", "hi"]),
        os(&["run", "--", "yes"]),
        os(&["--help"]),
        os(&["run", "--help"]),
        os(&["--version"]),
    ]
}

#[test]
fn every_command_into_a_closed_stdout_ends_quietly() {
    let sb = Sandbox::new();
    for args in commands(&sb) {
        let out = sb
            .berth(&args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let status = code(&out);
        assert!(
            status == 141 || status == 0,
            "{args:?}: exit {status}: {}",
            stderr(&out)
        );
        // A command that had nothing for stdout may still say its piece on
        // stderr; none says anything about the closed pipe.
        let err = stderr(&out);
        for word in ["error", "panicked", "Broken pipe"] {
            assert!(!err.contains(word), "{args:?}: {err}");
        }
    }
    sb.assert_no_session_dirs();
}

#[test]
fn every_command_into_a_closed_stderr_never_panics() {
    let sb = Sandbox::new();
    let spec = sb.write(
        "bad.yaml",
        "type: local\nname: t\nlimits: {wall_timot: 3}\n",
    );
    // (`yes` would fill the stdout this test reads for ever.)
    let mut all: Vec<_> = commands(&sb)
        .into_iter()
        .filter(|args| !args.iter().any(|arg| arg == "yes"))
        .collect();
    // Commands whose business is stderr: a failure, a summary, a note.
    all.push(vec![
        "run".into(),
        "--env".into(),
        spec.into_os_string(),
        "--".into(),
        "true".into(),
    ]);
    all.push(
        ["run", "-c", "echo on stderr >&2; kill -TERM $$"]
            .iter()
            .map(Into::into)
            .collect(),
    );
    for args in all {
        let out = sb
            .berth(&args)
            .stdout(Stdio::piped())
            .stderr(closed_pipe())
            .output()
            .unwrap();
        let status = code(&out);
        assert_ne!(status, 101, "{args:?} panicked");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("panicked"), "{args:?}: {text}");
    }
    sb.assert_no_session_dirs();
}
