//! Streamed stdin across the plugin boundary, through a pipe.
//!
//! A plugin lives in the host's process, so the host hands it the read end
//! of a pipe by its descriptor number (`stdin_fd` of the `stream` request)
//! and writes the command's [`StdinStream`] into the other end; the plugin
//! duplicates the descriptor during the call and turns what it reads back
//! into a `StdinStream` for its runtime. The pipe's buffer and the two
//! bounded channels keep memory bounded, and the end of the host's stream
//! (its write end closed) is the end of the command's stdin.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::runtime::{StdinReceiver, StdinStream};

/// How much one read of the plugin's end takes at most.
const CHUNK: usize = 64 * 1024;

/// The host's side: the read end the plugin is told about, and the task
/// writing the stream into the write end.
#[derive(Debug)]
pub(crate) struct HostPipe {
    read: OwnedFd,
    writer: JoinHandle<()>,
}

impl HostPipe {
    /// Makes the pipe and starts writing `chunks` into it; the write end is
    /// closed when the chunks end. Must run inside a tokio runtime.
    pub(crate) fn start(mut chunks: StdinReceiver) -> std::io::Result<HostPipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors owned by
        // nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut write = pipe::Sender::from_owned_fd(write)?;
        let writer = tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                // The plugin's end is gone: the command is over.
                if write.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        Ok(HostPipe { read, writer })
    }

    /// The descriptor the plugin is to read.
    pub(crate) fn plugin_end(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Stops writing and closes the host's ends: for after the call
    /// returned, when the plugin no longer reads.
    pub(crate) fn finish(self) {
        drop(self);
    }
}

impl Drop for HostPipe {
    /// A pipe dropped with its call (an `execute` whose caller went away)
    /// stops its writer too: the chunks' sender then learns that nobody
    /// reads.
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// The plugin's side: a [`StdinStream`] fed from a duplicate of the
/// host's descriptor `fd`, and the task feeding it (to abort once the
/// command ended). Must run inside the plugin's tokio runtime, during the
/// `stream` call that named `fd`.
pub(crate) fn receive(fd: RawFd) -> std::io::Result<(StdinStream, JoinHandle<()>)> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; the host keeps it open for
    // the whole call, and a number that names nothing fails with EBADF.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `copy` is a fresh descriptor nothing else owns.
    let copy = unsafe { OwnedFd::from_raw_fd(copy) };
    let mut read = pipe::Receiver::from_owned_fd(copy)?;
    let (tx, stream) = StdinStream::channel();
    let feeder = tokio::spawn(async move {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !tx.send(Bytes::copy_from_slice(&buffer[..n])).await {
                        return;
                    }
                }
            }
        }
    });
    Ok((stream, feeder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_cross_the_pipe_in_order_and_its_end_is_the_end() {
        let (tx, host_side) = StdinStream::channel();
        let pipe = HostPipe::start(host_side.take().unwrap()).unwrap();
        let (plugin_side, feeder) = receive(pipe.plugin_end()).unwrap();
        let sending = tokio::spawn(async move {
            for i in 0..100u8 {
                assert!(tx.send(Bytes::from(vec![i; 10_000])).await);
            }
        });
        let mut received = Vec::new();
        let mut chunks = plugin_side.take().unwrap();
        while let Some(chunk) = chunks.recv().await {
            received.extend_from_slice(&chunk);
        }
        sending.await.unwrap();
        let expected: Vec<u8> = (0..100u8).flat_map(|i| vec![i; 10_000]).collect();
        assert_eq!(received, expected);
        feeder.await.unwrap();
        pipe.finish();
    }

    #[tokio::test]
    async fn a_number_that_names_nothing_is_an_error() {
        assert!(receive(-1).is_err());
    }
}
