//! `Runtime`, `ExecResult`, `Stream` and `Event`: running commands and
//! reading their output, whole or live.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use session_core::runtime::{
    Direct, Event as CoreEvent, EventStream, ExecCommand, RuntimeStatus, Waited,
};
use session_core::session::RuntimeHandle;

use crate::session::Session;
use crate::spec::from_json;
use crate::{Failure, Owner, aio, tokio_rt, wait, wait_unless};

/// A sandbox that runs commands in the session's workspace, made by
/// `Session.spawn()`. Any number of threads may run commands on one
/// runtime at once when its backend allows (`capabilities`).
#[pyclass(module = "berth._berth", frozen)]
pub(crate) struct Runtime {
    owner: Owner,
    /// `None` only while dropping.
    handle: Option<RuntimeHandle>,
    /// Kept alive while the runtime is: the session owns the workspace.
    session: Py<Session>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            if self.owner.is_here() {
                let _context = tokio_rt().enter();
                drop(handle);
            } else {
                std::mem::forget(handle);
            }
        }
    }
}

impl Runtime {
    pub(crate) fn new(handle: RuntimeHandle, session: Py<Session>) -> Runtime {
        Runtime {
            owner: Owner::here(),
            handle: Some(handle),
            session,
        }
    }

    pub(crate) fn handle(&self) -> PyResult<RuntimeHandle> {
        self.owner.check("runtime")?;
        Ok(Arc::clone(self.handle.as_ref().expect("alive")))
    }
}

/// Seconds as a duration; `None` stays `None`.
fn seconds(name: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|secs| {
            Duration::try_from_secs_f64(secs)
                .map(|d| d.min(session_core::runtime::MAX_TIMEOUT))
                .map_err(|_| {
                    PyValueError::new_err(format!(
                        "{name} must be a finite number of seconds >= 0, not {secs}"
                    ))
                })
        })
        .transpose()
}

/// Stdin given as `bytes` or `str` (UTF-8).
fn stdin_bytes(stdin: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u8>>> {
    let Some(stdin) = stdin.filter(|s| !s.is_none()) else {
        return Ok(None);
    };
    if let Ok(text) = stdin.cast::<PyString>() {
        return Ok(Some(text.extract::<String>()?.into_bytes()));
    }
    Ok(Some(stdin.extract::<Vec<u8>>()?))
}

#[allow(clippy::too_many_arguments)]
fn command(
    command: String,
    env: Option<IndexMap<String, String>>,
    stdin: Option<&Bound<'_, PyAny>>,
    timeout: Option<f64>,
    idle_timeout: Option<f64>,
    output_limit: Option<u64>,
) -> PyResult<ExecCommand> {
    let mut cmd = ExecCommand::new(command);
    cmd.env = env.unwrap_or_default();
    cmd.stdin = stdin_bytes(stdin)?;
    cmd.wall_timeout = seconds("timeout", timeout)?;
    cmd.idle_timeout = seconds("idle_timeout", idle_timeout)?;
    cmd.output_limit = output_limit;
    Ok(cmd)
}

#[pymethods]
impl Runtime {
    /// Runs `command` (a POSIX shell string, run in the workspace) to its
    /// end and returns its result.
    ///
    /// `env` adds variables for this command; `stdin` (`bytes` or `str`)
    /// is fed to it (without it, stdin is empty); `timeout` and
    /// `idle_timeout` (seconds; default the spec's limits) kill its whole
    /// tree, and the result then says `timed_out=True`; `output_limit` is
    /// how many bytes of each stream are kept. The GIL is released while it
    /// runs; Ctrl-C (or any exception a signal handler raises) kills the
    /// command's tree and propagates, and the runtime stays usable.
    #[pyo3(signature = (command, *, env = None, stdin = None, timeout = None, idle_timeout = None, output_limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        py: Python<'_>,
        command: String,
        env: Option<IndexMap<String, String>>,
        stdin: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        idle_timeout: Option<f64>,
        output_limit: Option<u64>,
    ) -> PyResult<ExecResult> {
        let handle = self.handle()?;
        let cmd = self::command(command, env, stdin, timeout, idle_timeout, output_limit)?;
        let result = wait(py, async move { Ok(handle.execute(cmd).await?) })?;
        Ok(ExecResult { result })
    }

    /// `execute()`, for `async` code: cancelling the awaiting task kills
    /// the command's tree.
    #[pyo3(signature = (command, *, env = None, stdin = None, timeout = None, idle_timeout = None, output_limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn aexecute<'py>(
        &self,
        py: Python<'py>,
        command: String,
        env: Option<IndexMap<String, String>>,
        stdin: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        idle_timeout: Option<f64>,
        output_limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle()?;
        let cmd = self::command(command, env, stdin, timeout, idle_timeout, output_limit)?;
        aio::future(
            py,
            async move { Ok(handle.execute(cmd).await?) },
            |py, result| Ok(Py::new(py, ExecResult { result })?.into_any()),
        )
    }

    /// Starts `command` (arguments as for `execute`) and returns its live
    /// events: iterate it (`for event in …`, or `async for`) to get
    /// `stdout` and `stderr` chunks as they are read, then one `finished`
    /// event with the result. The command starts on the first iteration.
    /// Closing the stream (or dropping it) before the end kills the
    /// command's tree, as does Ctrl-C or cancelling the task that iterates.
    ///
    /// On the local and namespace backends the iterator reads the
    /// command's stdout pipe itself, on the iterating thread, whenever no
    /// other event waits: each chunk is one `bytes` object made from one
    /// read, as a `subprocess` read loop would make it. A consumer that
    /// stops iterating stops the command at its pipe; the command's
    /// timeouts still run, and output waiting unread counts as output for
    /// `idle_timeout`.
    #[pyo3(signature = (command, *, env = None, stdin = None, timeout = None, idle_timeout = None, output_limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        command: String,
        env: Option<IndexMap<String, String>>,
        stdin: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        idle_timeout: Option<f64>,
        output_limit: Option<u64>,
    ) -> PyResult<Stream> {
        let handle = self.handle()?;
        let cmd = self::command(command, env, stdin, timeout, idle_timeout, output_limit)?;
        Ok(Stream {
            owner: Owner::here(),
            state: Arc::new(Mutex::new(StreamState::Pending(Box::new(cmd), handle))),
            result: Mutex::new(None),
            closed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Kills every running command's tree. Idempotent.
    fn kill(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle()?;
        wait(py, async move { Ok(handle.kill().await?) })
    }

    /// `kill()`, for `async` code.
    fn akill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle()?;
        aio::future(py, async move { Ok(handle.kill().await?) }, |py, ()| {
            Ok(py.None())
        })
    }

    /// Kills what runs and releases everything the runtime made
    /// (processes, containers, networks). Idempotent; the session's
    /// `close()` does it too.
    fn cleanup(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle()?;
        wait(py, async move { Ok(handle.cleanup().await?) })
    }

    /// `cleanup()`, for `async` code.
    fn acleanup<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle()?;
        aio::future(py, async move { Ok(handle.cleanup().await?) }, |py, ()| {
            Ok(py.None())
        })
    }

    /// `idle`, `running` (a command runs) or `closed`.
    #[getter]
    fn status(&self, py: Python<'_>) -> PyResult<&'static str> {
        let handle = self.handle()?;
        let status = wait(py, async move { Ok(handle.poll().await) })?;
        Ok(match status {
            RuntimeStatus::Idle => "idle",
            RuntimeStatus::Running(_) => "running",
            RuntimeStatus::Closed => "closed",
        })
    }

    /// How many commands run now.
    #[getter]
    fn running(&self, py: Python<'_>) -> PyResult<usize> {
        let handle = self.handle()?;
        let status = wait(py, async move { Ok(handle.poll().await) })?;
        Ok(match status {
            RuntimeStatus::Running(n) => n,
            _ => 0,
        })
    }

    /// The backend type that made it.
    #[getter]
    fn backend_type(&self) -> PyResult<String> {
        Ok(self.handle()?.backend_type().to_owned())
    }

    /// What it supports, as a dict of capability name to bool.
    #[getter]
    fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(self.handle()?.capabilities())
            .map_err(|err| PyValueError::new_err(err.to_string()))?;
        from_json(py, &value)
    }

    /// What the setup commands printed at spawn: a list of
    /// `(command, ExecResult)` in the order they ran.
    #[getter]
    fn setup_output(&self) -> PyResult<Vec<(String, ExecResult)>> {
        Ok(self
            .handle()?
            .setup_output()
            .commands
            .iter()
            .map(|(command, result)| {
                (
                    command.clone(),
                    ExecResult {
                        result: result.clone(),
                    },
                )
            })
            .collect())
    }

    /// The session it belongs to.
    #[getter]
    fn session(&self, py: Python<'_>) -> Py<Session> {
        self.session.clone_ref(py)
    }

    fn __repr__(&self) -> String {
        match &self.handle {
            Some(handle) => format!("Runtime(backend_type={:?})", handle.backend_type()),
            None => "Runtime()".into(),
        }
    }
}

/// Resources a command used.
#[pyclass(module = "berth._berth", frozen, get_all)]
pub(crate) struct Usage {
    /// CPU seconds in user mode.
    user_cpu: f64,
    /// CPU seconds in kernel mode.
    system_cpu: f64,
    /// Peak resident set size in bytes.
    max_rss_bytes: u64,
}

#[pymethods]
impl Usage {
    fn __repr__(&self) -> String {
        format!(
            "Usage(user_cpu={}, system_cpu={}, max_rss_bytes={})",
            self.user_cpu, self.system_cpu, self.max_rss_bytes
        )
    }
}

/// The outcome of one command. A command that failed, was killed or timed
/// out is a result, not an exception: look at `status`, `exit_code`,
/// `timed_out`.
#[pyclass(module = "berth._berth", frozen)]
pub(crate) struct ExecResult {
    result: session_core::runtime::ExecResult,
}

#[pymethods]
impl ExecResult {
    /// The exit status; `-N` when signal N killed it; -1 when it never ran.
    #[getter]
    fn exit_code(&self) -> i32 {
        self.result.exit_code
    }

    /// How it ended: `exited`, `signaled`, `timed_out`, `idle_timed_out`,
    /// `spawn_failed` or `lost`.
    #[getter]
    fn status(&self) -> &'static str {
        use session_core::runtime::ExecStatus as S;
        match self.result.status {
            S::Exited => "exited",
            S::Signaled => "signaled",
            S::TimedOut => "timed_out",
            S::IdleTimedOut => "idle_timed_out",
            S::SpawnFailed => "spawn_failed",
            S::Lost => "lost",
        }
    }

    /// The signal that killed it, if one did.
    #[getter]
    fn signal(&self) -> Option<i32> {
        self.result.signal
    }

    /// Whether a wall or idle timeout ended it.
    #[getter]
    fn timed_out(&self) -> bool {
        self.result.timed_out
    }

    /// Whether it exited with status 0.
    #[getter]
    fn ok(&self) -> bool {
        self.result.success()
    }

    /// Standard output (the bytes kept).
    #[getter]
    fn stdout<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.result.stdout.bytes)
    }

    /// Standard error (the bytes kept).
    #[getter]
    fn stderr<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.result.stderr.bytes)
    }

    /// Standard output as text (UTF-8, invalid bytes replaced).
    #[getter]
    fn stdout_text(&self) -> String {
        self.result.stdout_lossy().into_owned()
    }

    /// Standard error as text (UTF-8, invalid bytes replaced).
    #[getter]
    fn stderr_text(&self) -> String {
        self.result.stderr_lossy().into_owned()
    }

    /// Whether stdout passed the output limit (the rest was not kept).
    #[getter]
    fn stdout_truncated(&self) -> bool {
        self.result.stdout.truncated
    }

    /// Whether stderr passed the output limit.
    #[getter]
    fn stderr_truncated(&self) -> bool {
        self.result.stderr.truncated
    }

    /// Bytes written to stdout in all.
    #[getter]
    fn stdout_total_bytes(&self) -> u64 {
        self.result.stdout.total_bytes
    }

    /// Bytes written to stderr in all.
    #[getter]
    fn stderr_total_bytes(&self) -> u64 {
        self.result.stderr.total_bytes
    }

    /// Wall seconds from start to end.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.result.elapsed.as_secs_f64()
    }

    /// Resources used, when the backend can tell.
    #[getter]
    fn usage(&self) -> Option<Usage> {
        self.result.usage.map(|u| Usage {
            user_cpu: u.user_cpu.as_secs_f64(),
            system_cpu: u.system_cpu.as_secs_f64(),
            max_rss_bytes: u.max_rss_bytes,
        })
    }

    fn __bool__(&self) -> bool {
        self.result.success()
    }

    fn __repr__(&self) -> String {
        format!(
            "ExecResult(status={:?}, exit_code={}, timed_out={}, stdout={} bytes, stderr={} bytes, elapsed={:.3})",
            self.status(),
            self.result.exit_code,
            self.result.timed_out,
            self.result.stdout.bytes.len(),
            self.result.stderr.bytes.len(),
            self.result.elapsed.as_secs_f64()
        )
    }
}

/// One event of a running command: `kind` is `stdout` or `stderr` with
/// the chunk in `data`, or `finished` (always last) with the `result`.
#[pyclass(module = "berth._berth", frozen, get_all)]
pub(crate) struct Event {
    /// `stdout`, `stderr` or `finished` (interned: comparing it costs
    /// no new string).
    kind: Py<PyString>,
    /// The chunk (empty for `finished`).
    data: Py<PyBytes>,
    /// The result, on the `finished` event.
    result: Option<Py<ExecResult>>,
}

#[pymethods]
impl Event {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Event(kind={:?}, data={} bytes)",
            self.kind.bind(py).to_string(),
            self.data.bind(py).as_bytes().len()
        )
    }
}

enum StreamState {
    /// Not started yet.
    Pending(Box<ExecCommand>, RuntimeHandle),
    Running(EventStream),
    /// A call holds the stream now (or was cancelled holding it).
    Busy,
    Done,
}

/// The live events of one command (`Runtime.stream`): an iterator and an
/// async iterator of `Event`s. See `Runtime.stream`.
#[pyclass(module = "berth._berth")]
pub(crate) struct Stream {
    owner: Owner,
    state: Arc<Mutex<StreamState>>,
    result: Mutex<Option<Py<ExecResult>>>,
    /// Told by `close()`, for an async read that waits.
    closed: Arc<tokio::sync::Notify>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let state = std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            StreamState::Done,
        );
        if self.owner.is_here() {
            let _context = tokio_rt().enter();
            drop(state);
        } else {
            std::mem::forget(state);
        }
    }
}

/// The error of a read while another one holds the stream.
fn busy() -> PyErr {
    crate::errors::BerthError::new_err(
        "the stream is being read by another call, or a read of it was cancelled",
    )
}

fn lock(state: &Mutex<StreamState>) -> std::sync::MutexGuard<'_, StreamState> {
    state.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Starts the command if it has not started, then waits for its next
/// event. Returns the stream with the event (`None` after the end).
async fn next_event(
    state: StreamState,
) -> Result<(Option<EventStream>, Option<CoreEvent>), Failure> {
    let mut stream = match state {
        StreamState::Pending(cmd, handle) => handle.stream(*cmd).await?,
        StreamState::Running(stream) => stream,
        StreamState::Busy | StreamState::Done => return Ok((None, None)),
    };
    let event = stream.next().await;
    Ok((Some(stream), event))
}

impl Stream {
    /// Turns an event into its Python object and puts the stream back (or
    /// marks it done).
    fn deliver(
        &self,
        py: Python<'_>,
        stream: Option<EventStream>,
        event: Option<CoreEvent>,
    ) -> PyResult<Option<Event>> {
        deliver(py, &self.state, &self.result, stream, event)
    }
}

fn deliver(
    py: Python<'_>,
    state: &Mutex<StreamState>,
    result_slot: &Mutex<Option<Py<ExecResult>>>,
    stream: Option<EventStream>,
    event: Option<CoreEvent>,
) -> PyResult<Option<Event>> {
    let (kind, data, result) = match event {
        None => {
            *lock(state) = StreamState::Done;
            return Ok(None);
        }
        Some(CoreEvent::Stdout(bytes)) => ("stdout", bytes, None),
        Some(CoreEvent::Stderr(bytes)) => ("stderr", bytes, None),
        Some(CoreEvent::Finished(result)) => {
            let result = Py::new(py, ExecResult { result })?;
            *result_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone_ref(py));
            ("finished", bytes::Bytes::new(), Some(result))
        }
    };
    match (stream, kind) {
        (Some(stream), "stdout" | "stderr") => put_back(state, stream),
        _ => *lock(state) = StreamState::Done,
    }
    Ok(Some(Event {
        kind: kind_of(py, kind),
        data: PyBytes::new(py, &data).unbind(),
        result,
    }))
}

/// Puts a stream that a call held back in its place, unless it was closed
/// meanwhile (from another thread): then the stream goes, and the command's
/// tree is killed.
fn put_back(state: &Mutex<StreamState>, stream: EventStream) {
    let mut slot = lock(state);
    if matches!(*slot, StreamState::Busy) {
        *slot = StreamState::Running(stream);
        return;
    }
    drop(slot);
    let _context = tokio_rt().enter();
    drop(stream);
}

/// Whether a stream that a call holds was closed meanwhile.
fn closed_meanwhile(state: &Mutex<StreamState>) -> bool {
    matches!(*lock(state), StreamState::Done)
}

/// An event's kind, as an interned Python string.
fn kind_of(py: Python<'_>, kind: &'static str) -> Py<PyString> {
    match kind {
        "stdout" => pyo3::intern!(py, "stdout").clone().unbind(),
        "stderr" => pyo3::intern!(py, "stderr").clone().unbind(),
        _ => pyo3::intern!(py, "finished").clone().unbind(),
    }
}

/// What [`next_running`] came to.
enum Step<'py> {
    /// Bytes of stdout read from the command's pipe directly.
    Stdout(EventStream, Bound<'py, PyBytes>),
    /// The stream's next event (`None` after its end).
    Event(Option<EventStream>, Option<CoreEvent>),
}

/// The next event of a started command: one already waiting, or, when the
/// backend lends the command's stdout pipe (`StdoutLend`), bytes read from
/// the pipe straight into a `bytes` object, both without leaving the GIL;
/// otherwise waited for with the GIL released (in `poll(2)` of the pipe
/// while it is lent). On an error (a signal while waiting), or once the
/// stream is closed from another thread, the stream is dropped, which
/// kills the command.
fn next_running<'py>(
    py: Python<'py>,
    state: &Mutex<StreamState>,
    mut stream: EventStream,
) -> PyResult<Step<'py>> {
    loop {
        let mut raised = None;
        let read = stream.try_next_direct(|data| new_bytes(py, data, &mut raised));
        match read {
            Ok(Direct::Read(data)) => return Ok(Step::Stdout(stream, data)),
            Ok(Direct::Event(event)) => return Ok(Step::Event(Some(stream), Some(event))),
            Ok(Direct::End) => return Ok(Step::Event(Some(stream), None)),
            Ok(Direct::Wait) => {}
            Err(_) => {
                if let Some(raised) = raised {
                    return Err(raised);
                }
                // The read failed: the pipe went back to the backend,
                // whose events bring the rest.
            }
        }
        if py.detach(|| stream.poll_direct(crate::SLICE)) {
            let signal = py.check_signals();
            if signal.is_err() || closed_meanwhile(state) {
                let _context = tokio_rt().enter();
                drop(stream);
                signal?;
                return Ok(Step::Event(None, None));
            }
            continue;
        }
        let waited = wait_unless(
            py,
            async move {
                let waited = stream.wait_direct().await;
                Ok((stream, waited))
            },
            &|| closed_meanwhile(state),
        )?;
        let Some((back, waited)) = waited else {
            return Ok(Step::Event(None, None));
        };
        stream = back;
        if let Waited::Event(event) = waited {
            return Ok(Step::Event(Some(stream), event));
        }
    }
}

/// A `bytes` object of `data`; a failure to make it is left in `raised`.
fn new_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    raised: &mut Option<PyErr>,
) -> std::io::Result<Bound<'py, PyBytes>> {
    let len = pyo3::ffi::Py_ssize_t::try_from(data.len()).map_err(std::io::Error::other)?;
    // SAFETY: PyBytes_FromStringAndSize copies `len` bytes from `data` into
    // a new bytes object, or returns null with an exception set; the GIL
    // is held.
    let bytes = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyBytes_FromStringAndSize(data.as_ptr().cast(), len),
        )
    }
    .map_err(|err| {
        *raised = Some(err);
        std::io::Error::other("no memory for a chunk of output")
    })?;
    // SAFETY: PyBytes_FromStringAndSize made a bytes object.
    Ok(unsafe { bytes.cast_into_unchecked() })
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Event> {
        self.owner.check("stream")?;
        let state = std::mem::replace(&mut *lock(&self.state), StreamState::Busy);
        let waited = match state {
            StreamState::Running(stream) => match next_running(py, &self.state, stream) {
                Ok(Step::Stdout(stream, data)) => {
                    put_back(&self.state, stream);
                    return Ok(Event {
                        kind: kind_of(py, "stdout"),
                        data: data.unbind(),
                        result: None,
                    });
                }
                Ok(Step::Event(stream, event)) => Ok((stream, event)),
                Err(err) => Err(err),
            },
            StreamState::Pending(..) => {
                wait_unless(py, next_event(state), &|| closed_meanwhile(&self.state))
                    .map(|waited| waited.unwrap_or((None, None)))
            }
            StreamState::Busy => return Err(busy()),
            StreamState::Done => {
                *lock(&self.state) = StreamState::Done;
                return Err(PyStopIteration::new_err(()));
            }
        };
        // Interrupted (the command is killed) or failed to start: the
        // stream is over.
        let (stream, event) = waited.inspect_err(|_| *lock(&self.state) = StreamState::Done)?;
        match self.deliver(py, stream, event)? {
            Some(event) => Ok(event),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.borrow();
        me.owner.check("stream")?;
        let state = std::mem::replace(&mut *lock(&me.state), StreamState::Busy);
        match state {
            StreamState::Done => {
                *lock(&me.state) = StreamState::Done;
                return Err(PyStopAsyncIteration::new_err(()));
            }
            StreamState::Busy => return Err(busy()),
            _ => {}
        }
        let this = slf.clone().unbind();
        let closed = Arc::clone(&me.closed);
        let next = async move {
            tokio::select! {
                next = next_event(state) => next,
                // Closed meanwhile: the stream (and its command) goes.
                () = closed.notified() => Ok((None, None)),
            }
        };
        aio::future(py, next, move |py, (stream, event)| {
            let me = this.bind(py).borrow();
            match deliver(py, &me.state, &me.result, stream, event)? {
                Some(event) => Ok(Py::new(py, event)?.into_any()),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    /// The command's result, once the `finished` event was read.
    #[getter]
    fn result(&self, py: Python<'_>) -> Option<Py<ExecResult>> {
        self.result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.clone_ref(py))
    }

    /// Reads the stream to its end and returns the result (the chunks not
    /// read yet are dropped; the result holds the output).
    fn finish(&self, py: Python<'_>) -> PyResult<Py<ExecResult>> {
        loop {
            match self.__next__(py) {
                Ok(event) => {
                    if let Some(result) = event.result {
                        return Ok(result);
                    }
                }
                Err(err) if err.is_instance_of::<PyStopIteration>(py) => {
                    return self.result(py).ok_or_else(|| {
                        crate::errors::BerthError::new_err("the stream ended without a result")
                    });
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Stops reading: a command still running is killed (its whole tree).
    fn close(&self) -> PyResult<()> {
        self.owner.check("stream")?;
        let state = std::mem::replace(&mut *lock(&self.state), StreamState::Done);
        if matches!(state, StreamState::Busy) {
            // A read holds the stream: an async one ends at this.
            self.closed.notify_one();
        }
        let _context = tokio_rt().enter();
        drop(state);
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Runtime>()?;
    m.add_class::<ExecResult>()?;
    m.add_class::<Usage>()?;
    m.add_class::<Event>()?;
    m.add_class::<Stream>()
}
