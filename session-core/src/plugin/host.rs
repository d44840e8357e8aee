//! The host side of the boundary: a loaded plugin as the same
//! `Arc<dyn Backend>` and `Box<dyn Runtime>` as a built-in.
//!
//! Every call crosses synchronously (the plugin blocks on its own runtime),
//! so async methods run it on a blocking thread; `execute` instead starts
//! the command (`start_stream`) and awaits its end, which the plugin sends
//! through the sink when it comes. A command's stream is
//! bridged from the plugin's output-sink callback into an [`EventStream`];
//! dropping the stream cancels the plugin's call through the cancel token.

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use session_abi::abi_stable::std_types::{RResult, RSlice, RStr};
use session_abi::{CancelToken, OutputSink, PluginModuleRef, STDOUT};

use super::export::{PANICKED, PLUGIN};
use super::protocol::{
    AssetPathRequest, BackendRequest, DONE, GarbageRequest, RuntimeRequest, SpawnReply,
    SpawnRequest, StreamRequest, UNKNOWN_OPERATION, ValidateRequest, op,
};
use super::stdin_pipe::HostPipe;
use crate::assets::ResolvedAsset;
use crate::error::{Error, Result};
use crate::runtime::wire::WireError;
use crate::runtime::{
    Backend, BackendInfo, Capabilities, Diagnostic, Event, EventSender, EventStream, ExecCommand,
    ExecResult, Leftover, Runtime, RuntimeStatus, SetupOutput, SpawnContext, StdinSource,
};
use crate::spec::EnvironmentSpec;

/// What every call into one plugin needs: its root module, and the type
/// and library its errors are to name.
#[derive(Clone)]
struct Plugin {
    module: PluginModuleRef,
    backend: String,
    path: Arc<Path>,
    /// Cleared when the plugin answers that it does not know
    /// `start_stream` (built before it): its commands then take the
    /// blocking `stream` call.
    starts_commands: Arc<AtomicBool>,
}

impl Plugin {
    /// Calls an operation with a discarding sink and no cancellation.
    fn call<R: Serialize, T: DeserializeOwned>(&self, operation: &str, request: &R) -> Result<T> {
        self.call_with(
            operation,
            request,
            OutputSink::discard(),
            CancelToken::never(),
        )
    }

    fn call_with<R: Serialize, T: DeserializeOwned>(
        &self,
        operation: &str,
        request: &R,
        sink: OutputSink,
        cancel: CancelToken,
    ) -> Result<T> {
        let bytes = serde_json::to_vec(request).map_err(|err| Error::Backend {
            backend: self.backend.clone(),
            message: format!("encoding a `{operation}` request: {err}"),
        })?;
        let answer = (self.module.call())(
            RStr::from_str(operation),
            RSlice::from_slice(&bytes),
            sink,
            cancel,
        );
        match &answer {
            RResult::ROk(bytes) => self.decode(operation, Ok(bytes.as_slice())),
            RResult::RErr(text) => self.decode(operation, Err(text.as_str())),
        }
    }

    /// A call's answer: the reply's JSON, or the plugin's error.
    fn decode<T: DeserializeOwned>(
        &self,
        operation: &str,
        answer: std::result::Result<&[u8], &str>,
    ) -> Result<T> {
        match answer {
            Ok(bytes) => serde_json::from_slice(bytes).map_err(|err| Error::Backend {
                backend: self.backend.clone(),
                message: format!("the plugin's `{operation}` reply is malformed: {err}"),
            }),
            Err(text) => Err(match serde_json::from_str::<WireError>(text) {
                Ok(wire) => self.name(wire.into_error()),
                Err(_) => Error::Backend {
                    backend: self.backend.clone(),
                    message: text.to_owned(),
                },
            }),
        }
    }

    /// Puts this plugin's type where an error says only `plugin`, and its
    /// library's file into a caught panic's message.
    fn name(&self, err: Error) -> Error {
        match err {
            Error::Backend { backend, message } => {
                let backend = if backend == PLUGIN {
                    self.backend.clone()
                } else {
                    backend
                };
                let message = match message.strip_prefix(PANICKED) {
                    Some(rest) => format!("the plugin {} panicked{rest}", self.path.display()),
                    None => message,
                };
                Error::Backend { backend, message }
            }
            other => other,
        }
    }
}

async fn blocking<T: Send + 'static>(
    backend: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::Backend {
            backend: backend.to_owned(),
            message: format!("a plugin call did not finish: {err}"),
        })?
}

/// A backend served by a plugin.
#[derive(Clone)]
pub struct PluginBackend {
    plugin: Plugin,
    info: BackendInfo,
}

impl std::fmt::Debug for PluginBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginBackend")
            .field("type", &self.info.type_name)
            .field("path", &self.plugin.path)
            .finish()
    }
}

impl PluginBackend {
    pub(crate) fn new(module: PluginModuleRef, info: BackendInfo, path: PathBuf) -> PluginBackend {
        PluginBackend {
            plugin: Plugin {
                module,
                backend: info.type_name.clone(),
                path: Arc::from(path),
                starts_commands: Arc::new(AtomicBool::new(true)),
            },
            info,
        }
    }

    /// The library it was loaded from (`<in-process>` when wrapped in
    /// process).
    pub fn path(&self) -> &std::path::Path {
        &self.plugin.path
    }
}

#[async_trait]
impl Backend for PluginBackend {
    fn info(&self) -> BackendInfo {
        self.info.clone()
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        let request = ValidateRequest {
            backend: self.info.type_name.clone(),
            spec: spec.clone(),
            origin: Some(spec.origin().to_owned()),
        };
        self.plugin.call(op::VALIDATE, &request)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let request = SpawnRequest {
            backend: self.info.type_name.clone(),
            spec: spec.clone(),
            ctx,
            origin: Some(spec.origin().to_owned()),
        };
        let plugin = self.plugin.clone();
        let reply: SpawnReply = blocking(&self.info.type_name, move || {
            plugin.call(op::SPAWN, &request)
        })
        .await?;
        Ok(Box::new(PluginRuntime {
            plugin: self.plugin.clone(),
            id: reply.runtime,
            backend_type: reply.backend_type,
            capabilities: reply.capabilities,
            setup: reply.setup,
            closed: AtomicBool::new(false),
        }))
    }

    async fn diagnose(&self) -> Vec<Diagnostic> {
        let name = self.info.type_name.clone();
        let request = BackendRequest {
            backend: name.clone(),
        };
        let plugin = self.plugin.clone();
        let outcome = blocking(&name, move || plugin.call(op::DIAGNOSE, &request)).await;
        match outcome {
            Ok(lines) => lines,
            Err(err) if err.to_string().contains(UNKNOWN_OPERATION) => Vec::new(),
            Err(err) => vec![Diagnostic {
                check: format!("{name} plugin"),
                ok: false,
                detail: err.to_string(),
            }],
        }
    }

    async fn collect_garbage(&self, dry_run: bool) -> Result<Vec<Leftover>> {
        let request = GarbageRequest {
            backend: self.info.type_name.clone(),
            dry_run,
        };
        let plugin = self.plugin.clone();
        match blocking(&self.info.type_name, move || {
            plugin.call(op::COLLECT_GARBAGE, &request)
        })
        .await
        {
            Err(err) if err.to_string().contains(UNKNOWN_OPERATION) => Ok(Vec::new()),
            other => other,
        }
    }
}

/// A runtime living in a plugin.
pub struct PluginRuntime {
    plugin: Plugin,
    id: u64,
    backend_type: String,
    capabilities: Capabilities,
    setup: SetupOutput,
    closed: AtomicBool,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("backend", &self.plugin.backend)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    fn request(&self) -> RuntimeRequest {
        RuntimeRequest { runtime: self.id }
    }

    async fn simple<T: DeserializeOwned + Send + 'static>(
        &self,
        operation: &'static str,
    ) -> Result<T> {
        let plugin = self.plugin.clone();
        let request = self.request();
        blocking(&self.plugin.backend, move || {
            plugin.call(operation, &request)
        })
        .await
    }
}

/// What the output sink's and the cancel token's contexts point to during
/// one command's call.
struct CallContext {
    /// Where the command's chunks go; `None` when its caller wants only the
    /// result (`execute`), and they are dropped.
    events: Option<EventSender>,
    /// Set when the caller of `execute` went away.
    abandoned: Arc<AtomicBool>,
}

impl CallContext {
    fn cancelled(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
            || self.events.as_ref().is_some_and(EventSender::is_closed)
    }
}

/// Only ever called by a plugin through the sink made in [`run_command`],
/// whose `new` contract keeps `context` a live `CallContext`.
extern "C" fn sink_write(context: *const c_void, stream: u8, bytes: RSlice<'_, u8>) -> bool {
    // SAFETY: `context` is the CallContext owned by the blocking call that
    // passed this sink; it outlives the call, and the plugin only calls the
    // sink during it.
    let context = unsafe { &*(context as *const CallContext) };
    let Some(events) = &context.events else {
        return !context.cancelled();
    };
    let chunk = bytes::Bytes::copy_from_slice(bytes.as_slice());
    let event = if stream == STDOUT {
        Event::Stdout(chunk)
    } else {
        Event::Stderr(chunk)
    };
    // A panic must not unwind into the plugin.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| events.blocking_send(event)))
        .unwrap_or(false)
}

/// Only ever called through the token made in [`run_command`], whose `new`
/// contract keeps `context` a live `CallContext`.
extern "C" fn is_cancelled(context: *const c_void) -> bool {
    // SAFETY: as in `sink_write`; `cancelled` only loads an atomic and asks
    // a channel whether it is closed, neither of which unwinds.
    unsafe { &*(context as *const CallContext) }.cancelled()
}

/// Sets a flag when dropped: an `execute` whose caller went away cancels
/// the plugin's call.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs one command's `stream` call to its end on this (blocking) thread:
/// chunks go to `context.events`, if any, and the call is cancelled once
/// the context says so. A failed call is a `Lost` result whose stderr says
/// why (also sent as a last chunk to a stream).
fn run_command(
    plugin: &Plugin,
    mut request: StreamRequest,
    stdin_pipe: Option<HostPipe>,
    context: &CallContext,
) -> ExecResult {
    // SAFETY: `context` outlives the calls below, the only users of the
    // sink and the token; neither function unwinds (`sink_write` catches
    // panics, `is_cancelled` only loads).
    let sink =
        unsafe { OutputSink::new(context as *const CallContext as *const c_void, sink_write) };
    // SAFETY: as above.
    let cancel =
        unsafe { CancelToken::new(context as *const CallContext as *const c_void, is_cancelled) };
    let started = std::time::Instant::now();
    let mut outcome: Result<ExecResult> = plugin.call_with(op::STREAM, &request, sink, cancel);
    if request.cmd.events_only
        && let Err(err) = &outcome
        && err.to_string().contains("unknown field `events_only`")
    {
        // A plugin built before the field: it keeps the output, and this
        // side drops it from the result (the events carried it).
        request.cmd.events_only = false;
        outcome =
            plugin
                .call_with(op::STREAM, &request, sink, cancel)
                .map(|mut result: ExecResult| {
                    for output in [&mut result.stdout, &mut result.stderr] {
                        output.bytes = Vec::new();
                        output.truncated = output.total_bytes > 0;
                    }
                    result
                });
    }
    if let Some(pipe) = stdin_pipe {
        pipe.finish();
    }
    outcome.unwrap_or_else(|err| {
        if let Some(events) = &context.events {
            events.blocking_send(Event::Stderr(bytes::Bytes::from(format!("berth: {err}\n"))));
        }
        lost(&err, started.elapsed())
    })
}

/// The result of a command whose call failed: a lost result has no other
/// place for the reason than the command's stderr, where it is said as a
/// line of berth's.
fn lost(err: &Error, elapsed: std::time::Duration) -> ExecResult {
    let mut lost = ExecResult::spawn_failed(&format!("berth: {err}"), elapsed);
    lost.status = crate::runtime::ExecStatus::Lost;
    lost
}

/// What a started call's sink and cancel token stand for, until the
/// plugin's `DONE` chunk.
struct Started {
    /// Set when the caller of `execute` went away.
    abandoned: Arc<AtomicBool>,
    /// Where the `DONE` chunk goes.
    end: tokio::sync::oneshot::Sender<Vec<u8>>,
}

/// The started calls in flight, by the number their sink's and token's
/// context pointer carries: a plugin that writes after its `DONE` chunk,
/// or writes it twice, finds nothing rather than freed memory.
fn lock_started() -> std::sync::MutexGuard<'static, HashMap<usize, Started>> {
    static CALLS: OnceLock<std::sync::Mutex<HashMap<usize, Started>>> = OnceLock::new();
    CALLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// The sink of a started `execute`: output is dropped (the plugin's result
/// carries it) and `false` asks the plugin to stop once the caller went
/// away; the `DONE` chunk goes to the waiting caller and ends the call.
extern "C" fn started_write(context: *const c_void, stream: u8, bytes: RSlice<'_, u8>) -> bool {
    let id = context as usize;
    // A panic must not unwind into the plugin.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if stream != DONE {
            return lock_started()
                .get(&id)
                .is_some_and(|call| !call.abandoned.load(Ordering::SeqCst));
        }
        let ended = lock_started().remove(&id);
        if let Some(call) = ended {
            let _ = call.end.send(bytes.as_slice().to_vec());
        }
        true
    }))
    .unwrap_or(false)
}

/// The cancel token of a started `execute`: cancelled once its caller went
/// away (or the call is over).
extern "C" fn started_cancelled(context: *const c_void) -> bool {
    let id = context as usize;
    std::panic::catch_unwind(|| {
        lock_started()
            .get(&id)
            .is_none_or(|call| call.abandoned.load(Ordering::SeqCst))
    })
    .unwrap_or(true)
}

impl PluginRuntime {
    /// Runs `request` as a started call: the plugin starts the command on
    /// this thread when its backend can, runs the rest on its own runtime,
    /// and this task waits for the end. No thread of the host blocks, and
    /// the end is the one hand-off between threads (a blocking call makes
    /// four). `None` when the plugin does not start calls (built before
    /// they existed); nothing was run then.
    async fn execute_started(
        &self,
        request: &StreamRequest,
        abandoned: &Arc<AtomicBool>,
    ) -> Option<Result<ExecResult>> {
        if !self.plugin.starts_commands.load(Ordering::Relaxed) {
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let (end, receiver) = tokio::sync::oneshot::channel();
        let call = Started {
            abandoned: Arc::clone(abandoned),
            end,
        };
        lock_started().insert(id, call);
        let context = id as *const c_void;
        // SAFETY: both functions take the number from any thread, look up
        // the call it stands for (finding nothing once it is over), never
        // dereference it, and catch their panics.
        let (sink, cancel) = unsafe {
            (
                OutputSink::new(context, started_write),
                CancelToken::new(context, started_cancelled),
            )
        };
        // Any reply is a start (its content is for later versions).
        let answer: Result<serde::de::IgnoredAny> =
            self.plugin
                .call_with(op::START_STREAM, request, sink, cancel);
        if let Err(err) = answer
            && lock_started().remove(&id).is_some()
        {
            // Not started: no DONE comes. (When it came already, the entry
            // is gone and it is the end.)
            if err.to_string().contains(UNKNOWN_OPERATION) {
                self.plugin.starts_commands.store(false, Ordering::Relaxed);
                return None;
            }
            return Some(Err(err));
        }
        Some(match receiver.await {
            Ok(chunk) => match chunk.split_first() {
                Some((0, reply)) => self.plugin.decode(op::STREAM, Ok(reply)),
                Some((_, text)) => self
                    .plugin
                    .decode(op::STREAM, Err(&String::from_utf8_lossy(text))),
                None => Err(Error::Backend {
                    backend: self.backend_type.clone(),
                    message: "the plugin ended a command with an empty chunk".into(),
                }),
            },
            Err(_) => Err(Error::Backend {
                backend: self.backend_type.clone(),
                message: "the plugin dropped a command without ending it".into(),
            }),
        })
    }

    /// The request for `cmd`, and the pipe carrying its streamed stdin to
    /// a plugin that reads it as it comes (one that does not gets it read
    /// to its end here first).
    async fn command_request(
        &self,
        mut cmd: ExecCommand,
    ) -> Result<(StreamRequest, Option<HostPipe>)> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::RuntimeClosed {
                backend: self.backend_type.clone(),
            });
        }
        let stdin_pipe = match cmd.stdin_stream.take().and_then(|s| s.take()) {
            Some(chunks) if self.capabilities.stdin_streaming => {
                Some(HostPipe::start(chunks).map_err(|err| Error::Backend {
                    backend: self.backend_type.clone(),
                    message: format!("making the pipe for the command's stdin: {err}"),
                })?)
            }
            Some(chunks) => {
                // A plugin that takes stdin only whole: read it to its end.
                let source = StdinSource::new(cmd.stdin.take(), Some(chunks));
                cmd.stdin = Some(source.collect().await);
                None
            }
            None => None,
        };
        let request = StreamRequest {
            runtime: self.id,
            cmd,
            stdin_fd: stdin_pipe.as_ref().map(HostPipe::plugin_end),
        };
        Ok((request, stdin_pipe))
    }
}

#[async_trait]
impl Runtime for PluginRuntime {
    fn backend_type(&self) -> &str {
        &self.backend_type
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        let request = AssetPathRequest {
            runtime: self.id,
            asset: asset.clone(),
        };
        self.plugin
            .call(op::ASSET_PATH, &request)
            .unwrap_or_else(|_| asset.absolute_path.display().to_string())
    }

    fn setup_output(&self) -> &SetupOutput {
        &self.setup
    }

    async fn stream(&self, cmd: ExecCommand) -> Result<EventStream> {
        let (request, stdin_pipe) = self.command_request(cmd).await?;
        let (events, stream) = EventStream::channel();
        let plugin = self.plugin.clone();
        tokio::task::spawn_blocking(move || {
            // Dropping the stream closes the channel, which cancels the call.
            let context = CallContext {
                events: Some(events),
                abandoned: Arc::new(AtomicBool::new(false)),
            };
            let result = run_command(&plugin, request, stdin_pipe, &context);
            if let Some(events) = &context.events {
                events.blocking_send(Event::Finished(result));
            }
        });
        Ok(stream)
    }

    /// As `stream(cmd).finish()`, without the stream: the plugin's chunks
    /// are dropped at the sink, and the result comes back as the started
    /// call's end (from a plugin built before started calls, from the
    /// blocking call itself). Dropping the future cancels the call.
    async fn execute(&self, cmd: ExecCommand) -> Result<ExecResult> {
        let (request, stdin_pipe) = self.command_request(cmd).await?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = SetOnDrop(Arc::clone(&abandoned));
        let started = std::time::Instant::now();
        if let Some(outcome) = self.execute_started(&request, &abandoned).await {
            if let Some(pipe) = stdin_pipe {
                pipe.finish();
            }
            return Ok(outcome.unwrap_or_else(|err| lost(&err, started.elapsed())));
        }
        let plugin = self.plugin.clone();
        let backend = self.backend_type.clone();
        let call = tokio::task::spawn_blocking(move || {
            let context = CallContext {
                events: None,
                abandoned,
            };
            run_command(&plugin, request, stdin_pipe, &context)
        });
        call.await.map_err(|err| Error::Backend {
            backend,
            message: format!("a plugin call did not finish: {err}"),
        })
    }

    async fn poll(&self) -> RuntimeStatus {
        if self.closed.load(Ordering::SeqCst) {
            return RuntimeStatus::Closed;
        }
        self.simple(op::POLL).await.unwrap_or(RuntimeStatus::Closed)
    }

    async fn kill(&self) -> Result<()> {
        self.simple(op::KILL).await
    }

    async fn cleanup(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        match self.simple::<()>(op::CLEANUP).await {
            // Already released: nothing is left to clean.
            Err(Error::RuntimeClosed { .. }) => Ok(()),
            other => other,
        }
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        let request = self.request();
        let _: Result<()> = self.plugin.call(op::RELEASE, &request);
    }
}
