//! The routes and their handlers.

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use session_core::assets::{ResolvedAsset, ResolvedAssets};
use session_core::compression::Compression;
use session_core::paths;
use session_core::runtime::{
    Event, EventStream, ExecResult, ExecStatus, Output, RuntimeStatus, StdinStream,
};
use session_core::session::{RuntimeHandle, Session, SpawnOptions};
use session_core::snapshot::{EntryKind, ManifestEntry, Snapshot};
use session_core::spec::Mode;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::http::{
    Failure, json_response, ndjson_response, no_content, parse_json, read_body, read_frame,
};
use super::logs::clip;
use super::session::{
    Area, Begin, Busy, ExecOutcome, ExecRecord, Parts, RemoteSession, SyncState, make_read_only,
};
use super::{LOGGED_ERROR_BYTES, LOGGED_LABEL_BYTES, State};
use crate::TYPE_NAME;
use crate::body::{Body, LineSender, event_channel};
use crate::protocol::{
    AssetSpec, CreateSession, ExecRequest, FRAME, Health, LeaseRenewed, PROTOCOL_VERSION,
    SessionCreated, SizeLimits, SpawnRequest, Spawned, StdinChunk, StdinReceived, StreamLine,
    SyncHead, Synced, TAR, WireResult, check_duration, is_valid_id, setup_to_wire,
};
use crate::sync::{self, Scanner};
use crate::token::random_hex;

/// Dispatches a request (already authorised).
pub(crate) async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Failure> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(not_found(&path));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let method = req.method().clone();
    match (segments.as_slice(), &method) {
        (["health"], &Method::GET) => Ok(health(state)),
        (["sessions"], &Method::POST) => create_session(state, req, peer).await,
        (["sessions", sid], &Method::DELETE) => delete_session(state, sid, peer).await,
        (["sessions", sid, "lease"], &Method::POST) => {
            let session = state.session(sid)?;
            Ok(json_response(
                StatusCode::OK,
                &LeaseRenewed {
                    lease_ms: millis(session.lease()),
                },
            ))
        }
        (["sessions", sid, "workspace"], &Method::GET) => workspace(state, sid).await,
        (["sessions", sid, "sync"], &Method::POST) => sync_workspace(state, sid, req).await,
        (["sessions", sid, "runtimes"], &Method::POST) => spawn_runtime(state, sid, req).await,
        (["sessions", sid, "runtimes", rid], &Method::DELETE) => {
            let runtime = state.session(sid)?.remove_runtime(rid)?;
            runtime
                .cleanup()
                .await
                .map_err(|err| Failure::from_core(&err, runtime.backend_type()))?;
            Ok(no_content())
        }
        (["sessions", sid, "runtimes", rid, "exec"], &Method::POST) => {
            exec(state, sid, rid, req).await
        }
        (["sessions", sid, "runtimes", rid, "kill"], &Method::POST) => {
            let runtime = state.session(sid)?.runtime(rid)?;
            runtime
                .kill()
                .await
                .map_err(|err| Failure::from_core(&err, runtime.backend_type()))?;
            Ok(no_content())
        }
        (["sessions", sid, "execs", key, "cancel"], &Method::POST) => {
            let record = state.session(sid)?.exec_record(key).ok_or_else(|| {
                Failure::new(StatusCode::NOT_FOUND, format!("no execution `{key}`"))
            })?;
            record.cancel.send_replace(true);
            Ok(no_content())
        }
        (["sessions", sid, "execs", key, "stdin"], &Method::POST) => {
            stdin(state, sid, key, req).await
        }
        (["sessions", sid, "changes", cid], &Method::GET) => changes(state, sid, cid).await,
        (
            ["health"]
            | ["sessions"]
            | ["sessions", _]
            | ["sessions", _, "lease" | "workspace" | "sync" | "runtimes"]
            | ["sessions", _, "runtimes", _]
            | ["sessions", _, "runtimes", _, "exec" | "kill"]
            | ["sessions", _, "execs", _, "cancel" | "stdin"]
            | ["sessions", _, "changes", _],
            _,
        ) => Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("`{method} {path}` is not a route of this server"),
        )),
        _ => Err(not_found(&path)),
    }
}

fn not_found(path: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        format!("`{path}` is not a route of this server"),
    )
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

fn internal(message: impl std::fmt::Display) -> Failure {
    Failure::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
}

impl State {
    /// The session `id` (its lease renewed by the request), or 404.
    fn session(&self, id: &str) -> Result<Arc<RemoteSession>, Failure> {
        let session = is_valid_id(id)
            .then(|| self.sessions().get(id).cloned())
            .flatten()
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    format!("no session `{id}` (never created, closed, or its lease expired)"),
                )
            })?;
        session.renew();
        Ok(session)
    }
}

fn health(state: &State) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: PROTOCOL_VERSION,
            backends: super::served_types(&state.registry),
        },
    )
}

async fn create_session(
    state: &Arc<State>,
    req: Request<Incoming>,
    client: SocketAddr,
) -> Result<Response<Body>, Failure> {
    if state.is_shutting_down() {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    if state.sessions().len() >= state.limits.max_sessions {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server already serves {} sessions, its limit",
                state.limits.max_sessions
            ),
        ));
    }
    let id = format!("s{}", random_hex(16));
    let area = Area::create(&state.work_root, &id).map_err(|err| {
        internal(format!(
            "creating a session directory in `{}`: {err}",
            state.work_root.display()
        ))
    })?;
    let framed = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(FRAME.as_bytes()));
    let limits = &state.limits;
    let (head, archive) = if framed {
        read_frame(
            req,
            limits.max_body_bytes,
            limits.max_archive_bytes,
            &area.staging(),
            limits.body_read_timeout,
        )
        .await?
    } else {
        (
            read_body(req, limits.max_body_bytes, limits.body_read_timeout).await?,
            None,
        )
    };
    let request: CreateSession = parse_json(&head)?;
    let spec = request.spec.with_origin("the session request's spec");
    for (field, value) in [
        ("limits.wall_timeout", spec.limits.wall_timeout),
        ("limits.idle_timeout", spec.limits.idle_timeout),
    ] {
        if let Err(message) = check_duration(value) {
            return Err(Failure::from_core(
                &session_core::Error::Spec {
                    origin: spec.origin().to_owned(),
                    field: field.to_owned(),
                    message,
                },
                TYPE_NAME,
            ));
        }
    }
    if let Some(dir) = &spec.snapshot.archive_save_dir {
        // Snapshots of a remote session stay in its own directory.
        return Err(Failure::from_core(
            &session_core::Error::PathEscape {
                path: dir.display().to_string(),
                reason: "`snapshot.archive_save_dir` names a server path; a remote session \
                         keeps its archives in its own directory",
            },
            TYPE_NAME,
        ));
    }
    let backend_type = spec.backend_type.clone();
    if backend_type == TYPE_NAME {
        // Relaying would let any token holder make this server connect
        // wherever it likes, with whatever token its environment holds.
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "a berth server does not relay sessions to another server (`type: api`)",
        ));
    }
    let backend = state
        .registry
        .get(&backend_type)
        .map_err(|err| Failure::from_core(&err, TYPE_NAME))?;
    backend
        .validate(&spec)
        .map_err(|err| Failure::from_core(&err, &backend_type))?;

    let assets_dir = area.assets();
    let declared = request.assets.clone();
    let (assets, asset_entries) = tokio::task::spawn_blocking(move || {
        let received = receive_assets(&assets_dir, &declared, archive.as_ref().map(|a| a.path()));
        drop(archive);
        received
    })
    .await
    .map_err(internal)??;

    let label = request.label.unwrap_or_default();
    let lease_ms = request
        .lease_ms
        .map_or(limits.default_lease, Duration::from_millis)
        .clamp(limits.min_lease, limits.max_lease);
    let session = Session::builder(spec)
        .registry(Arc::clone(&state.registry))
        .mode(request.mode)
        .assets(assets.clone())
        .temp_root(area.sessions())
        .session_id(id.clone())
        .prepare()
        .await
        .map_err(|err| Failure::from_core(&err, &backend_type))?;
    let workspace = session
        .workspace_path()
        .map_err(|err| Failure::from_core(&err, &backend_type))?;
    let scan_root = workspace.clone();
    let mode = request.mode;
    let sync = tokio::task::spawn_blocking(move || {
        if mode == Mode::Agent {
            restore_asset_copy_modes(&scan_root, &asset_entries);
        }
        let mut scanner = Scanner::default();
        scanner
            .scan(&scan_root)
            .map(|tree| SyncState { scanner, tree })
    })
    .await
    .map_err(internal)?
    .map_err(|err| Failure::from_core(&err, &backend_type))?;
    let workspace_state = sync.tree.state();
    let remote = Arc::new(RemoteSession::new(Parts {
        id: id.clone(),
        label: label.clone(),
        backend: backend_type.clone(),
        client,
        session,
        workspace,
        assets,
        sync,
        lease: lease_ms,
        kept_outcomes: limits.kept_outcomes,
        area,
    }));
    {
        let mut sessions = state.sessions();
        if state.is_shutting_down() {
            remote.abandon();
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            ));
        }
        sessions.insert(id.clone(), remote);
    }
    tracing::info!(
        session = %id,
        r#type = %backend_type,
        label = %clip(&label, LOGGED_LABEL_BYTES),
        mode = %mode,
        %client,
        "session opened"
    );
    Ok(json_response(
        StatusCode::CREATED,
        &SessionCreated {
            session: id,
            lease_ms: millis(lease_ms),
            workspace: workspace_state,
            limits: SizeLimits {
                max_body_bytes: limits.max_body_bytes,
                max_archive_bytes: limits.max_archive_bytes,
            },
        },
    ))
}

/// Checks the declared assets, extracts their archive into `dir` (every
/// member must belong to a declared asset), checks that each is there with
/// its kind, makes them read-only, and resolves them to their paths on
/// this machine. Returns them with the archive's entries.
fn receive_assets(
    dir: &Path,
    declared: &[AssetSpec],
    archive: Option<&Path>,
) -> Result<(ResolvedAssets, Vec<ManifestEntry>), Failure> {
    let bad = |err: session_core::Error| Failure::from_core(&err, TYPE_NAME);
    let mut seen = HashSet::new();
    for asset in declared {
        let rel = paths::normalize_relative(&asset.save_path).map_err(bad)?;
        if paths::to_slash(&rel) != asset.save_path {
            return Err(bad(session_core::Error::PathEscape {
                path: asset.save_path.clone(),
                reason: "save paths must be normalised",
            }));
        }
        if !seen.insert(asset.save_path.as_str()) {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("two assets share the save path `{}`", asset.save_path),
            ));
        }
    }
    let mut entries = Vec::new();
    if let Some(archive) = archive {
        let snapshot = Snapshot::open_archive(archive, Compression::None).map_err(bad)?;
        for entry in snapshot.manifest().entries() {
            let covered = declared.iter().any(|asset| {
                entry.path == asset.save_path
                    || (asset.is_dir
                        && entry
                            .path
                            .strip_prefix(&asset.save_path)
                            .is_some_and(|rest| rest.starts_with('/')))
            });
            if !covered {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "archive member `{}` belongs to no declared asset",
                        entry.path
                    ),
                ));
            }
        }
        entries = sync::apply(dir, Some(archive), &[], None).map_err(bad)?;
    }
    for asset in declared {
        let path = dir.join(&asset.save_path);
        let kind_ok = fs::symlink_metadata(&path).is_ok_and(|meta| {
            if asset.is_dir {
                meta.is_dir()
            } else {
                meta.is_file()
            }
        });
        if !kind_ok {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "asset `{}` is declared as a {} but the archive does not hold one at `{}`",
                    asset.name,
                    if asset.is_dir { "directory" } else { "file" },
                    asset.save_path
                ),
            ));
        }
    }
    make_read_only(dir).map_err(|err| internal(format!("protecting the assets: {err}")))?;
    let canonical = fs::canonicalize(dir).map_err(internal)?;
    let resolved = ResolvedAssets::new(declared.iter().map(|asset| ResolvedAsset {
        name: asset.name.clone(),
        absolute_path: canonical.join(&asset.save_path),
        save_path: asset.save_path.clone().into(),
        is_dir: asset.is_dir,
    }))
    .map_err(bad)?;
    Ok((resolved, entries))
}

/// Agent mode copies assets into the workspace from the read-only asset
/// area; give those copies the modes they were uploaded with, as a local
/// session would have them.
fn restore_asset_copy_modes(workspace: &Path, entries: &[ManifestEntry]) {
    for entry in entries.iter().filter(|e| e.kind == EntryKind::File) {
        let Ok(rel) = paths::normalize_relative(&entry.path) else {
            continue;
        };
        let path = workspace.join(rel);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode));
        }
    }
}

async fn delete_session(
    state: &Arc<State>,
    sid: &str,
    peer: SocketAddr,
) -> Result<Response<Body>, Failure> {
    let session = state
        .sessions()
        .remove(sid)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("no session `{sid}`")))?;
    session.stopping("the session was closed");
    session
        .close()
        .await
        .map_err(|err| Failure::from_core(&err, &session.backend))?;
    super::log_closed(&session, &format!("a client at {peer} closed it"));
    Ok(no_content())
}

async fn workspace(state: &Arc<State>, sid: &str) -> Result<Response<Body>, Failure> {
    let session = state.session(sid)?;
    let workspace = tokio::task::spawn_blocking(move || session.sync_state().tree.state())
        .await
        .map_err(internal)?;
    Ok(json_response(StatusCode::OK, &workspace))
}

async fn sync_workspace(
    state: &Arc<State>,
    sid: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let session = state.session(sid)?;
    let (head, archive) = read_frame(
        req,
        state.limits.max_body_bytes,
        state.limits.max_archive_bytes,
        &session.staging(),
        state.limits.body_read_timeout,
    )
    .await?;
    let head: SyncHead = parse_json(&head)?;
    let busy = session.acquire("a workspace sync")?;
    let session = Arc::clone(&session);
    let synced = tokio::task::spawn_blocking(move || {
        let _busy = busy;
        let mut sync = session.sync_state();
        let current = sync.tree.checksum();
        if current != head.base {
            if current == head.target {
                // A retry of a sync that was applied.
                return Ok(Synced { checksum: current });
            }
            return Err(Failure::new(
                StatusCode::PRECONDITION_FAILED,
                "the workspace is not in the state the sync expects (base checksum differs); \
                 fetch the manifest and sync again",
            ));
        }
        let applied = sync::apply(
            &session.workspace,
            archive.as_ref().map(|a| a.path()),
            &head.delete,
            None,
        );
        let result = match applied {
            Ok(entries) => {
                sync.tree.apply(&entries, &head.delete);
                sync::prune_emptied(&session.workspace, &head.delete, &sync.tree);
                Ok(())
            }
            Err(err) => {
                // Part of it may have been written: believe the disk again.
                if let Ok(tree) = sync.scanner.scan(&session.workspace) {
                    sync.tree = tree;
                }
                Err(Failure::from_core(&err, &session.backend))
            }
        };
        let checksum = sync.tree.checksum();
        drop(sync);
        session.set_checksum(checksum);
        result.map(|()| Synced { checksum })
    })
    .await
    .map_err(internal)??;
    Ok(json_response(StatusCode::OK, &synced))
}

async fn spawn_runtime(
    state: &Arc<State>,
    sid: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let session = state.session(sid)?;
    let body = read_body(
        req,
        state.limits.max_body_bytes,
        state.limits.body_read_timeout,
    )
    .await?;
    let request: SpawnRequest = parse_json(&body)?;
    let busy = session.acquire("a runtime's setup")?;
    let tracker = Arc::clone(&session);
    // A task of its own: a client that goes away mid-setup leaves a
    // registered runtime (cleaned up with the session), not half a spawn;
    // closing the session aborts it, which stops the setup.
    let task = tokio::spawn(async move {
        let options = SpawnOptions {
            env: request.env,
            extra_setup_command: request.extra_setup_command,
            disable_setup: request.disable_setup,
            ..SpawnOptions::default()
        };
        let runtime = match session.spawn_runtime(options).await {
            Ok(runtime) => runtime,
            Err(failure) => {
                drop(busy);
                return Err(failure);
            }
        };
        let stager = Arc::clone(&session);
        let changes = tokio::task::spawn_blocking(move || {
            let changes = stager.stage_changes();
            drop(busy);
            changes
        })
        .await
        .map_err(internal)
        .and_then(|changes| changes);
        let changes = match changes {
            Ok(changes) => changes,
            Err(failure) => {
                let _ = runtime.cleanup().await;
                return Err(failure);
            }
        };
        let asset_paths = session
            .assets
            .iter()
            .map(|asset| (asset.name.clone(), runtime.asset_path(asset)))
            .collect();
        let spawned = Spawned {
            runtime: String::new(),
            backend: runtime.backend_type().to_owned(),
            capabilities: runtime.capabilities().clone(),
            asset_paths,
            setup: setup_to_wire(runtime.setup_output()),
            changes,
        };
        let id = session.add_runtime(runtime);
        Ok(Spawned {
            runtime: id,
            ..spawned
        })
    });
    tracker.track(task.abort_handle());
    let spawned = task.await.map_err(internal)??;
    Ok(json_response(StatusCode::CREATED, &spawned))
}

/// A digest of what an execution request asks for, so a reused key with
/// another request is refused.
fn exec_digest(runtime: &str, request: &ExecRequest) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(runtime.as_bytes());
    hasher.update(b"\0");
    hasher.update(&serde_json::to_vec(&request.command).unwrap_or_default());
    hasher.update(b"\0");
    if let Some(stdin) = &request.stdin {
        hasher.update(&(stdin.len() as u64).to_le_bytes());
        hasher.update(stdin);
    }
    hasher.update(&[u8::from(request.stdin_stream)]);
    *hasher.finalize().as_bytes()
}

async fn exec(
    state: &Arc<State>,
    sid: &str,
    rid: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let session = state.session(sid)?;
    let body = read_body(
        req,
        state.limits.max_body_bytes,
        state.limits.body_read_timeout,
    )
    .await?;
    let request: ExecRequest = parse_json(&body)?;
    if !is_valid_id(&request.idempotency_key) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "the idempotency key must be 1 to 128 letters, digits, `-` or `_`",
        ));
    }
    for (field, value) in [
        ("command.wall_timeout", request.command.wall_timeout),
        ("command.idle_timeout", request.command.idle_timeout),
    ] {
        check_duration(value).map_err(|message| {
            Failure::new(StatusCode::BAD_REQUEST, format!("`{field}`: {message}"))
        })?;
    }
    if request.command.stdin.is_some() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "stdin travels base64-encoded in the request's `stdin`, not in `command.stdin`",
        ));
    }
    if let Some(dir) = &request.command.spill_dir {
        return Err(Failure::from_core(
            &session_core::Error::PathEscape {
                path: dir.display().to_string(),
                reason: "the server writes to no path a request names (spill on the client)",
            },
            TYPE_NAME,
        ));
    }
    let runtime = session.runtime(rid)?;
    let rid = rid.to_owned();
    let heartbeat = state.limits.heartbeat;
    let key = request.idempotency_key.clone();
    let digest = exec_digest(&rid, &request);
    let (record, busy) = match session.begin_exec(&key, digest, request.base)? {
        Begin::Attach(record) => return attach(record, key, heartbeat),
        Begin::Fresh(record, busy) => (record, busy),
    };
    let mut command = request.command;
    command.stdin = request.stdin;
    if request.stdin_stream {
        let (sender, stream) = StdinStream::channel();
        record.stdin.lock().await.sender = Some(sender);
        command.stdin_stream = Some(stream);
    }
    let (lines, body) = event_channel(
        session_core::runtime::EVENT_BUFFER,
        last_line_of(Arc::clone(&record)),
    );
    let (ready, started) = oneshot::channel();
    // The execution belongs to the session, not to this connection: a
    // client that drops the connection and retries with the same key finds
    // it running (or finished) and joins it.
    let driver_session = Arc::clone(&session);
    let task = tokio::spawn(async move {
        // Whatever stops this task (the session closing aborts it), the
        // execution gets an outcome and its stream a last line.
        let unfinished = Unfinished {
            record,
            session: driver_session,
            lines,
        };
        let stream = match runtime.stream(command).await {
            Ok(stream) => stream,
            Err(err) => {
                let failure = Failure::from_core(&err, runtime.backend_type());
                unfinished
                    .record
                    .outcome
                    .send_replace(Some(ExecOutcome::Failed(failure.clone())));
                drop(busy);
                unfinished.session.forget_old_execs();
                let _ = ready.send(Err(failure));
                return;
            }
        };
        unfinished.lines.try_send(
            StreamLine::Started {
                exec: key,
                attached: false,
                heartbeat_ms: millis(heartbeat),
            }
            .to_line(),
        );
        let _ = ready.send(Ok(()));
        let served = Served {
            runtime: &runtime,
            id: &rid,
        };
        drive(&unfinished, stream, busy, heartbeat, served).await;
    });
    session.track(task.abort_handle());
    match started.await {
        Ok(Ok(())) => Ok(ndjson_response(body)),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(internal("the execution ended before it started")),
    }
}

/// `POST /v1/sessions/{session}/execs/{key}/stdin`: hands a chunk of
/// streamed stdin to the execution's command, once (see [`StdinChunk`]).
async fn stdin(
    state: &Arc<State>,
    sid: &str,
    key: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let session = state.session(sid)?;
    let body = read_body(
        req,
        state.limits.max_body_bytes,
        state.limits.body_read_timeout,
    )
    .await?;
    let Some(newline) = body.iter().position(|b| *b == b'\n') else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "a stdin chunk is a frame: a JSON line, `\\n`, then the bytes",
        ));
    };
    let chunk: StdinChunk = parse_json(&body[..newline])?;
    let data = body.slice(newline + 1..);
    let record = session
        .exec_record(key)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("no execution `{key}`")))?;
    let gone = || {
        Failure::new(
            StatusCode::GONE,
            format!("execution `{key}` reads no more stdin"),
        )
    };
    let mut feed = record.stdin.lock().await;
    let Some(sender) = feed.sender.clone() else {
        return Err(gone());
    };
    if chunk.offset > feed.received {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            format!(
                "stdin chunk at byte {} leaves a gap: the command took {} bytes so far",
                chunk.offset, feed.received
            ),
        ));
    }
    // Bytes the command took already (a retry) are not handed on again.
    let skip = usize::try_from(feed.received - chunk.offset).unwrap_or(usize::MAX);
    if skip < data.len() {
        let fresh = data.slice(skip..);
        let len = fresh.len() as u64;
        if !sender.send(fresh).await {
            feed.sender = None;
            return Err(gone());
        }
        feed.received += len;
    }
    if chunk.eof {
        // Dropping the last sender closes the command's stdin.
        feed.sender = None;
    }
    Ok(json_response(
        StatusCode::OK,
        &StdinReceived {
            received: feed.received,
        },
    ))
}

/// A retry joining an execution that already started: a `started` line
/// with `attached`, heartbeats, then the outcome with the output in full.
fn attach(
    record: Arc<ExecRecord>,
    key: String,
    heartbeat: Duration,
) -> Result<Response<Body>, Failure> {
    if let Some(ExecOutcome::Failed(failure)) = record.outcome() {
        return Err(failure);
    }
    let (lines, body) = event_channel(4, last_line_of(Arc::clone(&record)));
    tokio::spawn(async move {
        let started = StreamLine::Started {
            exec: key,
            attached: true,
            heartbeat_ms: millis(heartbeat),
        };
        if !lines.send(started.to_line()).await {
            return;
        }
        let outcome = tokio::select! {
            outcome = record.wait() => outcome,
            () = heartbeats(&lines, heartbeat) => return,
        };
        lines.send_last(outcome_line(outcome).to_line()).await;
    });
    Ok(ndjson_response(body))
}

/// The last line of a stream for an execution's outcome, with the output
/// kept (a stream that did not carry it live).
fn outcome_line(outcome: ExecOutcome) -> StreamLine {
    match outcome {
        ExecOutcome::Finished { result, changes } => StreamLine::Finished {
            result: WireResult::from_result(&result, true),
            changes: (*changes).clone(),
        },
        ExecOutcome::Failed(failure) => StreamLine::Error {
            error: failure.error,
        },
    }
}

/// What ends a stream of `record` whose sender went away without its last
/// line: the outcome if there is one by then, else an `error`.
fn last_line_of(record: Arc<ExecRecord>) -> impl FnOnce() -> bytes::Bytes + Send + 'static {
    move || {
        let line = match record.outcome() {
            Some(outcome) => outcome_line(outcome),
            None => StreamLine::Error {
                error: Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server stopped the execution before it finished",
                )
                .error,
            },
        };
        line.to_line()
    }
}

/// Sends a heartbeat line every `period` until the receiver is gone.
async fn heartbeats(lines: &LineSender, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        if !lines.send(StreamLine::Heartbeat.to_line()).await {
            return;
        }
    }
}

/// An execution while its task runs. Dropped before the execution has an
/// outcome (the task aborted because its session closes), it records the
/// session's reason as the outcome, before its line sender goes: the
/// stream's body then ends with that `error` line, and retries joining the
/// execution get it too.
struct Unfinished {
    record: Arc<ExecRecord>,
    session: Arc<RemoteSession>,
    lines: LineSender,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.record.outcome().is_none() {
            self.record
                .outcome
                .send_replace(Some(ExecOutcome::Failed(self.session.stopped_failure())));
        }
    }
}

/// The runtime a command runs in, and its id in the session.
struct Served<'a> {
    runtime: &'a RuntimeHandle,
    id: &'a str,
}

/// Forwards a command's events as lines while its connection lasts, keeps
/// the command going when the connection is gone, then stages what it
/// changed, remembers the outcome for retries, frees the workspace, and
/// sends the last line. A runtime whose events end without a result is
/// made to stop what it runs first ([`settle_broken_runtime`]).
async fn drive(
    unfinished: &Unfinished,
    mut stream: EventStream,
    busy: Busy,
    heartbeat: Duration,
    served: Served<'_>,
) {
    let Unfinished {
        session,
        record,
        lines,
    } = unfinished;
    let began = Instant::now();
    let mut live = true;
    let mut next_beat = Instant::now() + heartbeat;
    let result = loop {
        let line = tokio::select! {
            () = record.cancelled() => {
                // Dropping the stream kills the command, as it does for a
                // local caller; its result is never reported by the backend.
                drop(stream);
                break cancelled_result(began.elapsed());
            }
            event = stream.next() => match event {
                Some(Event::Stdout(data)) => StreamLine::Stdout { data: Vec::from(data) },
                Some(Event::Stderr(data)) => StreamLine::Stderr { data: Vec::from(data) },
                Some(Event::Finished(result)) => break result,
                None => {
                    let note = settle_broken_runtime(session, &served).await;
                    if live {
                        let line = StreamLine::Stderr { data: note.clone().into_bytes() };
                        live = lines.send(line.to_line()).await;
                    }
                    break lost_result(began.elapsed(), note);
                }
            },
            () = tokio::time::sleep_until(next_beat), if live => StreamLine::Heartbeat,
        };
        if live {
            live = lines.send(line.to_line()).await;
            next_beat = Instant::now() + heartbeat;
        }
    };
    let stager = Arc::clone(session);
    let changes = tokio::task::spawn_blocking(move || stager.stage_changes())
        .await
        .map_err(internal)
        .and_then(|changes| changes);
    let last = match changes {
        Ok(changes) => {
            let line = StreamLine::Finished {
                result: WireResult::from_result(&result, false),
                changes: changes.clone(),
            };
            record.outcome.send_replace(Some(ExecOutcome::Finished {
                result: Arc::new(result),
                changes: Arc::new(changes),
            }));
            line
        }
        Err(failure) => {
            let line = StreamLine::Error {
                error: failure.error.clone(),
            };
            record
                .outcome
                .send_replace(Some(ExecOutcome::Failed(failure)));
            line
        }
    };
    // Free the workspace before the client hears the end, so its next
    // command is not refused as busy.
    drop(busy);
    session.forget_old_execs();
    if live {
        lines.send_last(last.to_line()).await;
    }
}

fn cancelled_result(elapsed: Duration) -> ExecResult {
    ExecResult {
        status: ExecStatus::Signaled,
        exit_code: -libc::SIGKILL,
        signal: Some(libc::SIGKILL),
        stdout: Output::default(),
        stderr: Output::default(),
        elapsed,
        timed_out: false,
        usage: None,
    }
}

/// The result of a command its runtime lost; `note` (sent on its stderr)
/// says why.
fn lost_result(elapsed: Duration, note: String) -> ExecResult {
    let note = note.into_bytes();
    ExecResult {
        status: ExecStatus::Lost,
        exit_code: -1,
        signal: None,
        stdout: Output::default(),
        stderr: Output {
            total_bytes: note.len() as u64,
            bytes: note,
            truncated: false,
            spill_path: None,
        },
        elapsed,
        timed_out: false,
        usage: None,
    }
}

/// How long a runtime whose events ended without a result gets to stop
/// running commands once told to kill them.
const BROKEN_RUNTIME_PATIENCE: Duration = Duration::from_secs(10);

/// A runtime's event stream ended without a result: the runtime broke its
/// contract (its driver is gone), and what the command started may still
/// run, unwatched. Kills the runtime's commands and waits, within
/// [`BROKEN_RUNTIME_PATIENCE`], until it runs none, so the workspace is
/// not handed to the next command (nor its changes staged) while they may
/// still write in it. A runtime that still runs something then is removed
/// from the session and cleaned up on its own. Returns the line of stderr
/// that tells the client.
async fn settle_broken_runtime(session: &Arc<RemoteSession>, served: &Served<'_>) -> String {
    let runtime = served.runtime;
    let backend = runtime.backend_type().to_owned();
    tracing::warn!(
        session = %session.id,
        runtime = %served.id,
        %backend,
        "a runtime's event stream ended without a result: killing its commands"
    );
    let stopped = tokio::time::timeout(BROKEN_RUNTIME_PATIENCE, async {
        if let Err(err) = runtime.kill().await {
            tracing::warn!(session = %session.id, error = %clip(&err.to_string(), LOGGED_ERROR_BYTES), "killing the commands of a broken runtime failed");
        }
        while matches!(runtime.poll().await, RuntimeStatus::Running(_)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    if stopped {
        return format!(
            "berth serve: the `{backend}` runtime lost the command (its events ended without a \
             result); its processes were killed\n"
        );
    }
    if let Ok(retired) = session.remove_runtime(served.id) {
        let id = session.id.clone();
        tokio::spawn(async move {
            if let Err(err) = retired.cleanup().await {
                tracing::warn!(session = %id, error = %clip(&err.to_string(), LOGGED_ERROR_BYTES), "cleaning up a broken runtime failed");
            }
        });
    }
    format!(
        "berth serve: the `{backend}` runtime lost the command (its events ended without a \
         result) and did not stop it when told to; the runtime `{}` was removed from the session\n",
        served.id
    )
}

async fn changes(state: &Arc<State>, sid: &str, cid: &str) -> Result<Response<Body>, Failure> {
    let session = state.session(sid)?;
    let path = is_valid_id(cid)
        .then(|| session.staged(cid))
        .flatten()
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                format!("no change set `{cid}` (it may have been forgotten)"),
            )
        })?;
    let file = tokio::fs::File::open(&path).await.map_err(internal)?;
    let len = file.metadata().await.map_err(internal)?.len();
    let mut response = Response::new(Body::file(None, file, len));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TAR));
    Ok(response)
}
