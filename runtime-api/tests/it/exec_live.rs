//! Events of the api backend are live: the first arrives while the command
//! still runs (proved by a handshake the command can only pass after the
//! test saw that event), and files the command writes come back after it.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::TestServer;
use session_core::runtime::{Event, ExecCommand};
use session_core::session::{Session, SpawnOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_arrives_before_the_command_ends() {
    let server = TestServer::start().await;
    let mut session = Session::builder(crate::support::api_spec(&server.url()))
        .registry(crate::support::client_registry())
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    assert!(!rt.capabilities().shared_workspace);
    assert!(rt.capabilities().live_streaming);
    // The command says where it runs, then waits for a file that the test
    // creates there (on the server's side) only after seeing that output.
    let mut stream = rt
        .stream(
            ExecCommand::new("pwd; while [ ! -e go ]; do sleep 0.02; done; echo second")
                .wall_timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let remote = match stream.next().await {
        Some(Event::Stdout(bytes)) => {
            PathBuf::from(String::from_utf8(bytes.to_vec()).unwrap().trim())
        }
        other => panic!("first event: {other:?}"),
    };
    let local = session.workspace_path().unwrap();
    assert_ne!(remote, local, "the command ran in the local workspace");
    std::fs::write(remote.join("go"), "").unwrap();
    let result = stream.finish().await;
    assert!(result.success(), "{result:?}");
    assert_eq!(
        result.stdout.bytes,
        format!("{}\nsecond\n", remote.display()).as_bytes()
    );
    // What the command's side gained came back.
    assert!(local.join("go").is_file());
    session.close().await.unwrap();
}
