//! Responses, the error format, and bounded request bodies.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use session_core::runtime::wire::WireError;
use tokio::io::AsyncWriteExt as _;

use crate::TYPE_NAME;
use crate::body::{Body, ReadError};
use crate::protocol::{JSON, NDJSON};

/// An error answer: an HTTP status and the [`WireError`] sent as its JSON
/// body.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) error: WireError,
}

impl Failure {
    /// A failure of the server itself (not of a backend).
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            error: WireError::Backend {
                backend: TYPE_NAME.into(),
                message: message.into(),
            },
        }
    }

    /// A failure of the session layer or a backend, with the status that
    /// fits it: bad input is 400, a failed setup 422, a closed runtime 410.
    pub(crate) fn from_core(err: &session_core::Error, backend: &str) -> Failure {
        use session_core::Error as E;
        let status = match err {
            E::Spec { .. }
            | E::UnknownBackend { .. }
            | E::PathEscape { .. }
            | E::UnsafeArchiveMember { .. }
            | E::Archive { .. }
            | E::Asset { .. }
            | E::InvalidGlob { .. }
            | E::EntryFileFormat { .. } => StatusCode::BAD_REQUEST,
            E::SetupFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::RuntimeClosed { .. } => StatusCode::GONE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let error = match err {
            E::UnsafeArchiveMember { member, reason, .. } => WireError::PathEscape {
                path: member.clone(),
                reason: reason.clone(),
            },
            other => WireError::from_error(other, backend),
        };
        Failure { status, error }
    }

    /// The answer.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = json_response(self.status, &self.error);
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A JSON answer.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).expect("protocol values serialise");
    let mut response = Response::new(Body::full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// An empty `204 No Content`.
pub(crate) fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// An event stream.
pub(crate) fn ndjson_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    response
}

fn read_failure(err: ReadError, what: &str) -> Failure {
    match err {
        ReadError::TooLarge { limit } => Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the {what} is larger than the server's limit of {limit} bytes"),
        ),
        ReadError::Broken(message) => Failure::new(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {message}"),
        ),
    }
}

/// How much of a refused body is still read (and thrown away) so that the
/// client, still sending, gets to read the `413` instead of a reset
/// connection.
const DRAIN_CAP: u64 = 16 << 20;

/// How long reading a refused body may take.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and discards what is left of a refused body, within bounds.
async fn drain(body: &mut Incoming) {
    let work = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                read += data.len() as u64;
                if read > DRAIN_CAP {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, work).await;
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The next frame of a body, or `408` when nothing arrives for `stall`: a
/// client that stops sending mid-body does not hold its connection (and a
/// session's request) for ever.
async fn next_frame(
    body: &mut Incoming,
    stall: Duration,
) -> Result<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>, Failure> {
    tokio::time::timeout(stall, body.frame())
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body stalled: nothing arrived for {} s",
                    stall.as_secs_f64()
                ),
            )
        })
}

/// Reads a whole body of at most `limit` bytes (413 beyond), each part
/// arriving within `stall` of the previous one (408 otherwise).
pub(crate) async fn read_body(
    req: Request<Incoming>,
    limit: u64,
    stall: Duration,
) -> Result<Bytes, Failure> {
    let too_large = || read_failure(ReadError::TooLarge { limit }, "request body");
    let declared = declared_length(&req);
    let mut body = req.into_body();
    if declared.is_some_and(|len| len > limit) {
        if declared.is_some_and(|len| len <= DRAIN_CAP) {
            drain(&mut body).await;
        }
        return Err(too_large());
    }
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = next_frame(&mut body, stall).await? {
        let frame = frame.map_err(|err| read_failure(ReadError::Broken(err.to_string()), ""))?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                drain(&mut body).await;
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Parses a JSON body (400 when it does not fit `T`).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|err| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {err}"),
        )
    })
}

/// Reads a frame body: a JSON line of at most `head_limit` bytes, then an
/// archive of at most `archive_limit` bytes written to a new file in
/// `dir`. Returns the JSON line and the archive (`None` when empty).
/// Either part over its limit is 413, a pause longer than `stall` 408;
/// nothing is kept then.
pub(crate) async fn read_frame(
    req: Request<Incoming>,
    head_limit: u64,
    archive_limit: u64,
    dir: &Path,
    stall: Duration,
) -> Result<(Bytes, Option<tempfile::NamedTempFile>), Failure> {
    let declared = declared_length(&req);
    let mut body = req.into_body();
    if declared.is_some_and(|len| len > head_limit.saturating_add(archive_limit)) {
        if declared.is_some_and(|len| len <= DRAIN_CAP) {
            drain(&mut body).await;
        }
        return Err(read_failure(
            ReadError::TooLarge {
                limit: head_limit.saturating_add(archive_limit),
            },
            "request body",
        ));
    }
    let mut head = bytes::BytesMut::new();
    let rest = loop {
        let Some(frame) = next_frame(&mut body, stall).await? else {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "the frame body ends before its JSON line",
            ));
        };
        let frame = frame.map_err(|err| read_failure(ReadError::Broken(err.to_string()), ""))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(newline) = data.iter().position(|b| *b == b'\n') {
            if (head.len() + newline) as u64 > head_limit {
                drain(&mut body).await;
                return Err(read_failure(
                    ReadError::TooLarge { limit: head_limit },
                    "frame's JSON line",
                ));
            }
            head.extend_from_slice(&data[..newline]);
            break data.slice(newline + 1..);
        }
        if (head.len() + data.len()) as u64 > head_limit {
            drain(&mut body).await;
            return Err(read_failure(
                ReadError::TooLarge { limit: head_limit },
                "frame's JSON line",
            ));
        }
        head.extend_from_slice(&data);
    };
    let temp = tempfile::Builder::new()
        .prefix("incoming-")
        .suffix(".tar")
        .tempfile_in(dir)
        .map_err(|err| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("creating a file for the archive: {err}"),
            )
        })?;
    let io_failure = |err: std::io::Error| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the archive: {err}"),
        )
    };
    let file = tokio::fs::File::from_std(temp.reopen().map_err(io_failure)?);
    let mut out = tokio::io::BufWriter::with_capacity(256 << 10, file);
    let mut written = 0u64;
    let mut chunk = Some(rest);
    loop {
        let data = match chunk.take() {
            Some(data) => data,
            None => match next_frame(&mut body, stall).await? {
                None => break,
                Some(frame) => {
                    let frame = frame
                        .map_err(|err| read_failure(ReadError::Broken(err.to_string()), ""))?;
                    match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    }
                }
            },
        };
        written += data.len() as u64;
        if written > archive_limit {
            drain(&mut body).await;
            return Err(read_failure(
                ReadError::TooLarge {
                    limit: archive_limit,
                },
                "archive",
            ));
        }
        out.write_all(&data).await.map_err(io_failure)?;
    }
    out.flush().await.map_err(io_failure)?;
    Ok((head.freeze(), (written > 0).then_some(temp)))
}
