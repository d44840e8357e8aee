//! `berth plugins`, `doctor`, `gc` and the conventions every command
//! shares, end to end through the real binary.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::{Sandbox, code, stderr, stdout};

#[test]
fn every_command_has_help_and_berth_has_a_version() {
    let sb = Sandbox::new();
    for command in ["run", "plugins", "snapshot", "diff", "doctor", "gc"] {
        let out = sb.run([command, "--help"]);
        assert_eq!(code(&out), 0, "{command}: {out:?}");
        assert!(
            stdout(&out).contains("Usage: berth"),
            "{command}: {}",
            stdout(&out)
        );
    }
    let out = sb.run(["--version"]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        stdout(&out),
        format!("berth {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_125_without_a_backtrace() {
    let sb = Sandbox::new();
    for args in [
        &["frobnicate"][..],
        &["diff", "only-one"],
        &["snapshot", "dir"],
        &[],
    ] {
        let out = sb.run(args);
        assert_eq!(code(&out), 125, "{args:?}: {out:?}");
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn rust_log_turns_on_logs_on_stderr() {
    let sb = Sandbox::new();
    let out = sb
        .berth(["run", "-c", "echo hi"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "hi\n", "logs never reach stdout");
    assert!(
        stderr(&out).contains("session prepared"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plugins_lists_every_built_in_with_origin_version_and_capabilities() {
    let sb = Sandbox::new();
    let out = sb.run(["plugins"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    let local = text
        .lines()
        .find(|line| line.starts_with("local "))
        .unwrap_or_else(|| panic!("no local backend in {text}"));
    assert!(local.contains("built-in"), "{local}");
    assert!(local.contains(env!("CARGO_PKG_VERSION")), "{local}");
    assert!(local.contains("live_streaming"), "{local}");
    assert!(
        text.contains("(from $BERTH_PLUGIN_DIR), does not exist"),
        "{text}"
    );
}

#[test]
fn plugins_reports_each_library_it_could_not_load() {
    let sb = Sandbox::new();
    let dir = sb.files().join("my-plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("libberth_fake.so"), "not a library").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a plugin").unwrap();
    let out = sb.run(["plugins".as_ref(), "--plugin-dir".as_ref(), dir.as_os_str()]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("(from --plugin-dir)"), "{text}");
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("skipped ")).collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(
        skipped[0].contains("libberth_fake.so: not a berth plugin"),
        "{text}"
    );

    let out = sb.run([
        "plugins".as_ref(),
        "--json".as_ref(),
        "--plugin-dir".as_ref(),
        dir.as_os_str(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local = json["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "local")
        .expect("local is listed");
    assert_eq!(local["built_in"], true);
    assert_eq!(json["plugin_dir"]["source"], "--plugin-dir");
    assert_eq!(json["plugin_dir"]["exists"], true);
    assert_eq!(json["problems"].as_array().unwrap().len(), 1);
}

#[test]
fn doctor_prints_one_line_per_check_and_exits_zero() {
    let sb = Sandbox::new();
    let out = sb.run(["doctor"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    for line in text.lines() {
        assert!(
            line.starts_with("ok  ") || line.starts_with("FAIL"),
            "{line}"
        );
    }
    for check in [
        "backend local:",
        "plugin directory:",
        "namespaces:",
        "temporary directory:",
    ] {
        assert!(text.contains(check), "no `{check}` in {text}");
    }
    assert!(text.contains(&sb.temp().display().to_string()), "{text}");

    let out = sb.run(["doctor", "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        checks
            .iter()
            .all(|c| c["ok"].is_boolean() && c["check"].is_string())
    );
}

#[test]
fn doctor_reports_a_failing_check_without_failing_itself() {
    let sb = Sandbox::new();
    let out = sb
        .berth(["doctor"])
        .args(["--temp-root", "/nonexistent/berth-doctor"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(
        stdout(&out).contains("FAIL  temporary directory: /nonexistent/berth-doctor"),
        "{}",
        stdout(&out)
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// A session directory with a marker, as a crashed host leaves it.
fn fake_session(temp: &Path, name: &str, pid: u32, host: &str) -> PathBuf {
    let dir = temp.join(name);
    std::fs::create_dir_all(dir.join("workspace/src")).unwrap();
    std::fs::write(dir.join("workspace/src/main.py"), "print('hi')\n").unwrap();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let marker = serde_json::json!({
        "session_id": name,
        "owner_pid": pid,
        "owner_host": host,
        "created_unix": created,
    });
    std::fs::write(dir.join("berth-session.json"), marker.to_string()).unwrap();
    dir
}

/// A pid that belonged to a process which has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn gc_removes_dead_sessions_and_keeps_live_and_foreign_ones() {
    let sb = Sandbox::new();
    let temp = sb.temp();
    let dead = fake_session(&temp, "berth-dead", dead_pid(), &hostname());
    let live = fake_session(&temp, "berth-live", std::process::id(), &hostname());
    let foreign = fake_session(&temp, "berth-foreign", dead_pid(), "another-host.invalid");
    let unmarked = temp.join("berth-unmarked");
    std::fs::create_dir(&unmarked).unwrap();
    let unrelated = temp.join("not-berth");
    std::fs::create_dir(&unrelated).unwrap();

    let out = sb.run(["gc", "--dry-run"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "would remove  session directory {}",
            dead.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "kept          session directory {}",
            unmarked.display()
        )),
        "{text}"
    );
    assert!(
        !text.contains("berth-live") && !text.contains("berth-foreign"),
        "{text}"
    );
    assert!(dead.exists(), "--dry-run removes nothing");

    let out = sb.run(["gc"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "removed       session directory {}",
            dead.display()
        )),
        "{text}"
    );
    assert!(text.contains("is gone"), "{text}");
    assert!(!dead.exists());
    assert!(live.exists() && foreign.exists() && unmarked.exists() && unrelated.exists());
    // Other berth processes on this machine (tests running beside this one)
    // may have left cgroups that this gc reaps too, so the count is at least one.
    assert!(stderr(&out).contains(" removed"), "{}", stderr(&out));
}

#[test]
fn gc_json_lists_what_it_did() {
    let sb = Sandbox::new();
    let dead = fake_session(&sb.temp(), "berth-dead", dead_pid(), &hostname());
    let out = sb.run(["gc", "--json"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dry_run"], false);
    // Cgroups that other berth processes left on this machine are reaped by
    // the same gc; only the session directories are this test's own.
    let leftovers: Vec<_> = json["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] != "cgroup")
        .collect();
    assert_eq!(leftovers.len(), 1, "{json}");
    assert_eq!(leftovers[0]["action"], "removed");
    assert_eq!(leftovers[0]["kind"], "session directory");
    assert_eq!(leftovers[0]["id"], dead.display().to_string());
    assert_eq!(leftovers[0]["removed"], true);
}

#[test]
fn gc_never_touches_a_running_session() {
    use std::io::{BufRead, BufReader};
    let sb = Sandbox::new();
    let mut child = sb
        .berth(["run", "--timeout", "120", "-c", "echo ready; sleep 300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let before = sb.session_dirs();
    assert_eq!(before.len(), 1);
    let out = sb.run(["gc"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(sb.session_dirs(), before, "{}", stdout(&out));
    // SAFETY: signalling our own unreaped child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    sb.assert_no_session_dirs();
}
