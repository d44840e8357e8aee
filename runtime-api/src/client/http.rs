//! [`ApiClient`]: the protocol's requests, over kept-alive HTTP/1.1
//! connections.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use session_core::runtime::wire::WireError;
use tokio::io::AsyncWriteExt as _;

use crate::body::{Body, read_limited};
use crate::protocol::{
    ChangeSet, CreateSession, ExecRequest, FRAME, Health, JSON, LeaseRenewed, PATH_PREFIX,
    SessionCreated, SpawnRequest, Spawned, StdinChunk, StdinReceived, StreamLine, SyncHead, Synced,
    WorkspaceState,
};
use crate::{Error, TYPE_NAME, Token};

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a short request (lease, manifest, kill...) may take.
const SHORT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest error body read.
const MAX_ERROR_BODY: u64 = 1 << 20;

/// The largest JSON answer read.
const MAX_JSON_BODY: u64 = 256 << 20;

/// The longest event line accepted (a retry's `finished` line carries the
/// whole kept output of both streams in base64).
const MAX_LINE: usize = 512 << 20;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;

/// A client of one berth server. Cheap to clone; clones share their
/// connections.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    url: String,
    authority: String,
    prefix: String,
    authorization: HeaderValue,
    idle: Mutex<Vec<SendRequest<Body>>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// A request body being built.
enum Payload<'a> {
    Empty,
    Json(Bytes),
    Frame {
        head: Bytes,
        archive: Option<&'a Path>,
    },
    /// A frame whose rest is bytes in memory.
    Chunk {
        head: Bytes,
        data: Bytes,
    },
}

impl Payload<'_> {
    async fn body(&self) -> Result<(Body, Option<&'static str>), std::io::Error> {
        Ok(match self {
            Payload::Empty => (Body::empty(), None),
            Payload::Json(bytes) => (Body::full(bytes.clone()), Some(JSON)),
            Payload::Frame { head, archive } => {
                let mut prefix = BytesMut::from(&head[..]);
                prefix.extend_from_slice(b"\n");
                match archive {
                    Some(path) => {
                        let file = tokio::fs::File::open(path).await?;
                        let len = file.metadata().await?.len();
                        (Body::file(Some(prefix.freeze()), file, len), Some(FRAME))
                    }
                    None => (Body::full(prefix.freeze()), Some(FRAME)),
                }
            }
            Payload::Chunk { head, data } => {
                let mut frame = BytesMut::with_capacity(head.len() + 1 + data.len());
                frame.extend_from_slice(head);
                frame.extend_from_slice(b"\n");
                frame.extend_from_slice(data);
                (Body::full(frame.freeze()), Some(FRAME))
            }
        })
    }
}

/// The connection a response arrived on, returned to the pool once the
/// response's body has been read to its end.
struct Lease {
    sender: SendRequest<Body>,
}

impl ApiClient {
    /// A client for the server at `url` (`http://HOST:PORT`, optionally
    /// with a path prefix).
    ///
    /// Fails with [`Error::Config`] for anything but an `http://` URL with
    /// a host: TLS is not spoken; reach a remote server through an SSH
    /// tunnel or a TLS proxy on this machine.
    pub fn new(url: &str, token: &Token) -> Result<ApiClient, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|err| Error::Config(format!("api url `{url}`: {err}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(Error::Config(format!(
                    "api url `{url}`: https is not supported; reach the server through an SSH \
                     tunnel or a TLS proxy on this machine and use its http:// address"
                )));
            }
            _ => {
                return Err(Error::Config(format!(
                    "api url `{url}` must start with http://"
                )));
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::Config(format!("api url `{url}` has no host")))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.host()),
        };
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Error::Config("the api token cannot travel in a header".into()))?;
        authorization.set_sensitive(true);
        Ok(ApiClient {
            inner: Arc::new(ClientInner {
                url: url.to_owned(),
                authority,
                prefix,
                authorization,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    fn connect_error(&self, message: impl std::fmt::Display) -> Error {
        Error::Connect {
            url: self.inner.url.clone(),
            message: message.to_string(),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, Error> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.inner.authority),
        )
        .await
        .map_err(|_| self.connect_error("connecting timed out"))?
        .map_err(|err| self.connect_error(err))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| self.connect_error(err))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "api connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn pooled(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if sender.is_ready() && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, lease: Lease) {
        if lease.sender.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(lease.sender);
        }
    }

    /// Sends one request and returns its response head. A request that
    /// fails on a reused connection before it was sent (or, when
    /// `idempotent`, at all) is sent again on a fresh one.
    async fn send(
        &self,
        method: Method,
        path: &str,
        payload: &Payload<'_>,
        idempotent: bool,
    ) -> Result<(Response<Incoming>, Lease), Error> {
        let uri: Uri = format!("{}{PATH_PREFIX}{path}", self.inner.prefix)
            .parse()
            .map_err(|err| Error::Protocol(format!("request path `{path}`: {err}")))?;
        let mut reused = self.pooled();
        loop {
            let was_reused = reused.is_some();
            let mut sender = match reused.take() {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            let (body, content_type) = payload
                .body()
                .await
                .map_err(|err| Error::Protocol(format!("reading what to send: {err}")))?;
            let mut request = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .header(HOST, &self.inner.authority)
                .header(AUTHORIZATION, self.inner.authorization.clone());
            if let Some(content_type) = content_type {
                request = request.header(CONTENT_TYPE, content_type);
            }
            let request = request
                .body(body)
                .map_err(|err| Error::Protocol(err.to_string()))?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, Lease { sender })),
                Err(mut err) => {
                    let unsent = err.take_message().is_some();
                    if was_reused && (unsent || idempotent) {
                        continue;
                    }
                    return Err(self.connect_error(err.into_error()));
                }
            }
        }
    }

    /// Turns an error status into [`Error::Status`] with the server's
    /// [`WireError`].
    async fn check(&self, response: Response<Incoming>) -> Result<Response<Incoming>, Error> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_limited(response.into_body(), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let error =
            serde_json::from_slice::<WireError>(&body).unwrap_or_else(|_| WireError::Backend {
                backend: TYPE_NAME.into(),
                message: format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                ),
            });
        Err(Error::Status {
            status: status.as_u16(),
            error,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        payload: Payload<'_>,
        idempotent: bool,
        timeout: Option<Duration>,
    ) -> Result<T, Error> {
        let work = async {
            let (response, lease) = self.send(method, path, &payload, idempotent).await?;
            let response = self.check(response).await?;
            let status = response.status();
            let body = read_limited(response.into_body(), MAX_JSON_BODY)
                .await
                .map_err(|err| self.connect_error(format!("reading the answer: {err:?}")))?;
            self.give_back(lease);
            if status == StatusCode::NO_CONTENT || body.is_empty() {
                return serde_json::from_slice(b"null")
                    .map_err(|err| Error::Protocol(format!("empty answer: {err}")));
            }
            serde_json::from_slice(&body)
                .map_err(|err| Error::Protocol(format!("answer to `{path}`: {err}")))
        };
        match timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .map_err(|_| self.connect_error(format!("no answer within {limit:?}")))?,
            None => work.await,
        }
    }

    fn json<T: Serialize>(value: &T) -> Payload<'static> {
        Payload::Json(
            serde_json::to_vec(value)
                .expect("protocol values serialise")
                .into(),
        )
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, Error> {
        self.call(
            Method::GET,
            "/health",
            Payload::Empty,
            true,
            Some(SHORT_REQUEST_TIMEOUT),
        )
        .await
    }

    /// `POST /v1/sessions`, with the assets' archive when there is one.
    pub async fn create_session(
        &self,
        request: &CreateSession,
        assets: Option<&Path>,
    ) -> Result<SessionCreated, Error> {
        // A spec built in code may not serialise (an empty `type`).
        let head = serde_json::to_vec(request)
            .map_err(|err| Error::Config(format!("the remote spec cannot be sent: {err}")))?;
        let payload = match assets {
            Some(archive) => Payload::Frame {
                head: head.into(),
                archive: Some(archive),
            },
            None => Payload::Json(head.into()),
        };
        self.call(Method::POST, "/sessions", payload, false, None)
            .await
    }

    /// `DELETE /v1/sessions/{session}`: closes it (runtimes, workspace).
    pub async fn delete_session(&self, session: &str) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            &format!("/sessions/{session}"),
            Payload::Empty,
            true,
            None,
        )
        .await
    }

    /// `POST /v1/sessions/{session}/lease`.
    pub async fn renew_lease(&self, session: &str) -> Result<LeaseRenewed, Error> {
        self.call(
            Method::POST,
            &format!("/sessions/{session}/lease"),
            Payload::Empty,
            true,
            Some(SHORT_REQUEST_TIMEOUT),
        )
        .await
    }

    /// `GET /v1/sessions/{session}/workspace`.
    pub async fn workspace(&self, session: &str) -> Result<WorkspaceState, Error> {
        self.call(
            Method::GET,
            &format!("/sessions/{session}/workspace"),
            Payload::Empty,
            true,
            Some(SHORT_REQUEST_TIMEOUT),
        )
        .await
    }

    /// `POST /v1/sessions/{session}/sync`: deletions and an archive of
    /// created or changed entries.
    pub async fn sync(
        &self,
        session: &str,
        head: &SyncHead,
        archive: Option<&Path>,
    ) -> Result<Synced, Error> {
        let payload = Payload::Frame {
            head: serde_json::to_vec(head)
                .expect("protocol values serialise")
                .into(),
            archive,
        };
        self.call(
            Method::POST,
            &format!("/sessions/{session}/sync"),
            payload,
            true,
            None,
        )
        .await
    }

    /// `POST /v1/sessions/{session}/runtimes`: spawns a runtime (its setup
    /// runs now, however long it takes).
    pub async fn spawn(&self, session: &str, request: &SpawnRequest) -> Result<Spawned, Error> {
        self.call(
            Method::POST,
            &format!("/sessions/{session}/runtimes"),
            Self::json(request),
            false,
            None,
        )
        .await
    }

    /// `DELETE /v1/sessions/{session}/runtimes/{runtime}`.
    pub async fn cleanup_runtime(&self, session: &str, runtime: &str) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            &format!("/sessions/{session}/runtimes/{runtime}"),
            Payload::Empty,
            true,
            None,
        )
        .await
    }

    /// `POST /v1/sessions/{session}/runtimes/{runtime}/kill`.
    pub async fn kill(&self, session: &str, runtime: &str) -> Result<(), Error> {
        self.call(
            Method::POST,
            &format!("/sessions/{session}/runtimes/{runtime}/kill"),
            Payload::Empty,
            true,
            Some(SHORT_REQUEST_TIMEOUT),
        )
        .await
    }

    /// `POST /v1/sessions/{session}/execs/{key}/cancel`.
    pub async fn cancel(&self, session: &str, key: &str) -> Result<(), Error> {
        self.call(
            Method::POST,
            &format!("/sessions/{session}/execs/{key}/cancel"),
            Payload::Empty,
            true,
            Some(SHORT_REQUEST_TIMEOUT),
        )
        .await
    }

    /// `POST /v1/sessions/{session}/execs/{key}/stdin`: hands `data`, the
    /// streamed stdin from byte `offset` on, to the execution's command;
    /// `eof` closes its stdin after them. Returns how many bytes the
    /// command's stdin took so far. Waits while the command does not read.
    pub async fn stdin(
        &self,
        session: &str,
        key: &str,
        chunk: StdinChunk,
        data: Bytes,
    ) -> Result<StdinReceived, Error> {
        let payload = Payload::Chunk {
            head: serde_json::to_vec(&chunk)
                .expect("protocol values serialise")
                .into(),
            data,
        };
        self.call(
            Method::POST,
            &format!("/sessions/{session}/execs/{key}/stdin"),
            payload,
            true,
            None,
        )
        .await
    }

    /// `POST /v1/sessions/{session}/runtimes/{runtime}/exec`: starts (or,
    /// for a key already used, joins) an execution and returns its event
    /// stream once the server answered.
    pub async fn exec(
        &self,
        session: &str,
        runtime: &str,
        request: &ExecRequest,
    ) -> Result<ExecStream, Error> {
        let body = serde_json::to_vec(request).expect("protocol values serialise");
        self.exec_raw(session, runtime, body.into()).await
    }

    /// [`ApiClient::exec`] with the request already serialised (a retry
    /// sends the very same bytes).
    pub(crate) async fn exec_raw(
        &self,
        session: &str,
        runtime: &str,
        body: Bytes,
    ) -> Result<ExecStream, Error> {
        let path = format!("/sessions/{session}/runtimes/{runtime}/exec");
        let (response, lease) = self
            .send(Method::POST, &path, &Payload::Json(body), true)
            .await?;
        let response = self.check(response).await?;
        Ok(ExecStream {
            client: self.clone(),
            body: response.into_body(),
            buffer: BytesMut::new(),
            scanned: 0,
            lease: Some(lease),
        })
    }

    /// `GET /v1/sessions/{session}/changes/{id}`: writes the change archive
    /// to `dest` and returns its size. At most `limit` bytes are accepted
    /// (what the entries the change set announced can take in an archive):
    /// a server does not get to fill this machine's disk.
    ///
    /// Fails with [`Error::Protocol`] when the archive is (or is declared)
    /// larger than `limit`, or cannot be stored; what was written of it is
    /// left in `dest` for the caller to remove.
    pub async fn download_changes(
        &self,
        session: &str,
        id: &str,
        dest: &Path,
        limit: u64,
    ) -> Result<u64, Error> {
        let too_large = |size: u64| {
            Error::Protocol(format!(
                "the change archive is larger than the {limit} bytes its announced entries can \
                 take (at least {size} bytes)"
            ))
        };
        let path = format!("/sessions/{session}/changes/{id}");
        let (response, lease) = self.send(Method::GET, &path, &Payload::Empty, true).await?;
        let response = self.check(response).await?;
        let declared = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(declared) = declared.filter(|len| *len > limit) {
            return Err(too_large(declared));
        }
        let mut body = response.into_body();
        let file = tokio::fs::File::create(dest)
            .await
            .map_err(|err| Error::Protocol(format!("storing changes: {err}")))?;
        let mut out = tokio::io::BufWriter::with_capacity(256 << 10, file);
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| self.connect_error(err))?;
            if let Ok(data) = frame.into_data() {
                written = written.saturating_add(data.len() as u64);
                if written > limit {
                    return Err(too_large(written));
                }
                out.write_all(&data)
                    .await
                    .map_err(|err| Error::Protocol(format!("storing changes: {err}")))?;
            }
        }
        out.flush()
            .await
            .map_err(|err| Error::Protocol(format!("storing changes: {err}")))?;
        self.give_back(lease);
        Ok(written)
    }
}

/// The events of one execution, line by line.
pub struct ExecStream {
    client: ApiClient,
    body: Incoming,
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no line break.
    scanned: usize,
    lease: Option<Lease>,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream")
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl ExecStream {
    /// The next line; `None` when the stream ended (after `finished` or
    /// `error`, or early when the connection closed). A line is decoded only
    /// once it is whole, and may be at most 512 MiB (a joined stream's last
    /// line carries the output kept); JSON nesting is bounded by the
    /// decoder.
    ///
    /// Fails with [`Error::Connect`] when the connection broke, and with
    /// [`Error::Protocol`] for a line that is not a [`StreamLine`] or is
    /// longer than the bound.
    pub async fn next_line(&mut self) -> Result<Option<StreamLine>, Error> {
        loop {
            // Only the bytes not searched yet: a long line arriving in many
            // small frames is searched once, not once per frame.
            let newline = self.buffer[self.scanned..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|at| self.scanned + at);
            self.scanned = self.buffer.len();
            if let Some(newline) = newline {
                self.scanned = 0;
                let line = self.buffer.split_to(newline + 1);
                let line = &line[..newline];
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|err| Error::Protocol(format!("event line: {err}")));
            }
            if self.buffer.len() > MAX_LINE {
                return Err(Error::Protocol(format!(
                    "an event line is longer than {MAX_LINE} bytes"
                )));
            }
            match self.body.frame().await {
                None => {
                    if let Some(lease) = self.lease.take()
                        && self.buffer.is_empty()
                    {
                        self.client.give_back(lease);
                    }
                    return Ok(None);
                }
                Some(Err(err)) => return Err(self.client.connect_error(err)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Reads to the end and returns the last result: the `finished`
    /// line's result and changes, or the `error` line's error.
    pub async fn finish(mut self) -> Result<(crate::protocol::WireResult, ChangeSet), Error> {
        while let Some(line) = self.next_line().await? {
            match line {
                StreamLine::Finished { result, changes } => return Ok((result, changes)),
                StreamLine::Error { error } => {
                    return Err(Error::Status { status: 500, error });
                }
                _ => {}
            }
        }
        Err(Error::Protocol(
            "the event stream ended without a result".into(),
        ))
    }
}
