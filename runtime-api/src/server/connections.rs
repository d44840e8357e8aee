//! The server's open connections, bounded: when the cap is reached, a new
//! connection sheds the oldest one that never presented the right token,
//! and is refused itself only when every open connection has.
//!
//! Idle or slow clients (an unauthenticated flood, a client that trickles
//! its headers) would otherwise hold descriptors until the server has none
//! left for the clients that hold the token. Header reads are bounded in
//! time too (hyper's header timeout, which also closes a kept-alive
//! connection idle that long), so a slot held by nobody useful frees itself
//! even without pressure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// One open connection, as the table and its task share it.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    /// Whether a request on it carried the right token.
    authenticated: AtomicBool,
    /// Signalled when the table sheds it: its task drops the connection.
    shed: Notify,
}

impl Connection {
    /// Resolves when the table has shed this connection.
    pub(crate) async fn shed(&self) {
        self.shed.notified().await;
    }
}

/// The table of open connections, oldest first.
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    open: BTreeMap<u64, Arc<Connection>>,
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    id: u64,
    pub(crate) connection: Arc<Connection>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
    }
}

/// What admitting a new connection did.
#[derive(Debug)]
pub(crate) enum Admission {
    /// It has a place (and, at the cap, an unauthenticated one was shed).
    Admitted(Slot),
    /// Every place is held by an authenticated connection.
    Full,
}

impl ConnectionTable {
    /// A table of at most `cap` connections (at least one).
    pub(crate) fn new(cap: usize) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds a place for a new connection, shedding the oldest
    /// unauthenticated one when the table is full.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut inner = self.lock();
        while inner.open.len() >= self.cap {
            let oldest = inner
                .open
                .iter()
                .find(|(_, c)| !c.authenticated.load(Ordering::SeqCst))
                .map(|(id, _)| *id);
            let Some(oldest) = oldest else {
                return Admission::Full;
            };
            if let Some(shed) = inner.open.remove(&oldest) {
                shed.shed.notify_one();
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let connection = Arc::new(Connection::default());
        inner.open.insert(id, Arc::clone(&connection));
        Admission::Admitted(Slot {
            table: Arc::clone(self),
            id,
            connection,
        })
    }

    /// Marks the connection `slot` as authenticated: from now on it is
    /// never shed. Done under the table's lock, so a connection is either
    /// shed before it authenticated or never.
    pub(crate) fn authenticate(&self, connection: &Arc<Connection>) {
        if connection.authenticated.load(Ordering::SeqCst) {
            return;
        }
        let inner = self.lock();
        if inner.open.values().any(|c| Arc::ptr_eq(c, connection)) {
            connection.authenticated.store(true, Ordering::SeqCst);
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Slot {
        match admission {
            Admission::Admitted(slot) => slot,
            Admission::Full => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn the_oldest_unauthenticated_connection_is_shed() {
        let table = ConnectionTable::new(3);
        let first = admitted(table.admit());
        let second = admitted(table.admit());
        let third = admitted(table.admit());
        table.authenticate(&first.connection);
        let fourth = admitted(table.admit());
        // `second` was the oldest without the token.
        second.connection.shed().await;
        assert_eq!(table.len(), 3);
        table.authenticate(&third.connection);
        table.authenticate(&fourth.connection);
        assert!(matches!(table.admit(), Admission::Full));
        drop(fourth);
        let fifth = admitted(table.admit());
        assert_eq!(table.len(), 3);
        drop((first, third, fifth));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_shed_connection_never_becomes_authenticated() {
        let table = ConnectionTable::new(1);
        let first = admitted(table.admit());
        let _second = admitted(table.admit());
        table.authenticate(&first.connection);
        assert!(!first.connection.authenticated.load(Ordering::SeqCst));
    }
}
