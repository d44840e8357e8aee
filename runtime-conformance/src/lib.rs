//! The executable contract every berth backend must pass.
//!
//! A [`Target`] names a backend (a registry and a spec template). The suite
//! runs every [`Case`] the backend's capabilities allow, each in a fresh
//! session with a fresh workspace, and reports one line per case and a
//! closing `N passed, N failed, N skipped`. From any crate's tests:
//!
//! ```ignore
//! runtime_conformance::conformance_tests!(local_backend, || {
//!     runtime_conformance::Target::builtin(EnvironmentSpec::new("local", "conformance"))
//! });
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
pub mod soak;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use session_core::registry::Registry;
use session_core::runtime::Capabilities;
use session_core::session::{RuntimeHandle, Session, SpawnOptions};
use session_core::spec::{EnvironmentSpec, Mode};

pub use self::cases::all_cases;
pub use self::runner::{CaseOutcome, Report, run_blocking, run_suite};

/// A case's verdict: `Err` carries what went wrong.
pub type CaseResult = Result<(), String>;

/// A boxed case future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// One named check of the contract.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name, as printed.
    pub name: &'static str,
    /// Whether the backend can run it; `Err` gives the reason to skip.
    pub requires: fn(&Capabilities) -> Result<(), &'static str>,
    /// The check.
    pub run: for<'a> fn(&'a CaseContext) -> CaseFuture<'a>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
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
    target: Target,
    capabilities: Capabilities,
    temp: tempfile::TempDir,
}

impl std::fmt::Debug for CaseContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseContext")
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

    /// A prepared session of the target with the spec adjusted by `edit`.
    pub async fn session_with(
        &self,
        mode: Mode,
        edit: impl FnOnce(&mut EnvironmentSpec),
    ) -> Result<Session, String> {
        let mut spec = self.target.spec.clone();
        edit(&mut spec);
        Session::builder(spec)
            .registry(Arc::clone(&self.target.registry))
            .mode(mode)
            .temp_root(self.temp.path().join("sessions"))
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

/// Declares a `#[test]` that runs the whole suite against a target:
/// `conformance_tests!(test_name, || Target::builtin(spec));`
#[macro_export]
macro_rules! conformance_tests {
    ($test_name:ident, $target:expr) => {
        #[test]
        fn $test_name() {
            $crate::run_blocking(($target)());
        }
    };
}
