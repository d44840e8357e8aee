//! The server's guards: the bearer token, body and archive limits, and
//! path containment of everything a request names.

use std::path::Path;
use std::time::Duration;

use crate::support::{TOKEN, TestServer, raw_request, remote_runtime};
use runtime_api::Error;
use runtime_api::protocol::{AssetSpec, CreateSession, Deletion, ExecRequest, SyncHead};
use runtime_api::server::ServeLimits;
use session_core::runtime::ExecCommand;
use session_core::runtime::wire::WireError;
use session_core::snapshot::EntryKind;

fn exec_request(
    key: &str,
    base: session_core::snapshot::ContentHash,
    command: &str,
) -> ExecRequest {
    ExecRequest {
        idempotency_key: key.into(),
        base,
        command: ExecCommand::new(command).wall_timeout(Duration::from_secs(30)),
        stdin: None,
        stdin_stream: false,
    }
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_right_token_are_refused_and_run_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let sessions_before = server.remote_dirs();

    let exec_path = format!("/v1/sessions/{session}/runtimes/{runtime}/exec");
    let exec_body = serde_json::to_vec(&exec_request("k1", base, "echo ran > marker.txt")).unwrap();
    let create_body = serde_json::to_vec(&CreateSession {
        spec: crate::support::local_spec(),
        mode: session_core::Mode::Evaluation,
        label: None,
        assets: Vec::new(),
        lease_ms: None,
    })
    .unwrap();
    let wrong = [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(format!("bearer {TOKEN}")),
        Some("Bearer ".to_owned()),
    ];
    for auth in &wrong {
        let headers: Vec<(&str, &str)> = auth
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        for (method, path, body) in [
            ("GET", "/v1/health", &[][..]),
            ("POST", exec_path.as_str(), &exec_body[..]),
            ("POST", "/v1/sessions", &create_body[..]),
            ("DELETE", &format!("/v1/sessions/{session}"), &[][..]),
            ("GET", "/v1/nowhere", &[][..]),
        ] {
            let (status, body) = raw_request(server.addr, method, path, &headers, body).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            let error: WireError = serde_json::from_slice(&body).unwrap();
            assert!(matches!(error, WireError::Backend { .. }), "{error:?}");
        }
    }
    // Nothing ran, nothing was created, nothing was closed.
    let manifest = client.workspace(&session).await.unwrap();
    assert!(manifest.entries.is_empty(), "{:?}", manifest.entries);
    assert_eq!(server.remote_dirs(), sessions_before);

    // The right token works, through the raw path too.
    let (status, _) = raw_request(
        server.addr,
        "GET",
        "/v1/health",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        &[],
    )
    .await;
    assert_eq!(status, 200);

    // A client with a wrong token gets the same answer as an error value.
    let intruder =
        runtime_api::ApiClient::new(&server.url(), &runtime_api::Token::new("nope").unwrap())
            .unwrap();
    match intruder.health().await {
        Err(Error::Status { status: 401, .. }) => {}
        other => panic!("health with a wrong token: {other:?}"),
    }
    client.delete_session(&session).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_archives_are_413() {
    let server = TestServer::start_with(ServeLimits {
        max_body_bytes: 4096,
        max_archive_bytes: 64 << 10,
        ..crate::support::test_limits()
    })
    .await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];

    // A declared length over the limit is refused before it is read.
    let big = vec![b' '; 10_000];
    let (status, body) = raw_request(server.addr, "POST", "/v1/sessions", &headers, &big).await;
    assert_eq!(status, 413);
    let error: WireError = serde_json::from_slice(&body).unwrap();
    assert!(format!("{error:?}").contains("4096"), "{error:?}");

    // Stdin travels in the JSON body: too much of it is refused, and the
    // command does not run.
    let mut request = exec_request("big-stdin", base, "cat > got-stdin.txt");
    request.stdin = Some(vec![b'x'; 8192]);
    match client.exec(&session, &runtime, &request).await {
        Err(Error::Status { status: 413, .. }) => {}
        other => panic!("oversized exec: {other:?}"),
    }

    // An archive over its limit is refused and nothing of it is written.
    let archive = tempfile::NamedTempFile::new().unwrap();
    {
        let mut builder = tar::Builder::new(archive.reopen().unwrap());
        let data = vec![b'y'; 100 << 10];
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "big.bin", &data[..])
            .unwrap();
        builder.finish().unwrap();
    }
    let head = SyncHead {
        base,
        target: base,
        delete: Vec::new(),
    };
    match client.sync(&session, &head, Some(archive.path())).await {
        Err(Error::Status { status: 413, .. }) => {}
        other => panic!("oversized archive: {other:?}"),
    }
    let manifest = client.workspace(&session).await.unwrap();
    assert!(manifest.entries.is_empty(), "{:?}", manifest.entries);
    assert_eq!(manifest.checksum, base);

    // Through the api backend: a workspace file larger than the archive
    // limit makes the command fail to start, with the reason.
    let spec = crate::support::api_spec(&server.url());
    let mut local = session_core::session::Session::builder(spec)
        .registry(crate::support::client_registry())
        .prepare()
        .await
        .unwrap();
    let rt = local
        .spawn(session_core::session::SpawnOptions::default())
        .await
        .unwrap();
    let root = local.workspace_path().unwrap();
    std::fs::write(root.join("huge.bin"), vec![0u8; 200 << 10]).unwrap();
    let err = rt.execute(ExecCommand::new("true")).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    std::fs::remove_file(root.join("huge.bin")).unwrap();
    let err = rt
        .execute(ExecCommand::new("cat").stdin(vec![b'z'; 8192]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    assert!(
        rt.execute(ExecCommand::new("true"))
            .await
            .unwrap()
            .success()
    );
    local.close().await.unwrap();
    client.delete_session(&session).await.unwrap();
}

/// A tar archive whose members are written with raw names, as an attacker
/// would.
fn evil_archive(members: &[(&str, EntryKind, &str)]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut builder = tar::Builder::new(file.reopen().unwrap());
    for (name, kind, content) in members {
        let mut header = tar::Header::new_old();
        let bytes = name.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        header.set_mode(0o644);
        match kind {
            EntryKind::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.as_old_mut().linkname[..content.len()].copy_from_slice(content.as_bytes());
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, &[][..]).unwrap();
            }
            _ => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
                header.set_cksum();
                builder.append(&header, content.as_bytes()).unwrap();
            }
        }
    }
    builder.finish().unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_from_a_request_escapes_the_remote_workspace() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    // Where the remote workspace is, from inside it.
    let pwd = client
        .exec(&session, &runtime, &exec_request("pwd", base, "pwd"))
        .await
        .unwrap();
    let (stdout, _, changes) = crate::support::collect(pwd).await;
    let base = changes.checksum;
    let workspace = std::path::PathBuf::from(String::from_utf8(stdout).unwrap().trim());
    let session_dir = workspace.parent().unwrap().to_path_buf();
    let marker = session_dir.join("berth-session.json");
    assert!(marker.is_file(), "{}", marker.display());
    let outside = tempfile::tempdir().unwrap();
    let absolute = outside.path().join("absolute.txt");

    let attempts: Vec<(&str, tempfile::NamedTempFile)> = vec![
        (
            "a climbing member",
            evil_archive(&[("../escaped.txt", EntryKind::File, "out")]),
        ),
        (
            "a climbing member in the middle",
            evil_archive(&[
                ("fine.txt", EntryKind::File, "ok"),
                ("a/../../escaped.txt", EntryKind::File, "out"),
            ]),
        ),
        (
            "an absolute member",
            evil_archive(&[(absolute.to_str().unwrap(), EntryKind::File, "out")]),
        ),
        (
            "a member below a symlink of the archive",
            evil_archive(&[
                ("link", EntryKind::Symlink, outside.path().to_str().unwrap()),
                ("link/escaped.txt", EntryKind::File, "out"),
            ]),
        ),
    ];
    for (what, archive) in &attempts {
        let head = SyncHead {
            base,
            target: base,
            delete: Vec::new(),
        };
        match client.sync(&session, &head, Some(archive.path())).await {
            Err(Error::Status { status: 400, error }) => {
                assert!(
                    matches!(error, WireError::PathEscape { .. }),
                    "{what}: {error:?}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    for (what, path) in [
        ("a climbing deletion", "../berth-session.json"),
        ("an absolute deletion", marker.to_str().unwrap()),
        ("an unnormalised deletion", "x/../../berth-session.json"),
    ] {
        let head = SyncHead {
            base,
            target: base,
            delete: vec![Deletion {
                path: path.into(),
                kind: EntryKind::File,
            }],
        };
        match client.sync(&session, &head, None).await {
            Err(Error::Status { status: 400, error }) => {
                assert!(
                    matches!(error, WireError::PathEscape { .. }),
                    "{what}: {error:?}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // A spill directory is a path too: the server writes to none.
    let mut request = exec_request("spill", base, "echo hi");
    request.command.spill_dir = Some(outside.path().to_path_buf());
    match client.exec(&session, &runtime, &request).await {
        Err(Error::Status { status: 400, error }) => {
            assert!(matches!(error, WireError::PathEscape { .. }), "{error:?}");
        }
        other => panic!("spill_dir: {other:?}"),
    }
    // Nothing was written outside the workspace, nothing inside either,
    // and the marker beside it is intact.
    assert!(marker.is_file());
    assert!(!absolute.exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    let escaped: Vec<_> = all_files(server.work_root.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "escaped.txt"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    let manifest = client.workspace(&session).await.unwrap();
    assert_eq!(manifest.checksum, base);
    assert!(manifest.entries.is_empty(), "{:?}", manifest.entries);

    // Asset archives at session creation: a member outside every declared
    // asset is refused, and so is a climbing save path.
    let archive = evil_archive(&[
        ("data.txt", EntryKind::File, "asset"),
        ("extra.txt", EntryKind::File, "not declared"),
    ]);
    let request = |save_path: &str| CreateSession {
        spec: crate::support::local_spec(),
        mode: session_core::Mode::Agent,
        label: None,
        assets: vec![AssetSpec {
            name: "data".into(),
            save_path: save_path.into(),
            is_dir: false,
        }],
        lease_ms: None,
    };
    let before = server.remote_dirs().len();
    for (save_path, archive) in [("data.txt", &archive), ("../data.txt", &archive)] {
        match client
            .create_session(&request(save_path), Some(archive.path()))
            .await
        {
            Err(Error::Status { status: 400, .. }) => {}
            other => panic!("assets at {save_path}: {other:?}"),
        }
    }
    assert_eq!(
        server.remote_dirs().len(),
        before,
        "a refused session left its directory"
    );
    client.delete_session(&session).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_bodies_are_refused_as_bad_requests() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, _) = remote_runtime(&client, None).await;
    let before = server.remote_dirs();
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    for open in ["[", "{\"a\":"] {
        let deep = open.repeat(200 << 10);
        for (path, body) in [
            ("/v1/sessions".to_owned(), format!("{{\"spec\": {deep}")),
            (
                format!("/v1/sessions/{session}/runtimes/{runtime}/exec"),
                format!("{{\"idempotency_key\": \"deep\", \"command\": {deep}"),
            ),
            (
                format!("/v1/sessions/{session}/runtimes"),
                format!("{{\"env\": {deep}"),
            ),
        ] {
            let (status, answer) =
                raw_request(server.addr, "POST", &path, &headers, body.as_bytes()).await;
            assert_eq!(status, 400, "{path}");
            let error = format!(
                "{:?}",
                serde_json::from_slice::<WireError>(&answer).unwrap()
            );
            // Refused where the decoder's depth bound is crossed, or
            // sooner when a value of another type was expected there.
            assert!(error.contains("invalid request body"), "{path}: {error}");
            if path == "/v1/sessions" {
                assert!(error.contains("recursion limit exceeded"), "{error}");
            }
        }
    }
    assert_eq!(server.remote_dirs(), before);
    client.delete_session(&session).await.unwrap();
}
