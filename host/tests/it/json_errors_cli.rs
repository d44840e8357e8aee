//! `--json` holds when berth fails: every command that takes it prints
//! exactly one JSON object on stdout, `{"error": {"message", "kind"}}`,
//! and exits 125; the kind says whose the failure is.

use std::ffi::OsStr;

use crate::common::{Sandbox, code, stderr};

/// The JSON values on stdout; asserts there is exactly one.
fn one_object(out: &std::process::Output) -> serde_json::Value {
    let values: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {out:?}"));
    assert_eq!(values.len(), 1, "{out:?}");
    values.into_iter().next().unwrap()
}

/// Runs berth, expects 125 and one error object of `kind`; returns its
/// message.
fn json_error<I, S>(sb: &Sandbox, args: I, kind: &str) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = sb.run(args);
    assert_eq!(code(&out), 125, "{out:?}");
    let json = one_object(&out);
    let error = json
        .get("error")
        .unwrap_or_else(|| panic!("no error object: {json}"));
    assert_eq!(error["kind"], kind, "{json}");
    let message = error["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty());
    // stderr still says it for a person.
    assert!(stderr(&out).contains("error"), "{out:?}");
    message
}

#[test]
fn run_json_with_a_bad_spec_prints_one_error_object() {
    let sb = Sandbox::new();
    let typo = sb.write(
        "typo.yaml",
        "type: local\nname: typo\nlocal: {shel: /bin/sh}\n",
    );
    let message = json_error(
        &sb,
        [
            "run".as_ref(),
            "--json".as_ref(),
            "--env".as_ref(),
            typo.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ],
        "spec",
    );
    assert!(message.contains("local.shel"), "{message}");

    let missing = sb.files().join("missing.yaml");
    let message = json_error(
        &sb,
        [
            "run".as_ref(),
            "--json".as_ref(),
            "--env".as_ref(),
            missing.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ],
        "io",
    );
    assert!(message.contains("missing.yaml"), "{message}");

    let unknown = sb.write("unknown.yaml", "type: nowhere\nname: unknown\n");
    let message = json_error(
        &sb,
        [
            "run".as_ref(),
            "--json".as_ref(),
            "--env".as_ref(),
            unknown.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ],
        "backend",
    );
    assert!(
        message.contains("unknown backend type `nowhere`"),
        "{message}"
    );
    sb.assert_no_session_dirs();
}

#[test]
fn a_command_line_berth_cannot_parse_is_a_usage_error_in_json() {
    let sb = Sandbox::new();
    for command in [
        &["run", "--json", "--no-such-flag", "--", "true"][..],
        &["diff", "--json", "--bogus", "a", "b"],
        &["doctor", "--json", "--bogus"],
        &["gc", "--json", "--dry-run=maybe"],
        &["plugins", "--json", "--bogus"],
        &["snapshot", "--json", "dir"],
        &["run", "--json", "--mode", "sideways", "--", "true"],
    ] {
        let message = json_error(&sb, command, "usage");
        assert!(!message.starts_with("error:"), "{command:?}: {message}");
    }
    // After `--` it is the program's argument, not berth's.
    let out = sb.run(["run", "--", "sh", "-c", "exit 3", "--json"]);
    assert_eq!(code(&out), 3, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn every_command_with_json_reports_its_own_failures_in_json() {
    let sb = Sandbox::new();
    let dir = sb.files().join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = sb.files().join("missing");

    let message = json_error(
        &sb,
        [
            "diff".as_ref(),
            "--json".as_ref(),
            dir.as_os_str(),
            missing.as_os_str(),
        ],
        "io",
    );
    assert!(message.contains("missing"), "{message}");

    let message = json_error(
        &sb,
        [
            "snapshot".as_ref(),
            "--json".as_ref(),
            dir.as_os_str(),
            "-o".as_ref(),
            sb.files().join("x.zip").as_os_str(),
        ],
        "usage",
    );
    assert!(message.contains("--compression"), "{message}");

    let message = json_error(
        &sb,
        [
            "plugins".as_ref(),
            "test".as_ref(),
            "--json".as_ref(),
            missing.join("libnone.so").as_os_str(),
        ],
        "io",
    );
    assert!(message.contains("libnone.so"), "{message}");
    sb.assert_no_session_dirs();
}

#[test]
fn a_successful_json_command_prints_its_result_alone() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "--json", "--", "true"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let json = one_object(&out);
    assert_eq!(json["status"], "exited");
    assert!(json.get("error").is_none(), "{json}");
}
