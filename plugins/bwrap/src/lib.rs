//! `type: bwrap`, an example backend plugin: every command runs inside
//! [bubblewrap](https://github.com/containers/bubblewrap) (`bwrap`), with the
//! host's file system read-only, the workspace read-write, a private `/tmp`,
//! `/dev` and `/proc`, and new user, pid, network, ipc, uts and cgroup
//! namespaces. Everything but the `bwrap` command line comes from
//! `berth_sdk::kit`: timeouts, output limits, stdin, kill, cleanup, cgroup
//! limits and setup commands behave as on the `local` backend.
//!
//! ```yaml
//! type: bwrap
//! name: example
//! bwrap:
//!   program: bwrap     # the bubblewrap binary (looked up in PATH)
//!   network: false     # true shares the host's network
//!   args: []           # more bwrap options, before `--`
//! ```
//!
//! It is a demonstration of the kit, not a hardened sandbox: no seccomp
//! filter, and the whole host file system is visible (read-only).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use berth_sdk::kit::{self, HostRuntime, HostSettings, Sandbox};
use berth_sdk::process::Launch;
use berth_sdk::runtime::{
    Backend, BackendInfo, Capabilities, Diagnostic, ExecCommand, ExecResult, ExecStatus, Runtime,
    SpawnContext,
};
use berth_sdk::{EnvironmentSpec, Result, async_trait};
use serde::Deserialize;

/// The spec `type` this backend serves.
pub const TYPE_NAME: &str = "bwrap";

/// The spec's `bwrap:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BwrapConfig {
    /// The bubblewrap binary.
    pub program: PathBuf,
    /// Share the host's network instead of a network namespace of its own.
    pub network: bool,
    /// More bubblewrap options, put before `--`.
    pub args: Vec<String>,
}

impl Default for BwrapConfig {
    fn default() -> Self {
        BwrapConfig {
            program: PathBuf::from("bwrap"),
            network: false,
            args: Vec::new(),
        }
    }
}

/// The `bwrap` backend.
#[derive(Debug, Default)]
pub struct BwrapBackend;

fn capabilities() -> Capabilities {
    Capabilities {
        network_isolation: true,
        ..kit::host_capabilities()
    }
}

#[async_trait]
impl Backend for BwrapBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: TYPE_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "each command inside bubblewrap: the host read-only, the workspace \
                          read-write, new namespaces"
                .into(),
            capabilities: capabilities(),
        }
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        spec.backend_config::<BwrapConfig>()?;
        kit::cgroup_limits(spec).map(drop)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let config: BwrapConfig = spec.backend_config()?;
        let mut prefix: Vec<OsString> = vec![config.program.into()];
        let fixed = "--die-with-parent --new-session --unshare-all --ro-bind / / --dev /dev \
                     --proc /proc --tmpfs /tmp";
        prefix.extend(fixed.split_whitespace().map(OsString::from));
        if config.network {
            prefix.push("--share-net".into());
        }
        let workspace = ctx.workspace.as_os_str();
        for arg in [
            OsStr::new("--bind"),
            workspace,
            workspace,
            "--chdir".as_ref(),
            workspace,
        ] {
            prefix.push(arg.to_owned());
        }
        // Assets appear at their host paths (the default `asset_path`), also
        // those under the host's /tmp, which the private /tmp hides.
        for asset in ctx.assets.iter() {
            let path = asset.absolute_path.as_os_str();
            prefix.extend(["--ro-bind".into(), path.to_owned(), path.to_owned()]);
        }
        prefix.extend(config.args.into_iter().map(Into::into));
        prefix.push("--".into());
        let mut settings = HostSettings::for_spec(TYPE_NAME, spec)?;
        settings.capabilities = Some(capabilities());
        Ok(Box::new(
            HostRuntime::spawn(Bwrap { prefix }, settings, spec, ctx).await?,
        ))
    }

    async fn diagnose(&self) -> Vec<Diagnostic> {
        let version = std::process::Command::new("bwrap")
            .arg("--version")
            .output();
        vec![Diagnostic {
            check: "bubblewrap".into(),
            ok: version.as_ref().is_ok_and(|out| out.status.success()),
            detail: match version {
                Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                Err(err) => format!("cannot run `bwrap`: {err}"),
            },
        }]
    }
}

/// Puts each command behind the `bwrap` command line made at spawn.
#[derive(Debug)]
struct Bwrap {
    prefix: Vec<OsString>,
}

impl Sandbox for Bwrap {
    fn wrap(&self, launch: &mut Launch, _cmd: &ExecCommand) -> std::result::Result<(), String> {
        launch.program = launch.program.wrapped_in(self.prefix.iter().cloned());
        Ok(())
    }

    /// bubblewrap exits 1 with `bwrap: …` on stderr when it cannot build
    /// the sandbox, and `128 + N` when signal N killed the command.
    fn finish(&self, result: ExecResult) -> ExecResult {
        let own_failure = result.status == ExecStatus::Exited
            && result.exit_code == 1
            && result.stderr.bytes.starts_with(b"bwrap: ");
        if own_failure {
            kit::wrapper_failed(result, "bubblewrap could not start the command")
        } else {
            kit::exit_as_signal(result)
        }
    }
}

berth_sdk::export_backend!(BwrapBackend);
