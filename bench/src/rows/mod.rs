//! The rows of BENCHMARKS.md, one module per kind of work.

pub mod backends;
pub mod binary;
pub mod exec;
pub mod python;
pub mod session;
pub mod stream;
pub mod throughput;
pub mod tree;

use std::path::Path;

use runtime_local::LocalBackend;
use session_core::Mode;
use session_core::runtime::{Backend, Runtime, SpawnContext};
use session_core::spec::EnvironmentSpec;

use crate::BenchResult;

/// The tokio runtime a host would use: multi-threaded, one worker per core.
pub(crate) fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// A default spec for the local backend.
pub(crate) fn local_spec() -> EnvironmentSpec {
    EnvironmentSpec::new(runtime_local::TYPE_NAME, "berth-bench")
}

/// A local runtime in `workspace` with the default spec and no setup.
pub(crate) async fn local_runtime(workspace: &Path) -> BenchResult<Box<dyn Runtime>> {
    let ctx = SpawnContext::new("berth-bench", workspace, Mode::Evaluation);
    Ok(LocalBackend.spawn(&local_spec(), ctx).await?)
}
