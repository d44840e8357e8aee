//! The example host runs a command through the backend it links.

use std::process::Command;

#[test]
fn a_linked_backend_runs_commands_beside_the_built_ins() {
    let out = Command::new(env!("CARGO_BIN_EXE_static-host"))
        .arg("echo hello; nice; exit 3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stdout.lines();
    let types = lines.next().unwrap_or_default();
    assert!(
        types.starts_with("types: ") && types.contains("local") && types.contains("nice"),
        "{stdout}{stderr}"
    );
    assert_eq!(lines.next(), Some("hello"), "{stdout}{stderr}");
    // Its runtime put the command at niceness 10 (berth's tests run at 0).
    let base: i32 = String::from_utf8_lossy(&Command::new("nice").output().unwrap().stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        lines.next(),
        Some((base + 10).min(19).to_string().as_str()),
        "{stdout}{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
}
