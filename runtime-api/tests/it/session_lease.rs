//! Leases: a remote session whose client stops renewing is reaped with its
//! runtimes and workspace; a live api runtime keeps renewing its own.

use std::time::Duration;

use crate::support::{TestServer, collect, eventually, process_gone, remote_runtime};
use runtime_api::Error;
use runtime_api::protocol::ExecRequest;
use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_session_is_reaped_with_its_processes_and_workspace() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, Some(1000)).await;
    let request = ExecRequest {
        idempotency_key: "bg".into(),
        base,
        command: ExecCommand::new("sleep 60 & echo $! > bg.pid; echo $!; pwd"),
        stdin: None,
        stdin_stream: false,
    };
    let (stdout, result, _) =
        collect(client.exec(&session, &runtime, &request).await.unwrap()).await;
    assert_eq!(result.status, ExecStatus::Exited);
    let stdout = String::from_utf8(stdout).unwrap();
    let mut lines = stdout.lines();
    let pid: i32 = lines.next().unwrap().parse().unwrap();
    let workspace = std::path::PathBuf::from(lines.next().unwrap());
    // A renewal gives the checks below a whole lease.
    client.renew_lease(&session).await.unwrap();
    assert!(workspace.is_dir());
    assert!(!process_gone(pid));
    assert_eq!(server.remote_dirs().len(), 1);

    // Nobody renews (any request naming the session would): the reaper
    // closes it once the lease has run out.
    eventually("the session directory is removed", || {
        server.remote_dirs().is_empty()
    })
    .await;
    assert!(!workspace.exists());
    eventually("the background process is killed", || process_gone(pid)).await;
    match client.workspace(&session).await {
        Err(Error::Status { status: 404, .. }) => {}
        other => panic!("a reaped session answered: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_api_runtime_renews_its_lease() {
    let server = TestServer::start().await;
    let spec = crate::support::api_spec_with(&server.url(), "  lease: 0.2\n");
    let mut session = Session::builder(spec)
        .registry(crate::support::client_registry())
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    // The command outlives several leases; the runtime's renewals keep
    // the remote session alive through it and after it.
    let slow = rt
        .execute(ExecCommand::new("sleep 1.5; echo survived").wall_timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(slow.status, ExecStatus::Exited, "{slow:?}");
    assert_eq!(slow.stdout.bytes, b"survived\n");
    let idle_wait = tokio::time::Instant::now() + Duration::from_secs(1);
    tokio::time::sleep_until(idle_wait).await;
    let after = rt
        .execute(ExecCommand::new("echo still here"))
        .await
        .unwrap();
    assert_eq!(after.stdout.bytes, b"still here\n");
    assert_eq!(server.remote_dirs().len(), 1);

    // Closing the session deletes the remote session at once.
    session.close().await.unwrap();
    assert!(
        server.remote_dirs().is_empty(),
        "{:?}",
        server.remote_dirs()
    );
}
