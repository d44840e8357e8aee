//! Values a request may carry but the system cannot take are refused at
//! the door, whole, with the field or member they concern: timeouts too
//! long for a deadline, archive members whose names, link targets or
//! times no file can have, deletions of names no file system holds. The
//! session goes on as if the request had never come.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{TestServer, remote_runtime};
use runtime_api::Error;
use runtime_api::protocol::{CreateSession, Deletion, ExecRequest, SyncHead};
use session_core::runtime::ExecCommand;
use session_core::runtime::wire::WireError;
use session_core::snapshot::EntryKind;

/// How a member of a hand-made archive looks.
enum Member<'a> {
    /// A regular file with this content and raw modification-time field.
    File(&'a str, [u8; 12]),
    /// A symlink to this target.
    Link(&'a str),
}

/// An ordinary modification time, as an octal field.
const SOME_TIME: [u8; 12] = *b"14000000000\0";

/// A modification time of 2^64 - 1 seconds, in base-256.
const ENDLESS_TIME: [u8; 12] = [
    0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

/// An archive of GNU members (long names and link targets in extension
/// headers), written the way a hostile client could.
fn archive(members: &[(&str, Member<'_>)]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut builder = tar::Builder::new(file.reopen().unwrap());
    for (name, member) in members {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match member {
            Member::File(content, mtime) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
                header.as_gnu_mut().unwrap().mtime = *mtime;
                builder
                    .append_data(&mut header, name, content.as_bytes())
                    .unwrap();
            }
            Member::Link(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, name, target).unwrap();
            }
        }
    }
    builder.finish().unwrap();
    file
}

/// The remote workspace's directory, as its commands see it.
async fn workspace_of(
    client: &runtime_api::ApiClient,
    session: &str,
    runtime: &str,
    base: session_core::snapshot::ContentHash,
) -> (PathBuf, session_core::snapshot::ContentHash) {
    let request = ExecRequest {
        idempotency_key: "where".into(),
        base,
        command: ExecCommand::new("pwd"),
        stdin: None,
        stdin_stream: false,
    };
    let stream = client.exec(session, runtime, &request).await.unwrap();
    let (stdout, _, changes) = crate::support::collect(stream).await;
    let path = PathBuf::from(String::from_utf8(stdout).unwrap().trim());
    (path, changes.checksum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_members_and_deletions_are_refused_whole() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let (workspace, base) = workspace_of(&client, &session, &runtime, base).await;
    let long_name = format!("d/{}", "L".repeat(300));
    let long_target = "t/".repeat(2500);
    let attempts: Vec<(&str, tempfile::NamedTempFile, &str)> = vec![
        (
            "a name longer than a file system takes, below a new directory",
            archive(&[
                ("first.txt", Member::File("x", SOME_TIME)),
                (&long_name, Member::File("long", SOME_TIME)),
            ]),
            "300 bytes long, more than the 255",
        ),
        (
            "a symlink target longer than a path",
            archive(&[
                ("first.txt", Member::File("x", SOME_TIME)),
                ("link", Member::Link(&long_target)),
            ]),
            "link target is 5000 bytes long",
        ),
        (
            "a modification time beyond any time_t",
            archive(&[
                ("first.txt", Member::File("x", SOME_TIME)),
                ("late.txt", Member::File("late", ENDLESS_TIME)),
            ]),
            "18446744073709551615 s after 1970",
        ),
    ];
    for (what, archive, words) in &attempts {
        let head = SyncHead {
            base,
            target: base,
            delete: Vec::new(),
        };
        match client.sync(&session, &head, Some(archive.path())).await {
            Err(Error::Status { status: 400, error }) => match &error {
                WireError::PathEscape { reason, .. } => {
                    assert!(reason.contains(words), "{what}: {reason}");
                }
                other => panic!("{what}: {other:?}"),
            },
            other => panic!("{what}: {other:?}"),
        }
        // Nothing of it was written: not the member before, not `d`.
        let left: Vec<_> = std::fs::read_dir(&workspace)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
        assert_eq!(client.workspace(&session).await.unwrap().checksum, base);
    }

    // A deletion of such a name is refused the same way, with the rest of
    // its sync.
    let made = ExecRequest {
        idempotency_key: "make".into(),
        base,
        command: ExecCommand::new("echo kept > kept.txt"),
        stdin: None,
        stdin_stream: false,
    };
    let stream = client.exec(&session, &runtime, &made).await.unwrap();
    let base = crate::support::collect(stream).await.2.checksum;
    let head = SyncHead {
        base,
        target: base,
        delete: vec![
            Deletion {
                path: "kept.txt".into(),
                kind: EntryKind::File,
            },
            Deletion {
                path: long_name.clone(),
                kind: EntryKind::File,
            },
        ],
    };
    match client.sync(&session, &head, None).await {
        Err(Error::Status { status: 400, error }) => {
            assert!(
                matches!(&error, WireError::PathEscape { reason, .. } if reason.contains("longer than 255 bytes")),
                "{error:?}"
            );
        }
        other => panic!("a long deletion: {other:?}"),
    }
    assert!(workspace.join("kept.txt").is_file());

    // The session goes on: its state is what it was, a good sync applies.
    let manifest = client.workspace(&session).await.unwrap();
    assert_eq!(manifest.checksum, base);
    let good = archive(&[("ok.txt", Member::File("ok", SOME_TIME))]);
    let head = SyncHead {
        base,
        target: base,
        delete: Vec::new(),
    };
    let synced = client
        .sync(&session, &head, Some(good.path()))
        .await
        .unwrap();
    assert_ne!(synced.checksum, base);
    assert_eq!(
        client.workspace(&session).await.unwrap().checksum,
        synced.checksum
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("ok.txt")).unwrap(),
        "ok"
    );
    client.delete_session(&session).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_too_long_for_a_deadline_are_refused_with_their_field() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let endless = Duration::from_secs_f64(1e19);
    for (field, command) in [
        (
            "command.wall_timeout",
            ExecCommand::new("echo ran > ran.txt").wall_timeout(endless),
        ),
        (
            "command.idle_timeout",
            ExecCommand::new("echo ran > ran.txt").idle_timeout(endless),
        ),
    ] {
        let request = ExecRequest {
            idempotency_key: field.replace('.', "-"),
            base,
            command,
            stdin: None,
            stdin_stream: false,
        };
        match client.exec(&session, &runtime, &request).await {
            Err(Error::Status { status: 400, error }) => {
                let text = format!("{error:?}");
                assert!(
                    text.contains(&format!("`{field}`")) && text.contains("too long"),
                    "{text}"
                );
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    // Nothing ran, and the session is free for the next command.
    let manifest = client.workspace(&session).await.unwrap();
    assert!(manifest.entries.is_empty(), "{:?}", manifest.entries);
    let request = ExecRequest {
        idempotency_key: "fine".into(),
        base,
        command: ExecCommand::new("echo fine").wall_timeout(Duration::from_secs(999_999_999)),
        stdin: None,
        stdin_stream: false,
    };
    let stream = client.exec(&session, &runtime, &request).await.unwrap();
    let (stdout, result, _) = crate::support::collect(stream).await;
    assert_eq!(stdout, b"fine\n");
    assert_eq!(result.exit_code, 0);
    client.delete_session(&session).await.unwrap();

    // A spec whose limits are as long is refused at session creation.
    for field in ["wall_timeout", "idle_timeout"] {
        let mut spec = crate::support::local_spec();
        match field {
            "wall_timeout" => spec.limits.wall_timeout = Some(endless),
            _ => spec.limits.idle_timeout = Some(endless),
        }
        let request = CreateSession {
            spec,
            mode: session_core::Mode::Evaluation,
            label: None,
            assets: Vec::new(),
            lease_ms: None,
        };
        // Refused where the request's spec is read (its limits are bounded
        // there), naming the field.
        match client.create_session(&request, None).await {
            Err(Error::Status { status: 400, error }) => match error {
                WireError::Spec { field: got, .. } => {
                    assert_eq!(got, format!("limits.{field}"));
                }
                other => {
                    let text = format!("{other:?}");
                    assert!(text.contains(field) && text.contains("too long"), "{text}");
                }
            },
            Err(other) => {
                let text = other.to_string();
                assert!(
                    text.contains(&format!("limits.{field}")) && text.contains("too long"),
                    "{text}"
                );
            }
            Ok(_) => panic!("limits.{field} was accepted"),
        }
    }
    assert!(
        server.remote_dirs().is_empty(),
        "{:?}",
        server.remote_dirs()
    );
}
