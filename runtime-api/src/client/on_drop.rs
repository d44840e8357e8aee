//! Cleanup for a caller that cancels midway.

use std::future::Future;

/// Runs its action when dropped, unless disarmed: a caller that drops a
/// spawn or a command future midway leaves nothing running on the server.
pub(crate) struct OnDrop<F: FnOnce()> {
    action: Option<F>,
}

impl<F: FnOnce()> OnDrop<F> {
    /// Arms `action`.
    pub(crate) fn new(action: F) -> OnDrop<F> {
        OnDrop {
            action: Some(action),
        }
    }

    /// Drops without running the action.
    pub(crate) fn disarm(mut self) {
        self.action = None;
    }
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(action) = self.action.take() {
            action();
        }
    }
}

/// Runs `work` on the current tokio runtime, if there is one, without
/// waiting for it.
pub(crate) fn detach(work: impl Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(work);
    }
}
