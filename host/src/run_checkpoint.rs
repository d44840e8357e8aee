//! `berth run --checkpoint OUT`: OUT holds exactly the workspace's files
//! afterwards.
//!
//! The checkpoint is written into a fresh directory beside OUT, marked as
//! berth's, and swapped in for OUT with one `renameat2(RENAME_EXCHANGE)`
//! (or renamed into place when OUT does not exist), so a reader of OUT sees
//! the old checkpoint or the new one, never a mixture; the old content is
//! removed afterwards. Where that is not possible (OUT is a mount point,
//! its parent is not writable, the file system cannot exchange), OUT's
//! content is replaced in place: everything the checkpoint does not hold
//! is removed, then its files are written.
//!
//! The mark is the extended attribute [`MARK`] on the directory itself, so
//! the directory holds nothing but the workspace's files. A non-empty OUT
//! without the mark is refused unless `--force`: berth never empties a
//! directory it did not write. On a file system that keeps no extended
//! attributes the mark cannot be set, and the next run into the same OUT
//! needs `--force` (the refusal says so).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use session_core::paths::quote_path;
use session_core::session::Session;
use session_core::snapshot::ExtractMode;
use session_core::workspace::Checkpoint;

/// The extended attribute that marks a directory berth wrote a checkpoint
/// to; its value is the id of the session that wrote it.
pub(crate) const MARK: &str = "user.berth.checkpoint";

/// Where a checkpoint goes, checked before anything runs.
#[derive(Debug)]
pub(crate) struct Target {
    /// OUT as the user gave it (for messages and the JSON result).
    pub(crate) given: PathBuf,
    /// OUT made absolute, with a symlink to a directory followed.
    dir: PathBuf,
}

/// Checks OUT before the command runs: it must be missing, an empty
/// directory, a directory berth wrote a checkpoint to, or (with `force`)
/// any directory.
pub(crate) fn check(out: &Path, force: bool) -> anyhow::Result<Target> {
    let shown = quote_path(out);
    let absolute = std::path::absolute(out)
        .with_context(|| format!("resolving the checkpoint path {shown}"))?;
    let dir = match std::fs::symlink_metadata(&absolute) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => absolute,
        Err(err) => {
            return Err(anyhow::Error::new(err).context(format!("inspecting {shown}")));
        }
        Ok(_) => {
            if !absolute.is_dir() {
                bail!("checkpoint directory {shown} exists and is not a directory");
            }
            // A symlink to a directory: the checkpoint goes where it points.
            let dir = std::fs::canonicalize(&absolute)
                .with_context(|| format!("resolving the checkpoint path {shown}"))?;
            let empty = std::fs::read_dir(&dir)
                .with_context(|| format!("reading the checkpoint directory {shown}"))?
                .next()
                .is_none();
            if !empty && !force && !is_marked(&dir) {
                bail!(
                    "checkpoint directory {shown} is not empty and is not a checkpoint berth \
                     wrote: berth replaces a checkpoint directory's whole content, so it does not \
                     touch this one; pass --force to replace it{}",
                    if marks_supported(&dir) {
                        ""
                    } else {
                        " (its file system keeps no extended attributes, where berth marks its \
                         checkpoints, so even one berth wrote needs --force)"
                    }
                );
            }
            dir
        }
    };
    Ok(Target {
        given: out.to_path_buf(),
        dir,
    })
}

/// Writes the session's checkpoint to the target, replacing what it held.
pub(crate) async fn write(session: &Session, target: &Target) -> anyhow::Result<Checkpoint> {
    let shown = quote_path(&target.given);
    let exists = target.dir.is_dir();
    let staging = Staging::beside(&target.dir);
    let (where_to, staged) = match &staging {
        Some(staging) => (staging.path.clone(), true),
        // No sibling can be made: the checkpoint is extracted into OUT,
        // replacing its content in place.
        None => (target.dir.clone(), false),
    };
    let checkpoint = if staged {
        session.finish_checkpoint(&where_to).await?
    } else {
        // Take the snapshot without touching OUT, then mirror it in.
        let scratch = tempfile::tempdir().context("making a scratch directory")?;
        let checkpoint = session
            .finish_checkpoint(scratch.path().join("checkpoint"))
            .await?;
        mirror(&checkpoint, &target.dir).await?;
        mark(&target.dir, session.id());
        return Ok(checkpoint);
    };
    let staging = staging.expect("staged");
    if exists {
        copy_mode(&target.dir, &staging.path);
    }
    mark(&staging.path, session.id());
    match staging.swap_in(&target.dir, exists) {
        Ok(()) => Ok(checkpoint),
        Err(err) => {
            tracing::debug!(error = %err, "swapping the checkpoint in failed; replacing in place");
            mirror(&checkpoint, &target.dir)
                .await
                .with_context(|| format!("replacing the content of {shown}"))?;
            mark(&target.dir, session.id());
            Ok(checkpoint)
        }
    }
}

/// Makes `dir` hold exactly the checkpoint's files, in place.
async fn mirror(checkpoint: &Checkpoint, dir: &Path) -> anyhow::Result<()> {
    let snapshot = checkpoint.snapshot.clone();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || snapshot.extract(&dir, ExtractMode::Mirror))
        .await
        .context("writing the checkpoint")??;
    Ok(())
}

/// A fresh directory beside the target; removed when dropped unless it
/// was swapped in.
struct Staging {
    path: PathBuf,
    done: bool,
}

impl Staging {
    /// A new directory in the target's parent, or `None` when none can be
    /// made there.
    fn beside(target: &Path) -> Option<Staging> {
        let parent = target.parent()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        for attempt in 0..100u32 {
            let path = parent.join(format!(".{name}.berth-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Some(Staging { path, done: false }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Puts the staged directory at `target`: exchanged with it atomically
    /// when it `exists` (the old content then goes), else renamed there.
    fn swap_in(mut self, target: &Path, exists: bool) -> io::Result<()> {
        if exists {
            exchange(&self.path, target)?;
            // `self.path` now names the old checkpoint, removed on drop.
        } else {
            std::fs::rename(&self.path, target)?;
            self.done = true;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done
            && let Err(err) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %err, "could not remove a checkpoint's staging directory");
        }
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// Exchanges two paths atomically (`renameat2` with `RENAME_EXCHANGE`).
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let (a, b) = (c_path(a)?, c_path(b)?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    let status = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives `to` the permission bits of `from` (a replaced checkpoint keeps
/// its mode).
fn copy_mode(from: &Path, to: &Path) {
    if let Ok(meta) = std::fs::metadata(from) {
        let _ = std::fs::set_permissions(
            to,
            std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
        );
    }
}

/// Marks `dir` as a checkpoint berth wrote. Failing to (no extended
/// attributes here) is not an error: the next run needs `--force`.
fn mark(dir: &Path, session_id: &str) {
    let result = c_path(dir).and_then(|path| {
        let name = CString::new(MARK).expect("no NUL in the name");
        // SAFETY: path and name are NUL-terminated; the value is a valid
        // slice of its stated length; all live across the call.
        let status = unsafe {
            libc::setxattr(
                path.as_ptr(),
                name.as_ptr(),
                session_id.as_ptr().cast(),
                session_id.len(),
                0,
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    });
    if let Err(err) = result {
        tracing::debug!(dir = %dir.display(), error = %err, "could not mark the checkpoint directory");
    }
}

/// Whether `dir` carries berth's checkpoint mark.
pub(crate) fn is_marked(dir: &Path) -> bool {
    xattr_size(dir).is_ok()
}

/// Whether `dir`'s file system keeps user extended attributes: asking for
/// an attribute it lacks says "no such attribute" there, and "not
/// supported" where there are none.
fn marks_supported(dir: &Path) -> bool {
    match xattr_size(dir) {
        Ok(_) => true,
        Err(err) => err.raw_os_error() != Some(libc::EOPNOTSUPP),
    }
}

fn xattr_size(dir: &Path) -> io::Result<usize> {
    let path = c_path(dir)?;
    let name = CString::new(MARK).expect("no NUL in the name");
    // SAFETY: NUL-terminated path and name; a null buffer of size 0 asks
    // only for the value's size.
    let size = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    usize::try_from(size).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_non_empty_directory_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // Missing, then empty: fine.
        check(&out, false).unwrap();
        std::fs::create_dir(&out).unwrap();
        check(&out, false).unwrap();
        std::fs::write(out.join("mine.txt"), "x").unwrap();
        let err = check(&out, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        check(&out, true).unwrap();
        // A file is never a checkpoint directory, even with --force.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(check(&file, true).is_err());
    }

    #[test]
    fn a_marked_directory_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        if !marks_supported(dir.path()) {
            return;
        }
        std::fs::write(dir.path().join("old.txt"), "x").unwrap();
        assert!(!is_marked(dir.path()));
        mark(dir.path(), "s1");
        assert!(is_marked(dir.path()));
        check(dir.path(), false).unwrap();
    }

    #[test]
    fn exchange_swaps_two_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("in-a"), "").unwrap();
        if exchange(&a, &b).is_err() {
            return;
        }
        assert!(b.join("in-a").exists() && !a.join("in-a").exists());
    }
}
