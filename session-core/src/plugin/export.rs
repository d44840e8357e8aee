//! The plugin side of the boundary: shims that serve one `Backend` type
//! through [`session_abi::PluginModule`].
//!
//! The shims catch every panic (an unwinding panic across `extern "C"`
//! would end the host), run the backend's async code on a tokio runtime the
//! plugin owns (a cdylib has its own tokio statics, so the host's runtime is
//! not reachable from here), bridge streaming through the host's output
//! sink, and keep the plugin's runtimes in a table keyed by number.

use std::any::TypeId;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use session_abi::abi_stable::std_types::{RErr, ROk, RSlice, RStr, RString, RVec};
use session_abi::{CancelToken, FfiResult, LogSink, OutputSink, PluginModuleRef, STDERR, STDOUT};

use super::protocol::{
    AssetPathRequest, BackendRequest, DONE, GarbageRequest, RuntimeRequest, SpawnReply,
    SpawnRequest, StreamRequest, UNKNOWN_OPERATION, ValidateRequest, op,
};
use crate::error::Error;
use crate::runtime::wire::WireError;
use crate::runtime::{Backend, Event, ExecResult, Runtime};

/// How often a running stream checks the host's cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Everything one exported backend type keeps between calls.
struct PluginState {
    backend: Arc<dyn Backend>,
    tokio: tokio::runtime::Runtime,
    runtimes: Mutex<HashMap<u64, Arc<dyn Runtime>>>,
    next_runtime: AtomicU64,
}

type Failure = String;

/// The backend name of errors raised before the plugin's type is known;
/// the host puts the type in its place.
pub(crate) const PLUGIN: &str = "plugin";

/// What a plugin answers to a call before `init` (plugins built before
/// `describe` existed answer it so).
pub(crate) const CALLED_BEFORE_INIT: &str = "the plugin was called before init";

/// How a caught panic's message starts; the host adds the library's file
/// after it.
pub(crate) const PANICKED: &str = "the plugin panicked";

/// The state of backend type `T`, created by `init`. Keyed by type so the
/// same shims can serve several backends in one process (in-process
/// wrapping for tests).
fn states() -> &'static Mutex<HashMap<TypeId, Arc<PluginState>>> {
    static STATES: OnceLock<Mutex<HashMap<TypeId, Arc<PluginState>>>> = OnceLock::new();
    STATES.get_or_init(Default::default)
}

fn state<T: 'static>() -> Result<Arc<PluginState>, Failure> {
    states()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&TypeId::of::<T>())
        .cloned()
        .ok_or_else(|| {
            wire_failure(&Error::Backend {
                backend: PLUGIN.into(),
                message: CALLED_BEFORE_INIT.into(),
            })
        })
}

fn wire_failure(err: &Error) -> Failure {
    let backend = match err {
        Error::Backend { backend, .. } => backend.clone(),
        _ => PLUGIN.to_owned(),
    };
    serde_json::to_string(&WireError::from_error(err, &backend)).expect("wire errors serialise")
}

/// A caught panic as an error naming the backend type (when known) and
/// the operation; the host adds the library's file.
fn panic_failure(
    backend: Option<String>,
    operation: &str,
    payload: &(dyn std::any::Any + Send),
) -> Failure {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    wire_failure(&Error::Backend {
        backend: backend.unwrap_or_else(|| PLUGIN.to_owned()),
        message: format!("{PANICKED} in `{operation}`: {message}"),
    })
}

/// The type of `T` if `init` has run: a panic's error names it.
fn type_name_of<T: 'static>() -> Option<String> {
    let state = states()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&TypeId::of::<T>())
        .cloned()?;
    catch_unwind(AssertUnwindSafe(|| state.backend.info().type_name)).ok()
}

fn finish(result: Result<Vec<u8>, Failure>) -> FfiResult {
    match result {
        Ok(bytes) => ROk(RVec::from(bytes)),
        Err(failure) => RErr(RString::from(failure)),
    }
}

/// The root module serving `T`. `forward_logs` installs the plugin-side
/// log forwarder as the global `tracing` subscriber (only right inside a
/// cdylib, whose `tracing` statics are its own).
pub fn module<T: Backend + Default + 'static>(
    abi_version: u32,
    forward_logs: bool,
) -> PluginModuleRef {
    if forward_logs {
        session_abi::module(abi_version, init::<T, true>, call::<T>)
    } else {
        session_abi::module(abi_version, init::<T, false>, call::<T>)
    }
}

/// The backend descriptors without starting anything: `T` is made, asked
/// for its info and dropped, with no runtime, threads, log forwarding or
/// panic hook, so a host can refuse the library before `init`.
fn describe<T: Backend + Default + 'static>() -> Result<Vec<u8>, Failure> {
    let info = T::default().info();
    Ok(serde_json::to_vec(&vec![info]).expect("infos serialise"))
}

/// What [`export_backend!`](crate::export_backend)'s build symbol
/// returns: the plugin's package and version, the berth it was built
/// against and the ABI version it speaks.
pub fn build_text(package: &str, version: &str, abi_version: u32) -> String {
    session_abi::Build {
        package: package.to_owned(),
        version: version.to_owned(),
        berth: crate::plugin::BERTH_VERSION.to_owned(),
        abi_version,
    }
    .encode()
}

extern "C" fn init<T: Backend + Default + 'static, const FORWARD_LOGS: bool>(
    log: LogSink,
) -> FfiResult {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u8>, Failure> {
        if FORWARD_LOGS {
            // Inside a cdylib these statics are the plugin's own: its events
            // and its panic messages (caught below, and turned into errors)
            // go to the host's log instead of the host's stderr.
            let _ = tracing::subscriber::set_global_default(super::logs::Forwarder::new(log));
            std::panic::set_hook(Box::new(|info| {
                // One line: `panicked at FILE:LINE:COL: MESSAGE`.
                let text = info.to_string().replace('\n', " ");
                tracing::error!(target: "berth::plugin::panic", "{text}");
            }));
        }
        let mut states = states().lock().unwrap_or_else(|p| p.into_inner());
        let state = match states.get(&TypeId::of::<T>()) {
            Some(state) => Arc::clone(state),
            None => {
                let tokio = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("berth-plugin")
                    .enable_all()
                    .build()
                    .map_err(|err| {
                        wire_failure(&Error::Backend {
                            backend: PLUGIN.into(),
                            message: format!("starting the plugin's runtime: {err}"),
                        })
                    })?;
                let state = Arc::new(PluginState {
                    backend: Arc::new(T::default()),
                    tokio,
                    runtimes: Mutex::new(HashMap::new()),
                    next_runtime: AtomicU64::new(1),
                });
                states.insert(TypeId::of::<T>(), Arc::clone(&state));
                state
            }
        };
        Ok(serde_json::to_vec(&vec![state.backend.info()]).expect("infos serialise"))
    }));
    finish(result.unwrap_or_else(|payload| Err(panic_failure(None, "init", payload.as_ref()))))
}

extern "C" fn call<T: Backend + Default + 'static>(
    op: RStr<'_>,
    request: RSlice<'_, u8>,
    sink: OutputSink,
    cancel: CancelToken,
) -> FfiResult {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // The one operation answered before `init`.
        if op.as_str() == super::protocol::op::DESCRIBE {
            return describe::<T>();
        }
        let state = state::<T>()?;
        dispatch(&state, op.as_str(), request.as_slice(), sink, cancel)
    }));
    finish(result.unwrap_or_else(|payload| {
        Err(panic_failure(
            type_name_of::<T>(),
            op.as_str(),
            payload.as_ref(),
        ))
    }))
}

fn parse<R: DeserializeOwned>(request: &[u8]) -> Result<R, Failure> {
    serde_json::from_slice(request).map_err(|err| {
        wire_failure(&Error::Backend {
            backend: PLUGIN.into(),
            message: format!("malformed request: {err}"),
        })
    })
}

fn reply<R: Serialize>(value: &R) -> Result<Vec<u8>, Failure> {
    Ok(serde_json::to_vec(value).expect("replies serialise"))
}

fn check_backend(state: &PluginState, name: &str) -> Result<(), Failure> {
    let info = state.backend.info();
    if info.type_name == name {
        Ok(())
    } else {
        Err(wire_failure(&Error::UnknownBackend {
            requested: name.to_owned(),
            registered: info.type_name,
        }))
    }
}

fn runtime(state: &PluginState, id: u64) -> Result<Arc<dyn Runtime>, Failure> {
    state
        .runtimes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
        .ok_or_else(|| {
            wire_failure(&Error::RuntimeClosed {
                backend: state.backend.info().type_name,
            })
        })
}

fn dispatch(
    state: &PluginState,
    operation: &str,
    request: &[u8],
    sink: OutputSink,
    cancel: CancelToken,
) -> Result<Vec<u8>, Failure> {
    let fail = |err: Error| wire_failure(&err);
    match operation {
        op::VALIDATE => {
            let req: ValidateRequest = parse(request)?;
            check_backend(state, &req.backend)?;
            let spec = match req.origin {
                Some(origin) => req.spec.with_origin(origin),
                None => req.spec,
            };
            state.backend.validate(&spec).map_err(fail)?;
            reply(&())
        }
        op::SPAWN => {
            let req: SpawnRequest = parse(request)?;
            check_backend(state, &req.backend)?;
            let spec = match req.origin {
                Some(origin) => req.spec.with_origin(origin),
                None => req.spec,
            };
            let backend = Arc::clone(&state.backend);
            let runtime = state
                .tokio
                .block_on(async move { backend.spawn(&spec, req.ctx).await })
                .map_err(fail)?;
            let runtime: Arc<dyn Runtime> = Arc::from(runtime);
            let id = state.next_runtime.fetch_add(1, Ordering::Relaxed);
            let answer = SpawnReply {
                runtime: id,
                backend_type: runtime.backend_type().to_owned(),
                capabilities: runtime.capabilities().clone(),
                setup: runtime.setup_output().clone(),
            };
            state
                .runtimes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, runtime);
            reply(&answer)
        }
        op::STREAM => {
            let req: StreamRequest = parse(request)?;
            let rt = runtime(state, req.runtime)?;
            let result = state
                .tokio
                .block_on(stream(rt, req, sink, cancel))
                .map_err(fail)?;
            reply(&result)
        }
        op::START_STREAM => {
            let req: StreamRequest = parse(request)?;
            let rt = runtime(state, req.runtime)?;
            let done = Done(Some(sink));
            let mut command = CatchUnwind(Box::pin(stream(rt, req, sink, cancel)));
            // Polled once here, on the caller's thread, in the plugin's
            // runtime: a backend whose `stream` starts the command before it
            // first waits (the local one) starts it now, without a hand-off
            // to a thread of the plugin's. The rest runs on the plugin's
            // runtime, whose task polls it again with its own waker.
            let first = {
                let _entered = state.tokio.enter();
                Pin::new(&mut command).poll(&mut Context::from_waker(Waker::noop()))
            };
            match first {
                Poll::Ready(outcome) => done.send(ended(outcome)),
                Poll::Pending => {
                    state.tokio.spawn(async move {
                        let outcome = command.await;
                        done.send(ended(outcome));
                    });
                }
            }
            reply(&())
        }
        op::ASSET_PATH => {
            let req: AssetPathRequest = parse(request)?;
            reply(&runtime(state, req.runtime)?.asset_path(&req.asset))
        }
        op::POLL => {
            let req: RuntimeRequest = parse(request)?;
            let rt = runtime(state, req.runtime)?;
            reply(&state.tokio.block_on(async move { rt.poll().await }))
        }
        op::KILL => {
            let req: RuntimeRequest = parse(request)?;
            let rt = runtime(state, req.runtime)?;
            state
                .tokio
                .block_on(async move { rt.kill().await })
                .map_err(fail)?;
            reply(&())
        }
        op::CLEANUP => {
            let req: RuntimeRequest = parse(request)?;
            let rt = runtime(state, req.runtime)?;
            state
                .tokio
                .block_on(async move { rt.cleanup().await })
                .map_err(fail)?;
            reply(&())
        }
        op::RELEASE => {
            let req: RuntimeRequest = parse(request)?;
            let released = state
                .runtimes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req.runtime);
            // Dropped inside the plugin's runtime: a runtime's drop may
            // spawn cleanup work.
            let _guard = state.tokio.enter();
            drop(released);
            reply(&())
        }
        op::DIAGNOSE => {
            let req: BackendRequest = parse(request)?;
            check_backend(state, &req.backend)?;
            let backend = Arc::clone(&state.backend);
            reply(
                &state
                    .tokio
                    .block_on(async move { backend.diagnose().await }),
            )
        }
        op::COLLECT_GARBAGE => {
            let req: GarbageRequest = parse(request)?;
            check_backend(state, &req.backend)?;
            let backend = Arc::clone(&state.backend);
            let found = state
                .tokio
                .block_on(async move { backend.collect_garbage(req.dry_run).await })
                .map_err(fail)?;
            reply(&found)
        }
        other => Err(wire_failure(&Error::Backend {
            backend: state.backend.info().type_name,
            message: format!("{UNKNOWN_OPERATION} `{other}`"),
        })),
    }
}

/// Runs a command, forwarding its chunks to the host, until it finishes or
/// the host cancels (then the stream is dropped, which kills the command).
async fn stream(
    rt: Arc<dyn Runtime>,
    req: StreamRequest,
    sink: OutputSink,
    cancel: CancelToken,
) -> crate::Result<ExecResult> {
    let started = tokio::time::Instant::now();
    let mut cmd = req.cmd;
    let feeder = match req.stdin_fd {
        Some(fd) => {
            let (stdin, feeder) = super::stdin_pipe::receive(fd).map_err(|err| Error::Backend {
                backend: rt.backend_type().to_owned(),
                message: format!("receiving the command's stdin from the host: {err}"),
            })?;
            cmd.stdin_stream = Some(stdin);
            Some(feeder)
        }
        None => None,
    };
    // However the call ends, nothing reads the host's pipe after it.
    let _feeder = feeder.map(AbortOnDrop);
    let mut events = rt.stream(cmd).await?;
    let mut tick = tokio::time::interval(CANCEL_POLL);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Stdout(bytes)) => {
                    if !sink.send(STDOUT, &bytes) {
                        break;
                    }
                }
                Some(Event::Stderr(bytes)) => {
                    if !sink.send(STDERR, &bytes) {
                        break;
                    }
                }
                Some(Event::Finished(result)) => return Ok(result),
                None => break,
            },
            _ = tick.tick() => {
                if cancel.cancelled() {
                    break;
                }
            }
        }
    }
    Ok(ExecResult::lost(started.elapsed()))
}

/// A command's end as the `DONE` chunk carries it.
fn ended(outcome: std::thread::Result<crate::Result<ExecResult>>) -> Result<Vec<u8>, Failure> {
    match outcome {
        Ok(Ok(result)) => reply(&result),
        Ok(Err(err)) => Err(wire_failure(&err)),
        Err(payload) => Err(panic_failure(None, op::STREAM, payload.as_ref())),
    }
}

/// A future whose panic is its output: a plugin's panic must not unwind
/// into the host's thread (the first poll) nor be lost with its task.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The end of a started call, owed to the host: sent once, or, if the
/// task that owes it is dropped (the plugin's runtime shutting down), sent
/// as an error when dropped.
struct Done(Option<OutputSink>);

impl Done {
    fn send(mut self, outcome: Result<Vec<u8>, Failure>) {
        if let Some(sink) = self.0.take() {
            deliver(sink, outcome);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(sink) = self.0.take() {
            deliver(sink, Err(stopped_failure()));
        }
    }
}

fn deliver(sink: OutputSink, outcome: Result<Vec<u8>, Failure>) {
    let chunk = match outcome {
        Ok(bytes) => [&[0u8][..], &bytes].concat(),
        Err(failure) => [&[1u8][..], failure.as_bytes()].concat(),
    };
    // The host's last use of its contexts: the sink is not used again.
    sink.send(DONE, &chunk);
}

fn stopped_failure() -> Failure {
    wire_failure(&Error::Backend {
        backend: PLUGIN.into(),
        message: "the plugin's runtime stopped before the command finished".into(),
    })
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Exports a backend type from a `cdylib` as a berth plugin.
///
/// ```
/// use async_trait::async_trait;
/// use session_core::runtime::{Backend, BackendInfo, Capabilities, Runtime, SpawnContext};
/// use session_core::{EnvironmentSpec, Error, Result};
///
/// #[derive(Debug, Default)]
/// struct MyBackend;
///
/// #[async_trait]
/// impl Backend for MyBackend {
///     fn info(&self) -> BackendInfo {
///         BackendInfo {
///             type_name: "mine".into(),
///             version: "0.1.0".into(),
///             description: "runs nothing yet".into(),
///             capabilities: Capabilities::default(),
///         }
///     }
///
///     fn validate(&self, _spec: &EnvironmentSpec) -> Result<()> {
///         Ok(())
///     }
///
///     async fn spawn(
///         &self,
///         _spec: &EnvironmentSpec,
///         _ctx: SpawnContext,
///     ) -> Result<Box<dyn Runtime>> {
///         Err(Error::Backend {
///             backend: "mine".into(),
///             message: "not written yet".into(),
///         })
///     }
/// }
///
/// session_core::export_backend!(MyBackend);
/// # fn main() {}
/// ```
///
/// The type must implement [`Backend`] and [`Default`]. The macro exports
/// the root module `abi_stable` looks for, and a build record (the plugin
/// crate's package and version, the berth and ABI version it was built
/// against) that hosts print when the library does not match them; the
/// plugin crate needs no other dependency than `session-core`.
///
/// `Default` may run more than once: the host's `describe` operation makes
/// a value only to read its [`info`](Backend::info) (so a library whose type
/// is taken is refused before anything starts), and `init` makes the one
/// that serves. Keep it cheap and free of side effects.
#[macro_export]
macro_rules! export_backend {
    ($backend:ty) => {
        $crate::export_backend!($backend, abi_version = $crate::plugin::ABI_VERSION);
    };
    ($backend:ty, abi_version = $version:expr) => {
        /// What this library was built from (read by the host even when
        /// the root module does not match its own).
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn berth_plugin_build() -> $crate::plugin::__private::RStr<'static> {
            static TEXT: ::std::sync::OnceLock<::std::string::String> =
                ::std::sync::OnceLock::new();
            $crate::plugin::__private::RStr::from_str(TEXT.get_or_init(|| {
                $crate::plugin::export::build_text(
                    ::core::env!("CARGO_PKG_NAME"),
                    ::core::env!("CARGO_PKG_VERSION"),
                    $version,
                )
            }))
        }

        /// The root module of this berth plugin (looked up by name).
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::plugin::__private::LibHeader = {
            fn __berth_plugin_module() -> $crate::plugin::__private::PluginModuleRef {
                $crate::plugin::export::module::<$backend>($version, true)
            }
            extern "C" fn __berth_plugin_root() -> $crate::plugin::__private::RootModuleResult {
                $crate::plugin::__private::__call_root_module_loader(__berth_plugin_module)
            }
            // SAFETY: the constructor returns the root module type named
            // here, and its layout is checked by the host when it loads.
            unsafe {
                $crate::plugin::__private::LibHeader::from_constructor::<
                    $crate::plugin::__private::PluginModuleRef,
                >(
                    __berth_plugin_root,
                    $crate::plugin::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
