//! `berth serve`: the runtimes of this process's registry, over HTTP.
//!
//! [`bind`] opens the listener (so a caller can read the bound address,
//! e.g. after asking for port 0) and [`Server::run`] serves until the
//! configured shutdown signal; [`serve`] does both. Every request needs
//! the bearer token (compared in constant time); request bodies and
//! archives are bounded by [`ServeLimits`]; every path a request names is
//! contained in its remote workspace; a session whose client stops
//! renewing its lease is reaped with its runtimes and workspace.
//!
//! Hostile clients cannot starve the ones with the token: connections are
//! capped (a hard cap on their descriptors, below the process's limit), and
//! at the cap the least recently active one that never presented the
//! token, was read and has no request on its way is closed to make room
//! before another is accepted; headers, idle
//! connections and stalled bodies are bounded in time; a request without
//! the token is answered `401` and its connection closed. Nor can they
//! write the log: refused requests are logged once per interval, with
//! their path cut short, and counted otherwise. Every event stream ends
//! with `finished` or `error`, also when shutdown, an expired lease or a
//! deleted session stops its command.
//!
//! There is no TLS: the server binds to loopback unless told otherwise and
//! warns when it is told otherwise. Put it behind an SSH tunnel or a
//! TLS-terminating proxy to reach it from another machine.

mod connections;
mod http;
mod logs;
mod routes;
mod session;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONNECTION, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use session_core::registry::Registry;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use self::connections::{Connection, ConnectionTable, Slot, Watched};
use self::http::Failure;
use self::logs::{LOGGED_PATH_BYTES, Throttle, clip};
use self::session::RemoteSession;
use crate::Error;
use crate::body::Body;
use crate::token::{Token, constant_time_eq, digest};

/// The address `berth serve` listens on by default: loopback only.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7341);

/// Bounds on what clients may ask of the server.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Largest JSON body (and JSON line of a frame) accepted, in bytes;
    /// stdin travels in it. Larger is `413`.
    pub max_body_bytes: u64,
    /// Largest archive (assets, a workspace sync) accepted, in bytes.
    /// Larger is `413`.
    pub max_archive_bytes: u64,
    /// The lease a session gets when it asks for none.
    pub default_lease: Duration,
    /// The shortest lease granted (shorter requests get this).
    pub min_lease: Duration,
    /// The longest lease granted.
    pub max_lease: Duration,
    /// How often expired leases are looked for.
    pub reap_interval: Duration,
    /// Sessions open at once; more is `503`.
    pub max_sessions: usize,
    /// How often a silent event stream carries a heartbeat line.
    pub heartbeat: Duration,
    /// Finished executions (and change archives) remembered per session for
    /// retries.
    pub kept_outcomes: usize,
    /// Connections open at once, counted until their sockets are closed.
    /// At the cap, a connection waiting to be accepted is accepted once the
    /// server has closed the least recently active connection that never
    /// carried the right token, was read and has no request on its way (an
    /// authenticated client's is never shed); while none can be shed it
    /// waits in the listen backlog. The server lowers it to half its
    /// descriptor limit, keeping the other half for its own work.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, counted from
    /// when the server starts waiting for them: also how long a kept-alive
    /// connection may stay idle.
    pub header_read_timeout: Duration,
    /// The longest pause while a request body arrives; longer is `408`.
    pub body_read_timeout: Duration,
    /// How often warnings anyone can cause at will (requests without the
    /// token, failed accepts) are summarised: the first of each interval is
    /// logged in full, the others counted into one line at its end.
    pub log_interval: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_body_bytes: 16 << 20,
            max_archive_bytes: 1 << 30,
            default_lease: Duration::from_secs(60),
            min_lease: Duration::from_secs(1),
            max_lease: Duration::from_secs(3600),
            reap_interval: Duration::from_secs(1),
            max_sessions: 256,
            heartbeat: Duration::from_secs(5),
            kept_outcomes: 32,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            log_interval: Duration::from_secs(60),
        }
    }
}

type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How to serve: where, with which token, from which registry, within
/// which limits.
pub struct ServeConfig {
    /// The address to listen on ([`DEFAULT_LISTEN`] unless set).
    pub listen: SocketAddr,
    /// The bearer token every request must carry.
    pub token: Token,
    /// The backends served: a session's spec `type` is looked up here.
    pub registry: Arc<Registry>,
    /// Limits on requests and sessions.
    pub limits: ServeLimits,
    /// Where remote sessions live (default: the system's temporary
    /// directory).
    pub work_root: Option<PathBuf>,
    shutdown: Option<ShutdownSignal>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("token", &self.token)
            .field("registry", &self.registry)
            .field("limits", &self.limits)
            .field("work_root", &self.work_root)
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// Serving `registry` with `token` on [`DEFAULT_LISTEN`], default
    /// limits.
    pub fn new(token: Token, registry: Arc<Registry>) -> ServeConfig {
        ServeConfig {
            listen: DEFAULT_LISTEN,
            token,
            registry,
            limits: ServeLimits::default(),
            work_root: None,
            shutdown: None,
        }
    }

    /// Listens on `addr` instead (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> ServeConfig {
        self.listen = addr;
        self
    }

    /// Uses these limits.
    pub fn limits(mut self, limits: ServeLimits) -> ServeConfig {
        self.limits = limits;
        self
    }

    /// Keeps remote sessions under `dir`.
    pub fn work_root(mut self, dir: impl Into<PathBuf>) -> ServeConfig {
        self.work_root = Some(dir.into());
        self
    }

    /// Stops serving when `signal` resolves: no new connections, every
    /// session closed (runtimes, workspaces), then [`Server::run`] returns.
    pub fn shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> ServeConfig {
        self.shutdown = Some(Box::pin(signal));
        self
    }
}

/// The state every request shares.
pub(crate) struct State {
    pub(crate) registry: Arc<Registry>,
    token: [u8; 32],
    pub(crate) limits: ServeLimits,
    pub(crate) work_root: PathBuf,
    sessions: Mutex<HashMap<String, Arc<RemoteSession>>>,
    shutting_down: AtomicBool,
    connections: Arc<ConnectionTable<TcpStream>>,
    /// Requests without the right token.
    refusals: Throttle,
    /// Accepts that failed (typically: out of descriptors).
    accept_failures: Throttle,
    /// Waits for room while every connection was an authenticated one.
    full: Throttle,
}

impl State {
    pub(crate) fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<RemoteSession>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Closes every session properly (shutdown).
    async fn close_all(&self) {
        let sessions: Vec<_> = self.sessions().drain().map(|(_, s)| s).collect();
        for session in &sessions {
            session.stopping("the server is shutting down");
        }
        for session in sessions {
            match session.close().await {
                Ok(()) => log_closed(&session, "the server is shutting down"),
                Err(err) => {
                    tracing::warn!(session = %session.id, error = %clip(&err.to_string(), LOGGED_ERROR_BYTES), "closing a session at shutdown failed");
                }
            }
        }
    }

    /// Drops every session at once (the server's task was cancelled).
    fn abandon_all(&self) {
        let sessions: Vec<_> = self.sessions().drain().map(|(_, s)| s).collect();
        for session in &sessions {
            session.stopping("the server stopped");
            session.abandon();
        }
    }

    /// Ends a logging interval: summarises what each throttle left out.
    fn end_log_interval(&self) {
        for throttle in [&self.refusals, &self.accept_failures, &self.full] {
            throttle.end_interval();
        }
    }

    /// Closes the sessions whose lease ran out.
    async fn reap_expired(&self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<_> = {
            let mut sessions = self.sessions();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.expired(now))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for session in expired {
            session.stopping("the session's lease expired");
            match session.close().await {
                Ok(()) => log_closed(&session, "its lease expired"),
                Err(err) => {
                    tracing::warn!(session = %session.id, error = %clip(&err.to_string(), LOGGED_ERROR_BYTES), "reaping a session whose lease expired failed");
                }
            }
        }
    }
}

/// The backend types this server serves: those of its registry but `api`,
/// since it does not relay sessions to another server.
pub fn served_types(registry: &Registry) -> Vec<String> {
    registry
        .types()
        .into_iter()
        .filter(|type_name| type_name != crate::TYPE_NAME)
        .collect()
}

/// Logs, at info, that `session` was closed and why: its id, backend type,
/// label and the client that opened it.
pub(crate) fn log_closed(session: &RemoteSession, reason: &str) {
    tracing::info!(
        session = %session.id,
        r#type = %session.backend,
        label = %clip(&session.label, LOGGED_LABEL_BYTES),
        client = %session.client,
        reason,
        "session closed"
    );
}

/// How much of an error a log line shows (errors may quote paths and
/// names a session's commands chose).
pub(crate) const LOGGED_ERROR_BYTES: usize = 500;

/// How much of a session's label a log line shows.
pub(crate) const LOGGED_LABEL_BYTES: usize = 100;

/// How long a connection is kept from being shed after it was accepted and
/// after bytes last arrived on it: under a flood, a client's packets may be
/// dropped by the kernel's overflowing queues, so that it is accepted
/// before its request arrives with the next retransmission; and a request
/// that arrived needs a moment to be parsed and its token checked.
const CONNECTION_GRACE: Duration = Duration::from_millis(250);

/// How long accepting waits after it failed (out of descriptors, say)
/// unless a connection closes first.
const ACCEPT_RETRY: Duration = Duration::from_millis(250);

/// A bound server, ready to run.
pub struct Server {
    /// Watched for pending connections, which are accepted only when there
    /// is room for them.
    listener: AsyncFd<std::net::TcpListener>,
    state: Arc<State>,
    shutdown: Option<ShutdownSignal>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.get_ref().local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Binds the listener. Warns when the address is not a loopback address,
/// since the server speaks plain HTTP.
///
/// Fails with [`Error::Config`] when the token is shorter than
/// [`MIN_SERVER_TOKEN_BYTES`](crate::MIN_SERVER_TOKEN_BYTES) or the
/// work root cannot be created, and with [`Error::Bind`] when the address
/// cannot be bound.
pub async fn bind(config: ServeConfig) -> Result<Server, Error> {
    config.token.check_server_strength()?;
    let listener = listen(config.listen).map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let listener = listener
        .into_std()
        .and_then(|listener| {
            defer_accept(&listener)?;
            // SAFETY: the std listener owns its descriptor, which stays open
            // (and the same) until the `AsyncFd` drops it: nothing replaces
            // the listener inside it.
            unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
                .map_err(std::io::Error::from)
        })
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "serving on an address that is not loopback, without TLS: the bearer token and all \
             traffic travel in clear text; prefer 127.0.0.1 behind an SSH tunnel or a TLS proxy"
        );
    }
    let work_root = config.work_root.unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_root).map_err(|err| {
        Error::Config(format!(
            "creating the work root `{}`: {err}",
            work_root.display()
        ))
    })?;
    let mut limits = config.limits;
    let descriptors = descriptor_limit();
    let affordable = usize::try_from(descriptors / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if limits.max_connections > affordable {
        tracing::info!(
            asked = limits.max_connections,
            allowed = affordable,
            descriptors,
            "limiting connections to half the descriptor limit"
        );
        limits.max_connections = affordable;
    }
    let state = Arc::new(State {
        registry: config.registry,
        token: config.token.digest(),
        connections: ConnectionTable::new(limits.max_connections, CONNECTION_GRACE),
        limits,
        work_root,
        sessions: Mutex::new(HashMap::new()),
        shutting_down: AtomicBool::new(false),
        refusals: Throttle::new("refused requests"),
        accept_failures: Throttle::new("failed accepts"),
        full: Throttle::new(
            "waits for a connection place while every connection was an authenticated client's",
        ),
    });
    tracing::info!(address = %local, backends = ?served_types(&state.registry), "berth server listening");
    Ok(Server {
        listener,
        state,
        shutdown: config.shutdown,
    })
}

/// Binds and serves until the shutdown signal; see [`bind`] and
/// [`Server::run`].
pub async fn serve(config: ServeConfig) -> Result<(), Error> {
    bind(config).await?.run().await
}

/// Drops every session when the serving future is dropped without a
/// shutdown (its task aborted): commands are killed, workspaces removed.
struct AbandonOnDrop(Arc<State>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
        self.0.abandon_all();
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .get_ref()
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until the shutdown signal, then closes every session and
    /// returns. Dropping this future instead (aborting its task) closes
    /// the listener and every connection at once and drops every session,
    /// which kills their commands and removes their workspaces.
    pub async fn run(self) -> Result<(), Error> {
        let Server {
            listener,
            state,
            shutdown,
        } = self;
        let _abandon = AbandonOnDrop(Arc::clone(&state));
        let reaper_state = Arc::clone(&state);
        let _reaper = AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(reaper_state.limits.reap_interval).await;
                reaper_state.reap_expired().await;
            }
        }));
        state.end_log_interval();
        let logs_state = Arc::clone(&state);
        let _logs = AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(logs_state.limits.log_interval).await;
                logs_state.end_log_interval();
            }
        }));
        let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let mut connections = JoinSet::new();
        let (closing, closing_seen) = tokio::sync::watch::channel(false);
        loop {
            // A connection is waiting to be accepted...
            let mut pending = tokio::select! {
                ready = listener.readable() => match ready {
                    Ok(guard) => guard,
                    Err(err) => {
                        tracing::error!(error = %err, "watching the listener failed");
                        break;
                    }
                },
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            // ...once there is room for it: the cap counts descriptors until
            // they are closed, so it holds however fast clients connect.
            let waited_for_authenticated = tokio::select! {
                waited = state.connections.room() => waited,
                () = &mut shutdown => break,
            };
            if waited_for_authenticated && state.full.admit() {
                tracing::warn!(
                    limit = state.limits.max_connections,
                    "every connection place is held by an authenticated client: new connections \
                     waited for one to end"
                );
            }
            match pending.try_io(|listener| listener.get_ref().accept()) {
                Ok(Ok((stream, peer))) => {
                    let stream = stream
                        .set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(stream));
                    match stream {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            let slot = state.connections.admit(stream);
                            connections.spawn(serve_connection(
                                Arc::clone(&state),
                                peer,
                                slot,
                                closing_seen.clone(),
                            ));
                        }
                        Err(err) => {
                            tracing::warn!(%peer, error = %err, "setting up an accepted connection failed");
                        }
                    }
                }
                Ok(Err(err)) => {
                    // Out of descriptors, typically (the server's own work
                    // holds the rest): wait for a connection to close, or a
                    // moment, rather than spin.
                    if state.accept_failures.admit() {
                        tracing::warn!(error = %err, "accepting a connection failed");
                    }
                    tokio::select! {
                        () = state.connections.changed() => {}
                        () = tokio::time::sleep(ACCEPT_RETRY) => {}
                        () = &mut shutdown => break,
                    }
                }
                // Nothing was pending after all: wait for readiness again.
                Err(_would_block) => {}
            }
        }
        tracing::info!("berth server shutting down");
        drop(listener);
        state.end_log_interval();
        state.shutting_down.store(true, Ordering::SeqCst);
        // Closing the sessions ends their event streams with an `error`
        // line; the connections then get a moment to deliver it.
        state.close_all().await;
        let _ = closing.send(true);
        let drained = async { while connections.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
        connections.abort_all();
        Ok(())
    }
}

/// How long connections may take to finish what they are sending once the
/// sessions are closed at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest queue of connections the kernel keeps for the server (it
/// caps it to `net.core.somaxconn`): connections still in their handshake,
/// and connections waiting to be accepted.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr`, with a long backlog.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How long the kernel keeps a connection that has sent nothing from
/// being accepted (`TCP_DEFER_ACCEPT`).
const DEFER_ACCEPT_SECS: libc::c_int = 5;

/// Has the kernel hand over a connection only once its first bytes arrived
/// (or after [`DEFER_ACCEPT_SECS`]): a client speaks first in HTTP, so a
/// client is read, and authenticated, as soon as it is accepted, while a
/// flood of connections that send nothing waits in the kernel, holding no
/// descriptor of the server's.
fn defer_accept(listener: &std::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let seconds = DEFER_ACCEPT_SECS;
    // SAFETY: a valid socket of ours and an option value it reads.
    let set = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::addr_of!(seconds).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The soft limit on this process's open descriptors.
fn descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return u64::MAX;
    }
    limit.rlim_cur
}

async fn serve_connection(
    state: Arc<State>,
    peer: SocketAddr,
    slot: Slot<TcpStream>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let connection = Arc::clone(&slot.connection);
    let service = {
        let state = Arc::clone(&state);
        let connection = Arc::clone(&connection);
        service_fn(move |req| {
            let state = Arc::clone(&state);
            let connection = Arc::clone(&connection);
            async move { Ok::<_, Infallible>(handle(state, &connection, peer, req).await) }
        })
    };
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_read_timeout)
        .serve_connection(TokioIo::new(Watched::new(Arc::clone(&connection))), service);
    let mut served = std::pin::pin!(served);
    let mut graceful = false;
    loop {
        tokio::select! {
            outcome = served.as_mut() => {
                if let Err(err) = outcome {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                break;
            }
            () = connection.shed() => {
                tracing::debug!(%peer, "shed a connection that never presented the token");
                break;
            }
            _ = closing.wait_for(|closing| *closing), if !graceful => {
                served.as_mut().graceful_shutdown();
                graceful = true;
            }
        }
    }
    // Closes the socket and frees the place.
    drop(slot);
}

async fn handle(
    state: Arc<State>,
    connection: &Arc<Connection<TcpStream>>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if authorized(&state, &req) {
        state.connections.authenticate(connection);
    } else {
        // Anyone can send these, as many as they like: the first of each
        // interval is logged (its path cut short, never the header), the
        // rest counted. The connection is closed after the answer, so one
        // connection carries one refused request, not a pipeline of them.
        if state.refusals.admit() {
            tracing::warn!(
                %peer,
                method = %clip(req.method().as_str(), LOGGED_METHOD_BYTES),
                path = %clip(req.uri().path(), LOGGED_PATH_BYTES),
                "refused a request without the right bearer token; more in this interval are counted, not logged"
            );
        }
        let mut response = Failure::new(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` header is required",
        )
        .into_response();
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let method = req.method().clone();
    let path = clip(req.uri().path(), LOGGED_PATH_BYTES).into_owned();
    let response = routes::route(&state, req, peer)
        .await
        .unwrap_or_else(Failure::into_response);
    tracing::debug!(%peer, %method, %path, status = response.status().as_u16(), "request");
    response
}

/// How much of a request's method a log line shows (hyper takes methods of
/// any length).
const LOGGED_METHOD_BYTES: usize = 16;

fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return false;
    };
    let Some(presented) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    constant_time_eq(&digest(presented), &state.token)
}
