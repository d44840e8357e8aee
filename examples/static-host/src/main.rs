//! A host binary that links an extra backend into berth instead of loading
//! it from a plugin library: `register_backend!` puts it in the registry
//! beside the built-ins this binary links (`local`, from `runtime-local`,
//! which `berth-sdk` brings), so a spec with `type: nice` runs through it.
//!
//! ```sh
//! cargo run -p berth-example-static-host -- 'echo hello; nice'
//! ```
//!
//! prints the registered types, then the command's output (`nice` with no
//! argument prints the niceness it runs at: 10), and exits with the
//! command's exit code.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line example

use std::process::ExitCode;
use std::sync::Arc;

use berth_sdk::kit::{self, HostRuntime, HostSettings, Sandbox};
use berth_sdk::process::Launch;
use berth_sdk::runtime::{Backend, BackendInfo, ExecCommand, Runtime, SpawnContext};
use berth_sdk::{EnvironmentSpec, Result, async_trait};
use session_core::registry::Registry;
use session_core::session::{Session, SpawnOptions};

/// `type: nice`: host processes at a lower CPU priority.
#[derive(Debug, Default)]
struct NiceBackend;

berth_sdk::register_backend!("nice", || Arc::new(NiceBackend));

#[derive(Debug)]
struct Nice;

impl Sandbox for Nice {
    fn wrap(&self, launch: &mut Launch, _cmd: &ExecCommand) -> std::result::Result<(), String> {
        launch.program = launch.program.wrapped_in(["nice", "-n", "10"]);
        Ok(())
    }

    fn finish(&self, result: berth_sdk::runtime::ExecResult) -> berth_sdk::runtime::ExecResult {
        kit::exit_as_signal(result)
    }
}

#[async_trait]
impl Backend for NiceBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: "nice".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "host processes at nice 10".into(),
            capabilities: kit::host_capabilities(),
        }
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        kit::cgroup_limits(spec).map(drop)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let settings = HostSettings::for_spec("nice", spec)?;
        Ok(Box::new(
            HostRuntime::spawn(Nice, settings, spec, ctx).await?,
        ))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "nice".to_owned());
    match run(&command).await {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("static-host: {err}");
            ExitCode::from(125)
        }
    }
}

async fn run(command: &str) -> Result<i32> {
    let registry = Registry::with_builtins()?;
    println!("types: {}", registry.types().join(", "));
    let spec = EnvironmentSpec::new("nice", "static-host");
    let mut session = Session::builder(spec)
        .registry(registry.shared())
        .prepare()
        .await?;
    let runtime = session.spawn(SpawnOptions::default()).await?;
    let result = runtime.execute(ExecCommand::new(command)).await?;
    print!("{}", result.stdout_lossy());
    eprint!("{}", result.stderr_lossy());
    session.close().await?;
    Ok(result.exit_code)
}
