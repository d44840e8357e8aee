//! A server that dies under a command: the result is `Lost`, within a
//! bounded time, never a hang.

use std::time::Duration;

use crate::support::{TestServer, eventually};
use session_core::runtime::{Event, ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_makes_the_command_lost() {
    let server = TestServer::start().await;
    let spec = crate::support::api_spec(&server.url());
    let temp = tempfile::tempdir().unwrap();
    let mut session = Session::builder(spec)
        .registry(crate::support::client_registry())
        .temp_root(temp.path())
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let mut stream = rt
        .stream(ExecCommand::new("echo started; sleep 60").wall_timeout(Duration::from_secs(120)))
        .await
        .unwrap();
    match stream.next().await {
        Some(Event::Stdout(bytes)) => assert_eq!(bytes, &b"started\n"[..]),
        other => panic!("first event: {other:?}"),
    }
    // Kill the server: its task is aborted, which closes its listener and
    // every connection and drops its sessions.
    server.task.abort();
    let result = tokio::time::timeout(Duration::from_secs(30), stream.finish())
        .await
        .expect("the result came within the bound");
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    assert_eq!(result.stdout.bytes, b"started\n");
    assert_eq!(result.exit_code, -1);

    // The server's sessions went with it.
    eventually("the remote session directory is removed", || {
        server.remote_dirs().is_empty()
    })
    .await;

    // The next command cannot reach the server: an error, not a hang.
    let next = tokio::time::timeout(
        Duration::from_secs(30),
        rt.execute(ExecCommand::new("true")),
    )
    .await
    .expect("the refusal came within the bound");
    let err = next.unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");
    // Closing reports the unreachable server but removes the local side.
    assert!(session.close().await.is_err());
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
}
