//! A runtime of the `docker` backend: one container, commands as execs.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use session_core::assets::ResolvedAsset;
use session_core::runtime::{
    Capabilities, Event, EventStream, ExecCommand, ExecStatus, Runtime, RuntimeStatus, SetupOutput,
};
use session_core::spec::Limits;
use session_core::{Error, Result};
use tokio::sync::Notify;

use crate::container::{self, ContainerGuard, StdinLifeline, asset_target};
use crate::engine::backend_error;
use crate::exec::{self, KillScope, Target};
use crate::hand_back::{HandBack, Moment};
use crate::pool::{RefillAfter, Slot};
use crate::{DockerBackend, TYPE_NAME};

/// How long `cleanup()` waits for running commands to notice their end.
const CLEANUP_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Inner {
    target: Target,
    limits: Limits,
    capabilities: Capabilities,
    setup: OnceLock<SetupOutput>,
    running: AtomicUsize,
    closed: AtomicBool,
    /// Woken whenever a command finishes.
    idle: Notify,
    keep: bool,
    /// Held while a kill of every command runs: two such sweeps at once
    /// could kill each other before either is done.
    sweeping: tokio::sync::Mutex<()>,
    /// How the workspace goes back to the caller, when the container's
    /// user is someone else.
    hand_back: Option<HandBack>,
    /// Held while a hand-back runs: one at a time, and cleanup's last one
    /// after any other.
    handing_back: tokio::sync::Mutex<()>,
    /// How many hand-backs have started: a command that finished before
    /// one started needs no hand-back of its own.
    hand_backs: AtomicU64,
    /// How many kills of every command have started: a hand-back such a
    /// kill cut short is not worth a warning (the next one covers it).
    kills: AtomicU64,
    /// A pooled container's pool refills once this is dropped: after the
    /// first command ends (or with the runtime).
    refill: Mutex<Option<RefillAfter>>,
}

/// A runtime of the `docker` backend: one long-lived container in which
/// every command is an exec. Dropping it without `cleanup()` removes the
/// container in the background (see
/// [`wait_for_background_removals`](crate::wait_for_background_removals)).
pub struct DockerRuntime {
    inner: Arc<Inner>,
    guard: Mutex<Option<ContainerGuard>>,
    /// Holds the container's input open: the container stops when it is
    /// dropped (with this runtime, or when this process dies). `None` for a
    /// kept container.
    lifeline: Mutex<Option<StdinLifeline>>,
    /// A pooled container's workspace slot: the workspace stays bound into
    /// the container until the slot is dropped, after the container.
    slot: Mutex<Option<Slot>>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("container", &self.inner.target.container)
            .field("running", &self.inner.running.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// Decrements the running count however a command's task ends.
struct RunningCommand(Arc<Inner>);

impl RunningCommand {
    fn start(inner: &Arc<Inner>) -> RunningCommand {
        inner.running.fetch_add(1, Ordering::SeqCst);
        RunningCommand(Arc::clone(inner))
    }
}

impl Drop for RunningCommand {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify_waiters();
    }
}

impl DockerRuntime {
    pub(crate) fn new(
        target: Target,
        limits: Limits,
        guard: ContainerGuard,
        lifeline: Option<StdinLifeline>,
        keep: bool,
        hand_back: Option<HandBack>,
    ) -> DockerRuntime {
        DockerRuntime {
            inner: Arc::new(Inner {
                target,
                limits,
                capabilities: DockerBackend::capabilities(),
                setup: OnceLock::new(),
                running: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                idle: Notify::new(),
                keep,
                sweeping: tokio::sync::Mutex::new(()),
                hand_back,
                handing_back: tokio::sync::Mutex::new(()),
                hand_backs: AtomicU64::new(0),
                kills: AtomicU64::new(0),
                refill: Mutex::new(None),
            }),
            guard: Mutex::new(Some(guard)),
            lifeline: Mutex::new(lifeline),
            slot: Mutex::new(None),
        }
    }

    /// Gives the runtime its pooled container's workspace slot.
    pub(crate) fn set_slot(&self, slot: Option<Slot>) {
        *self.slot.lock().expect("slot lock") = slot;
    }

    /// Gives the runtime its pool's refill, started after its first
    /// command.
    pub(crate) fn set_refill(&self, refill: RefillAfter) {
        *self.inner.refill.lock().expect("refill lock") = Some(refill);
    }

    /// The id of the runtime's container.
    pub fn container_id(&self) -> &str {
        &self.inner.target.container
    }

    pub(crate) fn set_setup_output(&self, output: SetupOutput) {
        let _ = self.inner.setup.set(output);
    }

    /// Once the runtime is spawned, a kept container is no longer removed
    /// by the guard; only a cancelled spawn removes it.
    pub(crate) fn spawned(&self) {
        if self.inner.keep
            && let Some(guard) = self.guard.lock().expect("guard lock").as_mut()
        {
            guard.disarm();
        }
    }

    /// Kills every process berth started in the container.
    async fn kill_all(&self) -> Result<()> {
        self.inner.kill_all().await
    }

    /// The last hand-back, at cleanup: every process the commands started
    /// is killed first, so nothing writes in the tree meanwhile. Returns
    /// how that kill went and how the hand-back went; `None` when the
    /// runtime has no hand-back.
    async fn last_hand_back(&self) -> Option<(Result<()>, Result<()>)> {
        let hand_back = self.inner.hand_back?;
        let inner = &self.inner;
        let _turn = inner.handing_back.lock().await;
        inner.hand_backs.fetch_add(1, Ordering::SeqCst);
        let killed = inner.kill_all().await;
        let handed_back = hand_back
            .run(&inner.target, Moment::AtCleanup)
            .await
            .map_err(|reason| inner.hand_back_error(hand_back, &reason));
        Some((killed, handed_back))
    }

    async fn wait_idle(&self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.running.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(backend_error(format!(
                    "commands in container `{}` still running {}s after cleanup",
                    self.inner.target.container,
                    limit.as_secs()
                )));
            }
        }
    }
}

impl Inner {
    async fn kill_all(&self) -> Result<()> {
        let _sweeping = self.sweeping.lock().await;
        self.kills.fetch_add(1, Ordering::SeqCst);
        let target = &self.target;
        exec::kill_in_container(&target.docker, &target.container, KillScope::AllCommands).await
    }

    /// Hands the workspace back after a command. A failure is a warning:
    /// the command's result stands, a read that then meets what is left
    /// fails naming it, and cleanup hands back again. Once the runtime is
    /// closed, cleanup's own hand-back does it; when another hand-back
    /// started after the command ended (commands that end together), that
    /// one did.
    async fn hand_back_after_command(&self) {
        let Some(hand_back) = self.hand_back else {
            return;
        };
        let seen = self.hand_backs.load(Ordering::SeqCst);
        let _turn = self.handing_back.lock().await;
        if self.closed.load(Ordering::SeqCst) || self.hand_backs.load(Ordering::SeqCst) != seen {
            return;
        }
        self.hand_backs.fetch_add(1, Ordering::SeqCst);
        let kills = self.kills.load(Ordering::SeqCst);
        if let Err(reason) = hand_back.run(&self.target, Moment::AfterCommand).await {
            let error = self.hand_back_error(hand_back, &reason);
            if self.kills.load(Ordering::SeqCst) == kills {
                tracing::warn!(error = %error, "after a command");
            } else {
                tracing::debug!(error = %error, "a kill cut a hand-back short");
            }
        }
    }

    fn hand_back_error(&self, hand_back: HandBack, reason: &str) -> Error {
        backend_error(format!(
            "handing the workspace `{}` in container `{}` back to uid {}: {reason}",
            self.target.workdir,
            self.target.container,
            hand_back.uid()
        ))
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        // The guard (dropped with this struct) removes the container.
        self.inner.closed.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn backend_type(&self) -> &str {
        TYPE_NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        asset_target(&asset.save_path)
    }

    fn setup_output(&self) -> &SetupOutput {
        static EMPTY: SetupOutput = SetupOutput {
            commands: Vec::new(),
        };
        self.inner.setup.get().unwrap_or(&EMPTY)
    }

    async fn stream(&self, mut cmd: ExecCommand) -> Result<EventStream> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(Error::RuntimeClosed {
                backend: TYPE_NAME.into(),
            });
        }
        let stdin = cmd.take_stdin();
        let plan = exec::Plan {
            env: cmd.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            wall_timeout: cmd.wall_timeout.or(inner.limits.wall_timeout),
            idle_timeout: cmd.idle_timeout.or(inner.limits.idle_timeout),
            output_limit: cmd.output_limit.unwrap_or(inner.limits.output_limit),
            spill_dir: cmd.spill_dir,
            stdin,
            command: cmd.command,
            user: None,
        };
        let running = RunningCommand::start(inner);
        let (events, stream) = EventStream::channel();
        tokio::spawn(async move {
            let result = exec::run(&running.0.target, plan, &events).await;
            // The first command is over: the pool may start a container.
            if let Ok(mut refill) = running.0.refill.lock() {
                refill.take();
            }
            // A command that never ran changed nothing; one whose
            // container is gone leaves nobody to hand back.
            if !matches!(result.status, ExecStatus::SpawnFailed | ExecStatus::Lost) {
                running.0.hand_back_after_command().await;
            }
            drop(running);
            let _ = events.send(Event::Finished(result)).await;
        });
        Ok(stream)
    }

    async fn poll(&self) -> RuntimeStatus {
        if self.inner.closed.load(Ordering::SeqCst) {
            return RuntimeStatus::Closed;
        }
        match self.inner.running.load(Ordering::SeqCst) {
            0 => RuntimeStatus::Idle,
            n => RuntimeStatus::Running(n),
        }
    }

    async fn kill(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.kill_all().await
    }

    async fn cleanup(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let guard = self.guard.lock().expect("guard lock").take();
        let mut outcome = Ok(());
        let mut handed_back = Ok(());
        if let Some(mut guard) = guard {
            // Before the container goes: a failed hand-back is an error of
            // the cleanup, which still removes the container, and the
            // session still removes what it can.
            let killed = match self.last_hand_back().await {
                Some((killed, result)) => {
                    handed_back = result;
                    Some(killed)
                }
                None => None,
            };
            if self.inner.keep {
                guard.disarm();
                // The last hand-back, if any, killed every command already.
                outcome = match killed {
                    Some(killed) => killed,
                    None => self.kill_all().await,
                };
            } else {
                if let Some(Err(err)) = killed {
                    // Removing the container kills what is left; the
                    // hand-back says what the failure meant for the
                    // workspace.
                    tracing::debug!(error = %err, "killing every command before the last hand-back");
                }
                let lifeline = self.lifeline.lock().expect("lifeline lock").take();
                outcome =
                    container::let_go(&self.inner.target.docker, guard.name(), lifeline).await;
                if outcome.is_ok() {
                    guard.disarm();
                }
                // On failure the armed guard, dropped here, tries again in
                // the background.
            }
        }
        // Without its input the container stops, even if it could not be
        // removed.
        drop(self.lifeline.lock().expect("lifeline lock").take());
        // The workspace leaves the slot once the container no longer runs.
        drop(self.slot.lock().expect("slot lock").take());
        let idle = self.wait_idle(CLEANUP_WAIT).await;
        let mut failures: Vec<Error> = [handed_back, outcome, idle]
            .into_iter()
            .filter_map(Result::err)
            .collect();
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(Error::Cleanup(failures)),
        }
    }
}
