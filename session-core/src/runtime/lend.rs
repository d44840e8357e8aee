//! A command's stdout pipe lent to the consumer of its events.
//!
//! A backend that reads a command's stdout from a pipe on the host may
//! offer the pipe with its [`EventStream`](super::EventStream)
//! ([`EventStream::channel_lending`](super::EventStream::channel_lending)).
//! A consumer that takes the offer
//! ([`EventStream::try_next_direct`](super::EventStream::try_next_direct))
//! reads the pipe itself, into memory of its own, whenever no event waits
//! in the stream: one copy of every byte (the kernel's into the
//! consumer's memory) and no hand-over between threads, where the events
//! take two copies and a wake-up of the consumer per chunk. The Python
//! module's stream iterator reads this way.
//!
//! What the consumer reads is accounted for exactly as the backend's own
//! reads: it goes into the stream's [`OutputBuffer`] (so the result holds
//! it, and spills it, as usual), counts as output for the idle timeout, and
//! arrives in order: every read, the backend's and the consumer's, takes
//! the lend's lock; the backend marks what it read as in flight before it
//! lets go, and the consumer reads nothing while a chunk is in flight or
//! an event waits in the stream. The backend ends the lend when the
//! command exits or it stops waiting for the pipe; it reads the rest
//! itself and sends it as events, as it does for a stream whose consumer
//! never took the offer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::event::OutputBuffer;

/// The most a consumer reads from a lent pipe at once (the size berth
/// grows a bulky stdout's pipe to).
pub const DIRECT_READ: usize = 256 << 10;

/// A command's stdout pipe on offer to the consumer of its events (see
/// the [module](self)).
#[derive(Debug)]
pub struct StdoutLend {
    state: Mutex<LendState>,
    /// Told when the consumer read the end of the pipe, or gave the pipe
    /// back.
    changed: Notify,
    /// Whether the consumer waits in [`StdoutLend::poll_consumer`], to be
    /// woken through `waker` when an event is sent or the lend ends.
    waiting: AtomicBool,
    /// An eventfd, made the first time the consumer waits.
    waker: OnceLock<OwnedFd>,
}

#[derive(Debug)]
struct LendState {
    phase: Phase,
    /// Berth's own descriptor of the pipe's read end, for the consumer;
    /// closed when the lend ends (and the consumer is not waiting on it).
    pipe: Option<Arc<OwnedFd>>,
    /// The pipe registered with tokio, for a consumer that waits for it
    /// in async code.
    registered: Option<Arc<AsyncFd<OwnedFd>>>,
    /// Whether the consumer read the end of the pipe.
    eof: bool,
    buffer: Option<OutputBuffer>,
    /// When the consumer last read something.
    last_read: Option<Instant>,
    /// Grow the pipe to `.1` bytes once `.0` bytes came through it.
    grow: Option<(u64, usize)>,
    /// What the consumer reads into (allocated at its first read).
    scratch: Vec<u8>,
    /// A chunk the backend read is on its way into the stream: the
    /// consumer neither takes the pipe nor reads it until it lands.
    in_flight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The backend reads; the consumer may take the pipe.
    Offered,
    /// The consumer reads; the backend does not.
    Lent,
    /// The backend reads again, to the end; the consumer never does.
    Ended,
}

impl StdoutLend {
    /// Offers the pipe whose read end is `pipe` (which must not block:
    /// `O_NONBLOCK`), its output going into `buffer`. Berth keeps a
    /// descriptor of its own for the consumer, closed when the lend ends;
    /// should it not get one, nothing is offered.
    pub fn new(pipe: BorrowedFd<'_>, buffer: OutputBuffer) -> Arc<StdoutLend> {
        let pipe = pipe.try_clone_to_owned().ok().map(Arc::new);
        Arc::new(StdoutLend {
            state: Mutex::new(LendState {
                phase: if pipe.is_some() {
                    Phase::Offered
                } else {
                    Phase::Ended
                },
                pipe,
                registered: None,
                eof: false,
                buffer: Some(buffer),
                last_read: None,
                grow: None,
                scratch: Vec::new(),
                in_flight: false,
            }),
            changed: Notify::new(),
            waiting: AtomicBool::new(false),
            waker: OnceLock::new(),
        })
    }

    /// Has the consumer grow the pipe to `size` bytes once `after` bytes
    /// came through it (a refusal leaves the pipe as it is).
    pub fn grow_pipe(&self, after: u64, size: usize) {
        self.lock().grow = Some((after, size));
    }

    fn lock(&self) -> MutexGuard<'_, LendState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The backend's hold on the lend, to read the pipe itself: while it
    /// holds it the consumer reads nothing, and a chunk the backend read
    /// and marked in flight ([`LendHold::set_in_flight`]) comes before
    /// anything the consumer reads after it.
    pub fn hold(&self) -> LendHold<'_> {
        LendHold { state: self.lock() }
    }

    /// Whether the consumer reads the pipe now (so the backend must not).
    pub fn is_lent(&self) -> bool {
        self.lock().phase == Phase::Lent
    }

    /// Whether the consumer read the end of the pipe.
    pub fn eof_seen(&self) -> bool {
        self.lock().eof
    }

    /// Resolves once the consumer does not read the pipe any more: it
    /// read its end ([`StdoutLend::eof_seen`]), or it gave the pipe back
    /// to the backend (at once if either happened, or the pipe is not
    /// lent).
    pub async fn wait_returned(&self) {
        loop {
            let notified = self.changed.notified();
            {
                let state = self.lock();
                if state.phase != Phase::Lent || state.eof {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Says that the chunk the backend read last is in the stream (or was
    /// dropped): the consumer may read the pipe again.
    pub fn landed(&self) {
        self.lock().in_flight = false;
        self.wake_consumer();
    }

    /// When the consumer last read output from the pipe.
    pub fn last_read(&self) -> Option<Instant> {
        self.lock().last_read
    }

    /// Ends the lend: the consumer reads no more, and berth's descriptor
    /// for it is closed. Idempotent.
    pub fn end(&self) {
        {
            let mut state = self.lock();
            state.phase = Phase::Ended;
            state.pipe = None;
            state.registered = None;
            state.scratch = Vec::new();
        }
        self.wake_consumer();
    }

    /// Wakes a consumer waiting in [`StdoutLend::poll_consumer`]: an event
    /// was sent, the stream's last sender is gone, or the lend ended.
    pub(crate) fn wake_consumer(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst)
            && let Some(waker) = self.waker.get()
        {
            let one: u64 = 1;
            // SAFETY: write(2) of eight bytes to an eventfd the lend owns.
            unsafe { libc::write(waker.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }

    /// Waits, at most `timeout`, until the lent pipe has bytes (or its
    /// end), or `queued` says an event waits, or a sender wakes the
    /// consumer. Returns `false` when the consumer cannot wait here (the
    /// lend ended, the pipe is at its end, or no eventfd could be made):
    /// it must wait for the stream's events instead.
    pub(crate) fn poll_consumer(&self, queued: impl FnOnce() -> bool, timeout: Duration) -> bool {
        let (pipe, in_flight) = {
            let state = self.lock();
            if state.phase != Phase::Lent || state.eof {
                return false;
            }
            match &state.pipe {
                Some(pipe) => (Arc::clone(pipe), state.in_flight),
                None => return false,
            }
        };
        let Some(waker) = self.eventfd() else {
            return false;
        };
        self.waiting.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !queued() {
            let mut fds = [
                libc::pollfd {
                    fd: pipe.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: waker.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
            // While a chunk is in flight only its landing matters (the
            // pipe may well be readable, but not yet by the consumer).
            let watched = if in_flight {
                &mut fds[1..]
            } else {
                &mut fds[..]
            };
            // SAFETY: poll(2) of the pollfds in a local array, on
            // descriptors held open for the call.
            unsafe { libc::poll(watched.as_mut_ptr(), watched.len() as libc::nfds_t, millis) };
        }
        self.waiting.store(false, Ordering::SeqCst);
        let mut count: u64 = 0;
        // SAFETY: read(2) of eight bytes from a non-blocking eventfd the
        // lend owns, into a local.
        unsafe { libc::read(waker.as_raw_fd(), (&raw mut count).cast(), 8) };
        true
    }

    fn eventfd(&self) -> Option<&OwnedFd> {
        if let Some(fd) = self.waker.get() {
            return Some(fd);
        }
        // SAFETY: eventfd(2) makes a new descriptor, owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        // SAFETY: as above; nothing else owns `fd`.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Some(self.waker.get_or_init(|| fd))
    }

    /// Ends the lend and hands back the buffer the output went into.
    ///
    /// # Panics
    ///
    /// When called twice.
    pub fn take_buffer(&self) -> OutputBuffer {
        self.end();
        self.lock().buffer.take().expect("the buffer is taken once")
    }

    /// The consumer's read (see [`EventStream::try_next_direct`]): what
    /// waits in the pipe, at most [`DIRECT_READ`] bytes, read into the
    /// lend's own buffer (a buffer used again and again stays in the
    /// CPU's caches), then handed to `make`.
    ///
    /// Should the read fail, the pipe goes back to the backend, which reads
    /// the rest; should `make` fail, the bytes are lost to the consumer
    /// (the result still holds them).
    ///
    /// [`EventStream::try_next_direct`]: super::EventStream::try_next_direct
    pub(crate) fn consumer_read<T>(
        &self,
        queued: impl FnOnce() -> Option<Queued>,
        make: impl FnOnce(&[u8]) -> io::Result<T>,
    ) -> io::Result<Direct<T>> {
        let mut state = self.lock();
        // Taken under the lock: a chunk the backend read is in the stream
        // before the consumer can read past it.
        match queued() {
            Some(Queued::Event(event)) => return Ok(Direct::Event(event)),
            Some(Queued::End) => return Ok(Direct::End),
            None => {}
        }
        if state.phase == Phase::Ended || state.eof || state.in_flight {
            return Ok(Direct::Wait);
        }
        state.phase = Phase::Lent;
        let state = &mut *state;
        let Some(pipe) = &state.pipe else {
            return Ok(Direct::Wait);
        };
        let fd = pipe.as_raw_fd();
        if state.scratch.is_empty() {
            state.scratch = vec![0; DIRECT_READ];
        }
        // SAFETY: read(2) into the lend's buffer of `scratch.len()` bytes,
        // from a descriptor the lend holds open.
        let n = unsafe { libc::read(fd, state.scratch.as_mut_ptr().cast(), state.scratch.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock || err.kind() == io::ErrorKind::Interrupted {
                return Ok(Direct::Wait);
            }
            state.phase = Phase::Ended;
            state.pipe = None;
            state.registered = None;
            self.changed.notify_waiters();
            return Err(err);
        }
        if n == 0 {
            state.eof = true;
            self.changed.notify_waiters();
            return Ok(Direct::Wait);
        }
        let bytes = &state.scratch[..n as usize];
        state.last_read = Some(Instant::now());
        if let Some(buffer) = &mut state.buffer {
            if let Err(err) = buffer.push(bytes) {
                tracing::warn!("could not spill output: {err}");
            }
            if let Some((after, size)) = state.grow
                && buffer.total() >= after
            {
                state.grow = None;
                grow_pipe(fd, size);
            }
        }
        make(bytes).map(Direct::Read)
    }

    /// The pipe, registered with tokio, for a consumer to wait on; `None`
    /// once the consumer may not read it (the lend ended, or the pipe is
    /// at its end). Must run inside a tokio runtime.
    pub(crate) fn waitable(&self) -> Option<Arc<AsyncFd<OwnedFd>>> {
        let mut state = self.lock();
        if state.phase != Phase::Lent || state.eof || state.in_flight {
            return None;
        }
        if let Some(fd) = &state.registered {
            return Some(Arc::clone(fd));
        }
        let registered = state
            .pipe
            .as_ref()
            .map(|pipe| pipe.try_clone())
            .transpose()
            .and_then(|fd| {
                let Some(fd) = fd else { return Ok(None) };
                // SAFETY: the AsyncFd owns the descriptor, so it stays open
                // and unchanged for as long as it is registered.
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                    .map(|fd| Some(Arc::new(fd)))
                    .map_err(io::Error::from)
            });
        match registered {
            Ok(fd) => {
                state.registered.clone_from(&fd);
                fd
            }
            Err(err) => {
                // Cannot wait on it: the backend takes the pipe back.
                tracing::warn!("could not register a lent pipe: {err}");
                state.phase = Phase::Ended;
                state.pipe = None;
                drop(state);
                self.changed.notify_waiters();
                None
            }
        }
    }
}

/// The backend's hold on a [`StdoutLend`] ([`StdoutLend::hold`]).
#[derive(Debug)]
pub struct LendHold<'a> {
    state: MutexGuard<'a, LendState>,
}

impl LendHold<'_> {
    /// Whether the consumer has the pipe (the backend must not read it).
    pub fn is_lent(&self) -> bool {
        self.state.phase == Phase::Lent
    }

    /// How many bytes wait unread in the pipe (0 once the lend ended).
    pub fn waiting(&self) -> u64 {
        match &self.state.pipe {
            Some(pipe) => bytes_waiting(pipe.as_raw_fd()),
            None => 0,
        }
    }

    /// Marks the chunk just read as on its way into the stream: until
    /// [`StdoutLend::landed`], the consumer does not read the pipe.
    pub fn set_in_flight(&mut self) {
        self.state.in_flight = true;
    }

    /// The buffer output goes into.
    ///
    /// # Panics
    ///
    /// After [`StdoutLend::take_buffer`].
    pub fn buffer(&mut self) -> &mut OutputBuffer {
        self.state
            .buffer
            .as_mut()
            .expect("the buffer is not taken yet")
    }
}

/// What waits in a stream before the consumer reads the pipe.
pub(crate) enum Queued {
    Event(super::Event),
    End,
}

/// What [`EventStream::try_next_direct`](super::EventStream::try_next_direct)
/// found.
#[derive(Debug)]
pub enum Direct<T> {
    /// An event that was waiting in the stream.
    Event(super::Event),
    /// Bytes of stdout the consumer read from the pipe itself (what its
    /// `read` made of them).
    Read(T),
    /// Nothing is ready: wait with
    /// [`EventStream::wait_direct`](super::EventStream::wait_direct).
    Wait,
    /// The stream is over (after `Finished`).
    End,
}

/// What [`EventStream::wait_direct`](super::EventStream::wait_direct)
/// waited for.
#[derive(Debug)]
pub enum Waited {
    /// The stream's next event (`None` after the end).
    Event(Option<super::Event>),
    /// The lent pipe has bytes (or its end) to read:
    /// [`EventStream::try_next_direct`](super::EventStream::try_next_direct)
    /// again.
    Readable,
}

/// Whether the pipe `fd` has something for a reader: bytes, or its end.
pub(crate) fn readable_now(fd: libc::c_int) -> bool {
    poll_now(fd) & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// How many bytes wait unread in the pipe `fd` (0 should the kernel not
/// say).
pub fn pipe_waiting(fd: BorrowedFd<'_>) -> u64 {
    bytes_waiting(fd.as_raw_fd())
}

fn bytes_waiting(fd: libc::c_int) -> u64 {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut waiting) } < 0 {
        return 0;
    }
    u64::try_from(waiting).unwrap_or(0)
}

fn poll_now(fd: libc::c_int) -> libc::c_short {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) of one pollfd, without waiting.
    if unsafe { libc::poll(&mut poll, 1, 0) } < 0 {
        return 0;
    }
    poll.revents
}

/// Asks the kernel to make the pipe `fd` hold `size` bytes. A refusal (the
/// user's pipe allowance is spent, or `size` is past `pipe-max-size`)
/// leaves it as it was.
pub fn grow_pipe_to(fd: BorrowedFd<'_>, size: usize) {
    grow_pipe(fd.as_raw_fd(), size);
}

fn grow_pipe(fd: libc::c_int, size: usize) {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl(2) F_SETPIPE_SZ on a descriptor the lend holds open; it
    // changes only the pipe's capacity.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size) };
}
