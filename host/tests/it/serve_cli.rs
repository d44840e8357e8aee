//! `berth serve` and `berth run` against it: a command in a `type: api`
//! session runs on the server, and the client's workspace gets its changes;
//! the server refuses weak or exposed tokens; a server killed with SIGKILL
//! leaves only what `berth gc` reaps.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::common::{Sandbox, code, stderr, stdout};

const TOKEN: &str = "a-token-for-this-test-only";

/// Starts `berth serve` on a free loopback port with `token_file`; returns
/// the process and its URL.
fn start_server(sb: &Sandbox, token_file: &std::path::Path) -> (Child, String) {
    start_server_with(sb, token_file, &[])
}

/// [`start_server`] with more arguments for `serve`.
fn start_server_with(
    sb: &Sandbox,
    token_file: &std::path::Path,
    extra: &[&str],
) -> (Child, String) {
    let (server, url, _log) = start_server_logged(sb, token_file, extra);
    (server, url)
}

/// What a server wrote on stderr so far, one line each.
type ServerLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`start_server_with`], keeping what the server writes on stderr.
fn start_server_logged(
    sb: &Sandbox,
    token_file: &std::path::Path,
    extra: &[&str],
) -> (Child, String, ServerLog) {
    let mut server = sb
        .berth(
            [
                "serve".as_ref(),
                "--listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--token-file".as_ref(),
                token_file.as_os_str(),
            ]
            .into_iter()
            .chain(extra.iter().map(|arg| std::ffi::OsStr::new(*arg))),
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = ServerLog::default();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        log.lock().unwrap().push(line.clone());
        if let Some(url) = line.strip_prefix("berth serve: listening on ") {
            break url.to_owned();
        }
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    let kept = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    (server, url, log)
}

/// Stops a server with SIGTERM and waits for it.
fn stop(mut server: Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_server_logs_each_session_and_its_health_omits_api() {
    let sb = Sandbox::new();
    let token_file = sb.write_private("token", &format!("{TOKEN}\n"));
    let (server, url, log) = start_server_logged(&sb, &token_file, &[]);
    let serving = log
        .lock()
        .unwrap()
        .iter()
        .find(|line| line.starts_with("berth serve: serving backends: "))
        .cloned()
        .expect("the server names its backends");
    assert!(serving.contains("local"), "{serving}");
    assert!(!serving.contains("api"), "{serving}");

    // `/v1/health`, by hand.
    let address = url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "GET /v1/health HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let health: serde_json::Value = serde_json::from_str(body).unwrap();
    let backends: Vec<&str> = health["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(backends.contains(&"local"), "{backends:?}");
    assert!(!backends.contains(&"api"), "{backends:?}");

    let spec = sb.write(
        "api.yaml",
        &format!(
            "type: api\nname: remote\napi:\n  url: {url}\n  remote: {{type: local, name: served}}\n"
        ),
    );
    let out = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ])
        .env("BERTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    stop(server);

    let lines = log.lock().unwrap().clone();
    let opened: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("session opened"))
        .collect();
    let closed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("session closed session="))
        .collect();
    assert_eq!(opened.len(), 1, "{lines:#?}");
    assert_eq!(closed.len(), 1, "{lines:#?}");
    for line in [opened[0], closed[0]] {
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains("type=local"), "{line}");
        assert!(line.contains("client=127.0.0.1:"), "{line}");
    }
    let id = opened[0]
        .split_whitespace()
        .find_map(|word| word.strip_prefix("session="))
        .unwrap();
    assert!(closed[0].contains(&format!("session={id}")), "{lines:#?}");
}

#[test]
fn a_server_refuses_to_serve_api() {
    let sb = Sandbox::new();
    let token_file = sb.write_private("token", &format!("{TOKEN}\n"));
    let out = sb.run([
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--token-file".as_ref(),
        token_file.as_os_str(),
        "--backend".as_ref(),
        "api".as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("does not relay sessions to another server"),
        "{out:?}"
    );
}

#[test]
fn run_through_a_served_host() {
    let sb = Sandbox::new();
    let token_file = sb.write_private("token", &format!("{TOKEN}\n"));
    let (mut server, url) = start_server(&sb, &token_file);
    let spec = sb.write(
        "api.yaml",
        &format!(
            "type: api\nname: remote\napi:\n  url: {url}\n  remote: {{type: local, name: served}}\n"
        ),
    );
    let out = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "--checkpoint".as_ref(),
            sb.files().join("out").as_os_str(),
            "--".as_ref(),
            "sh".as_ref(),
            "-c".as_ref(),
            "echo remote > made.txt; cat made.txt; exit 4".as_ref(),
        ])
        .env("BERTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "remote\n");
    assert_eq!(
        std::fs::read_to_string(sb.files().join("out/made.txt")).unwrap(),
        "remote\n"
    );

    let refused = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ])
        .env("BERTH_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(125), "{refused:?}");

    // SIGTERM stops the server.
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
    sb.assert_no_session_dirs();
}

#[test]
fn a_server_offers_only_the_backends_it_is_told_to() {
    let sb = Sandbox::new();
    let token_file = sb.write_private("token", &format!("{TOKEN}\n"));
    let (mut server, url) = start_server_with(&sb, &token_file, &["--backend", "docker"]);
    let spec = sb.write(
        "api.yaml",
        &format!(
            "type: api\nname: remote\napi:\n  url: {url}\n  remote: {{type: local, name: served}}\n"
        ),
    );
    let out = sb
        .berth([
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "--".as_ref(),
            "true".as_ref(),
        ])
        .env("BERTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("unknown backend type `local`"),
        "{out:?}"
    );
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    server.wait().unwrap();

    // A type nobody registered is refused at start.
    let out = sb
        .berth([
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--token-file".as_ref(),
            token_file.as_os_str(),
            "--backend".as_ref(),
            "nonexistent".as_ref(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("nonexistent"), "{out:?}");
    sb.assert_no_session_dirs();
}

#[test]
fn weak_or_exposed_tokens_are_refused_in_one_line() {
    use std::os::unix::fs::PermissionsExt as _;
    let sb = Sandbox::new();
    let serve = |token_file: &std::path::Path| {
        sb.berth([
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--token-file".as_ref(),
            token_file.as_os_str(),
        ])
        .output()
        .unwrap()
    };

    let exposed = sb.write("exposed-token", &format!("{TOKEN}\n"));
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve(&exposed);
    assert_eq!(code(&out), 125, "{out:?}");
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&format!("`{}`", exposed.display()))
            && text.contains("readable by group and others (mode 0644)")
            && text.contains(&format!("chmod 600 {}", exposed.display())),
        "{text}"
    );

    let short = sb.write_private("short-token", "x\n");
    let out = serve(&short);
    assert_eq!(code(&out), 125, "{out:?}");
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&short.display().to_string())
            && text.contains("the token is 1 bytes; a server needs at least 16"),
        "{text}"
    );

    let out = sb
        .berth(["serve", "--listen", "127.0.0.1:0"])
        .env("BERTH_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("$BERTH_TOKEN: the token is 5 bytes"),
        "{out:?}"
    );
}

/// A FIFO as token file does not block `serve`, and a private file of
/// another user (also through a symlink) is refused: whoever owns it
/// chooses the token.
#[test]
fn token_files_that_are_not_this_users_regular_files_are_refused() {
    let sb = Sandbox::new();
    let serve = |token_file: &std::path::Path| {
        let mut child = sb
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
        // A server that blocks on the file never ends by itself: kill it
        // after a generous bound, so the test fails instead of hanging.
        let exited = crate::common::wait_until(std::time::Duration::from_secs(60), || {
            child.try_wait().unwrap().is_some()
        });
        if !exited {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(exited, "serve blocked on `{}`", token_file.display());
        out
    };

    let fifo = sb.files().join("fifo-token");
    let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let out = serve(&fifo);
    assert_eq!(code(&out), 125, "{out:?}");
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&format!("the token file `{}` is a FIFO", fifo.display())),
        "{text}"
    );

    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Only root can give a file to another user.
        return;
    }
    let theirs = sb.write_private("their-token", &format!("{TOKEN}\n"));
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let link = sb.files().join("linked-token");
    std::os::unix::fs::symlink(&theirs, &link).unwrap();
    for path in [&theirs, &link] {
        let out = serve(path);
        assert_eq!(code(&out), 125, "{out:?}");
        let text = stderr(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(&format!("`{}` belongs to uid 65534", path.display()))
                && text.contains(&format!("chown 0 {}", path.display())),
            "{text}"
        );
    }
}

#[test]
fn a_sigkilled_server_leaves_only_what_gc_reaps() {
    use runtime_api::protocol::{CreateSession, ExecRequest, SpawnRequest, StreamLine};
    let sb = Sandbox::new();
    let token_file = sb.write_private("token", TOKEN);
    let (mut server, url) = start_server(&sb, &token_file);
    let client =
        runtime_api::ApiClient::new(&url, &runtime_api::Token::new(TOKEN).unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let created = client
            .create_session(
                &CreateSession {
                    spec: session_core::EnvironmentSpec::new("local", "served"),
                    mode: session_core::Mode::Evaluation,
                    label: Some("killed".into()),
                    assets: Vec::new(),
                    lease_ms: Some(3_600_000),
                },
                None,
            )
            .await
            .unwrap();
        let spawned = client
            .spawn(&created.session, &SpawnRequest::default())
            .await
            .unwrap();
        let request = ExecRequest {
            idempotency_key: "k1".into(),
            base: spawned.changes.checksum,
            command: session_core::runtime::ExecCommand::new("echo kept > file.txt"),
            stdin: None,
            stdin_stream: false,
        };
        let mut stream = client
            .exec(&created.session, &spawned.runtime, &request)
            .await
            .unwrap();
        loop {
            match stream.next_line().await.unwrap() {
                Some(StreamLine::Finished { .. }) => break,
                Some(StreamLine::Error { error }) => panic!("{error:?}"),
                Some(_) => {}
                None => panic!("the stream ended without a result"),
            }
        }
    });
    // The remote session lives in the server's --temp-root.
    let left = sb.session_dirs();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("berth-remote-"), "{left:?}");

    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(sb.session_dirs(), left, "a killed server cannot clean up");

    let out = sb.run(["gc"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("removed") && l.contains(&left[0])),
        "{text}"
    );
    sb.assert_no_session_dirs();
}
