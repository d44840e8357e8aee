//! Ending things early: a server shut down by its signal, a session limit,
//! a busy session, a spawn abandoned by its caller.

use std::time::Duration;

use crate::support::{TestServer, eventually, process_gone, remote_runtime};
use runtime_api::Error;
use runtime_api::protocol::{CreateSession, ExecRequest, StreamLine};
use runtime_api::server::{ServeConfig, ServeLimits};
use session_core::runtime::{Event, ExecCommand};
use session_core::session::{Session, SpawnOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_signal_closes_every_session() {
    let work_root = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServeConfig::new(crate::support::token(), crate::support::server_registry())
        .listen("127.0.0.1:0".parse().unwrap())
        .limits(crate::support::test_limits())
        .work_root(work_root.path())
        .shutdown(async move {
            let _ = stopped.await;
        });
    let server = runtime_api::server::bind(config).await.unwrap();
    let url = format!("http://{}", server.local_addr());
    let task = tokio::spawn(server.run());
    let client = runtime_api::ApiClient::new(&url, &crate::support::token()).unwrap();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let request = ExecRequest {
        idempotency_key: "bg".into(),
        base,
        command: ExecCommand::new("sleep 60 & echo $!; sleep 60"),
        stdin: None,
        stdin_stream: false,
    };
    let mut running = client.exec(&session, &runtime, &request).await.unwrap();
    let pid: i32 = loop {
        match running.next_line().await.unwrap() {
            Some(StreamLine::Stdout { data }) => {
                break String::from_utf8(data).unwrap().trim().parse().unwrap();
            }
            Some(_) => {}
            None => panic!("the stream ended early"),
        }
    };
    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the server stopped within the bound")
        .unwrap();
    outcome.unwrap();
    assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0);
    eventually("the command's background process is killed", || {
        process_gone(pid)
    })
    .await;
    assert!(matches!(client.health().await, Err(Error::Connect { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_commands_beyond_the_limits_are_refused_clearly() {
    let server = TestServer::start_with(ServeLimits {
        max_sessions: 1,
        ..crate::support::test_limits()
    })
    .await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let second = CreateSession {
        spec: crate::support::local_spec(),
        mode: session_core::Mode::Evaluation,
        label: None,
        assets: Vec::new(),
        lease_ms: None,
    };
    match client.create_session(&second, None).await {
        Err(Error::Status { status: 503, .. }) => {}
        other => panic!("a session over the limit: {other:?}"),
    }
    // One command at a time per session: a second one is refused, not
    // queued.
    let first = ExecRequest {
        idempotency_key: "first".into(),
        base,
        command: ExecCommand::new("echo started; sleep 60"),
        stdin: None,
        stdin_stream: false,
    };
    let mut running = client.exec(&session, &runtime, &first).await.unwrap();
    assert!(matches!(
        running.next_line().await.unwrap(),
        Some(StreamLine::Started { .. })
    ));
    let other = ExecRequest {
        idempotency_key: "second".into(),
        ..first.clone()
    };
    match client.exec(&session, &runtime, &other).await {
        Err(Error::Status { status: 409, error }) => {
            assert!(format!("{error:?}").contains("busy"), "{error:?}");
        }
        other => panic!("a second command: {other:?}"),
    }
    client.delete_session(&session).await.unwrap();
    assert!(server.remote_dirs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_runtime_runs_one_command_at_a_time() {
    let server = TestServer::start().await;
    let mut session = Session::builder(crate::support::api_spec(&server.url()))
        .registry(crate::support::client_registry())
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    assert!(!rt.capabilities().concurrent_commands);
    let mut first = rt
        .stream(ExecCommand::new("echo started; sleep 60").wall_timeout(Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(
        first.next().await,
        Some(Event::Stdout(bytes::Bytes::from_static(b"started\n")))
    );
    let err = rt.execute(ExecCommand::new("true")).await.unwrap_err();
    assert!(err.to_string().contains("one command at a time"), "{err}");
    rt.kill().await.unwrap();
    let killed = first.finish().await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    assert!(
        rt.execute(ExecCommand::new("true"))
            .await
            .unwrap()
            .success()
    );
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_dropped_midway_leaves_no_remote_session() {
    let server = TestServer::start().await;
    let spec = session_core::EnvironmentSpec::from_yaml_str(
        &format!(
            "type: api\nname: t\nsetup: {{commands: ['echo $$ > setup.pid; sleep 60']}}\n\
             api:\n  url: {}\n  remote: {{type: local, name: r}}\n",
            server.url()
        ),
        "<test>",
    )
    .unwrap();
    let mut session = Session::builder(spec)
        .registry(crate::support::client_registry())
        .prepare()
        .await
        .unwrap();
    // Where the setup runs, once it runs.
    let setup_pid = || {
        server.remote_dirs().first().and_then(|area| {
            let sessions = std::fs::read_dir(area.join("sessions")).ok()?;
            let dir = sessions.flatten().next()?.path();
            std::fs::read_to_string(dir.join("workspace/setup.pid")).ok()
        })
    };
    let mut seen = None;
    tokio::select! {
        spawned = session.spawn(SpawnOptions::default()) => panic!("setup finished: {spawned:?}"),
        () = eventually("the setup runs", || {
            seen = setup_pid().filter(|p| p.ends_with('\n'));
            seen.is_some()
        }) => {}
    }
    let pid: i32 = seen.unwrap().trim().parse().unwrap();
    // The spawn future is gone: the remote session goes too, its setup
    // killed.
    eventually("the remote session is removed", || {
        server.remote_dirs().is_empty()
    })
    .await;
    eventually("the setup command is killed", || process_gone(pid)).await;
    session.close().await.unwrap();
}
