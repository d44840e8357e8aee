//! [`ApiBackend`] and its spec block, [`ApiConfig`].

use std::io::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use session_core::assets::ResolvedAssets;
use session_core::paths;
use session_core::runtime::{Backend, BackendInfo, Capabilities, Runtime, SpawnContext};
use session_core::snapshot::EntryKind;
use session_core::spec::{DEFAULT_OUTPUT_LIMIT, EnvironmentSpec};
use session_core::{Error as CoreError, Result};

use super::http::ApiClient;
use super::link::Link;
use super::on_drop::{OnDrop, detach};
use super::runtime::{ApiRuntime, RuntimeParts};
use crate::protocol::{AssetSpec, CreateSession, SpawnRequest, check_duration, setup_from_wire};
use crate::sync::{Packer, Scanner, Tree};
use crate::{Error, TYPE_NAME, Token};

/// The spec's `api:` block.
///
/// ```yaml
/// type: api
/// name: remote-python
/// api:
///   url: http://127.0.0.1:7341
///   token_env: BERTH_TOKEN        # the variable holding the bearer token
///   lease: 60                     # seconds; the server's default if absent
///   remote:                       # a whole spec for the server side
///     type: local
///     name: python
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The server's base URL (`http://HOST:PORT`).
    pub url: String,
    /// The environment variable holding the bearer token.
    pub token_env: String,
    /// The lease asked for the remote session, in seconds.
    pub lease: Option<f64>,
    /// The spec the server runs: its `type` must be one the server serves.
    pub remote: Option<EnvironmentSpec>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            url: String::new(),
            token_env: "BERTH_TOKEN".to_owned(),
            lease: None,
            remote: None,
        }
    }
}

impl ApiConfig {
    /// The block of `spec`, checked.
    ///
    /// Fails with [`CoreError::Spec`] naming the field when the block does
    /// not parse, `url` is missing or not `http://`, `remote` is missing, or
    /// `lease` is not a positive number of seconds of at most
    /// [`MAX_DURATION`](crate::protocol::MAX_DURATION).
    pub fn from_spec(spec: &EnvironmentSpec) -> Result<ApiConfig> {
        let config: ApiConfig = spec.backend_config()?;
        let invalid = |field: &str, message: String| CoreError::Spec {
            origin: spec.origin().to_owned(),
            field: format!("{}.{field}", spec.backend_type),
            message,
        };
        if config.url.is_empty() {
            return Err(invalid("url", "the server's URL is required".into()));
        }
        if let Err(err) = ApiClient::new(&config.url, &Token::generate()) {
            return Err(invalid("url", err.to_string()));
        }
        if config.remote.is_none() {
            return Err(invalid(
                "remote",
                "a spec for the server side is required (its `type` is a backend the server serves)"
                    .into(),
            ));
        }
        if let Some(secs) = config.lease {
            if !secs.is_finite() || secs <= 0.0 {
                return Err(invalid(
                    "lease",
                    format!("expected a positive number of seconds, found {secs}"),
                ));
            }
            check_duration(
                Duration::try_from_secs_f64(secs)
                    .ok()
                    .or(Some(Duration::MAX)),
            )
            .map_err(|message| invalid("lease", message))?;
        }
        if config.token_env.is_empty() {
            return Err(invalid("token_env", "the variable name is empty".into()));
        }
        Ok(config)
    }
}

/// The spec the server runs: the `remote` block, with the session's own
/// shared sections laid over it. Environment variables of the client spec
/// win over the remote's; setup commands run the remote's first, then the
/// client's (and failing is allowed when either allows it); a limit the
/// client spec sets wins. `include_os_env` stays the remote's: the server's
/// host environment, never this machine's.
pub fn remote_spec(local: &EnvironmentSpec, remote: &EnvironmentSpec) -> EnvironmentSpec {
    let mut merged = remote.clone();
    for (key, value) in &local.environment.env {
        merged.environment.env.insert(key.clone(), value.clone());
    }
    let setup = &mut merged.setup;
    setup.commands.extend(local.setup.commands.iter().cloned());
    setup
        .eval_commands
        .extend(local.setup.eval_commands.iter().cloned());
    setup
        .resume_commands
        .extend(local.setup.resume_commands.iter().cloned());
    setup.allow_failure |= local.setup.allow_failure;
    let limits = &mut merged.limits;
    let mine = &local.limits;
    limits.wall_timeout = mine.wall_timeout.or(limits.wall_timeout);
    limits.idle_timeout = mine.idle_timeout.or(limits.idle_timeout);
    if mine.output_limit != DEFAULT_OUTPUT_LIMIT {
        limits.output_limit = mine.output_limit;
    }
    limits.memory = mine.memory.or(limits.memory);
    limits.cpus = mine.cpus.or(limits.cpus);
    limits.pids = mine.pids.or(limits.pids);
    limits.file_size = mine.file_size.or(limits.file_size);
    merged
}

/// The `api` backend: runtimes on a remote `berth serve`.
///
/// The bearer token comes from the environment variable the spec names
/// (`api.token_env`, default `BERTH_TOKEN`), unless the backend was built
/// with [`ApiBackend::with_token`].
#[derive(Debug, Clone, Default)]
pub struct ApiBackend {
    token: Option<Token>,
}

impl ApiBackend {
    /// A backend that sends `token` whatever the spec says.
    pub fn with_token(token: Token) -> ApiBackend {
        ApiBackend { token: Some(token) }
    }

    /// What the api path can carry. A runtime claims the part of this its
    /// server-side runtime claims too. Not claimed: several commands at once
    /// (one per runtime), mounts and ports (host paths and sockets of this
    /// machine mean nothing on the server), and a shared workspace (commands
    /// see the workspace as it was synced before they started).
    pub fn capabilities() -> Capabilities {
        Capabilities {
            stdin: true,
            stdin_streaming: true,
            live_streaming: true,
            signals: true,
            timeouts: true,
            output_limit: true,
            concurrent_commands: false,
            usage: true,
            mounts: false,
            ports: false,
            network_isolation: true,
            memory_limit: true,
            cpu_limit: true,
            pids_limit: true,
            file_size_limit: true,
            shared_workspace: false,
        }
    }
}

fn both(a: &Capabilities, b: &Capabilities) -> Capabilities {
    Capabilities {
        stdin: a.stdin && b.stdin,
        stdin_streaming: a.stdin_streaming && b.stdin_streaming,
        live_streaming: a.live_streaming && b.live_streaming,
        signals: a.signals && b.signals,
        timeouts: a.timeouts && b.timeouts,
        output_limit: a.output_limit && b.output_limit,
        concurrent_commands: a.concurrent_commands && b.concurrent_commands,
        usage: a.usage && b.usage,
        mounts: a.mounts && b.mounts,
        ports: a.ports && b.ports,
        network_isolation: a.network_isolation && b.network_isolation,
        memory_limit: a.memory_limit && b.memory_limit,
        cpu_limit: a.cpu_limit && b.cpu_limit,
        pids_limit: a.pids_limit && b.pids_limit,
        file_size_limit: a.file_size_limit && b.file_size_limit,
        shared_workspace: a.shared_workspace && b.shared_workspace,
    }
}

/// Packs the assets into an archive, each at its save path.
fn pack_assets(
    assets: &ResolvedAssets,
) -> Result<(Vec<AssetSpec>, Option<tempfile::NamedTempFile>)> {
    if assets.is_empty() {
        return Ok((Vec::new(), None));
    }
    let io = |err: std::io::Error| CoreError::Backend {
        backend: TYPE_NAME.into(),
        message: format!("packing the assets: {err}"),
    };
    let file = tempfile::Builder::new()
        .prefix("berth-api-assets-")
        .suffix(".tar")
        .tempfile()
        .map_err(io)?;
    let mut packer = Packer::new(std::io::BufWriter::new(file.reopen().map_err(io)?));
    let mut specs = Vec::new();
    for asset in assets {
        let save_path = paths::to_slash(&asset.save_path);
        if asset.is_dir {
            let entries = Scanner::default().scan(&asset.absolute_path)?.entries();
            if entries.is_empty() {
                packer.add(&asset.absolute_path, &save_path, EntryKind::Dir)?;
            }
            for entry in entries {
                packer.add(
                    &asset.absolute_path.join(&entry.path),
                    &format!("{save_path}/{}", entry.path),
                    entry.kind,
                )?;
            }
        } else {
            packer.add(&asset.absolute_path, &save_path, EntryKind::File)?;
        }
        specs.push(AssetSpec {
            name: asset.name.clone(),
            save_path,
            is_dir: asset.is_dir,
        });
    }
    let (mut out, _) = packer.finish()?;
    out.flush().map_err(io)?;
    Ok((specs, Some(file)))
}

/// Renews a remote session's lease until aborted or the session is gone.
fn renew_in_background(
    client: ApiClient,
    session: String,
    lease: Duration,
) -> tokio::task::AbortHandle {
    let period = (lease / 3).max(Duration::from_millis(10));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            match client.renew_lease(&session).await {
                Ok(_) => {}
                Err(err) if err.status() == Some(404) => {
                    tracing::warn!(%session, "the remote session is gone; no more lease renewals");
                    return;
                }
                Err(err) => {
                    tracing::debug!(%session, error = %err, "renewing the lease failed; trying again");
                }
            }
        }
    })
    .abort_handle()
}

#[async_trait]
impl Backend for ApiBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: TYPE_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "commands on a remote berth server, the workspace synced by hash"
                .to_owned(),
            capabilities: ApiBackend::capabilities(),
        }
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        ApiConfig::from_spec(spec).map(drop)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let config = ApiConfig::from_spec(spec)?;
        let unsupported = |what: &str| CoreError::Backend {
            backend: TYPE_NAME.into(),
            message: format!(
                "the api backend does not support {what}: they name this machine's paths or \
                 ports, which mean nothing on the server"
            ),
        };
        if !ctx.mounts.is_empty() {
            return Err(unsupported("mounts"));
        }
        if !ctx.ports.is_empty() {
            return Err(unsupported("published ports"));
        }
        let token = match &self.token {
            Some(token) => token.clone(),
            None => Token::from_env(&config.token_env)?,
        };
        let client = ApiClient::new(&config.url, &token)?;
        let remote = remote_spec(spec, config.remote.as_ref().expect("checked by from_spec"));
        let output_limit = remote.limits.output_limit;
        let assets = ctx.assets.clone();
        let (asset_specs, archive) = tokio::task::spawn_blocking(move || pack_assets(&assets))
            .await
            .map_err(|err| CoreError::Backend {
                backend: TYPE_NAME.into(),
                message: format!("packing the assets did not finish: {err}"),
            })??;
        let request = CreateSession {
            spec: remote,
            mode: ctx.mode,
            label: Some(ctx.session_id.clone()),
            assets: asset_specs,
            // Checked by `from_spec`: at most `MAX_DURATION`.
            lease_ms: config.lease.map(|secs| {
                Duration::try_from_secs_f64(secs).map_or(u64::MAX, |lease| {
                    lease.as_millis().min(u128::from(u64::MAX)) as u64
                })
            }),
        };
        let created = client
            .create_session(&request, archive.as_ref().map(|a| a.path()))
            .await?;
        drop(archive);
        let session = created.session.clone();
        let renewer = renew_in_background(
            client.clone(),
            session.clone(),
            Duration::from_millis(created.lease_ms),
        );
        // A caller that drops this future from here on must not leave the
        // remote session (and its lease renewals) behind.
        let abandoned = OnDrop::new({
            let client = client.clone();
            let session = session.clone();
            let renewer = renewer.clone();
            move || {
                renewer.abort();
                detach(async move {
                    let _ = client.delete_session(&session).await;
                });
            }
        });
        let remote_tree = Tree::new(created.workspace.entries);
        let link = Link::new(
            client.clone(),
            session.clone(),
            ctx.workspace.clone(),
            remote_tree,
            created.limits,
        );
        if link_checksum_differs(&created.workspace.checksum, &link) {
            link.mark_stale();
        }
        let started = async {
            link.push().await?;
            let spawned = client
                .spawn(
                    &session,
                    &SpawnRequest {
                        env: ctx.env.clone(),
                        extra_setup_command: ctx.extra_setup_command.clone(),
                        disable_setup: ctx.disable_setup,
                    },
                )
                .await?;
            link.pull(&spawned.changes).await?;
            Ok::<_, Error>(spawned)
        }
        .await;
        let spawned = match started {
            Ok(spawned) => spawned,
            Err(err) => {
                abandoned.disarm();
                renewer.abort();
                if let Err(cleanup) = client.delete_session(&session).await {
                    tracing::warn!(%session, error = %cleanup, "deleting the remote session of a failed spawn failed");
                }
                return Err(err.into());
            }
        };
        abandoned.disarm();
        tracing::debug!(server = %client.url(), %session, runtime = %spawned.runtime, "api runtime spawned");
        Ok(Box::new(ApiRuntime::new(RuntimeParts {
            link,
            runtime: spawned.runtime,
            capabilities: both(&ApiBackend::capabilities(), &spawned.capabilities),
            setup: setup_from_wire(spawned.setup),
            asset_paths: spawned.asset_paths,
            output_limit,
            renewer,
        })))
    }
}

fn link_checksum_differs(announced: &session_core::snapshot::ContentHash, link: &Link) -> bool {
    link.remote_checksum() != *announced
}
