//! The conformance suite against `type: local`, one test per case
//! (`conformance::local::<case>`); and the suite against a backend that
//! breaks a rule on purpose, which must fail.

use std::sync::Arc;

use async_trait::async_trait;
use runtime_conformance::{CaseOutcome, Target, conformance_tests, run_one_blocking};
use runtime_local::LocalBackend;
use session_core::EnvironmentSpec;
use session_core::assets::ResolvedAsset;
use session_core::registry::Registry;
use session_core::runtime::{
    Backend, BackendInfo, BackendOrigin, Capabilities, Event, EventStream, ExecCommand, Runtime,
    RuntimeStatus, SetupOutput, SpawnContext,
};

conformance_tests!(local, || {
    Target::builtin(EnvironmentSpec::new("local", "conformance"))
});

/// `type: detaching`: the local backend, except that dropping a command's
/// event stream lets the command run on (its events go nowhere) instead of
/// killing it. Cleanup still kills it.
#[derive(Debug)]
struct DetachingBackend;

#[async_trait]
impl Backend for DetachingBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: "detaching".into(),
            ..LocalBackend.info()
        }
    }

    fn validate(&self, _spec: &EnvironmentSpec) -> session_core::Result<()> {
        Ok(())
    }

    async fn spawn(
        &self,
        spec: &EnvironmentSpec,
        ctx: SpawnContext,
    ) -> session_core::Result<Box<dyn Runtime>> {
        let mut local = spec.clone();
        local.backend_type = "local".into();
        let inner = LocalBackend.spawn(&local, ctx).await?;
        Ok(Box::new(DetachingRuntime { inner }))
    }
}

#[derive(Debug)]
struct DetachingRuntime {
    inner: Box<dyn Runtime>,
}

#[async_trait]
impl Runtime for DetachingRuntime {
    fn backend_type(&self) -> &str {
        "detaching"
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
        let (tx, stream) = EventStream::channel();
        tokio::spawn(async move {
            while let Some(event) = inner.next().await {
                let last = matches!(event, Event::Finished(_));
                // A dropped consumer is not passed on: the command runs on.
                let _ = tx.send(event).await;
                if last {
                    break;
                }
            }
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

/// The case for `stream.drop-kills` fails a backend whose dropped streams
/// leave their commands running, saying that something outlived it.
#[test]
fn a_backend_that_lets_a_dropped_command_run_fails_its_case() {
    let mut registry = Registry::empty();
    registry
        .register(
            Arc::new(DetachingBackend),
            BackendOrigin::BuiltIn("tests".into()),
        )
        .unwrap();
    let target = Target::with_registry(
        EnvironmentSpec::new("detaching", "conformance"),
        registry.shared(),
    );
    match run_one_blocking(target, "dropped_stream_kills_the_command") {
        CaseOutcome::Failed(why) => assert!(why.contains("outlived"), "{why}"),
        other => panic!("the case did not fail: {other:?}"),
    }
}
