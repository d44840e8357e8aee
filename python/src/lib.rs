//! `berth._berth`: berth's session API as a CPython extension module.
//!
//! The pure-Python package `berth` (python/python/berth) re-exports what is
//! defined here and ships the typing stubs. The shape:
//!
//! * one tokio multi-thread runtime per process ([`tokio_rt`]), made lazily
//!   and made again in a forked child (found by its pid), since a fork
//!   keeps none of the parent's threads;
//! * every blocking call releases the GIL and waits for its task in short
//!   slices, checking Python's signals between them, so Ctrl-C cancels it
//!   (the task is aborted, which drops the command's event stream, and a
//!   backend kills the tree of a command whose stream is dropped);
//! * every `a…` method returns an asyncio future settled from the tokio
//!   task, and cancelling that future aborts the task the same way;
//! * every object that owns berth state remembers the pid that made it: in
//!   another process (a fork) its calls raise and its drop leaks instead of
//!   killing the parent's commands or removing the parent's workspace.

// PyO3 extracts arguments as owned values (`PathBuf`, `Vec<String>`,
// `Bound`); taking them by value is how its methods are written.
#![allow(clippy::needless_pass_by_value)]

mod aio;
mod errors;
mod runtime;
mod session;
mod snapshot;
mod spec;

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use pyo3::prelude::*;

// Linked for their `register_backend!` entries, as the `berth` binary does.
use runtime_api as _;
use runtime_docker as _;
use runtime_local as _;

pub(crate) use errors::{Failure, forked_error};

/// This process's pid, once asked for; 0 until then, and again in a
/// fork's child (a `pthread_atfork` handler forgets it there), so that the
/// check every call makes of who owns an object costs no system call.
static PID: AtomicU32 = AtomicU32::new(0);
/// Whether the handler that forgets [`PID`] in a child is installed.
static PID_KEPT: AtomicBool = AtomicBool::new(false);

extern "C" fn forget_pid() {
    PID.store(0, Ordering::Relaxed);
}

/// This process's pid (without a system call once known, where the fork
/// handler could be installed).
pub(crate) fn current_pid() -> u32 {
    if !PID_KEPT.load(Ordering::Relaxed) {
        return std::process::id();
    }
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// The process's tokio runtime and the pid that made it.
static TOKIO: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);

/// The tokio runtime of this process, made on first use and again after a
/// fork. A parent's runtime inherited by a child is leaked, never dropped:
/// its threads do not exist in the child.
pub(crate) fn tokio_rt() -> &'static tokio::runtime::Runtime {
    let pid = current_pid();
    let mut slot = TOKIO.lock().unwrap_or_else(|poison| poison.into_inner());
    match *slot {
        Some((owner, runtime)) if owner == pid => runtime,
        _ => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("berth-tokio")
                .build()
                .expect("cannot start the tokio runtime");
            let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
            *slot = Some((pid, runtime));
            runtime
        }
    }
}

/// The pid an object was made in; calls from another process raise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner(u32);

impl Owner {
    pub(crate) fn here() -> Owner {
        Owner(current_pid())
    }

    pub(crate) fn is_here(self) -> bool {
        self.0 == current_pid()
    }

    /// Raises in any process but the owner's.
    pub(crate) fn check(self, what: &str) -> PyResult<()> {
        if self.is_here() {
            Ok(())
        } else {
            Err(forked_error(what, self.0))
        }
    }
}

/// How long a blocking call waits before it looks at Python's signals.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Runs `work` on the process's tokio runtime and waits for it with the GIL
/// released, in slices: between slices Python's signal handlers run, and
/// when one raises (Ctrl-C's `KeyboardInterrupt`), the task is aborted and
/// waited for (which drops what it held, a command's event stream
/// included) before the exception propagates.
pub(crate) fn wait<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    Ok(wait_unless(py, work, &|| false)?.expect("nothing stops the wait"))
}

/// [`wait`], also looking at `stop` between slices: once it says so, the
/// work is dropped as for a signal and `None` returned.
pub(crate) fn wait_unless<T, F>(
    py: Python<'_>,
    work: F,
    stop: &dyn Fn() -> bool,
) -> PyResult<Option<T>>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let runtime = tokio_rt();
    if on_main_thread() {
        return wait_here(py, runtime, work, stop);
    }
    let mut task = runtime.spawn(work);
    loop {
        let outcome =
            py.detach(|| runtime.block_on(async { tokio::time::timeout(SLICE, &mut task).await }));
        match outcome {
            Ok(Ok(result)) => return result.map(Some).map_err(PyErr::from),
            Ok(Err(join)) => return Err(errors::join_error(&join)),
            Err(_elapsed) => {
                let signal = py.check_signals();
                if signal.is_err() || stop() {
                    task.abort();
                    let _ = py.detach(|| runtime.block_on(&mut task));
                    return signal.map(|()| None);
                }
            }
        }
    }
}

/// Whether this is the process's main thread (the one Python runs its
/// main code and signal handlers on), which lives as long as the process.
fn on_main_thread() -> bool {
    // SAFETY: gettid(2) takes no arguments and cannot fail.
    u32::try_from(unsafe { libc::gettid() }).is_ok_and(|tid| tid == current_pid())
}

/// [`wait`] on the main thread: the work runs on this thread itself
/// (`block_on`), without a hop to a worker and back. Not on other threads:
/// a command's keeper process takes its parent-death signal from the
/// thread that forks it, so one forked from a Python thread that ends
/// would end with it, and the main thread ends only with the process.
fn wait_here<T, F>(
    py: Python<'_>,
    runtime: &tokio::runtime::Runtime,
    work: F,
    stop: &dyn Fn() -> bool,
) -> PyResult<Option<T>>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let mut work = Box::pin(work);
    loop {
        let outcome =
            py.detach(|| runtime.block_on(async { tokio::time::timeout(SLICE, &mut work).await }));
        match outcome {
            Ok(result) => return result.map(Some).map_err(PyErr::from),
            Err(_elapsed) => {
                let signal = py.check_signals();
                if signal.is_err() || stop() {
                    // Dropped in the runtime's context: a command's event
                    // stream goes with it, and its tree is killed.
                    let _context = runtime.enter();
                    drop(work);
                    return signal.map(|()| None);
                }
            }
        }
    }
}

/// The module.
#[pymodule]
fn _berth(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // SAFETY: pthread_atfork(3) with a child handler that only stores to
    // an atomic (async-signal-safe); registered once per import.
    if unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) } == 0 {
        PID_KEPT.store(true, Ordering::Relaxed);
    }
    errors::register(m)?;
    spec::register(m)?;
    session::register(m)?;
    runtime::register(m)?;
    snapshot::register(m)?;
    aio::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
