//! Streamed standard input: bytes that reach a command while it runs.
//!
//! [`ExecCommand::stdin`](super::ExecCommand::stdin) holds bytes known
//! before the command starts. A caller whose input arrives over time (a
//! pipe into `berth run`, a file larger than memory) makes a
//! [`StdinStream::channel`] instead and puts the stream in
//! [`ExecCommand::stdin_stream`](super::ExecCommand::stdin_stream): each
//! chunk sent is written to the command's stdin in order, and the command's
//! stdin is closed once every [`StdinSender`] is dropped. The channel holds
//! at most [`STDIN_BUFFER`] chunks: a sender waits while the command does
//! not read, so memory stays bounded however much input there is.
//!
//! A backend takes both forms at once through
//! [`ExecCommand::take_stdin`](super::ExecCommand::take_stdin): a
//! [`StdinSource`] yields the fixed bytes first, then the stream's chunks.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

/// How many chunks may wait in a stdin channel before its sender waits for
/// the command to read.
pub const STDIN_BUFFER: usize = 16;

/// The feeding end of a [`StdinStream`]. Cheap to clone; the command's
/// stdin is closed when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct StdinSender {
    tx: mpsc::Sender<Bytes>,
}

impl StdinSender {
    /// Queues a chunk for the command's stdin, waiting while
    /// [`STDIN_BUFFER`] chunks are queued. Returns `false` when nobody will
    /// read any more (the command ended, or its backend dropped the stream):
    /// the caller should stop feeding.
    pub async fn send(&self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    /// [`StdinSender::send`] from synchronous code (a thread reading a
    /// file descriptor), parking the thread while the channel is full. Must
    /// not be called from inside an async task.
    pub fn blocking_send(&self, chunk: Bytes) -> bool {
        self.tx.blocking_send(chunk).is_ok()
    }

    /// Whether nobody will read any more.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when nobody will read any more.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// The receiving end of a stdin channel, as an [`ExecCommand`] carries it.
///
/// It can be cloned (as an `ExecCommand` can), but the clones share one
/// receiver: the first backend to [`take`](StdinStream::take) it reads the
/// chunks, and a clone taken later yields nothing. It is never serialised:
/// a backend that sends commands elsewhere (a plugin, a server) forwards
/// the chunks itself.
///
/// [`ExecCommand`]: super::ExecCommand
#[derive(Clone)]
pub struct StdinStream {
    rx: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
}

impl std::fmt::Debug for StdinStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let taken = self.rx.lock().map(|rx| rx.is_none()).unwrap_or(true);
        f.debug_struct("StdinStream")
            .field("taken", &taken)
            .finish()
    }
}

/// Two streams are equal when they share one receiver.
impl PartialEq for StdinStream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rx, &other.rx)
    }
}

impl StdinStream {
    /// A new channel: chunks sent through the sender reach whoever takes
    /// the stream.
    pub fn channel() -> (StdinSender, StdinStream) {
        let (tx, rx) = mpsc::channel(STDIN_BUFFER);
        (
            StdinSender { tx },
            StdinStream {
                rx: Arc::new(Mutex::new(Some(rx))),
            },
        )
    }

    /// Takes the receiver; `None` when a clone of this stream took it
    /// already.
    pub fn take(&self) -> Option<StdinReceiver> {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .map(|rx| StdinReceiver { rx })
    }
}

/// Chunks of a [`StdinStream`], in order.
#[derive(Debug)]
pub struct StdinReceiver {
    rx: mpsc::Receiver<Bytes>,
}

impl StdinReceiver {
    /// The next chunk; `None` once every sender is gone and the chunks
    /// queued before were read (the end of the input).
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// A chunk that is queued already, without waiting; `None` when none
    /// is (or the input ended).
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }
}

/// Everything a command is to read on its stdin: the fixed bytes of
/// [`ExecCommand::stdin`](super::ExecCommand::stdin), then the chunks of
/// its [`stdin_stream`](super::ExecCommand::stdin_stream).
#[derive(Debug)]
pub struct StdinSource {
    first: Option<Bytes>,
    rest: Option<StdinReceiver>,
}

impl StdinSource {
    pub(crate) fn new(first: Option<Vec<u8>>, rest: Option<StdinReceiver>) -> StdinSource {
        StdinSource {
            first: first.filter(|bytes| !bytes.is_empty()).map(Bytes::from),
            rest,
        }
    }

    /// The next chunk to write; `None` at the end of the input, when the
    /// command's stdin is to be closed.
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        match &mut self.rest {
            Some(rest) => rest.recv().await,
            None => None,
        }
    }

    /// Reads everything to the end: for a backend that can only pass
    /// stdin whole. Waits for the input to end.
    pub async fn collect(mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next().await {
            all.extend_from_slice(&chunk);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ExecCommand;

    #[tokio::test]
    async fn fixed_bytes_come_first_then_the_stream_until_its_senders_go() {
        let (tx, stream) = StdinStream::channel();
        let mut cmd = ExecCommand::new("cat")
            .stdin(b"head ".to_vec())
            .stdin_stream(stream.clone());
        let feeder = tokio::spawn(async move {
            assert!(tx.send(Bytes::from_static(b"one ")).await);
            let again = tx.clone();
            assert!(again.send(Bytes::from_static(b"two")).await);
        });
        let source = cmd.take_stdin().unwrap();
        assert!(cmd.stdin.is_none() && cmd.stdin_stream.is_none());
        assert_eq!(source.collect().await, b"head one two");
        feeder.await.unwrap();
        // The clone kept in the test shares the receiver, which is taken.
        assert!(stream.take().is_none());
    }

    #[tokio::test]
    async fn a_sender_learns_that_nobody_reads() {
        let (tx, stream) = StdinStream::channel();
        drop(stream.take());
        assert!(tx.is_closed());
        assert!(!tx.send(Bytes::from_static(b"x")).await);
    }

    #[test]
    fn a_command_without_stdin_has_no_source_and_streams_stay_out_of_json() {
        let mut plain = ExecCommand::new("true");
        assert!(plain.take_stdin().is_none());
        let (_tx, stream) = StdinStream::channel();
        let cmd = ExecCommand::new("cat").stdin_stream(stream);
        let json = serde_json::to_value(&cmd).unwrap();
        assert!(json.get("stdin_stream").is_none(), "{json}");
        let back: ExecCommand = serde_json::from_value(json).unwrap();
        assert!(back.stdin_stream.is_none());
        assert_eq!(cmd.clone(), cmd);
    }
}
