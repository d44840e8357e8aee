//! asyncio support: an `a…` method returns an asyncio future of the
//! running loop, settled from the tokio task that does the work (through
//! `loop.call_soon_threadsafe`). Cancelling the future (a cancelled
//! asyncio task cancels what it awaits) aborts the tokio task, which drops
//! what it held: a command's event stream, so the backend kills the
//! command's tree.

use std::future::Future;
use std::sync::Mutex;

use pyo3::prelude::*;

use crate::{Failure, tokio_rt};

/// Runs `work` on the tokio runtime and returns an asyncio future of the
/// running loop that gets `convert`'s value of its result, or its error.
pub(crate) fn future<'py, T, F, C>(
    py: Python<'py>,
    work: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
    C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let loop_ref = event_loop.unbind();
    let future_ref = future.clone().unbind();
    let task = tokio_rt().spawn(async move {
        let outcome = work.await;
        Python::attach(|py| {
            let (ok, value) = match outcome.map_err(PyErr::from).and_then(|v| convert(py, v)) {
                Ok(value) => (true, value),
                Err(err) => (false, err.into_value(py).into_any()),
            };
            let settle = match wrap_pyfunction!(settle, py) {
                Ok(settle) => settle,
                Err(err) => {
                    err.write_unraisable(py, None);
                    return;
                }
            };
            // A loop already closed has no one waiting for the value.
            let _ =
                loop_ref.call_method1(py, "call_soon_threadsafe", (settle, future_ref, ok, value));
        });
    });
    let canceller = Canceller {
        abort: Mutex::new(Some(task.abort_handle())),
    };
    future.call_method1("add_done_callback", (canceller,))?;
    Ok(future)
}

/// Sets a future's result or exception unless it is done already
/// (cancelled while the work finished).
#[pyfunction]
fn settle(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    if ok {
        future.call_method1("set_result", (value,))?;
    } else {
        future.call_method1("set_exception", (value,))?;
    }
    Ok(())
}

/// The done-callback of a future from [`future`]: aborts the tokio task
/// when the future was cancelled.
#[pyclass(module = "berth._berth")]
struct Canceller {
    abort: Mutex<Option<tokio::task::AbortHandle>>,
}

#[pymethods]
impl Canceller {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        let abort = self
            .abort
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if future.call_method0("cancelled")?.is_truthy()?
            && let Some(abort) = abort
        {
            abort.abort();
        }
        Ok(())
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Canceller>()
}
