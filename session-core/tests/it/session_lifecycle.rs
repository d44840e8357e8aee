//! Session lifecycle against a small in-test backend: spawning through the
//! registry, placeholders through the runtime's `asset_path`, close that
//! cleans every runtime even when one fails, the asset tamper check, and
//! nothing left behind by dropped or cancelled sessions.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use session_core::assets::{AssetMap, ResolvedAsset};
use session_core::registry::Registry;
use session_core::runtime::{
    Backend, BackendInfo, BackendOrigin, Capabilities, EventStream, ExecCommand, ExecResult,
    ExecStatus, Output, Runtime, RuntimeStatus, SetupOutput, SpawnContext,
};
use session_core::session::{Session, SpawnOptions};
use session_core::{EnvironmentSpec, Error, Mode, Result};

/// Records what it was asked and can be told to fail its cleanup.
#[derive(Debug, Default)]
struct Recorder {
    cleanups: AtomicUsize,
    spawned: Mutex<Vec<SpawnContext>>,
    fail_cleanup_of: Mutex<Option<usize>>,
}

#[derive(Debug)]
struct TestBackend {
    name: &'static str,
    recorder: Arc<Recorder>,
}

#[derive(Debug)]
struct TestRuntime {
    index: usize,
    recorder: Arc<Recorder>,
    setup: SetupOutput,
    capabilities: Capabilities,
}

#[async_trait]
impl Backend for TestBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: self.name.into(),
            version: "0".into(),
            description: "test double".into(),
            capabilities: Capabilities::default(),
        }
    }

    fn validate(&self, _spec: &EnvironmentSpec) -> Result<()> {
        Ok(())
    }

    async fn spawn(&self, _spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let mut spawned = self.recorder.spawned.lock().unwrap();
        let index = spawned.len();
        spawned.push(ctx);
        Ok(Box::new(TestRuntime {
            index,
            recorder: Arc::clone(&self.recorder),
            setup: SetupOutput::default(),
            capabilities: Capabilities::default(),
        }))
    }
}

#[async_trait]
impl Runtime for TestRuntime {
    fn backend_type(&self) -> &str {
        "test"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        format!("/inside/{}", asset.save_path.display())
    }

    fn setup_output(&self) -> &SetupOutput {
        &self.setup
    }

    async fn stream(&self, cmd: ExecCommand) -> Result<EventStream> {
        let bytes = cmd.command.into_bytes();
        Ok(EventStream::finished(ExecResult {
            status: ExecStatus::Exited,
            exit_code: 0,
            signal: None,
            stdout: Output {
                total_bytes: bytes.len() as u64,
                bytes,
                truncated: false,
                spill_path: None,
            },
            stderr: Output::default(),
            elapsed: std::time::Duration::ZERO,
            timed_out: false,
            usage: None,
        }))
    }

    async fn poll(&self) -> RuntimeStatus {
        RuntimeStatus::Idle
    }

    async fn kill(&self) -> Result<()> {
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        self.recorder.cleanups.fetch_add(1, Ordering::SeqCst);
        if *self.recorder.fail_cleanup_of.lock().unwrap() == Some(self.index) {
            return Err(Error::Backend {
                backend: "test".into(),
                message: format!("runtime {} refuses to clean up", self.index),
            });
        }
        Ok(())
    }
}

struct Fixture {
    temp: tempfile::TempDir,
    recorder: Arc<Recorder>,
    registry: Arc<Registry>,
}

impl Fixture {
    fn new() -> Fixture {
        let recorder = Arc::new(Recorder::default());
        let mut registry = Registry::empty();
        registry
            .register(
                Arc::new(TestBackend {
                    name: "test",
                    recorder: Arc::clone(&recorder),
                }),
                BackendOrigin::BuiltIn("session_lifecycle".into()),
            )
            .unwrap();
        Fixture {
            temp: tempfile::tempdir().unwrap(),
            recorder,
            registry: registry.shared(),
        }
    }

    fn sessions_root(&self) -> PathBuf {
        self.temp.path().join("sessions")
    }

    fn builder(&self, spec_type: &str) -> session_core::session::SessionBuilder {
        Session::builder(EnvironmentSpec::new(spec_type, "test"))
            .registry(Arc::clone(&self.registry))
            .temp_root(self.sessions_root())
    }

    fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.sessions_root())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn spawn_hands_the_workspace_and_options_to_the_backend() {
    let fx = Fixture::new();
    let base = fx.temp.path().join("base");
    write(&base.join("main.py"), "print(1)\n");
    let mut session = fx
        .builder("test")
        .base_dir(&base)
        .mode(Mode::Agent)
        .prepare()
        .await
        .unwrap();
    let mut options = SpawnOptions::default();
    options.env.insert("K".into(), "V".into());
    options.extra_setup_command = Some("make".into());
    session.spawn(options).await.unwrap();
    session.spawn(SpawnOptions::default()).await.unwrap();
    {
        let spawned = fx.recorder.spawned.lock().unwrap();
        assert_eq!(spawned.len(), 2);
        assert_eq!(spawned[0].workspace, session.workspace_path().unwrap());
        assert!(spawned[0].workspace.join("main.py").is_file());
        assert_eq!(spawned[0].env["K"], "V");
        assert_eq!(spawned[0].extra_setup_command.as_deref(), Some("make"));
        assert_eq!(spawned[0].mode, Mode::Agent);
        assert_eq!(spawned[0].session_id, session.id());
    }
    session.close().await.unwrap();
    assert_eq!(fx.recorder.cleanups.load(Ordering::SeqCst), 2);
    assert!(fx.leftovers().is_empty());
}

#[tokio::test]
async fn unknown_backend_lists_the_registered_types() {
    let fx = Fixture::new();
    let mut session = fx.builder("nope").prepare().await.unwrap();
    let err = session.spawn(SpawnOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::UnknownBackend { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "unknown backend type `nope` (registered: test)"
    );
    session.close().await.unwrap();
}

#[test]
fn duplicate_backend_types_name_both_origins() {
    let recorder = Arc::new(Recorder::default());
    let mut registry = Registry::empty();
    let backend = || {
        Arc::new(TestBackend {
            name: "dup",
            recorder: Arc::clone(&recorder),
        })
    };
    registry
        .register(backend(), BackendOrigin::BuiltIn("first_crate".into()))
        .unwrap();
    let err = registry
        .register(
            backend(),
            BackendOrigin::Plugin("/plugins/libdup.so".into()),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`dup`")
            && text.contains("first_crate")
            && text.contains("/plugins/libdup.so"),
        "{text}"
    );
    assert_eq!(registry.types(), ["dup"]);
}

#[tokio::test]
async fn close_cleans_every_runtime_even_when_one_fails_then_the_workspace() {
    let fx = Fixture::new();
    let mut session = fx.builder("test").prepare().await.unwrap();
    for _ in 0..3 {
        session.spawn(SpawnOptions::default()).await.unwrap();
    }
    *fx.recorder.fail_cleanup_of.lock().unwrap() = Some(1);
    let root = session.workspace_path().unwrap();
    let err = session.close().await.unwrap_err();
    assert!(err.to_string().contains("runtime 1 refuses"), "{err}");
    assert_eq!(
        fx.recorder.cleanups.load(Ordering::SeqCst),
        3,
        "every runtime was asked"
    );
    assert!(
        !root.exists(),
        "the workspace is removed despite the failure"
    );
    assert!(fx.leftovers().is_empty());
}

#[tokio::test]
async fn placeholders_resolve_through_the_runtime() {
    let fx = Fixture::new();
    let assets_dir = fx.temp.path().join("assets");
    write(&assets_dir.join("data/x.csv"), "a,b\n");
    let assets = AssetMap::from_yaml_str("data: {path: data, save_path: inputs}")
        .unwrap()
        .resolve(&assets_dir)
        .unwrap();
    let mut session = fx.builder("test").assets(assets).prepare().await.unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let resolved = session
        .resolve_static_placeholders(
            &serde_json::json!({"{{static:data}}": ["{{static:data}}/x.csv"]}),
            rt.as_ref(),
        )
        .unwrap();
    assert_eq!(
        resolved,
        serde_json::json!({"/inside/inputs": ["/inside/inputs/x.csv"]})
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_changed_asset_is_reported_at_close() {
    let fx = Fixture::new();
    let assets_dir = fx.temp.path().join("assets");
    write(&assets_dir.join("golden.txt"), "expected\n");
    let assets = AssetMap::from_yaml_str("golden: golden.txt")
        .unwrap()
        .resolve(&assets_dir)
        .unwrap();
    let session = fx.builder("test").assets(assets).prepare().await.unwrap();
    write(&assets_dir.join("golden.txt"), "tampered\n");
    let err = session.close().await.unwrap_err();
    assert!(
        matches!(err, Error::AssetTampered { ref name, .. } if name == "golden"),
        "{err}"
    );
    assert!(fx.leftovers().is_empty());
}

#[tokio::test]
async fn agent_mode_copies_assets_into_the_workspace_and_checkpoints() {
    let fx = Fixture::new();
    let assets_dir = fx.temp.path().join("assets");
    write(&assets_dir.join("tool.txt"), "tool\n");
    let assets = AssetMap::from_yaml_str("tool: {path: tool.txt, save_path: vendor/tool.txt}")
        .unwrap()
        .resolve(&assets_dir)
        .unwrap();
    let session = fx
        .builder("test")
        .assets(assets)
        .mode(Mode::Agent)
        .prepare()
        .await
        .unwrap();
    let root = session.workspace_path().unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("vendor/tool.txt")).unwrap(),
        "tool\n"
    );
    write(&root.join("answer.txt"), "42\n");
    let out = fx.temp.path().join("out");
    let checkpoint = session.finish_checkpoint(&out).await.unwrap();
    // The asset is excluded from snapshots by the spec's ignore globs.
    let paths: Vec<&str> = checkpoint
        .diff
        .changes
        .iter()
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(paths, ["answer.txt"]);
    let files = session
        .get_file_contents(vec!["*.txt".into()])
        .await
        .unwrap();
    assert!(files.contains_key("answer.txt"));
    session.reset().await.unwrap();
    assert!(!root.join("answer.txt").exists());
    assert!(
        root.join("vendor/tool.txt").exists(),
        "reset copies assets in again"
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn dropped_and_cancelled_sessions_leave_nothing() {
    let fx = Fixture::new();
    {
        let mut session = fx.builder("test").prepare().await.unwrap();
        session.spawn(SpawnOptions::default()).await.unwrap();
    }
    assert!(fx.leftovers().is_empty(), "dropped: {:?}", fx.leftovers());

    let builder = fx.builder("test");
    let work = async move {
        let mut session = builder.prepare().await.unwrap();
        session.spawn(SpawnOptions::default()).await.unwrap();
        std::future::pending::<()>().await;
    };
    let cancelled = tokio::time::timeout(std::time::Duration::from_millis(50), work).await;
    assert!(cancelled.is_err());
    assert!(fx.leftovers().is_empty(), "cancelled: {:?}", fx.leftovers());
}

#[tokio::test]
async fn scoped_run_always_closes() {
    let fx = Fixture::new();
    let value = fx
        .builder("test")
        .run(async |session| {
            let rt = session.spawn(SpawnOptions::default()).await?;
            rt.execute(ExecCommand::new("echo scoped")).await
        })
        .await
        .unwrap();
    assert_eq!(value.stdout.bytes, b"echo scoped");
    let failed: Result<()> = fx
        .builder("test")
        .run(async |_session| Err(Error::NotPrepared))
        .await;
    assert!(matches!(failed, Err(Error::NotPrepared)));
    assert!(fx.leftovers().is_empty());
    assert_eq!(fx.recorder.cleanups.load(Ordering::SeqCst), 1);
}

#[test]
fn spans_carry_the_session_id() {
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Default, Clone)]
    struct Seen(Arc<Mutex<Vec<String>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _id: &tracing::span::Id,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Fields<'a>(&'a mut String);
            impl tracing::field::Visit for Fields<'_> {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={:?} ", field.name(), value));
                }
            }
            let mut text = format!("{} ", attrs.metadata().name());
            attrs.record(&mut Fields(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    let fx = Fixture::new();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let session = fx
                .builder("test")
                .session_id("span-test-id")
                .prepare()
                .await
                .unwrap();
            session.close().await.unwrap();
        });
    });
    let spans = seen.0.lock().unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s.starts_with("session ") && s.contains("span-test-id")),
        "{spans:?}"
    );
}
