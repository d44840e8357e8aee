//! The link between a local workspace and its remote session: pushing local
//! changes before a command, pulling the command's changes after it.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use session_core::snapshot::{ContentHash, EntryKind, ManifestEntry};

use super::http::ApiClient;
use crate::Error;
use crate::protocol::{ChangeSet, SizeLimits, SyncHead};
use crate::sync::{self, Packer, Scanner, Tree};

/// What the client knows of the remote workspace.
#[derive(Debug)]
struct SyncState {
    /// Scans the local workspace.
    scanner: Scanner,
    /// The tree the remote workspace holds, as far as the client knows.
    remote: Tree,
    /// The client's knowledge may be wrong: fetch the remote manifest
    /// before the next push.
    stale: bool,
}

/// A local workspace synced with the workspace of a remote session.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) client: ApiClient,
    pub(crate) session: String,
    pub(crate) workspace: PathBuf,
    /// What the server accepts.
    pub(crate) limits: SizeLimits,
    state: Arc<Mutex<SyncState>>,
}

fn blocking_failed(err: &tokio::task::JoinError) -> Error {
    Error::Protocol(format!("a workspace sync task failed: {err}"))
}

impl Link {
    /// A link to `session`, whose workspace holds `remote` now.
    pub(crate) fn new(
        client: ApiClient,
        session: String,
        workspace: PathBuf,
        remote: Tree,
        limits: SizeLimits,
    ) -> Link {
        Link {
            client,
            session,
            workspace,
            limits,
            state: Arc::new(Mutex::new(SyncState {
                scanner: Scanner::default(),
                remote,
                stale: false,
            })),
        }
    }

    fn lock(state: &Mutex<SyncState>) -> MutexGuard<'_, SyncState> {
        state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checksum of what the client believes the remote holds.
    pub(crate) fn remote_checksum(&self) -> ContentHash {
        Link::lock(&self.state).remote.checksum()
    }

    /// Forgets what the client believes the remote holds; the next push
    /// asks the server first.
    pub(crate) fn mark_stale(&self) {
        Link::lock(&self.state).stale = true;
    }

    /// Makes the remote workspace equal to the local one, sending only the
    /// entries whose hash (or kind, or mode) differs, and returns the
    /// checksum both now have. With nothing changed, no request is made.
    pub(crate) async fn push(&self) -> Result<ContentHash, Error> {
        for _ in 0..3 {
            let stale = Link::lock(&self.state).stale;
            if stale {
                let remote = self.client.workspace(&self.session).await?;
                let tree = Tree::new(remote.entries);
                let mut state = Link::lock(&self.state);
                state.remote = tree;
                state.stale = false;
            }
            let state = Arc::clone(&self.state);
            let workspace = self.workspace.clone();
            let plan = tokio::task::spawn_blocking(move || plan_push(&state, &workspace))
                .await
                .map_err(|err| blocking_failed(&err))??;
            let Some(plan) = plan else {
                return Ok(Link::lock(&self.state).remote.checksum());
            };
            let size = plan
                .archive
                .as_ref()
                .and_then(|a| a.as_file().metadata().ok())
                .map_or(0, |m| m.len());
            if size > self.limits.max_archive_bytes {
                return Err(Error::TooLarge {
                    what: "the archive of workspace changes to upload",
                    size,
                    limit: self.limits.max_archive_bytes,
                });
            }
            let archive = plan.archive.as_ref().map(|a| a.path());
            match self.client.sync(&self.session, &plan.head, archive).await {
                Ok(synced) if synced.checksum == plan.head.target => {
                    Link::lock(&self.state).remote = plan.target;
                    return Ok(synced.checksum);
                }
                Ok(_) => self.mark_stale(),
                Err(err) if err.status() == Some(412) => self.mark_stale(),
                Err(err) => return Err(err),
            }
        }
        Err(Error::Protocol(
            "the remote workspace did not come in sync after three attempts".into(),
        ))
    }

    /// Applies what an operation on the server changed to the local
    /// workspace, fetching the archive of created and changed entries.
    pub(crate) async fn pull(&self, changes: &ChangeSet) -> Result<(), Error> {
        if changes.is_empty() {
            let mut state = Link::lock(&self.state);
            if state.remote.checksum() != changes.checksum {
                state.stale = true;
            }
            return Ok(());
        }
        let archive = match &changes.id {
            Some(id) if !changes.upserts.is_empty() => {
                let file = tempfile::Builder::new()
                    .prefix("berth-api-changes-")
                    .suffix(".tar")
                    .tempfile()
                    .map_err(|err| Error::Protocol(format!("storing changes: {err}")))?;
                self.client
                    .download_changes(
                        &self.session,
                        id,
                        file.path(),
                        archive_bound(&changes.upserts),
                    )
                    .await?;
                Some(file)
            }
            _ => None,
        };
        if !changes.upserts.is_empty() && archive.is_none() {
            return Err(Error::Protocol(
                "a change set with entries names no archive".into(),
            ));
        }
        let state = Arc::clone(&self.state);
        let workspace = self.workspace.clone();
        let changes = changes.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = Link::lock(&state);
            let applied = sync::apply(
                &workspace,
                archive.as_ref().map(|a| a.path()),
                &changes.deletes,
                Some(&changes.upserts),
            );
            if let Err(err) = applied {
                state.stale = true;
                return Err(Error::Core(err));
            }
            if state.remote.checksum() != changes.base {
                state.stale = true;
            }
            state.remote.apply(&changes.upserts, &changes.deletes);
            sync::prune_emptied(&workspace, &changes.deletes, &state.remote);
            if state.remote.checksum() != changes.checksum {
                state.stale = true;
            }
            Ok(())
        })
        .await
        .map_err(|err| blocking_failed(&err))?
    }
}

/// The most bytes an uncompressed tar archive of `entries` can take, as
/// either side's packer writes one: per member a header, a long-name and a
/// long-link header with their padded texts, and the padded content; then
/// the end-of-archive blocks and a record of slack. A change archive
/// longer than this holds more than its change set announced.
fn archive_bound(entries: &[ManifestEntry]) -> u64 {
    const BLOCK: u64 = 512;
    let padded = |bytes: u64| bytes.div_ceil(BLOCK).saturating_mul(BLOCK);
    entries.iter().fold(22 * BLOCK, |total, entry| {
        let target = entry.link_target.as_ref().map_or(0, |t| t.len() as u64);
        let content = match entry.kind {
            EntryKind::File => padded(entry.size),
            EntryKind::Dir | EntryKind::Symlink => 0,
        };
        total
            .saturating_add(3 * BLOCK)
            .saturating_add(padded(entry.path.len() as u64 + 2))
            .saturating_add(padded(target + 1))
            .saturating_add(content)
    })
}

/// A push to make: the archive, the deletions, and the tree the remote
/// will hold once it is applied.
struct PushPlan {
    head: SyncHead,
    archive: Option<tempfile::NamedTempFile>,
    target: Tree,
}

fn plan_push(
    state: &Mutex<SyncState>,
    workspace: &std::path::Path,
) -> Result<Option<PushPlan>, Error> {
    let mut state = Link::lock(state);
    let local = state.scanner.scan(workspace)?;
    let (upserts, mut deletes) = state.remote.changes_to(&local);
    if upserts.is_empty() && deletes.is_empty() {
        return Ok(None);
    }
    let mut archive = None;
    let mut packed_upserts = Vec::new();
    if !upserts.is_empty() {
        let file = tempfile::Builder::new()
            .prefix("berth-api-push-")
            .suffix(".tar")
            .tempfile()
            .map_err(|err| Error::Protocol(format!("packing changes: {err}")))?;
        let out = std::io::BufWriter::with_capacity(
            256 << 10,
            file.reopen()
                .map_err(|err| Error::Protocol(format!("packing changes: {err}")))?,
        );
        let mut packer = Packer::new(out);
        packer.add_entries(workspace, &upserts)?;
        let (mut out, packed) = packer.finish()?;
        out.flush()
            .map_err(|err| Error::Protocol(format!("packing changes: {err}")))?;
        deletes.extend(packed.vanished);
        packed_upserts = packed.upserts;
        archive = Some(file);
    }
    let mut target = state.remote.clone();
    target.apply(&packed_upserts, &deletes);
    Ok(Some(PushPlan {
        head: SyncHead {
            base: state.remote.checksum(),
            target: target.checksum(),
            delete: deletes,
        },
        archive,
        target,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound holds what the packer writes, long names and links
    /// included, and is not much more: a few KiB per entry.
    #[test]
    fn the_archive_bound_holds_what_the_packer_writes() {
        let root = tempfile::tempdir().unwrap();
        let long = "n".repeat(200);
        std::fs::create_dir_all(root.path().join(&long).join(&long)).unwrap();
        std::fs::write(root.path().join(&long).join(&long).join("f"), vec![7; 1000]).unwrap();
        std::fs::write(root.path().join("small"), b"abc").unwrap();
        std::os::unix::fs::symlink("t".repeat(300), root.path().join("link")).unwrap();
        std::fs::create_dir(root.path().join("empty")).unwrap();
        let entries = Scanner::default().scan(root.path()).unwrap().entries();
        let archive = tempfile::NamedTempFile::new().unwrap();
        let mut packer = Packer::new(archive.reopen().unwrap());
        packer.add_entries(root.path(), &entries).unwrap();
        packer.finish().unwrap();
        let size = archive.as_file().metadata().unwrap().len();
        let bound = archive_bound(&entries);
        assert!(size <= bound, "{size} > {bound}");
        let slack = 16 * 1024 + 4 * 1024 * entries.len() as u64;
        assert!(bound < size + slack, "{bound} is far above {size}");
    }
}
