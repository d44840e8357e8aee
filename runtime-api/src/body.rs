//! The one HTTP body type both sides send: a buffer, the lines of an event
//! stream, or a file after an optional prefix (archives, frames).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// How much of a file one frame carries.
const FILE_CHUNK: usize = 64 << 10;

/// A request or response body.
#[derive(Debug)]
pub(crate) enum Body {
    /// All at once.
    Full(Option<Bytes>),
    /// An event stream's lines as they are sent (see [`event_channel`]).
    Events(EventLines),
    /// `prefix`, then the rest of `file`, `remaining` bytes in all.
    File {
        prefix: Option<Bytes>,
        file: tokio::fs::File,
        remaining: u64,
    },
}

impl Body {
    /// An empty body.
    pub(crate) fn empty() -> Body {
        Body::Full(None)
    }

    /// A body of `bytes`.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }

    /// `prefix` followed by the whole of `file` (whose length is
    /// `file_len`).
    pub(crate) fn file(prefix: Option<Bytes>, file: tokio::fs::File, file_len: u64) -> Body {
        let prefix_len = prefix.as_ref().map_or(0, |p| p.len() as u64);
        Body::File {
            prefix,
            file,
            remaining: prefix_len + file_len,
        }
    }
}

/// The lines of an event stream, read by the body.
pub(crate) struct EventLines {
    lines: mpsc::Receiver<Bytes>,
    ended: Arc<AtomicBool>,
    /// The last line to send when the senders went away without sending
    /// one; taken once.
    cut: Option<Box<dyn FnOnce() -> Bytes + Send>>,
}

impl std::fmt::Debug for EventLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLines")
            .field("ended", &self.ended.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// The sending end of an event stream.
#[derive(Debug, Clone)]
pub(crate) struct LineSender {
    lines: mpsc::Sender<Bytes>,
    ended: Arc<AtomicBool>,
}

impl LineSender {
    /// Sends a line, waiting while the client does not read; false once the
    /// client is gone.
    pub(crate) async fn send(&self, line: Bytes) -> bool {
        self.lines.send(line).await.is_ok()
    }

    /// Sends a line if there is room now.
    pub(crate) fn try_send(&self, line: Bytes) {
        let _ = self.lines.try_send(line);
    }

    /// Sends the stream's last line (`finished` or `error`) and marks the
    /// stream ended, so no other last line follows it.
    pub(crate) async fn send_last(&self, line: Bytes) {
        if self.lines.send(line).await.is_ok() {
            // No await between the send and this store: a task aborted
            // after sending has marked the stream ended.
            self.ended.store(true, Ordering::SeqCst);
        }
    }
}

/// An event stream whose body ends with a last line whatever happens to its
/// senders: a stream whose senders all went away (their task aborted, the
/// server shutting down, a session reaped) without [`LineSender::send_last`]
/// ends with the line `cut` gives then, instead of just stopping.
pub(crate) fn event_channel(
    capacity: usize,
    cut: impl FnOnce() -> Bytes + Send + 'static,
) -> (LineSender, Body) {
    let (lines, receiver) = mpsc::channel(capacity);
    let ended = Arc::new(AtomicBool::new(false));
    (
        LineSender {
            lines,
            ended: Arc::clone(&ended),
        },
        Body::Events(EventLines {
            lines: receiver,
            ended,
            cut: Some(Box::new(cut)),
        }),
    )
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Events(events) => match ready!(events.lines.poll_recv(cx)) {
                Some(line) => Poll::Ready(Some(Ok(Frame::data(line)))),
                None if events.ended.load(Ordering::SeqCst) => Poll::Ready(None),
                None => Poll::Ready(events.cut.take().map(|cut| Ok(Frame::data(cut())))),
            },
            Body::File {
                prefix,
                file,
                remaining,
            } => {
                if let Some(prefix) = prefix.take() {
                    *remaining = remaining.saturating_sub(prefix.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (*remaining).min(FILE_CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                let mut read = ReadBuf::new(&mut buf);
                ready!(Pin::new(file).poll_read(cx, &mut read))?;
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was being sent",
                    ))));
                }
                buf.truncate(n);
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Events(_) => false,
            Body::File {
                prefix, remaining, ..
            } => prefix.is_none() && *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Events(_) => SizeHint::default(),
            Body::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// Why reading a body failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It is longer than allowed.
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// The connection failed while reading.
    Broken(String),
}

/// Reads a whole body into memory, refusing more than `limit` bytes.
pub(crate) async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    if body.size_hint().lower() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| ReadError::Broken(err.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(ReadError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}
