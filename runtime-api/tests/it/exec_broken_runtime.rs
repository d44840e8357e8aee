//! A server-side runtime whose event stream ends without a result (its
//! driver died) leaves no command running unwatched: the server kills what
//! the runtime runs before it frees the session, says why on the command's
//! stderr, and the session goes on.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use runtime_api::protocol::{CreateSession, ExecRequest, SpawnRequest, StreamLine};
use runtime_local::LocalBackend;
use session_core::EnvironmentSpec;
use session_core::assets::ResolvedAsset;
use session_core::registry::Registry;
use session_core::runtime::{
    Backend, BackendInfo, BackendOrigin, Capabilities, EventStream, ExecCommand, ExecStatus,
    Runtime, RuntimeStatus, SetupOutput, SpawnContext,
};

use crate::support::{TestServer, eventually, process_gone};

const TYPE: &str = "loses-its-stream";

/// The local backend, except that a command's event stream ends after its
/// first event while the command runs on: what a runtime whose driver
/// panicked looks like from outside.
#[derive(Debug)]
struct LosesItsStream;

#[async_trait]
impl Backend for LosesItsStream {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: TYPE.into(),
            ..LocalBackend.info()
        }
    }

    fn validate(&self, spec: &EnvironmentSpec) -> session_core::Result<()> {
        LocalBackend.validate(&as_local(spec))
    }

    async fn spawn(
        &self,
        spec: &EnvironmentSpec,
        ctx: SpawnContext,
    ) -> session_core::Result<Box<dyn Runtime>> {
        let inner = LocalBackend.spawn(&as_local(spec), ctx).await?;
        Ok(Box::new(LosingRuntime {
            inner,
            orphans: Arc::default(),
        }))
    }
}

fn as_local(spec: &EnvironmentSpec) -> EnvironmentSpec {
    let mut local = spec.clone();
    local.backend_type = "local".into();
    local
}

#[derive(Debug)]
struct LosingRuntime {
    inner: Box<dyn Runtime>,
    /// The streams of commands it stopped reporting on: held, so that the
    /// commands run on as nobody watches them.
    orphans: Arc<Mutex<Vec<EventStream>>>,
}

#[async_trait]
impl Runtime for LosingRuntime {
    fn backend_type(&self) -> &str {
        TYPE
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        self.inner.asset_path(asset)
    }

    fn setup_output(&self) -> &SetupOutput {
        self.inner.setup_output()
    }

    async fn stream(&self, cmd: ExecCommand) -> session_core::Result<EventStream> {
        let mut inner = self.inner.stream(cmd).await?;
        let (events, stream) = EventStream::channel();
        let orphans = Arc::clone(&self.orphans);
        tokio::spawn(async move {
            if let Some(first) = inner.next().await {
                events.send(first).await;
            }
            orphans.lock().unwrap().push(inner);
            // `events` goes here: the stream ends without a result.
        });
        Ok(stream)
    }

    async fn poll(&self) -> RuntimeStatus {
        self.inner.poll().await
    }

    async fn kill(&self) -> session_core::Result<()> {
        self.inner.kill().await
    }

    async fn cleanup(&self) -> session_core::Result<()> {
        self.inner.cleanup().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_without_a_result_kills_its_command_first() {
    let mut registry = Registry::with_builtins().unwrap();
    registry
        .register(
            Arc::new(LosesItsStream),
            BackendOrigin::BuiltIn("tests".into()),
        )
        .unwrap();
    let server = TestServer::start_serving(crate::support::test_limits(), registry.shared()).await;
    let client = server.client();
    let created = client
        .create_session(
            &CreateSession {
                spec: EnvironmentSpec::new(TYPE, "lossy"),
                mode: session_core::Mode::Evaluation,
                label: None,
                assets: Vec::new(),
                lease_ms: None,
            },
            None,
        )
        .await
        .unwrap();
    let session = created.session;
    let spawned = client
        .spawn(&session, &SpawnRequest::default())
        .await
        .unwrap();
    let runtime = spawned.runtime;
    let request = ExecRequest {
        idempotency_key: "lost".into(),
        base: spawned.changes.checksum,
        command: ExecCommand::new("echo started > started.txt; echo $$; exec sleep 600"),
        stdin: None,
        stdin_stream: false,
    };
    let mut stream = client.exec(&session, &runtime, &request).await.unwrap();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let (result, changes) = loop {
        match stream.next_line().await.unwrap() {
            Some(StreamLine::Stdout { data }) => stdout.extend_from_slice(&data),
            Some(StreamLine::Stderr { data }) => stderr.extend_from_slice(&data),
            Some(StreamLine::Finished { result, changes }) => break (result, changes),
            Some(StreamLine::Error { error }) => panic!("{error:?}"),
            Some(_) => {}
            None => panic!("the stream ended without its last line"),
        }
    };
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    let stderr = String::from_utf8(stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "the `{TYPE}` runtime lost the command (its events ended without a result); its \
             processes were killed"
        )),
        "{stderr}"
    );
    let pid: i32 = String::from_utf8(stdout).unwrap().trim().parse().unwrap();
    eventually("the unwatched command is gone", || process_gone(pid)).await;
    // What it changed before it was killed came back with the result.
    assert!(
        changes.upserts.iter().any(|e| e.path == "started.txt"),
        "{changes:?}"
    );

    // The session is free and consistent: the next command runs in the
    // same runtime, on the workspace the change set described.
    let next = ExecRequest {
        idempotency_key: "next".into(),
        base: changes.checksum,
        command: ExecCommand::new("cat started.txt"),
        stdin: None,
        stdin_stream: false,
    };
    let stream = client.exec(&session, &runtime, &next).await.unwrap();
    let mut lines = stream;
    let mut out = Vec::new();
    let finished = loop {
        match lines.next_line().await.unwrap() {
            Some(StreamLine::Stdout { data }) => out.extend_from_slice(&data),
            Some(StreamLine::Finished { result, .. }) => break result,
            Some(StreamLine::Error { error }) => panic!("{error:?}"),
            Some(_) => {}
            None => panic!("the stream ended without its last line"),
        }
    };
    // Its first event went through; the rest of it is lost with it.
    assert_eq!(out, b"started\n");
    assert_eq!(finished.status, ExecStatus::Lost);
    client.delete_session(&session).await.unwrap();
    assert!(
        server.remote_dirs().is_empty(),
        "{:?}",
        server.remote_dirs()
    );
}
