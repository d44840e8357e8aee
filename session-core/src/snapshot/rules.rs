//! Which paths a snapshot keeps.

use crate::error::Result;
use crate::glob::GlobList;

/// Keep and ignore globs, compiled once.
///
/// An ignored directory is pruned (never walked) and listed in
/// `other_paths` with a trailing `/`; an ignored file is listed in
/// `other_paths`; with keep globs, a file matching none of them is listed in
/// `other_paths` too. Ignore beats keep.
#[derive(Debug, Clone)]
pub struct SnapshotRules {
    keep: Option<GlobList>,
    ignore: GlobList,
}

/// What the rules say about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Snapshot it.
    Include,
    /// Leave it out and list it in `other_paths`.
    Exclude,
}

impl SnapshotRules {
    /// Compiles the rules. `keep = None` keeps everything not ignored.
    pub fn new<S: AsRef<str>>(keep: Option<&[S]>, ignore: &[S]) -> Result<SnapshotRules> {
        Ok(SnapshotRules {
            keep: keep.map(GlobList::new).transpose()?,
            ignore: GlobList::new(ignore)?,
        })
    }

    /// Rules that keep everything.
    pub fn keep_all() -> SnapshotRules {
        SnapshotRules::new::<&str>(None, &[]).expect("empty rules compile")
    }

    /// The verdict for a directory (keep globs do not apply to directories;
    /// their files are judged one by one).
    pub(crate) fn directory(&self, path: &str) -> Verdict {
        if self.ignore.is_match(path) {
            Verdict::Exclude
        } else {
            Verdict::Include
        }
    }

    /// The verdict for a file, symlink or empty directory.
    pub(crate) fn leaf(&self, path: &str) -> Verdict {
        if self.ignore.is_match(path) {
            return Verdict::Exclude;
        }
        match &self.keep {
            Some(keep) if !keep.is_match(path) => Verdict::Exclude,
            _ => Verdict::Include,
        }
    }
}
