//! The server's open connections, under a hard cap on their descriptors.
//!
//! Idle or slow clients (an unauthenticated flood, a client that trickles
//! its headers) would otherwise hold descriptors until the server has none
//! left for the clients that hold the token. So a connection waiting to be
//! accepted is accepted only once fewer than `cap` are open: at the cap,
//! the oldest *sheddable* connections are shed, and the accept waits until
//! their descriptors are closed. A connection counts until its task has
//! closed its socket, so the server never holds more than `cap` connection
//! descriptors, however fast clients connect.
//!
//! A connection is sheddable when it never carried the right token and a
//! read on it found nothing more waiting: it had its chance to present a
//! request. A client that sends its request as it connects is thus read,
//! and authenticated, before it can be shed, however many connections
//! arrive behind it; an authenticated connection is never shed. When no
//! connection is sheddable, new ones wait in the listen backlog until one
//! ends or becomes sheddable. Header reads are bounded in time too (hyper's
//! header timeout, which also closes a kept-alive connection idle that
//! long), so a place held by nobody useful frees itself even without
//! pressure.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// One open connection, as the table and its task share it.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Whether a request on it carried the right token.
    authenticated: AtomicBool,
    /// Whether a read on it found nothing waiting.
    read_all: AtomicBool,
    /// Whether the table chose to shed it.
    shedding: AtomicBool,
    /// Signalled when the table sheds it: its task closes the connection.
    shed: Notify,
    /// The table's [`ConnectionTable::changed`].
    changed: Arc<Notify>,
}

impl Connection {
    /// Resolves when the table has shed this connection.
    pub(crate) async fn shed(&self) {
        self.shed.notified().await;
    }

    /// Records that a read found nothing waiting: from now on, if it never
    /// carried the token, the connection may be shed.
    fn found_nothing_to_read(&self) {
        if !self.read_all.swap(true, Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    fn sheddable(&self) -> bool {
        self.read_all.load(Ordering::SeqCst)
            && !self.authenticated.load(Ordering::SeqCst)
            && !self.shedding.load(Ordering::SeqCst)
    }
}

/// The table of open connections, oldest first.
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    cap: usize,
    inner: Mutex<Inner>,
    /// Signalled when a connection closed or became sheddable.
    changed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Every connection whose descriptor is open, shed ones included.
    open: BTreeMap<u64, Arc<Connection>>,
}

/// A connection's place in the table; dropping it (after the socket is
/// closed) frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    id: u64,
    pub(crate) connection: Arc<Connection>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
        self.table.changed.notify_one();
    }
}

impl ConnectionTable {
    /// A table of at most `cap` connections (at least one).
    pub(crate) fn new(cap: usize) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
            changed: Arc::new(Notify::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections are shed at once when the table is full: a few,
    /// so that a flood of connections is accepted in batches rather than
    /// one wait per connection.
    fn shed_batch(&self) -> usize {
        (self.cap / 16).max(1)
    }

    /// Waits until a new connection may be accepted: fewer than `cap`
    /// connections open. At the cap it sheds the oldest sheddable
    /// connections and waits until their tasks have closed them; with none
    /// sheddable, it waits until a connection ends or becomes sheddable.
    /// Returns whether it waited while every place was held by an
    /// authenticated connection.
    pub(crate) async fn room(&self) -> bool {
        let mut full_of_authenticated = false;
        loop {
            // Made before looking, so a change after the look still wakes
            // this wait (a notification without a waiter is kept).
            let changed = self.changed.notified();
            {
                let inner = self.lock();
                let open = inner.open.len();
                if open < self.cap {
                    return full_of_authenticated;
                }
                let shedding = inner
                    .open
                    .values()
                    .filter(|c| c.shedding.load(Ordering::SeqCst))
                    .count();
                let wanted = (open + 1 - self.cap).max(self.shed_batch());
                for connection in inner
                    .open
                    .values()
                    .filter(|c| c.sheddable())
                    .take(wanted.saturating_sub(shedding))
                {
                    connection.shedding.store(true, Ordering::SeqCst);
                    connection.shed.notify_one();
                }
                full_of_authenticated |= inner
                    .open
                    .values()
                    .all(|c| c.authenticated.load(Ordering::SeqCst));
            }
            changed.await;
        }
    }

    /// Gives a newly accepted connection its place. Called only once
    /// [`ConnectionTable::room`] found one, by the one task that accepts.
    pub(crate) fn admit(self: &Arc<Self>) -> Slot {
        let mut inner = self.lock();
        debug_assert!(inner.open.len() < self.cap, "admitted without room");
        let id = inner.next_id;
        inner.next_id += 1;
        let connection = Arc::new(Connection {
            authenticated: AtomicBool::new(false),
            read_all: AtomicBool::new(false),
            shedding: AtomicBool::new(false),
            shed: Notify::new(),
            changed: Arc::clone(&self.changed),
        });
        inner.open.insert(id, Arc::clone(&connection));
        Slot {
            table: Arc::clone(self),
            id,
            connection,
        }
    }

    /// Marks `connection` as authenticated: from now on it is never shed.
    /// Done under the table's lock, so a connection is either chosen to be
    /// shed before it authenticated, or never.
    pub(crate) fn authenticate(&self, connection: &Connection) {
        if connection.authenticated.load(Ordering::SeqCst) {
            return;
        }
        let _inner = self.lock();
        if !connection.shedding.load(Ordering::SeqCst) {
            connection.authenticated.store(true, Ordering::SeqCst);
        }
    }

    /// Waits until a connection closes or becomes sheddable (or returns at
    /// once when that happened since the last wait).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Connections open now, shed ones not yet closed included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// A connection's socket, telling its [`Connection`] when a read finds
/// nothing waiting.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    stream: S,
    connection: Arc<Connection>,
}

impl<S> Watched<S> {
    /// `stream`, watched for `connection`.
    pub(crate) fn new(stream: S, connection: Arc<Connection>) -> Watched<S> {
        Watched { stream, connection }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if polled.is_pending() {
            this.connection.found_nothing_to_read();
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
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether `room` finds a place now, without waiting.
    async fn room_now(table: &ConnectionTable) -> bool {
        tokio::time::timeout(Duration::from_millis(1), table.room())
            .await
            .is_ok()
    }

    /// Whether `connection` was told to close.
    async fn was_shed(connection: &Connection) -> bool {
        tokio::time::timeout(Duration::from_millis(1), connection.shed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_place_frees_only_when_a_shed_connection_is_closed() {
        let table = ConnectionTable::new(3);
        let first = table.admit();
        let second = table.admit();
        assert!(room_now(&table).await);
        let third = table.admit();
        // Full, and nobody has been read yet: nobody may be shed.
        assert!(!room_now(&table).await);
        assert!(!was_shed(&first.connection).await);
        // Read, found idle, never authenticated: the oldest such is shed,
        // but the place stays taken until its task closes it.
        second.connection.found_nothing_to_read();
        first.connection.found_nothing_to_read();
        assert!(!room_now(&table).await);
        assert!(was_shed(&first.connection).await);
        assert!(!was_shed(&second.connection).await);
        assert_eq!(table.len(), 3);
        drop(first);
        assert!(room_now(&table).await);
        let fourth = table.admit();
        assert_eq!(table.len(), 3);
        drop((second, third, fourth));
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn an_authenticated_connection_is_never_shed() {
        let table = ConnectionTable::new(2);
        let first = table.admit();
        let second = table.admit();
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
        drop(second);
        assert!(waiting.await.unwrap(), "it waited on authenticated clients");
        drop(first);
    }

    #[tokio::test]
    async fn a_connection_chosen_to_be_shed_never_becomes_authenticated() {
        let table = ConnectionTable::new(1);
        let first = table.admit();
        first.connection.found_nothing_to_read();
        assert!(!room_now(&table).await);
        table.authenticate(&first.connection);
        assert!(!first.connection.authenticated.load(Ordering::SeqCst));
        assert!(was_shed(&first.connection).await);
    }
}
