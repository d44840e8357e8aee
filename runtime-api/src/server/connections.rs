//! The server's open connections, under a hard cap on their descriptors.
//!
//! Idle or slow clients (an unauthenticated flood, a client that trickles
//! its headers) would otherwise hold descriptors until the server has none
//! left for the clients that hold the token. So a connection waiting to be
//! accepted is accepted only once fewer than `cap` are open: at the cap,
//! the oldest *sheddable* connection is shed first, its socket closed there
//! and then by the table (which holds every connection's socket), so the
//! server never holds more than `cap` connection descriptors, however fast
//! clients connect.
//!
//! A connection is sheddable when it never carried the right token and a
//! read on it found nothing more waiting: it had its chance to present a
//! request. A request on its way gets a short *grace* more: a connection
//! that has sent nothing yet is kept that long after it was accepted
//! (under a flood the kernel's overflowing queues drop packets, so a client
//! may be accepted before its request arrives with the next
//! retransmission), and one whose request head is complete that long
//! after its last bytes (it is being parsed and its token checked). One
//! that sent part of a head and then nothing is sheddable at once. Of the
//! sheddable connections, the one that received bytes longest ago (or was
//! accepted longest ago, when it sent none) goes first; an authenticated
//! connection is never shed. When no connection is sheddable, new ones
//! wait in the listen backlog until one ends or becomes sheddable. Header
//! reads are bounded in time too (hyper's header timeout, which also
//! closes a kept-alive connection idle that long), so a place held by
//! nobody useful frees itself even without pressure.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One open connection, as the table and its task share it.
#[derive(Debug)]
pub(crate) struct Connection<S> {
    /// The socket, until the connection is shed or ends: whoever takes it
    /// out closes it.
    socket: Mutex<Option<S>>,
    /// Whether a request on it carried the right token.
    authenticated: AtomicBool,
    /// Whether a read on it found nothing waiting.
    read_all: AtomicBool,
    /// When bytes last arrived on it (or it was accepted), on the table's
    /// clock.
    active: AtomicU64,
    /// What arrived on it so far, as far as shedding cares.
    heard: Mutex<Heard>,
    /// Signalled when the table sheds it: its task ends.
    shed: Notify,
    /// What it shares with its table.
    shared: Arc<Shared>,
}

/// What arrived on a connection so far.
#[derive(Debug)]
struct Heard {
    /// When bytes last arrived, or the connection was accepted.
    last: Instant,
    /// Whether any bytes arrived.
    anything: bool,
    /// Whether a request head arrived whole (its empty line).
    whole_head: bool,
    /// The last bytes received, to find an empty line split across reads.
    tail: [u8; 3],
}

impl Heard {
    fn new() -> Heard {
        Heard {
            last: Instant::now(),
            anything: false,
            whole_head: false,
            tail: [0; 3],
        }
    }

    /// Takes in `bytes`, just received.
    fn received(&mut self, bytes: &[u8]) {
        self.last = Instant::now();
        self.anything = true;
        if self.whole_head || bytes.is_empty() {
            return;
        }
        const EMPTY_LINE: &[u8] = b"\r\n\r\n";
        // Where the last read's tail meets these bytes, then these bytes.
        let mut seam = self.tail.to_vec();
        seam.extend_from_slice(&bytes[..bytes.len().min(3)]);
        self.whole_head =
            seam.windows(4).any(|w| w == EMPTY_LINE) || bytes.windows(4).any(|w| w == EMPTY_LINE);
        let end = if bytes.len() >= 3 { bytes } else { &seam[..] };
        self.tail.copy_from_slice(&end[end.len() - 3..]);
    }

    /// When its grace ends: a while after it was accepted when it sent
    /// nothing, a while after its last bytes when its head is whole, at
    /// once when it sent part of a head.
    fn grace_ends(&self, grace: Duration) -> Option<Instant> {
        (!self.anything || self.whole_head).then(|| self.last + grace)
    }
}

/// What a table and its connections share.
#[derive(Debug, Default)]
struct Shared {
    /// Signalled when a connection closed or became sheddable.
    changed: Notify,
    /// Ticks once per admission and per read that brought bytes: orders
    /// connections by their last activity.
    clock: AtomicU64,
}

impl Shared {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }
}

impl<S> Connection<S> {
    /// Resolves when the table has shed this connection.
    pub(crate) async fn shed(&self) {
        self.shed.notified().await;
    }

    /// Records that a read found nothing waiting: from now on, if it never
    /// carried the token, the connection may be shed.
    fn found_nothing_to_read(&self) {
        if !self.read_all.swap(true, Ordering::SeqCst) {
            self.shared.changed.notify_one();
        }
    }

    /// Records that `bytes` arrived.
    fn received(&self, bytes: &[u8]) {
        self.active.store(self.shared.tick(), Ordering::Relaxed);
        if !self.authenticated.load(Ordering::SeqCst) {
            self.heard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .received(bytes);
        }
    }

    /// Whether it may be shed now; when not yet only for its grace, also
    /// when that ends.
    fn sheddable(&self, now: Instant, grace: Duration) -> Result<(), Option<Instant>> {
        if !self.read_all.load(Ordering::SeqCst) || self.authenticated.load(Ordering::SeqCst) {
            return Err(None);
        }
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        match heard.grace_ends(grace) {
            Some(ends) if now < ends => Err(Some(ends)),
            _ => Ok(()),
        }
    }

    fn socket(&self) -> MutexGuard<'_, Option<S>> {
        self.socket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the socket (if it still is open).
    fn close(&self) {
        let socket = self.socket().take();
        drop(socket);
    }
}

/// The table of open connections, oldest first.
#[derive(Debug)]
pub(crate) struct ConnectionTable<S> {
    cap: usize,
    /// How long a request on its way keeps its connection from being shed.
    grace: Duration,
    inner: Mutex<Inner<S>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Inner<S> {
    next_id: u64,
    /// Every connection whose socket is open.
    open: BTreeMap<u64, Arc<Connection<S>>>,
}

/// A connection's place in the table. Dropping it (when the connection's
/// task ends) closes the socket and frees the place.
#[derive(Debug)]
pub(crate) struct Slot<S> {
    table: Arc<ConnectionTable<S>>,
    id: u64,
    pub(crate) connection: Arc<Connection<S>>,
}

impl<S> Drop for Slot<S> {
    fn drop(&mut self) {
        self.connection.close();
        self.table.lock().open.remove(&self.id);
        self.table.shared.changed.notify_one();
    }
}

impl<S> ConnectionTable<S> {
    /// A table of at most `cap` connections (at least one), keeping a
    /// request on its way from being shed for `grace`.
    pub(crate) fn new(cap: usize, grace: Duration) -> Arc<ConnectionTable<S>> {
        Arc::new(ConnectionTable {
            cap: cap.max(1),
            grace,
            inner: Mutex::new(Inner {
                next_id: 0,
                open: BTreeMap::new(),
            }),
            shared: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a new connection may be accepted: fewer than `cap`
    /// connections open. At the cap it sheds the sheddable connection
    /// that was active longest ago, closing its socket at once; with none
    /// sheddable, it waits until a connection ends or becomes sheddable
    /// (its grace ends, say).
    /// Returns whether it waited while every place was held by an
    /// authenticated connection.
    pub(crate) async fn room(&self) -> bool {
        let mut full_of_authenticated = false;
        loop {
            // Made before looking, so a change after the look still wakes
            // this wait (a notification without a waiter is kept).
            let changed = self.shared.changed.notified();
            let grace_ends = {
                let mut inner = self.lock();
                if inner.open.len() < self.cap {
                    return full_of_authenticated;
                }
                let now = Instant::now();
                let mut oldest: Option<(u64, u64)> = None;
                let mut grace_ends: Option<Instant> = None;
                for (id, connection) in &inner.open {
                    match connection.sheddable(now, self.grace) {
                        Ok(()) => {
                            let active = connection.active.load(Ordering::Relaxed);
                            if oldest.is_none_or(|(_, a)| active < a) {
                                oldest = Some((*id, active));
                            }
                        }
                        Err(Some(ends)) => {
                            grace_ends = Some(grace_ends.map_or(ends, |e| e.min(ends)));
                        }
                        Err(None) => {}
                    }
                }
                if let Some(shed) = oldest.and_then(|(id, _)| inner.open.remove(&id)) {
                    shed.close();
                    shed.shed.notify_one();
                    continue;
                }
                full_of_authenticated |= inner
                    .open
                    .values()
                    .all(|c| c.authenticated.load(Ordering::SeqCst));
                grace_ends
            };
            match grace_ends {
                Some(ends) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(ends) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Gives a newly accepted connection, `socket`, its place. Called only
    /// once [`ConnectionTable::room`] found one, by the one task that
    /// accepts.
    pub(crate) fn admit(self: &Arc<Self>, socket: S) -> Slot<S> {
        let mut inner = self.lock();
        debug_assert!(inner.open.len() < self.cap, "admitted without room");
        let id = inner.next_id;
        inner.next_id += 1;
        let connection = Arc::new(Connection {
            socket: Mutex::new(Some(socket)),
            authenticated: AtomicBool::new(false),
            read_all: AtomicBool::new(false),
            active: AtomicU64::new(self.shared.tick()),
            heard: Mutex::new(Heard::new()),
            shed: Notify::new(),
            shared: Arc::clone(&self.shared),
        });
        inner.open.insert(id, Arc::clone(&connection));
        Slot {
            table: Arc::clone(self),
            id,
            connection,
        }
    }

    /// Marks `connection` as authenticated: from now on it is never shed.
    /// Done under the table's lock, so a connection is either shed before
    /// it authenticated, or never.
    pub(crate) fn authenticate(&self, connection: &Connection<S>) {
        if connection.authenticated.load(Ordering::SeqCst) {
            return;
        }
        let _inner = self.lock();
        if connection.socket().is_some() {
            connection.authenticated.store(true, Ordering::SeqCst);
        }
    }

    /// Waits until a connection closes or becomes sheddable (or returns at
    /// once when that happened since the last wait).
    pub(crate) async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// A connection's socket as its task reads and writes it: through the
/// table's hold on it (once the table closed it, every call fails), telling
/// the [`Connection`] when a read finds nothing waiting.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    connection: Arc<Connection<S>>,
}

impl<S> Watched<S> {
    /// The socket of `connection`.
    pub(crate) fn new(connection: Arc<Connection<S>>) -> Watched<S> {
        Watched { connection }
    }

    /// Runs `io` on the socket, or fails when it was closed.
    fn with<T>(&self, io: impl FnOnce(Pin<&mut S>) -> Poll<io::Result<T>>) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        match self.connection.socket().as_mut() {
            Some(socket) => io(Pin::new(socket)),
            None => Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into())),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.with(|socket| socket.poll_read(cx, buf));
        match polled {
            Poll::Pending => self.connection.found_nothing_to_read(),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.connection.received(&buf.filled()[before..]);
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|socket| socket.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|socket| socket.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.connection
            .socket()
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|socket| socket.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|socket| socket.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A socket stand-in: the table only holds it and drops it; whether it
    /// was dropped (the count of its handle) is what the tests look at.
    #[derive(Debug)]
    struct Socket(#[allow(dead_code, reason = "held for its count")] Arc<()>);

    /// A table of `cap` without a grace, and a way to see how many of its
    /// sockets are open.
    fn table(cap: usize) -> (Arc<ConnectionTable<Socket>>, Arc<()>) {
        (ConnectionTable::new(cap, Duration::ZERO), Arc::new(()))
    }

    fn admit(table: &Arc<ConnectionTable<Socket>>, sockets: &Arc<()>) -> Slot<Socket> {
        table.admit(Socket(Arc::clone(sockets)))
    }

    /// Sockets open now.
    fn open(sockets: &Arc<()>) -> usize {
        Arc::strong_count(sockets) - 1
    }

    /// Whether `room` finds a place now, without waiting.
    async fn room_now(table: &ConnectionTable<Socket>) -> bool {
        tokio::time::timeout(Duration::from_millis(1), table.room())
            .await
            .is_ok()
    }

    /// Whether `connection` was told it was shed.
    async fn was_shed(connection: &Connection<Socket>) -> bool {
        tokio::time::timeout(Duration::from_millis(1), connection.shed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_is_closed_before_another_is_admitted() {
        let (table, sockets) = table(3);
        let first = admit(&table, &sockets);
        let second = admit(&table, &sockets);
        assert!(room_now(&table).await);
        let third = admit(&table, &sockets);
        // Full, and nobody has been read yet: nobody may be shed.
        assert!(!room_now(&table).await);
        assert!(!was_shed(&first.connection).await);
        assert_eq!(open(&sockets), 3);
        // Read and found idle, never authenticated: the oldest such is
        // closed, and only then is there room.
        second.connection.found_nothing_to_read();
        first.connection.found_nothing_to_read();
        assert!(room_now(&table).await);
        assert!(was_shed(&first.connection).await);
        assert!(!was_shed(&second.connection).await);
        assert_eq!(open(&sockets), 2);
        assert_eq!(table.len(), 2);
        let fourth = admit(&table, &sockets);
        assert_eq!(open(&sockets), 3);
        // The shed connection's task ends later; its place is already free.
        drop(first);
        assert_eq!(table.len(), 3);
        drop((second, third, fourth));
        assert_eq!(table.len(), 0);
        assert_eq!(open(&sockets), 0);
    }

    #[tokio::test]
    async fn the_least_recently_active_connection_goes_first() {
        let (table, sockets) = table(3);
        let first = admit(&table, &sockets);
        let second = admit(&table, &sockets);
        let third = admit(&table, &sockets);
        for slot in [&first, &second, &third] {
            slot.connection.found_nothing_to_read();
        }
        // The oldest one just received bytes (a request being parsed):
        // the next oldest goes instead.
        first.connection.received(b"GET / HTTP/1.1\r\n");
        assert!(room_now(&table).await);
        assert!(was_shed(&second.connection).await);
        assert!(!was_shed(&first.connection).await);
        assert!(!was_shed(&third.connection).await);
        drop((first, second, third));
        assert_eq!(open(&sockets), 0);
    }

    #[tokio::test]
    async fn a_request_on_its_way_is_not_shed_within_its_grace() {
        let table = ConnectionTable::new(3, Duration::from_secs(3600));
        let sockets = Arc::new(());
        let silent = admit(&table, &sockets);
        let whole = admit(&table, &sockets);
        let part = admit(&table, &sockets);
        whole.connection.received(b"GET / HTTP/1.1\r\nHost: x\r");
        whole.connection.received(b"\n\r\n");
        for slot in [&silent, &whole] {
            slot.connection.found_nothing_to_read();
        }
        // Read and idle, never authenticated, but just accepted, or with a
        // whole head being parsed: they stay.
        assert!(!room_now(&table).await);
        // Part of a head and then nothing: it goes, though it is the
        // newest.
        part.connection.received(b"GET / HTTP/1.1\r\nHost: x\r\n");
        part.connection.found_nothing_to_read();
        assert!(room_now(&table).await);
        assert!(was_shed(&part.connection).await);
        assert!(!was_shed(&silent.connection).await);
        assert!(!was_shed(&whole.connection).await);
        drop((silent, whole, part));
        assert_eq!(open(&sockets), 0);
    }

    #[tokio::test]
    async fn an_authenticated_connection_is_never_shed() {
        let (table, sockets) = table(2);
        let first = admit(&table, &sockets);
        let second = admit(&table, &sockets);
        table.authenticate(&first.connection);
        first.connection.found_nothing_to_read();
        table.authenticate(&second.connection);
        second.connection.found_nothing_to_read();
        // Every place is an authenticated client's: wait, shed nothing.
        let waiting = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.room().await }
        });
        assert!(!was_shed(&first.connection).await);
        assert!(!was_shed(&second.connection).await);
        assert_eq!(open(&sockets), 2);
        drop(second);
        assert!(waiting.await.unwrap(), "it waited on authenticated clients");
        assert_eq!(open(&sockets), 1);
        drop(first);
    }

    #[tokio::test]
    async fn a_shed_connection_never_becomes_authenticated() {
        let (table, sockets) = table(1);
        let first = admit(&table, &sockets);
        first.connection.found_nothing_to_read();
        assert!(room_now(&table).await);
        table.authenticate(&first.connection);
        assert!(!first.connection.authenticated.load(Ordering::SeqCst));
        assert!(was_shed(&first.connection).await);
        assert_eq!(open(&sockets), 0);
    }
}
