//! `berth serve` and `berth run` against it: a command in a `type: api`
//! session runs on the server, and the client's workspace gets its changes.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::Sandbox;

#[test]
fn run_through_a_served_host() {
    let sb = Sandbox::new();
    let token_file = sb.write("token", "a-token-for-this-test-only\n");
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
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("berth serve: listening on ") {
            break url.to_owned();
        }
    };
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
        .env("BERTH_TOKEN", "a-token-for-this-test-only")
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
