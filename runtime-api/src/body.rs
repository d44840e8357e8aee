//! The one HTTP body type both sides send: a buffer, a channel of chunks
//! (event streams), or a file after an optional prefix (archives, frames).

use std::io;
use std::pin::Pin;
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
    /// Chunks as they are sent; ends when every sender is gone.
    Channel(mpsc::Receiver<Bytes>),
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

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c)))),
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
            Body::Channel(_) => false,
            Body::File {
                prefix, remaining, ..
            } => prefix.is_none() && *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Channel(_) => SizeHint::default(),
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
