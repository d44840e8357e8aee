//! What one remote session holds cannot hurt the server or the client: a
//! deep tree is reported and removed with its session while the server
//! goes on serving, a push whose archive is not one tree is refused whole
//! and leaves the server's state intact, and files pulled from the server
//! carry no set-id bits.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::support::{TestServer, api_spec, client_registry, eventually, remote_runtime};
use runtime_api::Error;
use runtime_api::protocol::SyncHead;
use session_core::runtime::wire::WireError;
use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};
use session_core::snapshot::{ContentHash, EntryKind, ManifestEntry, SnapshotManifest};
use session_core::spec::Mode;

/// Makes a chain of `levels` directories named `d` in the current
/// directory, through descriptors, with a file at the bottom.
fn deep_tree_command(levels: usize) -> String {
    format!(
        "python3 -c '\nimport os\nfd = os.open(\".\", os.O_RDONLY)\nfor _ in range({levels}):\n    \
         os.mkdir(\"d\", dir_fd=fd)\n    sub = os.open(\"d\", os.O_RDONLY, dir_fd=fd)\n    \
         os.close(fd)\n    fd = sub\nos.close(os.open(\"leaf\", os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n'"
    )
}

async fn api_session(server: &TestServer, mode: Mode) -> Session {
    Session::builder(api_spec(&server.url()))
        .registry(client_registry())
        .mode(mode)
        .prepare()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holding_a_deep_tree_is_closed_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let mut deep = api_session(&server, Mode::Evaluation).await;
    let runtime = deep.spawn(SpawnOptions::default()).await.unwrap();
    let result = runtime
        .execute(ExecCommand::new(deep_tree_command(30_000)).wall_timeout(Duration::from_secs(120)))
        .await
        .unwrap();
    // The command ran, but what it changed cannot be collected (the scan
    // stops at the depth bound): the client reports the result as lost,
    // saying why on the command's stderr.
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    // The remote session's area is the server user's alone.
    for dir in server.remote_dirs() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}: {mode:o}", dir.display());
    }
    let said = result.stderr_lossy();
    assert!(
        said.starts_with("berth: lost the remote command") && said.contains("levels"),
        "{said}"
    );
    // Closing removes the remote session, deep tree included.
    deep.close().await.unwrap();
    eventually("the server removed the deep session", || {
        server.remote_dirs().is_empty()
    })
    .await;
    assert!(!server.task.is_finished(), "the server is still running");

    // And it serves the next session as before.
    let mut next = api_session(&server, Mode::Evaluation).await;
    let runtime = next.spawn(SpawnOptions::default()).await.unwrap();
    let result = runtime
        .execute(ExecCommand::new("echo still here > f; cat f"))
        .await
        .unwrap();
    assert_eq!(result.stdout_lossy(), "still here\n");
    next.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_pulled_from_the_server_carry_no_set_id_bits() {
    let server = TestServer::start().await;
    let out = tempfile::tempdir().unwrap();
    let mut session = api_session(&server, Mode::Agent).await;
    let runtime = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = runtime
        .execute(ExecCommand::new(
            "cp /bin/sh s && chmod 4755 s && mkdir t && chmod 1777 t && stat -c %a s t",
        ))
        .await
        .unwrap();
    assert_eq!(
        result.stdout_lossy(),
        "4755\n1777\n",
        "the server's own copy"
    );
    let workspace = session.workspace_path().unwrap();
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    for (name, mode) in [("s", 0o755), ("t", 0o777)] {
        let meta = std::fs::symlink_metadata(workspace.join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{name}");
        assert_eq!(meta.uid(), me);
    }
    let checkpoint = session.finish_checkpoint(out.path()).await.unwrap();
    let s = checkpoint.snapshot.manifest().get("s").unwrap();
    assert_eq!(s.mode, 0o755);
    let meta = std::fs::symlink_metadata(out.path().join("s")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    session.close().await.unwrap();
}

/// A tar archive written member by member, as a hostile client would.
fn raw_archive(members: &[(&str, tar::EntryType)]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut builder = tar::Builder::new(file.reopen().unwrap());
    for (name, kind) in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        let content: &[u8] = if *kind == tar::EntryType::Regular {
            b"x"
        } else {
            b""
        };
        header.set_size(content.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, name, content).unwrap();
    }
    builder.finish().unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_is_not_one_tree_is_refused_and_the_next_sync_works() {
    use tar::EntryType::{Directory, Regular};
    let server = TestServer::start().await;
    let client = server.client();
    let (session, _runtime, base) = remote_runtime(&client, None).await;
    for (what, members) in [
        ("a path twice", vec![("d", Regular), ("d", Regular)]),
        (
            "file d and directory d",
            vec![("d", Regular), ("d/", Directory)],
        ),
        ("file d and d/x", vec![("d", Regular), ("d/x", Regular)]),
    ] {
        let archive = raw_archive(&members);
        let head = SyncHead {
            base,
            target: base,
            delete: Vec::new(),
        };
        match client.sync(&session, &head, Some(archive.path())).await {
            Err(Error::Status { status: 400, error }) => match error {
                WireError::PathEscape { path, reason } => {
                    assert!(path.starts_with('d'), "{what}: {path}");
                    assert!(
                        reason.contains("more than once") || reason.contains("lies below"),
                        "{what}: {reason}"
                    );
                }
                other => panic!("{what}: {other:?}"),
            },
            other => panic!("{what}: {other:?}"),
        }
        let manifest = client.workspace(&session).await.unwrap();
        assert_eq!(
            manifest.checksum, base,
            "{what}: the server's state is intact"
        );
    }
    // The next sync from the same base is applied: nothing was corrupted.
    let archive = raw_archive(&[("d", Regular)]);
    let entry = ManifestEntry {
        path: "d".into(),
        kind: EntryKind::File,
        mode: 0o644,
        size: 1,
        hash: ContentHash::of(b"x"),
        link_target: None,
    };
    let target = SnapshotManifest::new(vec![entry.clone()], Vec::new()).checksum();
    let head = SyncHead {
        base,
        target,
        delete: Vec::new(),
    };
    let synced = client
        .sync(&session, &head, Some(archive.path()))
        .await
        .unwrap();
    assert_eq!(synced.checksum, target);
    let manifest = client.workspace(&session).await.unwrap();
    assert_eq!(manifest.entries, [entry]);
    client.delete_session(&session).await.unwrap();
}
