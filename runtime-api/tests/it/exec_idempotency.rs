//! A retried execution (same idempotency key) after a dropped connection
//! joins the first run: the command runs once, and every retry gets the
//! first run's outcome.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{TestServer, collect, remote_runtime};
use runtime_api::Error;
use runtime_api::protocol::{ExecRequest, StreamLine};
use session_core::runtime::{ExecCommand, ExecStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_cut_connection_never_runs_the_command_twice() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    // The command records each run, tells where it runs, then waits for a
    // file only the test creates.
    let request = ExecRequest {
        idempotency_key: "retry-me".into(),
        base,
        command: ExecCommand::new(
            "echo run >> runs.txt; pwd; while [ ! -e go ]; do sleep 0.02; done; echo done",
        )
        .wall_timeout(Duration::from_secs(60)),
        stdin: None,
        stdin_stream: false,
    };
    let mut first = client.exec(&session, &runtime, &request).await.unwrap();
    let workspace = loop {
        match first.next_line().await.unwrap() {
            Some(StreamLine::Stdout { data }) => {
                break PathBuf::from(String::from_utf8(data).unwrap().trim());
            }
            Some(StreamLine::Started {
                attached: false, ..
            }) => {}
            other => panic!("before the first output: {other:?}"),
        }
    };
    // Cut the connection mid-command: the stream (and its connection) is
    // dropped while the command waits.
    drop(first);

    // Retry with the same key while the command still runs: it joins.
    let mut retry = client.exec(&session, &runtime, &request).await.unwrap();
    match retry.next_line().await.unwrap() {
        Some(StreamLine::Started { attached: true, .. }) => {}
        other => panic!("the retry did not join the first run: {other:?}"),
    }
    std::fs::write(workspace.join("go"), "").unwrap();
    let (stdout, joined, changes) = collect(retry).await;
    assert_eq!(joined.status, ExecStatus::Exited);
    assert_eq!(joined.exit_code, 0);
    assert_eq!(
        String::from_utf8(stdout).unwrap(),
        format!("{}\ndone\n", workspace.display())
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("runs.txt")).unwrap(),
        "run\n",
        "the command ran more than once"
    );
    assert!(changes.upserts.iter().any(|e| e.path == "runs.txt"));

    // A retry after the end gets the very same outcome (the same result,
    // timings included) and still runs nothing.
    let again = client.exec(&session, &runtime, &request).await.unwrap();
    let (_, late, late_changes) = collect(again).await;
    assert_eq!(late, joined);
    assert_eq!(late_changes, changes);
    assert_eq!(
        std::fs::read_to_string(workspace.join("runs.txt")).unwrap(),
        "run\n"
    );

    // The key names that request only.
    let other = ExecRequest {
        command: ExecCommand::new("echo run >> runs.txt"),
        ..request.clone()
    };
    match client.exec(&session, &runtime, &other).await {
        Err(Error::Status { status: 422, .. }) => {}
        other => panic!("a reused key with another command: {other:?}"),
    }

    // A fresh key runs again, from the workspace the server holds now.
    let next = ExecRequest {
        idempotency_key: "next".into(),
        base: changes.checksum,
        command: ExecCommand::new("cat runs.txt"),
        stdin: None,
        stdin_stream: false,
    };
    let (stdout, result, _) = collect(client.exec(&session, &runtime, &next).await.unwrap()).await;
    assert_eq!(result.status, ExecStatus::Exited);
    assert_eq!(stdout, b"run\n");
    client.delete_session(&session).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_before_any_answer_joins_too() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let request = ExecRequest {
        idempotency_key: "early".into(),
        base,
        command: ExecCommand::new("echo run >> runs.txt; echo out"),
        stdin: None,
        stdin_stream: false,
    };
    // The request future is dropped as soon as it was sent, before the
    // answer is read.
    let attempt = client.exec(&session, &runtime, &request);
    let _ = tokio::time::timeout(Duration::from_millis(1), attempt).await;
    let (_, result, changes) =
        collect(client.exec(&session, &runtime, &request).await.unwrap()).await;
    assert_eq!(result.status, ExecStatus::Exited);
    let manifest = client.workspace(&session).await.unwrap();
    assert_eq!(manifest.checksum, changes.checksum);
    let runs = manifest
        .entries
        .iter()
        .find(|e| e.path == "runs.txt")
        .expect("runs.txt exists");
    assert_eq!(runs.size, 4, "the command ran more than once");
    client.delete_session(&session).await.unwrap();
}
