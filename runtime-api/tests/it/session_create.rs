//! Creating api runtimes: what the spec must say, what the server must
//! serve, what is refused, and how a remote workspace that drifted from
//! the client's view is brought back in sync.

use std::path::PathBuf;

use crate::support::TestServer;
use runtime_api::protocol::SyncHead;
use session_core::runtime::{ExecCommand, Mount};
use session_core::session::{Session, SpawnOptions};
use session_core::{EnvironmentSpec, Error};

async fn session_for(spec: EnvironmentSpec) -> Session {
    Session::builder(spec)
        .registry(crate::support::client_registry())
        .prepare()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_must_serve_the_remote_type() {
    let server = TestServer::start().await;
    let spec = EnvironmentSpec::from_yaml_str(
        &format!(
            "type: api\nname: t\napi:\n  url: {}\n  remote: {{type: nowhere, name: r}}\n",
            server.url()
        ),
        "<test>",
    )
    .unwrap();
    let mut session = session_for(spec).await;
    match session.spawn(SpawnOptions::default()).await {
        Err(Error::UnknownBackend {
            requested,
            registered,
        }) => {
            assert_eq!(requested, "nowhere");
            assert!(registered.contains("local"), "{registered}");
        }
        other => panic!("{other:?}"),
    }
    session.close().await.unwrap();
    assert!(server.remote_dirs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_blocks_and_unsupported_options_are_refused() {
    let server = TestServer::start().await;
    for (block, field) in [
        ("api: {remote: {type: local, name: r}}", "api.url"),
        (
            "api: {url: 'https://example.invalid', remote: {type: local, name: r}}",
            "api.url",
        ),
        ("api: {url: 'http://127.0.0.1:1'}", "api.remote"),
        (
            "api: {url: 'http://127.0.0.1:1', lease: -1, remote: {type: local, name: r}}",
            "api.lease",
        ),
        // Too long to be a duration at all: a spec error, not a panic.
        (
            "api: {url: 'http://127.0.0.1:1', lease: 1e300, remote: {type: local, name: r}}",
            "api.lease",
        ),
        (
            "api: {url: 'http://127.0.0.1:1', lease: 2e9, remote: {type: local, name: r}}",
            "api.lease",
        ),
        (
            "api: {url: 'http://127.0.0.1:1', remote: {type: local, name: r, bogus: 1}}",
            "api",
        ),
    ] {
        let spec = EnvironmentSpec::from_yaml_str(&format!("type: api\nname: t\n{block}\n"), "<t>")
            .unwrap();
        let mut session = session_for(spec).await;
        match session.spawn(SpawnOptions::default()).await {
            Err(Error::Spec {
                field: got,
                message,
                ..
            }) => {
                assert!(got.starts_with(field), "{block}: {got}");
                if block.contains("e300") || block.contains("2e9") {
                    assert!(message.contains("seconds is too long"), "{message}");
                }
            }
            other => panic!("{block}: {other:?}"),
        }
        session.close().await.unwrap();
    }
    // Mounts name this machine's paths: refused before anything is created.
    let mut session = session_for(crate::support::api_spec(&server.url())).await;
    let spawned = session
        .spawn(SpawnOptions {
            mounts: vec![Mount {
                source: PathBuf::from("/tmp"),
                target: PathBuf::from("/mnt"),
                read_only: true,
            }],
            ..SpawnOptions::default()
        })
        .await;
    assert!(spawned.unwrap_err().to_string().contains("mounts"));
    // So is a remote spec that would have the server write archives where
    // it says.
    let spec = EnvironmentSpec::from_yaml_str(
        &format!(
            "type: api\nname: t\napi:\n  url: {}\n  remote:\n    type: local\n    name: r\n    snapshot: {{archive_save_dir: /tmp/elsewhere}}\n",
            server.url()
        ),
        "<test>",
    )
    .unwrap();
    let mut other = session_for(spec).await;
    let err = other.spawn(SpawnOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("archive_save_dir"), "{err}");
    other.close().await.unwrap();
    // And so is a relay to yet another server.
    let spec = EnvironmentSpec::from_yaml_str(
        &format!(
            "type: api\nname: t\napi:\n  url: {url}\n  remote:\n    type: api\n    name: r\n    api: {{url: {url}, remote: {{type: local, name: r}}}}\n",
            url = server.url()
        ),
        "<test>",
    )
    .unwrap();
    let mut relay = session_for(spec).await;
    let err = relay.spawn(SpawnOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("relay"), "{err}");
    relay.close().await.unwrap();
    session.close().await.unwrap();
    assert!(server.remote_dirs().is_empty());
}

/// The id of the only remote session, from its marker on the server.
fn only_remote_session(server: &TestServer) -> String {
    let dirs = server.remote_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let sessions = dirs[0].join("sessions");
    let dir = std::fs::read_dir(&sessions)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("berth-session.json")).unwrap())
            .unwrap();
    marker["session_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_remote_workspace_is_brought_back_in_sync() {
    let server = TestServer::start().await;
    let mut session = session_for(crate::support::api_spec(&server.url())).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let local = session.workspace_path().unwrap();
    std::fs::write(local.join("mine.txt"), "local\n").unwrap();
    assert!(
        rt.execute(ExecCommand::new("true"))
            .await
            .unwrap()
            .success()
    );

    // Another client changes the remote workspace behind the runtime's
    // back: it adds a file and removes the runtime's.
    let remote = only_remote_session(&server);
    let other = server.client();
    let state = other.workspace(&remote).await.unwrap();
    let archive = tempfile::NamedTempFile::new().unwrap();
    {
        let mut builder = tar::Builder::new(archive.reopen().unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(6);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "intruder.txt", &b"other\n"[..])
            .unwrap();
        builder.finish().unwrap();
    }
    let synced = other
        .sync(
            &remote,
            &SyncHead {
                base: state.checksum,
                target: state.checksum,
                delete: vec![runtime_api::protocol::Deletion {
                    path: "mine.txt".into(),
                    kind: session_core::snapshot::EntryKind::File,
                }],
            },
            Some(archive.path()),
        )
        .await
        .unwrap();
    assert_ne!(synced.checksum, state.checksum);

    // The runtime's next command is refused for its stale base, learns the
    // remote state and pushes the local one again: the command sees the
    // local workspace, as a local run would.
    let listing = rt
        .execute(ExecCommand::new("ls; cat mine.txt"))
        .await
        .unwrap();
    assert_eq!(listing.stdout_lossy(), "mine.txt\nlocal\n");
    session.close().await.unwrap();
}
