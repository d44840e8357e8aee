//! `berth run`, end to end through the real binary.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{Sandbox, code, process_gone, read_pids, sh_quote, stderr, stdout, wait_until};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn run_passes_output_and_success_through() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "-c", "echo out; echo err >&2"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    sb.assert_no_session_dirs();
}

#[test]
fn run_passes_the_exit_code_through() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code(&out), 7, "{out:?}");
    sb.assert_no_session_dirs();
}

#[test]
fn run_reports_a_signal_as_128_plus_n() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "-c", "kill -TERM $$"]);
    assert_eq!(code(&out), 128 + libc::SIGTERM, "{out:?}");
    assert!(stderr(&out).contains("SIGTERM"), "{}", stderr(&out));
}

#[test]
fn run_keeps_argv_exactly() {
    let sb = Sandbox::new();
    let out = sb.run([
        "run", "--", "printf", "%s|", "a b", "$HOME", "", "it's", "*",
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "a b|$HOME||it's|*|");
}

#[test]
fn run_streams_output_live() {
    let sb = Sandbox::new();
    let gate = sb.files().join("gate");
    let script = format!(
        "echo first; while [ ! -e {gate} ]; do sleep 0.01; done; echo second",
        gate = sh_quote(&gate)
    );
    let mut child = sb
        .berth(["run", "--timeout", "60", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    // `first` arrives while the command is still blocked on the gate.
    assert_eq!(lines.recv_timeout(LONG).unwrap(), "first");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(lines.recv_timeout(LONG).unwrap(), "second");
    assert!(child.wait().unwrap().success());
    sb.assert_no_session_dirs();
}

#[test]
fn run_refuses_a_bad_spec_naming_the_field() {
    let sb = Sandbox::new();
    let spec = sb.write(
        "spec.yaml",
        "type: local\nname: t\nlimits:\n  wall_timot: 3\n",
    );
    let out = sb.run([
        "run".as_ref(),
        "--env".as_ref(),
        spec.as_os_str(),
        "--".as_ref(),
        "true".as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(err.starts_with("berth: error: "), "{err}");
    assert!(err.contains("limits.wall_timot"), "{err}");
    assert!(err.contains("unknown field"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
    sb.assert_no_session_dirs();
}

#[test]
fn run_refuses_an_unknown_backend_listing_the_registered_ones() {
    let sb = Sandbox::new();
    let spec = sb.write("spec.yaml", "type: warp-drive\nname: t\n");
    let out = sb.run([
        "run".as_ref(),
        "--env".as_ref(),
        spec.as_os_str(),
        "--".as_ref(),
        "true".as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("warp-drive"), "{err}");
    assert!(err.contains("registered: api, docker, local"), "{err}");
    sb.assert_no_session_dirs();
}

#[test]
fn run_reports_a_missing_spec_file() {
    let sb = Sandbox::new();
    let missing = sb.files().join("nope.yaml");
    let out = sb.run([
        "run".as_ref(),
        "--env".as_ref(),
        missing.as_os_str(),
        "--".as_ref(),
        "true".as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("nope.yaml"), "{}", stderr(&out));
}

#[test]
fn run_times_out_with_124_and_kills_the_tree() {
    let sb = Sandbox::new();
    let pids = sb.files().join("pids");
    let script = format!(
        "echo $$ > {p}; sleep 300 & echo $! >> {p}; wait",
        p = sh_quote(&pids)
    );
    let out = sb.run(["run", "--timeout", "1", "-c", &script]);
    assert_eq!(code(&out), 124, "{out:?}");
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 2, "the command did not record its pids");
    for pid in pids {
        assert!(wait_until(LONG, || process_gone(pid)), "pid {pid} survived");
    }
    sb.assert_no_session_dirs();
}

#[test]
fn run_uses_the_smaller_of_timeout_and_the_spec_limit() {
    let sb = Sandbox::new();
    let spec = sb.write(
        "spec.yaml",
        "type: local\nname: t\nlimits:\n  wall_timeout: 1\n",
    );
    let out = sb.run([
        "run".as_ref(),
        "--env".as_ref(),
        spec.as_os_str(),
        "--timeout".as_ref(),
        "600".as_ref(),
        "--".as_ref(),
        "sleep".as_ref(),
        "300".as_ref(),
    ]);
    assert_eq!(code(&out), 124, "{out:?}");
}

#[test]
fn run_json_prints_one_result_object() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "--json", "-c", "printf 'a\\377'; echo e >&2; exit 3"]);
    assert_eq!(code(&out), 3, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["status"], "exited");
    assert_eq!(json["exit_code"], 3);
    assert_eq!(json["signal"], serde_json::Value::Null);
    assert_eq!(json["timed_out"], false);
    assert!(json["elapsed_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(json["stdout"]["text"], "a\u{fffd}");
    assert_eq!(json["stdout"]["utf8"], false);
    assert_eq!(json["stdout"]["base64"], "Yf8=");
    assert_eq!(json["stdout"]["total_bytes"], 2);
    assert_eq!(json["stdout"]["truncated"], false);
    assert_eq!(json["stderr"]["text"], "e\n");
    assert_eq!(json["stderr"]["utf8"], true);
    assert!(json["stderr"].get("base64").is_none());
    assert_eq!(json["checkpoint"], serde_json::Value::Null);
    // Nothing of the command is streamed next to the JSON.
    assert!(!stderr(&out).contains("e\n"), "{}", stderr(&out));
}

#[test]
fn run_json_reports_a_timeout() {
    let sb = Sandbox::new();
    let out = sb.run([
        "run",
        "--json",
        "--timeout",
        "0.5",
        "-c",
        "echo started; sleep 300",
    ]);
    assert_eq!(code(&out), 124, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "timed_out");
    assert_eq!(json["timed_out"], true);
    assert_eq!(json["stdout"]["text"], "started\n");
}

#[test]
fn run_checkpoint_writes_the_files_and_lists_the_changes() {
    let sb = Sandbox::new();
    sb.write("ws/a.txt", "one\n");
    sb.write("ws/keep.txt", "same\n");
    let ws = sb.files().join("ws");
    let out_dir = sb.files().join("out");
    let out = sb.run([
        "run".as_ref(),
        "--workspace".as_ref(),
        ws.as_os_str(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "-c".as_ref(),
        "echo new > b.txt; mkdir sub; echo deep > sub/c.txt; echo two >> a.txt".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("+2 -0 ~1 files"), "{err}");
    assert!(err.contains("A b.txt"), "{err}");
    assert!(err.contains("A sub/c.txt"), "{err}");
    assert!(err.contains("M a.txt"), "{err}");
    assert!(!err.contains("keep.txt"), "{err}");
    assert!(stdout(&out).is_empty(), "the summary goes to stderr");
    let read = |rel: &str| std::fs::read_to_string(out_dir.join(rel)).unwrap();
    assert_eq!(read("b.txt"), "new\n");
    assert_eq!(read("sub/c.txt"), "deep\n");
    assert_eq!(read("a.txt"), "one\ntwo\n");
    // The workspace it started from is untouched.
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "one\n");
    assert!(!ws.join("b.txt").exists());
    sb.assert_no_session_dirs();
}

#[test]
fn run_checkpoint_in_json() {
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    let out = sb.run([
        "run".as_ref(),
        "--json".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "-c".as_ref(),
        "echo x > made.txt".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["checkpoint"]["diff"]["summary"]["created"], 1);
    assert_eq!(json["checkpoint"]["diff"]["changes"][0]["path"], "made.txt");
    assert!(out_dir.join("made.txt").exists());
}

#[test]
fn run_checkpoint_refuses_eval_mode() {
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    let out = sb.run([
        "run".as_ref(),
        "--mode".as_ref(),
        "eval".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "--".as_ref(),
        "true".as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("agent mode"), "{}", stderr(&out));
    assert!(!out_dir.exists());
}

#[test]
fn run_never_modifies_the_workspace_dir() {
    let sb = Sandbox::new();
    sb.write("ws/a.txt", "a\n");
    sb.write("ws/dir/b.txt", "b\n");
    let ws = sb.files().join("ws");
    let before = listing(&ws);
    let out = sb.run([
        "run".as_ref(),
        "--workspace".as_ref(),
        ws.as_os_str(),
        "-c".as_ref(),
        "cat a.txt; rm -r dir; echo changed > a.txt; echo new > c.txt".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "a\n",
        "the command ran in a copy of the workspace"
    );
    assert_eq!(listing(&ws), before);
    sb.assert_no_session_dirs();
}

#[test]
fn run_without_a_command_is_an_error() {
    let sb = Sandbox::new();
    let out = sb.run(["run"]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("nothing to run"), "{}", stderr(&out));
    let out = sb.run(["run", "--no-such-flag", "--", "true"]);
    assert_eq!(code(&out), 125, "{out:?}");
}

#[test]
fn run_killed_by_sigint_kills_the_tree_and_removes_the_session() {
    interrupted_run(libc::SIGINT);
}

#[test]
fn run_killed_by_sigterm_exits_143() {
    interrupted_run(libc::SIGTERM);
}

fn interrupted_run(signal: i32) {
    let sb = Sandbox::new();
    let pids = sb.files().join("pids");
    let script = format!(
        "echo $$ > {p}; sleep 300 & echo $! >> {p}; echo ready; wait",
        p = sh_quote(&pids)
    );
    let (mut child, _stdout) = run_until_ready(&sb, &script);
    assert_eq!(
        sb.session_dirs().len(),
        1,
        "the session is live while the command runs"
    );
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 2);

    send(&child, signal);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(128 + signal), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    for pid in pids {
        assert!(wait_until(LONG, || process_gone(pid)), "pid {pid} survived");
    }
    sb.assert_no_session_dirs();
}

#[test]
fn run_stops_when_its_stdout_is_closed() {
    let sb = Sandbox::new();
    let mut child = sb
        .berth(["run", "--timeout", "120", "--", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\n");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGPIPE));
    // Nobody reads: nothing is said.
    assert_eq!(stderr(&out), "");
    sb.assert_no_session_dirs();
}

/// While berth's output is full and nobody reads it, a signal still stops
/// the run: the command's tree is killed and the session removed.
#[test]
fn run_stops_on_a_signal_while_its_stdout_is_full() {
    blocked_output_run(false);
}

/// As above with stdout and stderr the same unread pipe: berth's own last
/// lines cannot be written either, and are dropped.
#[test]
fn run_stops_on_a_signal_while_its_stdout_and_stderr_are_full() {
    blocked_output_run(true);
}

fn blocked_output_run(merged: bool) {
    let sb = Sandbox::new();
    let pids = sb.files().join("pids");
    // Two writers; the second on stderr where that is the same pipe.
    let script = format!(
        "yes & echo $! > {p}.part; echo $$ >> {p}.part; mv {p}.part {p}; exec yes {to}",
        p = sh_quote(&pids),
        to = if merged { ">&2" } else { "" },
    );
    let (reader, writer) = std::io::pipe().unwrap();
    let mut berth = sb.berth(["run", "--timeout", "120", "-c", &script]);
    berth.stdout(writer.try_clone().unwrap());
    if merged {
        berth.stderr(writer);
    } else {
        berth.stderr(Stdio::piped());
        drop(writer);
    }
    let mut child = berth.spawn().unwrap();
    assert!(wait_until(LONG, || pids.exists()), "the command started");
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 2);
    // The pipes (64 KiB each) and berth's own buffers fill within moments;
    // stderr, when piped alone, is read at the end.
    std::thread::sleep(Duration::from_millis(500));
    send(&child, libc::SIGTERM);
    let stderr_pipe = child.stderr.take();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait()));
    let status = receiver
        .recv_timeout(LONG)
        .expect("berth stopped on SIGTERM while its output was blocked")
        .unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    if let Some(mut err) = stderr_pipe {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        assert!(text.contains("interrupted by SIGTERM"), "{text}");
    }
    drop(reader);
    for pid in pids {
        assert!(wait_until(LONG, || process_gone(pid)), "pid {pid} survived");
    }
    sb.assert_no_session_dirs();
}

/// A burst of signals is one request: the session is still removed.
#[test]
fn run_takes_a_burst_of_signals_as_one() {
    let sb = Sandbox::new();
    let (child, _stdout) = run_until_ready(&sb, "echo ready; exec sleep 300");
    for _ in 0..5 {
        send(&child, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 128 + libc::SIGTERM, "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert!(!err.contains("again"), "{err}");
    sb.assert_no_session_dirs();
}

/// Starts `berth run -c SCRIPT` with its output piped and returns once the
/// script printed `ready` on stdout; the stdout is returned to be held open.
fn run_until_ready(
    sb: &Sandbox,
    script: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = sb
        .berth(["run", "--timeout", "120", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, reader)
}

/// Sends `signal` to berth.
fn send(child: &std::process::Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling a child the test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Every path under `dir` with its content (empty for directories).
fn listing(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                out.push((rel, Vec::new()));
                stack.push(path);
            } else {
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// An asset map beside the data it names.
fn assets(sb: &Sandbox) -> std::path::PathBuf {
    sb.write("assets/data/x.txt", "asset\n");
    sb.write(
        "assets/assets.yaml",
        "data:\n  path: data/x.txt\n  save_path: inputs/x.txt\n",
    )
}

#[test]
fn run_copies_assets_in_agent_mode_only() {
    let sb = Sandbox::new();
    let map = assets(&sb);
    let agent = sb.run([
        "run".as_ref(),
        "--mode".as_ref(),
        "agent".as_ref(),
        "--assets".as_ref(),
        map.as_os_str(),
        "--".as_ref(),
        "cat".as_ref(),
        "inputs/x.txt".as_ref(),
    ]);
    assert_eq!(code(&agent), 0, "{agent:?}");
    assert_eq!(stdout(&agent), "asset\n");
    let eval = sb.run([
        "run".as_ref(),
        "--assets".as_ref(),
        map.as_os_str(),
        "-c".as_ref(),
        "test ! -e inputs/x.txt".as_ref(),
    ]);
    assert_eq!(code(&eval), 0, "{eval:?}");
    sb.assert_no_session_dirs();
}

#[test]
fn run_fails_when_the_command_changes_an_asset() {
    let sb = Sandbox::new();
    let map = assets(&sb);
    let data = sb.files().join("assets/data/x.txt");
    let out = sb.run([
        "run".as_ref(),
        "--assets".as_ref(),
        map.as_os_str(),
        "-c".as_ref(),
        format!("echo tampered >> {}", sh_quote(&data)).as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("changed during the session"), "{err}");
    sb.assert_no_session_dirs();
}

#[test]
fn run_reports_a_failing_setup_command() {
    let sb = Sandbox::new();
    let spec = sb.write(
        "spec.yaml",
        "type: local\nname: t\nsetup:\n  commands: ['echo broken >&2; exit 4']\n",
    );
    let out = sb.run([
        "run".as_ref(),
        "--env".as_ref(),
        spec.as_os_str(),
        "--".as_ref(),
        "true".as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("exit code 4"), "{err}");
    assert!(err.contains("broken"), "{err}");
    sb.assert_no_session_dirs();
}
