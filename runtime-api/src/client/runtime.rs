//! [`ApiRuntime`]: a runtime whose commands run on a berth server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use session_core::assets::ResolvedAsset;
use session_core::runtime::{
    Capabilities, Event, EventSender, EventStream, ExecCommand, ExecResult, ExecStatus, Output,
    OutputBuffer, Runtime, RuntimeStatus, SetupOutput, StdinReceiver,
};
use session_core::{Error as CoreError, Result};
use tokio::sync::OwnedMutexGuard;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::http::{ApiClient, ExecStream};
use super::link::Link;
use super::on_drop::{OnDrop, detach};
use crate::protocol::{ChangeSet, ExecRequest, StdinChunk, StreamLine, WireOutput, WireResult};
use crate::token::random_hex;
use crate::{Error, TYPE_NAME};

/// How long a new command waits for the previous one to wind down after
/// its caller dropped its event stream.
const DRAIN_WAIT: Duration = Duration::from_secs(120);

/// Pauses between attempts to reach the server again for an execution
/// whose connection broke; after the last, the command counts as lost.
const RETRY_PAUSES: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// How many heartbeat periods of silence mean the connection is dead.
const MISSED_HEARTBEATS: u32 = 3;

/// The longest heartbeat period a server may announce: a longer one would
/// make a dead connection indistinguishable from a silent command.
const MAX_HEARTBEAT: Duration = Duration::from_secs(600);

/// How many times one execution's stream may be reopened after it broke
/// (each reopening itself retried as [`RETRY_PAUSES`] says) before the
/// command counts as lost: a server that answers every attempt and then
/// breaks the stream again does not keep the client busy for ever.
const MAX_REOPENS: u32 = 32;

/// What a runtime needs besides its link.
pub(crate) struct RuntimeParts {
    pub(crate) link: Link,
    pub(crate) runtime: String,
    pub(crate) capabilities: Capabilities,
    pub(crate) setup: SetupOutput,
    pub(crate) asset_paths: IndexMap<String, String>,
    pub(crate) output_limit: u64,
    pub(crate) renewer: AbortHandle,
}

struct Inner {
    link: Link,
    runtime: String,
    capabilities: Capabilities,
    setup: SetupOutput,
    asset_paths: IndexMap<String, String>,
    output_limit: u64,
    /// Held by the command that runs (one at a time).
    slot: Arc<tokio::sync::Mutex<()>>,
    /// The caller's end of the running command's events, to tell a busy
    /// runtime from one whose last command is winding down.
    current: Mutex<Option<EventSender>>,
    running: AtomicBool,
    closed: AtomicBool,
    renewer: AbortHandle,
}

/// A runtime of the `api` backend. Its remote session is deleted on
/// [`Runtime::cleanup`] and on drop, and reaped by the server when its
/// lease runs out (the runtime renews it in the background while it lives).
pub struct ApiRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRuntime")
            .field("server", &self.inner.link.client.url())
            .field("session", &self.inner.link.session)
            .field("runtime", &self.inner.runtime)
            .finish_non_exhaustive()
    }
}

impl ApiRuntime {
    pub(crate) fn new(parts: RuntimeParts) -> ApiRuntime {
        ApiRuntime {
            inner: Arc::new(Inner {
                link: parts.link,
                runtime: parts.runtime,
                capabilities: parts.capabilities,
                setup: parts.setup,
                asset_paths: parts.asset_paths,
                output_limit: parts.output_limit,
                slot: Arc::new(tokio::sync::Mutex::new(())),
                current: Mutex::new(None),
                running: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                renewer: parts.renewer,
            }),
        }
    }

    /// The remote session's id.
    pub fn remote_session(&self) -> &str {
        &self.inner.link.session
    }
}

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.renewer.abort();
        // Without a tokio runtime the lease reaps the remote session.
        let client = self.inner.link.client.clone();
        let session = self.inner.link.session.clone();
        detach(async move {
            if let Err(err) = client.delete_session(&session).await {
                tracing::debug!(%session, error = %err, "deleting a dropped runtime's remote session failed");
            }
        });
    }
}

fn busy() -> CoreError {
    CoreError::Backend {
        backend: TYPE_NAME.into(),
        message: "a command is already running on this runtime; the api backend runs one \
                  command at a time per runtime"
            .into(),
    }
}

impl Inner {
    /// Takes the command slot: at once when free, after a bounded wait when
    /// the command holding it was abandoned by its caller and is winding
    /// down, never when a caller still reads it.
    async fn take_slot(&self) -> Result<OwnedMutexGuard<()>> {
        if let Ok(guard) = Arc::clone(&self.slot).try_lock_owned() {
            return Ok(guard);
        }
        let abandoned = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(EventSender::is_closed);
        if !abandoned {
            return Err(busy());
        }
        tokio::time::timeout(DRAIN_WAIT, Arc::clone(&self.slot).lock_owned())
            .await
            .map_err(|_| busy())
    }

    /// Sends an execution request, again after a broken connection (the
    /// same key: the server never runs it twice), and reads its `started`
    /// line.
    async fn open(&self, body: &Bytes) -> std::result::Result<(ExecStream, bool, Duration), Error> {
        let mut last = None;
        for pause in RETRY_PAUSES {
            // A zero sleep would still wait for the timer's next tick.
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let attempt = async {
                let mut stream = self
                    .link
                    .client
                    .exec_raw(&self.link.session, &self.runtime, body.clone())
                    .await?;
                match stream.next_line().await? {
                    Some(StreamLine::Started {
                        attached,
                        heartbeat_ms,
                        ..
                    }) => {
                        let heartbeat =
                            Duration::from_millis(heartbeat_ms.max(1)).min(MAX_HEARTBEAT);
                        Ok((stream, attached, heartbeat))
                    }
                    other => Err(Error::Protocol(format!(
                        "an event stream must start with `started`, not {other:?}"
                    ))),
                }
            };
            match attempt.await {
                Ok(opened) => return Ok(opened),
                Err(err @ Error::Connect { .. }) => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| Error::Protocol("no attempt was made".into())))
    }
}

#[async_trait]
impl Runtime for ApiRuntime {
    fn backend_type(&self) -> &str {
        TYPE_NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// Where the server's runtime says the asset appears: the assets were
    /// uploaded into the remote session's read-only asset area when it was
    /// created.
    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        self.inner
            .asset_paths
            .get(&asset.name)
            .cloned()
            .unwrap_or_else(|| asset.absolute_path.display().to_string())
    }

    fn setup_output(&self) -> &SetupOutput {
        &self.inner.setup
    }

    async fn stream(&self, mut cmd: ExecCommand) -> Result<EventStream> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(CoreError::RuntimeClosed {
                backend: TYPE_NAME.into(),
            });
        }
        let slot = inner.take_slot().await?;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(CoreError::RuntimeClosed {
                backend: TYPE_NAME.into(),
            });
        }
        let began = Instant::now();
        let key = random_hex(16);
        let chunks = match cmd.stdin_stream.take() {
            Some(stream) if inner.capabilities.stdin_streaming => stream.take(),
            Some(stream) => {
                // A server whose runtime takes stdin only whole: read it
                // to its end first.
                cmd.stdin_stream = Some(stream);
                if let Some(source) = cmd.take_stdin() {
                    cmd.stdin = Some(source.collect().await);
                }
                None
            }
            None => None,
        };
        let mut command = cmd.clone();
        let stdin = command.stdin.take();
        command.spill_dir = None;
        // Keeping output is this side's business, as spilling is: the
        // server keeps its copy, which fills in what a reconnect skipped.
        command.events_only = false;
        let mut resynced = false;
        let (body, (exec, attached, heartbeat)) = loop {
            let base = inner.link.push().await?;
            let request = ExecRequest {
                idempotency_key: key.clone(),
                base,
                command: command.clone(),
                stdin: stdin.clone(),
                stdin_stream: chunks.is_some(),
            };
            let body = Bytes::from(serde_json::to_vec(&request).expect("requests serialise"));
            let limit = inner.link.limits.max_body_bytes;
            if body.len() as u64 > limit {
                return Err(Error::TooLarge {
                    what: "the command with its stdin",
                    size: body.len() as u64,
                    limit,
                }
                .into());
            }
            // Dropped mid-request, the command may have started: cancel it.
            let cancel = OnDrop::new({
                let client = inner.link.client.clone();
                let session = inner.link.session.clone();
                let key = key.clone();
                move || {
                    detach(async move {
                        let _ = client.cancel(&session, &key).await;
                    });
                }
            });
            let opened = inner.open(&body).await;
            cancel.disarm();
            match opened {
                Ok(opened) => break (body, opened),
                // The remote workspace is not what the client believed:
                // learn it and push again, once.
                Err(err) if err.status() == Some(412) && !resynced => {
                    resynced = true;
                    inner.link.mark_stale();
                }
                Err(err) => return Err(err.into()),
            }
        };
        let (events, stream) = EventStream::channel();
        *inner.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(events.clone());
        inner.running.store(true, Ordering::SeqCst);
        let limit = cmd.output_limit.unwrap_or(inner.output_limit);
        let feeder = chunks.map(|chunks| {
            tokio::spawn(feed_stdin(
                inner.link.client.clone(),
                inner.link.session.clone(),
                key.clone(),
                chunks,
            ))
            .abort_handle()
        });
        let driver = Driver {
            inner: Arc::clone(inner),
            key,
            body,
            events,
            stdout: OutputBuffer::new(limit, cmd.spill_dir.as_deref(), "stdout")
                .events_only(cmd.events_only),
            stderr: OutputBuffer::new(limit, cmd.spill_dir.as_deref(), "stderr")
                .events_only(cmd.events_only),
            began,
            consumer: true,
            attached,
            heartbeat,
            feeder,
        };
        tokio::spawn(driver.run(exec, slot));
        Ok(stream)
    }

    async fn poll(&self) -> RuntimeStatus {
        if self.inner.closed.load(Ordering::SeqCst) {
            RuntimeStatus::Closed
        } else if self.inner.running.load(Ordering::SeqCst) {
            RuntimeStatus::Running(1)
        } else {
            RuntimeStatus::Idle
        }
    }

    async fn kill(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let link = &self.inner.link;
        link.client
            .kill(&link.session, &self.inner.runtime)
            .await
            .map_err(Into::into)
    }

    async fn cleanup(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.renewer.abort();
        let link = &self.inner.link;
        match link.client.delete_session(&link.session).await {
            Ok(()) => Ok(()),
            Err(err) if err.status() == Some(404) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// The most bytes of streamed stdin sent in one request.
const STDIN_BATCH: usize = 256 * 1024;

/// Sends an execution's streamed stdin to the server, in order, each
/// request once the command took the one before; the end of `chunks`
/// closes the command's stdin. A request whose connection failed is sent
/// again (the server skips what it already took) as [`RETRY_PAUSES`] says;
/// the command reading no more (`410`) ends it quietly.
async fn feed_stdin(client: ApiClient, session: String, key: String, mut chunks: StdinReceiver) {
    let mut offset = 0u64;
    loop {
        let mut data = BytesMut::new();
        let eof = match chunks.recv().await {
            None => true,
            Some(chunk) => {
                data.extend_from_slice(&chunk);
                // Whatever else is queued already goes along.
                while data.len() < STDIN_BATCH {
                    match chunks.try_recv() {
                        Some(more) => data.extend_from_slice(&more),
                        None => break,
                    }
                }
                false
            }
        };
        let data = data.freeze();
        let chunk = StdinChunk { offset, eof };
        let mut attempt = 0;
        let received = loop {
            match client.stdin(&session, &key, chunk, data.clone()).await {
                Ok(answer) => break answer.received,
                Err(err) if err.status() == Some(410) => return,
                Err(err @ Error::Connect { .. }) => {
                    let Some(pause) = RETRY_PAUSES.get(attempt) else {
                        tracing::warn!(error = %err, "the command's stdin could not be sent");
                        return;
                    };
                    tracing::debug!(error = %err, "sending stdin again");
                    attempt += 1;
                    tokio::time::sleep(*pause).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the command's stdin could not be sent");
                    return;
                }
            }
        };
        offset = received;
        if eof {
            return;
        }
    }
}

/// Reads one execution's lines on behalf of the caller's event stream.
struct Driver {
    inner: Arc<Inner>,
    key: String,
    body: Bytes,
    events: EventSender,
    stdout: OutputBuffer,
    stderr: OutputBuffer,
    began: Instant,
    /// Whether the caller still reads the events.
    consumer: bool,
    /// Whether the stream read now joined the execution after a broken
    /// connection (it carries no live output).
    attached: bool,
    heartbeat: Duration,
    /// The task sending the command's streamed stdin, stopped when the
    /// command ends.
    feeder: Option<AbortHandle>,
}

/// How reading an execution ended.
enum Ending {
    Finished(Box<(WireResult, ChangeSet)>),
    Lost(String),
}

impl Driver {
    async fn run(mut self, mut exec: ExecStream, slot: OwnedMutexGuard<()>) {
        let ending = self.read(&mut exec).await;
        if let Some(feeder) = self.feeder.take() {
            feeder.abort();
        }
        let result = match ending {
            Ending::Finished(finished) => {
                let (wire, changes) = *finished;
                let pulled = self.inner.link.pull(&changes).await;
                let mut result = self.result(wire).await;
                if let Err(err) = pulled {
                    tracing::warn!(server = %self.inner.link.client.url(), error = %err,
                        "the command's changes could not be synced back");
                    self.inner.link.mark_stale();
                    result.status = ExecStatus::Lost;
                    let note = self
                        .say(&format!(
                            "the command's changes could not be synced back: {err}"
                        ))
                        .await;
                    result.stderr.total_bytes += note.len() as u64;
                    result.stderr.bytes.extend_from_slice(&note);
                }
                result
            }
            Ending::Lost(why) => {
                tracing::warn!(server = %self.inner.link.client.url(), reason = %why,
                    "lost the remote command");
                self.inner.link.mark_stale();
                let note = self.say(&format!("lost the remote command: {why}")).await;
                let _ = self.stderr.push(&note);
                ExecResult {
                    status: ExecStatus::Lost,
                    exit_code: -1,
                    signal: None,
                    stdout: self.stdout.finish(),
                    stderr: self.stderr.finish(),
                    elapsed: self.began.elapsed(),
                    timed_out: false,
                    usage: None,
                }
            }
        };
        self.inner.running.store(false, Ordering::SeqCst);
        *self.inner.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Free the slot before the caller hears the end, so its next
        // command is not refused as busy.
        drop(slot);
        if self.consumer {
            let _ = self.events.send(Event::Finished(result)).await;
        }
        // Read the stream's end, so its connection goes back to the pool.
        let _ = tokio::time::timeout(Duration::from_secs(1), exec.next_line()).await;
    }

    /// The caller dropped its stream: the command is cancelled on the
    /// server, as dropping a local stream kills a local command.
    async fn abandon(&mut self) {
        if !self.consumer {
            return;
        }
        self.consumer = false;
        self.cancel().await;
    }

    /// Asks the server to kill the command (best effort, bounded in time):
    /// its events will not be followed any more.
    async fn cancel(&self) {
        let link = &self.inner.link;
        if let Err(err) = link.client.cancel(&link.session, &self.key).await {
            tracing::debug!(error = %err, "cancelling a command failed");
        }
    }

    /// Tells the caller, as a line on the command's stderr, why its command
    /// was lost (a `Lost` result has no other place for the reason), and
    /// returns that line.
    async fn say(&mut self, why: &str) -> Vec<u8> {
        let line = format!("berth: {why}\n").into_bytes();
        self.deliver(Event::Stderr(line.clone().into())).await;
        line
    }

    async fn deliver(&mut self, event: Event) {
        if self.consumer && !self.events.send(event).await {
            self.abandon().await;
        }
    }

    async fn read(&mut self, exec: &mut ExecStream) -> Ending {
        let mut reopened = 0;
        loop {
            let silence = self.heartbeat * MISSED_HEARTBEATS;
            let next = tokio::select! {
                line = tokio::time::timeout(silence, exec.next_line()) => line,
                () = self.events.closed(), if self.consumer => {
                    self.abandon().await;
                    continue;
                }
            };
            let broken = match next {
                Ok(Ok(Some(line))) => match line {
                    StreamLine::Stdout { data } => {
                        let _ = self.stdout.push(&data);
                        self.deliver(Event::Stdout(data.into())).await;
                        continue;
                    }
                    StreamLine::Stderr { data } => {
                        let _ = self.stderr.push(&data);
                        self.deliver(Event::Stderr(data.into())).await;
                        continue;
                    }
                    StreamLine::Started { .. } | StreamLine::Heartbeat => continue,
                    StreamLine::Finished { result, changes } => {
                        return Ending::Finished(Box::new((result, changes)));
                    }
                    StreamLine::Error { error } => {
                        return Ending::Lost(error.into_error().to_string());
                    }
                },
                Ok(Ok(None)) => "the event stream ended without a result".to_owned(),
                // A line that is not one (too long, not JSON, not a line of
                // the protocol) is the server's doing, not the
                // connection's: asking again would get it again.
                Ok(Err(err @ Error::Protocol(_))) => {
                    self.cancel().await;
                    return Ending::Lost(err.to_string());
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("the server was silent for {silence:?}"),
            };
            if reopened == MAX_REOPENS {
                self.cancel().await;
                return Ending::Lost(format!(
                    "{broken}, after the stream had been reopened {MAX_REOPENS} times"
                ));
            }
            reopened += 1;
            // The connection broke: join the execution again by its key.
            tracing::debug!(reason = %broken, "reconnecting to a running command");
            match self.inner.open(&self.body).await {
                Ok((stream, attached, heartbeat)) => {
                    *exec = stream;
                    self.attached |= attached;
                    self.heartbeat = heartbeat;
                }
                Err(err) => return Ending::Lost(format!("{broken}; then {err}")),
            }
        }
    }

    /// The result: the server's status and timings, the output this side
    /// collected (with its own spill files), completed from the server's
    /// copy when a reconnect skipped some of it.
    async fn result(&mut self, wire: WireResult) -> ExecResult {
        let stdout = std::mem::replace(&mut self.stdout, OutputBuffer::new(0, None, "stdout"));
        let stderr = std::mem::replace(&mut self.stderr, OutputBuffer::new(0, None, "stderr"));
        let stdout = self.complete(stdout, wire.stdout, true).await;
        let stderr = self.complete(stderr, wire.stderr, false).await;
        ExecResult {
            status: wire.status,
            exit_code: wire.exit_code,
            signal: wire.signal,
            stdout,
            stderr,
            elapsed: wire.elapsed,
            timed_out: wire.timed_out,
            usage: wire.usage,
        }
    }

    async fn complete(
        &mut self,
        mut buffer: OutputBuffer,
        wire: WireOutput,
        stdout: bool,
    ) -> Output {
        let Some(kept) = wire.data else {
            // The live stream delivered every byte before its last line.
            return buffer.finish();
        };
        let have = buffer.total();
        if have < kept.len() as u64 {
            let missing = kept[have as usize..].to_vec();
            let _ = buffer.push(&missing);
            let event = if stdout {
                Event::Stdout(missing.into())
            } else {
                Event::Stderr(missing.into())
            };
            self.deliver(event).await;
        }
        if buffer.total() == wire.total_bytes {
            buffer.finish()
        } else if buffer.keeps_bytes() {
            Output {
                bytes: kept,
                truncated: wire.truncated,
                total_bytes: wire.total_bytes,
                spill_path: None,
            }
        } else {
            Output {
                bytes: Vec::new(),
                truncated: wire.total_bytes > 0,
                total_bytes: wire.total_bytes,
                spill_path: None,
            }
        }
    }
}
