//! The `api` client against a server that does not play by the protocol:
//! a change archive larger than its change set, members no file can be
//! written from, event lines that are not lines of the protocol, streams
//! that break again every time they are reopened. Each ends in a clear
//! failure, bounded in bytes and attempts, with nothing written to the
//! local workspace.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use runtime_api::protocol::{
    ChangeSet, SessionCreated, SizeLimits, Spawned, StreamLine, WorkspaceState,
};
use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};
use session_core::snapshot::{ContentHash, EntryKind, ManifestEntry, SnapshotManifest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the fake server answers to one request.
enum Answer {
    /// A status and a JSON body.
    Json(u16, Vec<u8>),
    /// `204 No Content`.
    Empty,
    /// An event stream of these lines, then the end of the connection.
    Lines(Vec<bytes::Bytes>),
    /// A tar body of these bytes.
    Tar(Vec<u8>),
    /// A tar body that never ends: zeros until the client hangs up (or
    /// 1 GiB); what was written is added to the counter.
    Endless(Arc<AtomicU64>),
}

type Handler = dyn Fn(&str, &str) -> Answer + Send + Sync;

/// A server on a loopback port that answers each request (one per
/// connection) as `handler` says, and remembers every `METHOD path`.
struct FakeServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(handler: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let seen = Arc::clone(&seen);
                tokio::spawn(answer_one(stream, handler, seen));
            }
        });
        FakeServer {
            url,
            requests,
            task,
        }
    }

    /// How many requests were `METHOD path` with a path ending in `tail`.
    fn count(&self, method: &str, tail: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(method) && r.ends_with(tail))
            .count()
    }
}

async fn answer_one(
    mut stream: tokio::net::TcpStream,
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if stream.read_exact(&mut body).await.is_err() {
        return;
    }
    seen.lock().unwrap().push(format!("{method} {path}"));
    let answer = handler(&method, &path);
    let head = |status: u16, content_type: &str, length: Option<usize>| {
        let length = length.map_or(String::new(), |n| format!("content-length: {n}\r\n"));
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n{length}connection: close\r\n\r\n"
        )
    };
    let _ = match answer {
        Answer::Json(status, body) => {
            let mut out = head(status, "application/json", Some(body.len())).into_bytes();
            out.extend_from_slice(&body);
            stream.write_all(&out).await
        }
        Answer::Empty => {
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
        }
        Answer::Lines(lines) => {
            let mut out = head(200, "application/x-ndjson", None).into_bytes();
            for line in lines {
                out.extend_from_slice(&line);
            }
            stream.write_all(&out).await
        }
        Answer::Tar(bytes) => {
            let mut out = head(200, "application/x-tar", Some(bytes.len())).into_bytes();
            out.extend_from_slice(&bytes);
            stream.write_all(&out).await
        }
        Answer::Endless(written) => {
            let _ = stream
                .write_all(head(200, "application/x-tar", None).as_bytes())
                .await;
            let chunk = vec![0u8; 64 << 10];
            while written.load(Ordering::SeqCst) < 1 << 30 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            Ok(())
        }
    };
    let _ = stream.shutdown().await;
}

fn json<T: serde::Serialize>(status: u16, value: &T) -> Answer {
    Answer::Json(status, serde_json::to_vec(value).unwrap())
}

fn empty_checksum() -> ContentHash {
    SnapshotManifest::new(Vec::new(), Vec::new()).checksum()
}

/// The answers of a server whose runtime's setup changed `changes`, for
/// everything but the change archive and commands.
fn session_answers(method: &str, path: &str, changes: &ChangeSet) -> Option<Answer> {
    let workspace = WorkspaceState {
        checksum: empty_checksum(),
        entries: Vec::new(),
    };
    Some(match (method, path) {
        ("POST", "/v1/sessions") => json(
            201,
            &SessionCreated {
                session: "s1".into(),
                lease_ms: 3_600_000,
                workspace,
                limits: SizeLimits {
                    max_body_bytes: 16 << 20,
                    max_archive_bytes: 1 << 30,
                },
            },
        ),
        ("GET", "/v1/sessions/s1/workspace") => json(200, &workspace),
        ("POST", "/v1/sessions/s1/runtimes") => json(
            201,
            &Spawned {
                runtime: "r1".into(),
                backend: "local".into(),
                capabilities: runtime_api::ApiBackend::capabilities(),
                asset_paths: Default::default(),
                setup: Vec::new(),
                changes: changes.clone(),
            },
        ),
        ("DELETE", _) => Answer::Empty,
        ("POST", p) if p.ends_with("/lease") => {
            json(200, &serde_json::json!({"lease_ms": 3_600_000}))
        }
        ("POST", p) if p.ends_with("/cancel") => Answer::Empty,
        _ => return None,
    })
}

/// A change set with one file created.
fn one_file(path: &str, content: &[u8]) -> ChangeSet {
    let entry = ManifestEntry {
        path: path.into(),
        kind: EntryKind::File,
        mode: 0o644,
        size: content.len() as u64,
        hash: ContentHash::of(content),
        link_target: None,
    };
    ChangeSet {
        id: Some("c1".into()),
        base: empty_checksum(),
        checksum: SnapshotManifest::new(vec![entry.clone()], Vec::new()).checksum(),
        upserts: vec![entry],
        deletes: Vec::new(),
    }
}

/// A local session of the `api` backend pointed at `url`.
async fn session_at(url: &str) -> (tempfile::TempDir, Session) {
    let temp = tempfile::tempdir().unwrap();
    let session = Session::builder(crate::support::api_spec(url))
        .registry(crate::support::client_registry())
        .temp_root(temp.path())
        .prepare()
        .await
        .unwrap();
    (temp, session)
}

/// What the local workspace holds.
fn local_entries(session: &Session) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(session.workspace_path().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_archive_longer_than_announced_is_cut_off() {
    let written = Arc::new(AtomicU64::new(0));
    let changes = one_file("a.txt", b"abc");
    let server = FakeServer::start({
        let written = Arc::clone(&written);
        move |method, path| {
            if path == "/v1/sessions/s1/changes/c1" {
                return Answer::Endless(Arc::clone(&written));
            }
            session_answers(method, path, &changes).unwrap_or(Answer::Json(404, b"{}".to_vec()))
        }
    })
    .await;
    let (_temp, mut session) = session_at(&server.url).await;
    let err = session.spawn(SpawnOptions::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the change archive is larger than the") && text.contains("announced"),
        "{text}"
    );
    // The client hung up soon after the bound: what the server got out is
    // the bound plus what the sockets buffer, not the gigabyte it offered.
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 64 << 20, "the server wrote {sent} bytes");
    assert!(local_entries(&session).is_empty());
    assert_eq!(server.count("DELETE", "/v1/sessions/s1"), 1);
    session.close().await.unwrap();
}

/// A tar archive of one file whose header says what `edit` makes it say.
fn archive_of(path: &str, content: &[u8], edit: impl FnOnce(&mut tar::Header)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(content.len() as u64);
    edit(&mut header);
    builder.append_data(&mut header, path, content).unwrap();
    builder.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_archives_no_file_can_be_written_from_are_refused_whole() {
    let long = format!("d/{}", "L".repeat(300));
    let cases = [
        (
            "a time beyond any time_t",
            "late.txt".to_owned(),
            archive_of("late.txt", b"abc", |h| {
                h.as_gnu_mut().unwrap().mtime = [
                    0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ];
            }),
            "beyond any time a file can have",
        ),
        (
            "a name longer than a file system takes",
            long.clone(),
            archive_of(&long, b"abc", |_| {}),
            "more than the 255 a file system takes",
        ),
    ];
    for (what, path, archive, words) in cases {
        let changes = one_file(&path, b"abc");
        let server = FakeServer::start(move |method, request| {
            if request == "/v1/sessions/s1/changes/c1" {
                return Answer::Tar(archive.clone());
            }
            session_answers(method, request, &changes).unwrap_or(Answer::Json(404, b"{}".to_vec()))
        })
        .await;
        let (_temp, mut session) = session_at(&server.url).await;
        let err = session.spawn(SpawnOptions::default()).await.unwrap_err();
        match &err {
            session_core::Error::UnsafeArchiveMember { reason, .. } => {
                assert!(reason.contains(words), "{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(local_entries(&session).is_empty(), "{what}");
        session.close().await.unwrap();
    }
}

/// A server whose every command stream is `lines`; returns it with the
/// result of one command run through it.
async fn run_against(lines: Vec<bytes::Bytes>) -> (FakeServer, session_core::runtime::ExecResult) {
    let quiet = ChangeSet {
        id: None,
        base: empty_checksum(),
        checksum: empty_checksum(),
        upserts: Vec::new(),
        deletes: Vec::new(),
    };
    let server = FakeServer::start(move |method, path| {
        if path.ends_with("/exec") {
            return Answer::Lines(lines.clone());
        }
        session_answers(method, path, &quiet).unwrap_or(Answer::Json(404, b"{}".to_vec()))
    })
    .await;
    let (_temp, mut session) = session_at(&server.url).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        rt.execute(ExecCommand::new("true")),
    )
    .await
    .expect("the command ended within the bound")
    .unwrap();
    session.close().await.unwrap();
    (server, result)
}

fn started() -> bytes::Bytes {
    StreamLine::Started {
        exec: "k".into(),
        attached: false,
        heartbeat_ms: 60_000,
    }
    .to_line()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_outside_the_protocol_is_not_asked_for_again() {
    let (server, result) = run_against(vec![
        started(),
        bytes::Bytes::from_static(b"{\"type\":\"not-a-line-type\"}\n"),
    ])
    .await;
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    let stderr = result.stderr_lossy();
    assert!(
        stderr.contains("lost the remote command") && stderr.contains("event line"),
        "{stderr}"
    );
    assert_eq!(server.count("POST", "/exec"), 1);
    assert_eq!(server.count("POST", "/cancel"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_every_time_it_is_reopened_is_given_up() {
    // Every attempt reaches the server, which starts the stream and cuts it.
    let (server, result) = run_against(vec![started()]).await;
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    let stderr = result.stderr_lossy();
    assert!(stderr.contains("reopened 32 times"), "{stderr}");
    assert_eq!(server.count("POST", "/exec"), 33);
    assert_eq!(server.count("POST", "/cancel"), 1);
}
