//! The executable contract every berth backend must pass.
//!
//! `docs/backend-contract.md` states the contract in prose: every rule the
//! suite checks, with the case that checks it, and what every case assumes
//! of a backend's commands. Each [`Case`] names its rule ([`Case::rule`]),
//! and the report prints it beside the case.
//!
//! A [`Target`] names a backend (a registry and a spec template). The suite
//! runs every [`Case`] the backend's capabilities allow, each in a fresh
//! session with a fresh workspace, and reports one line per case and a
//! closing `N passed, N failed, N skipped`. From any crate's tests,
//! [`conformance_tests!`] makes one `#[test]` per case, named after it in a
//! module named after the target, so a failure names its rule:
//!
//! ```
//! use runtime_conformance::{Target, conformance_tests};
//! use session_core::EnvironmentSpec;
//!
//! // A test binary must link the backend it names for `Target::builtin`
//! // to find it: a crate's own tests do; others add `use runtime_local as _;`.
//! conformance_tests!(local, || {
//!     Target::builtin(EnvironmentSpec::new("local", "conformance"))
//! });
//! # fn main() {}
//! ```
//!
//! Cases assert behaviour, never speed: a case that needs something to
//! happen "while the command runs" synchronises through files in the
//! workspace, and every case is bounded by a generous timeout so a broken
//! backend fails instead of hanging.

#![warn(missing_docs)]

mod cases;
pub mod fixture_plugin;
mod runner;
pub mod skip;
pub mod soak;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use session_core::registry::Registry;
use session_core::runtime::Capabilities;
use session_core::session::{RuntimeHandle, Session, SessionBuilder, SpawnOptions};
use session_core::spec::{EnvironmentSpec, Mode};

pub use self::cases::{all_cases, case_named};
pub use self::runner::{
    CaseOutcome, Report, assert_held, case_session_prefix, run_blocking, run_case_blocking,
    run_one_blocking, run_suite,
};

/// The document, relative to the repository's root, that states every rule
/// the cases check.
pub const CONTRACT: &str = "docs/backend-contract.md";

/// A case's verdict: `Err` carries what went wrong.
pub type CaseResult = Result<(), String>;

/// A boxed case future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// One named check of the contract.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name, as printed (and the name of its test).
    pub name: &'static str,
    /// The id of the rule of [`CONTRACT`] the case checks.
    pub rule: &'static str,
    /// Whether the backend can run it; `Err` gives the reason to skip.
    pub requires: fn(&Capabilities) -> Result<(), &'static str>,
    /// The check.
    pub run: for<'a> fn(&'a CaseContext) -> CaseFuture<'a>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

/// The backend under test.
#[derive(Clone)]
pub struct Target {
    /// A label for the report.
    pub label: String,
    /// Where its backend is registered.
    pub registry: Arc<Registry>,
    /// The spec every case starts from (cases add setup, env, limits).
    pub spec: EnvironmentSpec,
    /// Names of cases to run; empty runs all. `BERTH_CONFORMANCE_FILTER`
    /// (substring) narrows it further.
    pub only: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("label", &self.label)
            .field("type", &self.spec.backend_type)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A target served by the built-in backends linked into the test
    /// binary.
    pub fn builtin(spec: EnvironmentSpec) -> Target {
        let registry = Registry::with_builtins()
            .expect("built-in backends register without conflict")
            .shared();
        Target::with_registry(spec, registry)
    }

    /// A target served by `registry`.
    pub fn with_registry(spec: EnvironmentSpec, registry: Arc<Registry>) -> Target {
        Target {
            label: spec.backend_type.clone(),
            registry,
            spec,
            only: Vec::new(),
        }
    }

    /// Sets the label printed in the report.
    pub fn label(mut self, label: impl Into<String>) -> Target {
        self.label = label.into();
        self
    }
}

/// What a running case gets: its own temporary directory and helpers to
/// make sessions of the target.
pub struct CaseContext {
    case: &'static str,
    target: Target,
    capabilities: Capabilities,
    temp: tempfile::TempDir,
    sessions: AtomicU32,
}

impl std::fmt::Debug for CaseContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseContext")
            .field("case", &self.case)
            .field("target", &self.target.label)
            .finish_non_exhaustive()
    }
}

impl CaseContext {
    /// The backend's declared capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// A scratch directory of this case (outside any workspace).
    pub fn scratch(&self) -> PathBuf {
        self.temp.path().join("scratch")
    }

    /// A builder of a session of the target, with the spec adjusted by
    /// `edit`, its directory in this case's temp root and an id that starts
    /// with [`case_session_prefix`] (backends label what they make with
    /// it, so a check for leftovers can tell whose they are).
    pub fn session_builder(&self, edit: impl FnOnce(&mut EnvironmentSpec)) -> SessionBuilder {
        let mut spec = self.target.spec.clone();
        edit(&mut spec);
        let serial = self.sessions.fetch_add(1, Ordering::Relaxed);
        Session::builder(spec)
            .registry(Arc::clone(&self.target.registry))
            .session_id(format!("{}{serial}", case_session_prefix(self.case)))
            .temp_root(self.temp.path().join("sessions"))
    }

    /// A prepared session of the target with the spec adjusted by `edit`.
    pub async fn session_with(
        &self,
        mode: Mode,
        edit: impl FnOnce(&mut EnvironmentSpec),
    ) -> Result<Session, String> {
        self.session_builder(edit)
            .mode(mode)
            .prepare()
            .await
            .map_err(|err| format!("preparing a session: {err}"))
    }

    /// A prepared evaluation session of the unchanged target.
    pub async fn session(&self) -> Result<Session, String> {
        self.session_with(Mode::Evaluation, |_| {}).await
    }

    /// A session and one runtime in it.
    pub async fn runtime(&self) -> Result<(Session, RuntimeHandle), String> {
        let mut session = self.session().await?;
        let runtime = session
            .spawn(SpawnOptions::default())
            .await
            .map_err(|err| format!("spawning: {err}"))?;
        Ok((session, runtime))
    }

    /// Session directories left in this case's temp root (for leak checks).
    pub fn leftover_sessions(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.temp.path().join("sessions"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// Declares one `#[test]` per case, in a module `$module` named after the
/// target, so each case is a test of its own (`local::events_are_live`)
/// and a failure names its rule.
///
/// `conformance_tests!(local, || Target::builtin(spec));` runs each case
/// with [`run_case_blocking`] against a target made by the closure (once
/// per case). `conformance_tests!(docker, run = run_docker_case);` hands
/// each case's name to a `fn(&'static str)` of the caller's instead, for
/// targets that need set-up or checks around each case (see
/// [`run_one_blocking`]). Expressions are resolved inside the generated
/// module, which imports everything of the module that invokes the macro.
#[macro_export]
macro_rules! conformance_tests {
    ($module:ident, run = $runner:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $crate::__with_cases! { __case_tests { $runner } }
        }
    };
    ($module:ident, $target:expr) => {
        $crate::conformance_tests!(
            $module,
            run = |case: &'static str| $crate::run_case_blocking(($target)(), case)
        );
    };
}

/// The one list of cases: name, the rule of [`CONTRACT`] it checks, and the
/// capability check that gates it. Hands the list to the `$crate` macro
/// `$callback`, after `{ $args }`. [`all_cases`] and [`conformance_tests!`]
/// are both built from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! {
            { $($args)* }
            exit_code_is_reported: "exec.exit-status", always;
            signal_is_reported: "exec.signal", needs_signals;
            stdout_and_stderr_are_separate: "output.separate", always;
            output_without_trailing_newline: "output.separate", always;
            ten_mebibytes_of_output: "output.large", always;
            non_utf8_bytes_are_kept: "output.bytes", always;
            utf8_split_across_reads_is_kept: "stream.utf8-split", needs_streaming;
            stdin_reaches_cat: "stdin.bytes", needs_stdin;
            stdin_streams_while_the_command_runs: "stdin.streamed", needs_stdin_streaming;
            no_stdin_is_empty: "stdin.empty", always;
            env_precedence: "exec.environment", always;
            working_directory_is_the_workspace: "exec.working-directory", always;
            shell_syntax: "exec.shell", always;
            missing_command_fails_cleanly: "exec.missing-command", always;
            events_are_live: "stream.live", needs_streaming_in_shared_workspace;
            stream_concatenation_equals_result: "stream.complete", always;
            wall_timeout_kills_grandchildren: "timeout.wall", needs_timeouts;
            idle_timeout_kills_grandchildren: "timeout.idle", needs_timeouts;
            output_limit_truncates_and_counts: "output.limit", needs_output_limit;
            output_limit_spills_to_file: "output.spill", needs_output_limit;
            kill_stops_a_running_command: "kill.running", always;
            dropped_stream_kills_the_command: "stream.drop-kills", needs_streaming;
            cleanup_twice: "cleanup.idempotent", always;
            drop_without_cleanup: "drop.releases", always;
            setup_runs_once_at_spawn: "setup.once", always;
            setup_failure_fails_spawn: "setup.failure", always;
            setup_failure_allowed: "setup.allow-failure", always;
            disable_setup_skips_it: "setup.disable", always;
            runtime_usable_after_timeout: "timeout.runtime-usable", needs_timeouts;
            concurrent_runtimes_on_one_session: "runtime.concurrent", always;
            asset_path_is_readable: "assets.path", always;
            only_standard_descriptors_reach_a_command: "boundary.descriptors", always;
            set_id_bits_do_not_cross_to_the_host: "boundary.set-id", always;
            pids_limit_holds_or_is_refused: "limits.pids", always;
            memory_limit_holds_or_is_refused: "limits.memory", always;
            cpu_limit_holds_or_is_refused: "limits.cpus", always;
            escapees_die_with_kill: "processes.none-outlive", always;
            escapees_die_at_a_timeout: "processes.none-outlive", needs_timeouts;
            escapees_die_with_cleanup_of_a_running_command: "processes.none-outlive", always;
            escapees_die_with_cleanup_after_their_command: "processes.none-outlive", always;
        }
    };
}

/// One `#[test]` per case (see [`conformance_tests!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __case_tests {
    ({ $runner:expr } $($case:ident: $rule:literal, $requires:ident;)*) => {
        $(
            #[test]
            fn $case() {
                ($runner)(stringify!($case));
            }
        )*
    };
}

/// The cases as values, in report order (see [`all_cases`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __case_list {
    ({} $($case:ident: $rule:literal, $requires:ident;)*) => {
        vec![
            $(
                $crate::Case {
                    name: stringify!($case),
                    rule: $rule,
                    requires: $requires,
                    run: |ctx| Box::pin($case(ctx)),
                },
            )*
        ]
    };
}
