//! Live output: events, the stream that carries them, and the bounded
//! buffer every backend keeps output in.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::lend::{Direct, Queued, StdoutLend, Waited, readable_now};
use super::result::{ExecResult, Output};

/// One event of a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes the command wrote to stdout, as they were read.
    Stdout(Bytes),
    /// Bytes the command wrote to stderr, as they were read.
    Stderr(Bytes),
    /// The command ended; always the last event.
    Finished(ExecResult),
}

/// How many events may wait in a stream before the producer waits for the
/// consumer (and the command, for its pipe).
pub const EVENT_BUFFER: usize = 16;

/// The producing end of an [`EventStream`], held by a backend.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::Sender<Event>,
    /// The stream's lent pipe, whose consumer may wait outside the stream.
    lend: Option<Arc<StdoutLend>>,
}

impl Drop for EventSender {
    fn drop(&mut self) {
        // The last sender gone ends the stream: a consumer waiting on the
        // pipe must look.
        if let Some(lend) = &self.lend {
            lend.wake_consumer();
        }
    }
}

impl EventSender {
    /// Sends an event, waiting while the stream is full. Returns `false`
    /// when the consumer dropped the stream: the backend should then kill
    /// the command.
    pub async fn send(&self, event: Event) -> bool {
        let sent = self.tx.send(event).await.is_ok();
        self.sent();
        sent
    }

    /// Wakes a consumer that waits on the lent pipe.
    fn sent(&self) {
        if let Some(lend) = &self.lend {
            lend.wake_consumer();
        }
    }

    /// Sends an event from synchronous code (a plugin's output callback),
    /// parking the thread while the stream is full. Returns `false` when the
    /// consumer dropped the stream.
    ///
    /// Unlike tokio's `blocking_send` this does not refuse to run on a
    /// thread that has entered a tokio runtime: a plugin's callback runs
    /// inside the plugin's own runtime, and parking it is how backpressure
    /// reaches the plugin.
    ///
    /// The send is exempt from tokio's cooperative budget: when host and
    /// plugin share one tokio (a backend served in process), the callback
    /// runs inside the plugin's `block_on` poll, whose budget may be spent;
    /// a budgeted send would then return `Pending` and wake itself for
    /// ever, and this thread would spin instead of sending.
    pub fn blocking_send(&self, event: Event) -> bool {
        let sent = park_on(tokio::task::coop::unconstrained(self.tx.send(event))).is_ok();
        self.sent();
        sent
    }

    /// Room for one event, waiting while the stream is full; `None` when
    /// the consumer dropped the stream. What a backend reads after taking
    /// the room can be sent without waiting.
    pub async fn reserve(&self) -> Option<EventPermit<'_>> {
        let permit = self.tx.reserve().await.ok()?;
        Some(EventPermit {
            permit,
            sender: self,
        })
    }

    /// Room for one event if the stream has some now; `None` when it is
    /// full or the consumer dropped it.
    pub fn try_reserve(&self) -> Option<EventPermit<'_>> {
        let permit = self.tx.try_reserve().ok()?;
        Some(EventPermit {
            permit,
            sender: self,
        })
    }

    /// Whether the consumer dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the consumer drops the stream.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// Room for one event in a stream ([`EventSender::reserve`]).
#[derive(Debug)]
pub struct EventPermit<'a> {
    permit: mpsc::Permit<'a, Event>,
    sender: &'a EventSender,
}

impl EventPermit<'_> {
    /// Sends `event` into the room taken.
    pub fn send(self, event: Event) {
        self.permit.send(event);
        self.sender.sent();
    }
}

/// Live events of one command: any number of `Stdout`/`Stderr` chunks, then
/// exactly one `Finished`.
///
/// Dropping the stream before `Finished` cancels the command: the backend
/// kills its process tree.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    /// The command's stdout pipe, when its backend offers it.
    lend: Option<Arc<StdoutLend>>,
}

impl EventStream {
    /// A connected sender and stream.
    pub fn channel() -> (EventSender, EventStream) {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        (
            EventSender { tx, lend: None },
            EventStream { rx, lend: None },
        )
    }

    /// A connected sender and stream whose consumer may read the
    /// command's stdout pipe itself ([`StdoutLend`]).
    pub fn channel_lending(lend: Arc<StdoutLend>) -> (EventSender, EventStream) {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        (
            EventSender {
                tx,
                lend: Some(Arc::clone(&lend)),
            },
            EventStream {
                rx,
                lend: Some(lend),
            },
        )
    }

    /// The next event without waiting, or, when the stream's backend lends
    /// the command's stdout pipe ([`StdoutLend`]) and no event waits, bytes
    /// of stdout read from the pipe directly, which `make` turns into what
    /// the caller takes for a `Stdout` event of them. [`Direct::Wait`]
    /// means nothing is ready: [`EventStream::poll_direct`] or
    /// [`EventStream::wait_direct`] waits for it.
    ///
    /// Fails when reading the pipe fails (which gives the pipe back to the
    /// backend: the rest comes as events), or with `make`'s error.
    ///
    /// A consumer that read the pipe once must go on reading through this
    /// method, [`EventStream::next`] or [`EventStream::finish`] (not as a
    /// `futures` `Stream`, which sees only events): the backend leaves
    /// the pipe to it.
    pub fn try_next_direct<T>(
        &mut self,
        make: impl FnOnce(&[u8]) -> io::Result<T>,
    ) -> io::Result<Direct<T>> {
        let rx = &mut self.rx;
        let mut queued = || match rx.try_recv() {
            Ok(event) => Some(Queued::Event(event)),
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Queued::End),
            Err(mpsc::error::TryRecvError::Empty) => None,
        };
        match &self.lend {
            Some(lend) => lend.consumer_read(queued, make),
            None => Ok(match queued() {
                Some(Queued::Event(event)) => Direct::Event(event),
                Some(Queued::End) => Direct::End,
                None => Direct::Wait,
            }),
        }
    }

    /// Waits, blocking the thread for at most `timeout`, until
    /// [`EventStream::try_next_direct`] may have something: an event, or
    /// bytes (or the end) in the lent pipe. The wait is the kernel's own
    /// (`poll(2)` of the pipe), with no thread in between. Returns `false`
    /// at once when the consumer cannot wait this way (no pipe is lent to
    /// it now): [`EventStream::wait_direct`] waits then.
    pub fn poll_direct(&mut self, timeout: Duration) -> bool {
        let Some(lend) = &self.lend else {
            return false;
        };
        let rx = &self.rx;
        lend.poll_consumer(|| !rx.is_empty() || rx.is_closed(), timeout)
    }

    /// Waits until [`EventStream::try_next_direct`] has something: the
    /// next event, or bytes (or the end) in the lent pipe.
    pub async fn wait_direct(&mut self) -> Waited {
        let Some(pipe) = self.lend.as_ref().and_then(|lend| lend.waitable()) else {
            return Waited::Event(self.rx.recv().await);
        };
        loop {
            tokio::select! {
                biased;
                event = self.rx.recv() => return Waited::Event(event),
                ready = pipe.readable() => match ready {
                    Ok(mut guard) => {
                        if readable_now(pipe.get_ref().as_raw_fd()) {
                            return Waited::Readable;
                        }
                        guard.clear_ready();
                    }
                    Err(_) => return Waited::Event(self.rx.recv().await),
                },
            }
        }
    }

    /// A stream holding just a `Finished` event.
    pub fn finished(result: ExecResult) -> EventStream {
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(Event::Finished(result))
            .expect("fresh channel has room");
        EventStream { rx, lend: None }
    }

    /// The next event; `None` after `Finished` (or if the producer vanished).
    pub async fn next(&mut self) -> Option<Event> {
        if self.lend.as_ref().is_some_and(|lend| lend.is_lent()) {
            return self.next_lent().await;
        }
        self.rx.recv().await
    }

    /// [`EventStream::next`] once the consumer took the pipe.
    async fn next_lent(&mut self) -> Option<Event> {
        loop {
            let read = self.try_next_direct(|bytes| Ok(Bytes::copy_from_slice(bytes)));
            match read {
                Ok(Direct::Event(event)) => return Some(event),
                Ok(Direct::Read(bytes)) => return Some(Event::Stdout(bytes)),
                Ok(Direct::End) => return None,
                // A failed read gave the pipe back: its bytes come as
                // events.
                Ok(Direct::Wait) | Err(_) => match self.wait_direct().await {
                    Waited::Event(event) => return event,
                    Waited::Readable => {}
                },
            }
        }
    }

    /// Waits for the end and returns the result, dropping the chunks (the
    /// result holds the output). A producer that vanishes without a result
    /// gives a `Lost` result.
    pub async fn finish(mut self) -> ExecResult {
        let started = tokio::time::Instant::now();
        while let Some(event) = self.next().await {
            if let Event::Finished(result) = event {
                return result;
            }
        }
        ExecResult::lost(started.elapsed())
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Keeps at most `limit` bytes of a stream in memory, counts them all, and
/// optionally spills the whole stream to a file once it passes the limit.
///
/// Every backend collects output through this type, so truncation means
/// the same everywhere. A buffer made [`OutputBuffer::events_only`] keeps
/// nothing (the caller has the bytes from the events), and only counts and
/// spills.
#[derive(Debug)]
pub struct OutputBuffer {
    limit: u64,
    /// Whether bytes are kept for the result (up to `limit`).
    keep: bool,
    bytes: Vec<u8>,
    total: u64,
    spill_dir: Option<PathBuf>,
    spill: Option<Spill>,
    label: &'static str,
}

/// Where a stream is spilled.
#[derive(Debug)]
enum Spill {
    /// Past the limit: the file the result names.
    Kept(File, PathBuf),
    /// A buffer that keeps nothing writes every byte from the first one,
    /// since it cannot write them later; the file becomes the result's
    /// once the stream passes the limit, and is removed with the buffer
    /// otherwise.
    Pending(tempfile::NamedTempFile),
}

impl OutputBuffer {
    /// A buffer keeping `limit` bytes; `spill_dir` enables spilling, with
    /// files named after `label` (`stdout`, `stderr`).
    pub fn new(limit: u64, spill_dir: Option<&Path>, label: &'static str) -> OutputBuffer {
        OutputBuffer {
            limit,
            keep: true,
            bytes: Vec::new(),
            total: 0,
            spill_dir: spill_dir.map(Path::to_path_buf),
            spill: None,
            label,
        }
    }

    /// This buffer keeps no bytes when `events_only` is set (the command's
    /// [`ExecCommand::events_only`](super::ExecCommand)): its output
    /// counts them, and spills past the limit as before.
    pub fn events_only(mut self, events_only: bool) -> OutputBuffer {
        self.keep = !events_only;
        self
    }

    /// Adds a chunk. Fails only when spilling to the file fails.
    pub fn push(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.total += chunk.len() as u64;
        if !self.keep {
            return self.spill_unkept(chunk);
        }
        let room = self.limit.saturating_sub(self.bytes.len() as u64) as usize;
        let keep = room.min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..keep]);
        if self.total <= self.limit {
            return Ok(());
        }
        if let Some(Spill::Kept(file, _)) = &mut self.spill {
            return file.write_all(chunk);
        }
        if let Some(dir) = &self.spill_dir {
            let (mut file, path) = self.spill_file(dir)?.keep().map_err(|err| err.error)?;
            // The file holds the whole stream: what was kept, then the rest.
            file.write_all(&self.bytes)?;
            file.write_all(&chunk[keep..])?;
            self.spill = Some(Spill::Kept(file, path));
        }
        Ok(())
    }

    /// Spilling for a buffer that keeps nothing: every byte goes to the
    /// file, which is the result's from the moment the stream passes the
    /// limit.
    fn spill_unkept(&mut self, chunk: &[u8]) -> io::Result<()> {
        let Some(dir) = &self.spill_dir else {
            return Ok(());
        };
        if chunk.is_empty() {
            return Ok(());
        }
        match &mut self.spill {
            Some(Spill::Kept(file, _)) => return file.write_all(chunk),
            Some(Spill::Pending(file)) => file.write_all(chunk)?,
            None => {
                let mut file = self.spill_file(dir)?;
                file.write_all(chunk)?;
                self.spill = Some(Spill::Pending(file));
            }
        }
        if self.total > self.limit
            && let Some(Spill::Pending(file)) = self.spill.take()
        {
            let (file, path) = file.keep().map_err(|err| err.error)?;
            self.spill = Some(Spill::Kept(file, path));
        }
        Ok(())
    }

    fn spill_file(&self, dir: &Path) -> io::Result<tempfile::NamedTempFile> {
        std::fs::create_dir_all(dir)?;
        tempfile::Builder::new()
            .prefix(&format!("berth-{}-", self.label))
            .suffix(".out")
            .tempfile_in(dir)
    }

    /// Whether the result is to hold the bytes (up to the limit): false
    /// for a buffer made [`OutputBuffer::events_only`].
    pub fn keeps_bytes(&self) -> bool {
        self.keep
    }

    /// Bytes seen so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The finished stream.
    pub fn finish(self) -> Output {
        Output {
            truncated: self.total > self.bytes.len() as u64,
            total_bytes: self.total,
            spill_path: match self.spill {
                Some(Spill::Kept(_, path)) => Some(path),
                // Removed as it drops: the stream stayed within the limit.
                Some(Spill::Pending(_)) | None => None,
            },
            bytes: self.bytes,
        }
    }
}

/// Read buffers recycled between a backend's reader and the consumer of
/// its events.
///
/// A reader fills a buffer from [`ChunkPool::buffer`] and turns what it
/// read into an event payload with [`ChunkPool::chunk`]. A large read is
/// handed over without a copy, and its buffer comes back to the pool when
/// the consumer drops the payload, so a long stream reuses the same few
/// buffers instead of allocating (and faulting in) fresh memory for every
/// chunk. A read under a quarter of the buffer is copied into a payload
/// of its own size, so a consumer that keeps its events holds at most four
/// times their bytes (and many small events hold no whole buffers).
#[derive(Debug, Clone)]
pub struct ChunkPool {
    shared: Arc<PoolShared>,
}

#[derive(Debug)]
struct PoolShared {
    size: usize,
    keep: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

/// A buffer on loan to a payload; goes back to its pool when dropped.
struct Loaned {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<PoolShared>,
}

impl AsRef<[u8]> for Loaned {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Loaned {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.pool.keep {
            free.push(buf);
        }
    }
}

impl ChunkPool {
    /// A pool of buffers of `size` bytes, keeping at most `keep` idle ones.
    pub fn new(size: usize, keep: usize) -> ChunkPool {
        ChunkPool {
            shared: Arc::new(PoolShared {
                size: size.max(1),
                keep,
                free: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The pool for one command's output: buffers of `read_size` bytes,
    /// enough of them kept to cover a full event stream.
    pub fn for_stream(read_size: usize) -> ChunkPool {
        ChunkPool::new(read_size, EVENT_BUFFER * 2 + 4)
    }

    /// A buffer to read into: `size` bytes long (its content is whatever
    /// an earlier read left there).
    pub fn buffer(&self) -> Vec<u8> {
        let recycled = self
            .shared
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        recycled.unwrap_or_else(|| vec![0; self.shared.size])
    }

    /// The payload for the first `len` bytes of `buf` (a buffer from
    /// [`ChunkPool::buffer`]). When the bytes are handed over, `buf` is
    /// replaced by a fresh buffer from the pool.
    pub fn chunk(&self, buf: &mut Vec<u8>, len: usize) -> Bytes {
        let len = len.min(buf.len());
        if len < self.shared.size / 4 || buf.len() != self.shared.size {
            return Bytes::copy_from_slice(&buf[..len]);
        }
        let full = std::mem::replace(buf, self.buffer());
        Bytes::from_owner(Loaned {
            buf: full,
            len,
            pool: Arc::clone(&self.shared),
        })
    }

    /// How many idle buffers the pool holds (for tests and diagnostics).
    pub fn idle(&self) -> usize {
        self.shared
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Drives a future to completion on the current thread, parking between
/// polls.
fn park_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Converts an optional timeout into a deadline on tokio's clock; a
/// timeout too long to be an instant is no deadline.
pub fn deadline_after(timeout: Option<Duration>) -> Option<tokio::time::Instant> {
    timeout.and_then(|t| tokio::time::Instant::now().checked_add(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_send_works_inside_a_runtime_whose_budget_is_spent() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let sent = runtime.block_on(async {
                let (events, mut stream) = EventStream::channel();
                while tokio::task::coop::has_budget_remaining() {
                    tokio::task::consume_budget().await;
                }
                let sent = events.blocking_send(Event::Stdout(Bytes::from_static(b"x")));
                drop(events);
                sent && stream.next().await == Some(Event::Stdout(Bytes::from_static(b"x")))
            });
            let _ = done_tx.send(sent);
        });
        let sent = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("blocking_send spun instead of sending");
        assert!(sent);
    }

    #[test]
    fn buffer_truncates_counts_and_spills_the_whole_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = OutputBuffer::new(5, Some(dir.path()), "stdout");
        buf.push(b"abc").unwrap();
        buf.push(b"defg").unwrap();
        buf.push(b"hij").unwrap();
        let out = buf.finish();
        assert_eq!(out.bytes, b"abcde");
        assert!(out.truncated);
        assert_eq!(out.total_bytes, 10);
        let spilled = std::fs::read(out.spill_path.unwrap()).unwrap();
        assert_eq!(spilled, b"abcdefghij");

        let mut small = OutputBuffer::new(5, Some(dir.path()), "stderr");
        small.push(b"12345").unwrap();
        let out = small.finish();
        assert!(!out.truncated && out.spill_path.is_none());
    }

    #[test]
    fn an_events_only_buffer_counts_keeps_nothing_and_still_spills() {
        let dir = tempfile::tempdir().unwrap();
        let mut quiet = OutputBuffer::new(5, None, "stdout").events_only(true);
        quiet.push(b"abc").unwrap();
        quiet.push(b"defg").unwrap();
        let out = quiet.finish();
        assert!(out.bytes.is_empty() && out.truncated && out.spill_path.is_none());
        assert_eq!(out.total_bytes, 7);

        let empty = OutputBuffer::new(5, None, "stdout")
            .events_only(true)
            .finish();
        assert!(!empty.truncated && empty.total_bytes == 0);

        // Past the limit, the file holds the whole stream.
        let mut long = OutputBuffer::new(5, Some(dir.path()), "stdout").events_only(true);
        for chunk in [&b"abc"[..], b"defg", b"hij"] {
            long.push(chunk).unwrap();
        }
        let out = long.finish();
        assert!(out.bytes.is_empty() && out.truncated);
        let spilled = std::fs::read(out.spill_path.unwrap()).unwrap();
        assert_eq!(spilled, b"abcdefghij");

        // Within the limit, no file is left behind.
        let mut short = OutputBuffer::new(5, Some(dir.path()), "stderr").events_only(true);
        short.push(b"12345").unwrap();
        let out = short.finish();
        assert!(out.spill_path.is_none() && out.total_bytes == 5);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the long stream's file: {left:?}");
    }

    #[test]
    fn pool_hands_large_reads_over_and_recycles_their_buffers() {
        let pool = ChunkPool::new(64, 4);
        let mut buf = pool.buffer();
        assert_eq!(buf.len(), 64);
        buf[..40].fill(b'a');
        let big = pool.chunk(&mut buf, 40);
        assert_eq!(&big[..], &[b'a'; 40][..]);
        // The read buffer was replaced, so the payload is not overwritten.
        buf[..40].fill(b'b');
        assert_eq!(&big[..], &[b'a'; 40][..]);
        assert_eq!(pool.idle(), 0);
        let clone = big.clone();
        drop(big);
        assert_eq!(pool.idle(), 0, "a clone still holds the buffer");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        // The next buffer is the recycled one, not a new allocation.
        let again = pool.buffer();
        assert_eq!(&again[..40], &[b'a'; 40][..]);
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn pool_copies_small_reads_and_keeps_a_bounded_number() {
        let pool = ChunkPool::new(64, 2);
        let mut buf = pool.buffer();
        buf[..3].copy_from_slice(b"abc");
        let small = pool.chunk(&mut buf, 3);
        assert_eq!(&small[..], b"abc");
        buf[..3].copy_from_slice(b"xyz");
        assert_eq!(&small[..], b"abc", "a small read is copied");
        let chunks: Vec<Bytes> = (0..5)
            .map(|_| {
                let mut b = pool.buffer();
                pool.chunk(&mut b, 64)
            })
            .collect();
        drop(chunks);
        assert_eq!(pool.idle(), 2);
    }
}
