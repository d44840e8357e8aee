//! `berth run`'s stdin: a pipe reaches the command as it arrives, on every
//! backend that takes stdin, in bounded memory; its end closes the
//! command's stdin; a terminal is forwarded only with `-i`.

use std::io::{Read, Write};
use std::process::{Child, Stdio};

use crate::common::{Sandbox, code, docker_spec, max_child_rss, stderr, stdout};

/// Runs berth with `input` written to its stdin from a thread (while its
/// output is read), and returns the output.
fn with_input(mut child: Child, input: Vec<u8>) -> std::process::Output {
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // A command that stops reading closes the pipe: not this test's
        // failure to report here.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn piped(sb: &Sandbox, args: &[&std::ffi::OsStr]) -> Child {
    sb.berth(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(Into::into).collect()
}

fn refs(args: &[std::ffi::OsString]) -> Vec<&std::ffi::OsStr> {
    args.iter().map(std::ffi::OsString::as_os_str).collect()
}

#[test]
fn piped_stdin_reaches_the_command() {
    let sb = Sandbox::new();
    let out = with_input(
        piped(&sb, &refs(&os(&["run", "--", "cat"]))),
        b"data\n".to_vec(),
    );
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "data\n");
    sb.assert_no_session_dirs();
}

#[test]
fn a_gibibyte_flows_through_in_bounded_memory() {
    const GIB: usize = 1 << 30;
    let sb = Sandbox::new();
    let mut child = piped(&sb, &refs(&os(&["run", "--", "wc", "-c"])));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'z'; 1 << 20];
        for _ in 0..GIB / chunk.len() {
            stdin.write_all(&chunk).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out).trim(), GIB.to_string());
    // berth never held the input: its largest resident set (and that of
    // every other process this test waited for) stays far below it.
    let rss = max_child_rss();
    assert!(rss < 256 << 20, "a child held {rss} bytes");
    sb.assert_no_session_dirs();
}

#[test]
fn input_and_output_flow_at_once() {
    // 64 MiB in while 64 MiB come out: neither side waits for the other
    // to finish, or this would never end.
    let sb = Sandbox::new();
    let input: Vec<u8> = (0..64u32 << 20).map(|i| (i % 253) as u8).collect();
    let out = with_input(piped(&sb, &refs(&os(&["run", "--", "cat"]))), input.clone());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == input, "{} bytes came back", out.stdout.len());
}

#[test]
fn the_end_of_berths_stdin_closes_the_commands() {
    let sb = Sandbox::new();
    let mut child = piped(&sb, &refs(&os(&["run", "-c", "cat; echo 'stdin ended'"])));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"part one\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 9];
    // The first part arrives while berth's stdin is still open.
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"part one\n");
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "stdin ended\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_command_that_does_not_read_ends_while_input_keeps_coming() {
    let sb = Sandbox::new();
    let mut child = piped(&sb, &refs(&os(&["run", "--", "echo", "done"])));
    // berth's stdin stays open and never ends.
    let _stdin = child.stdin.take().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "done\n");
    sb.assert_no_session_dirs();
}

/// A pseudo-terminal: its controller, and the terminal end to give berth.
fn terminal() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd as _;
    // SAFETY: posix_openpt takes flags only; the result is checked.
    let controller = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(controller >= 0);
    // SAFETY: `controller` is a pty controller this test opened.
    assert_eq!(unsafe { libc::grantpt(controller) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::unlockpt(controller) }, 0);
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the buffer's length is passed with it.
    assert_eq!(
        unsafe { libc::ptsname_r(controller, name.as_mut_ptr(), name.len()) },
        0
    );
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let path = std::path::PathBuf::from(path.to_str().unwrap());
    let tty = std::os::unix::fs::OpenOptionsExt::custom_flags(
        std::fs::OpenOptions::new().read(true).write(true),
        libc::O_NOCTTY,
    )
    .open(path)
    .unwrap();
    // SAFETY: `controller` is owned by nothing else.
    (unsafe { std::fs::File::from_raw_fd(controller) }, tty)
}

#[test]
fn a_terminal_is_forwarded_only_with_interactive() {
    let sb = Sandbox::new();
    let (controller, tty) = terminal();

    // Without -i the command reads an empty stdin and ends at once.
    let out = sb
        .berth(["run", "-c", "cat; echo done"])
        .stdin(tty.try_clone().unwrap())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "done\n");

    // With -i it reads what is typed, up to end-of-file (^D).
    let child = sb
        .berth(["run", "-i", "-c", "cat; echo done"])
        .stdin(tty)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut typing = controller.try_clone().unwrap();
    typing.write_all(b"typed\n\x04").unwrap();
    // The terminal echoes what is typed to its controller: drained so it
    // never fills.
    let drain = std::thread::spawn(move || {
        let mut controller = controller;
        let mut sink = [0u8; 1024];
        while matches!(controller.read(&mut sink), Ok(n) if n > 0) {}
    });
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "typed\ndone\n");
    drop(drain);
    sb.assert_no_session_dirs();
}

#[test]
fn a_backend_that_takes_stdin_only_whole_gets_it_whole_and_berth_says_so() {
    let sb = Sandbox::new();
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    runtime_conformance::fixture_plugin::build("whole-stdin", &plugins.join("libfixture.so"));
    let spec = sb.write("fixture.yaml", "type: fixture\nname: whole\n");
    let args = vec![
        "--plugin-dir".into(),
        plugins.into_os_string(),
        "run".into(),
        "--env".into(),
        spec.into_os_string(),
        "--".into(),
        "wc".into(),
        "-c".into(),
    ];
    let out = with_input(piped(&sb, &refs(&args)), vec![b'q'; 3 << 20]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out).trim(), (3 << 20).to_string());
    let err = stderr(&out);
    assert!(
        err.contains("takes stdin only whole") && err.contains("before the command starts"),
        "{err}"
    );
    sb.assert_no_session_dirs();
}

#[test]
fn piped_stdin_reaches_a_docker_command_as_it_arrives() {
    let sb = Sandbox::new();
    let Some(spec) = docker_spec(&sb, "") else {
        return;
    };
    let run = |command: &[&str], input: Vec<u8>| {
        let mut args = vec!["run".into(), "--env".into(), spec.clone().into_os_string()];
        args.push("--".into());
        args.extend(command.iter().map(Into::into));
        with_input(piped(&sb, &refs(&args)), input)
    };
    let out = run(&["cat"], b"data\n".to_vec());
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "data\n");

    let input: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let out = run(&["cat"], input.clone());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == input, "{} bytes came back", out.stdout.len());
    sb.assert_no_session_dirs();
}

#[test]
fn piped_stdin_reaches_a_command_of_the_namespace_plugin() {
    let sb = Sandbox::new();
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(
        runtime_conformance::fixture_plugin::build_workspace_cdylib("runtime-namespace", ""),
        plugins.join("libruntime_namespace.so"),
    )
    .unwrap();
    let spec = sb.write("namespace.yaml", "type: namespace\nname: sandboxed\n");
    let args = vec![
        "--plugin-dir".into(),
        plugins.into_os_string(),
        "run".into(),
        "--env".into(),
        spec.into_os_string(),
        "--".into(),
        "cat".into(),
    ];
    let input: Vec<u8> = (0..4u32 << 20).map(|i| (i % 249) as u8).collect();
    let out = with_input(piped(&sb, &refs(&args)), input.clone());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == input, "{} bytes came back", out.stdout.len());
    sb.assert_no_session_dirs();
}

#[test]
fn piped_stdin_reaches_a_command_of_a_remote_server() {
    const TOKEN: &str = "stdin-test-token-0123456789";
    let sb = Sandbox::new();
    let token_file = sb.write_private("token", &format!("{TOKEN}\n"));
    let mut server = sb
        .berth([
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--token-file".as_ref(),
            token_file.as_os_str(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(server.stderr.take().unwrap()));
    let url = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("berth serve: listening on ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let spec = sb.write(
        "api.yaml",
        &format!(
            "type: api\nname: remote\napi:\n  url: {url}\n  remote: {{type: local, name: served}}\n"
        ),
    );
    let mut child = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "--".as_ref(),
            "wc".as_ref(),
            "-c".as_ref(),
        ])
        .env("BERTH_TOKEN", TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'r'; 1 << 20];
        for _ in 0..64 {
            stdin.write_all(&chunk).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out).trim(), (64u32 << 20).to_string());
    // SAFETY: signalling the server this test started.
    unsafe {
        libc::kill(i32::try_from(server.id()).unwrap(), libc::SIGTERM);
    }
    server.wait().unwrap();
    sb.assert_no_session_dirs();
}
