//! (being written)

use std::path::Path;

/// Resolved assets.
#[derive(Debug, Clone, Default)]
pub struct ResolvedAssets {}

impl ResolvedAssets {
    /// Copies the assets into `root`.
    pub fn materialize_into(&self, _root: &Path) -> crate::Result<()> {
        Ok(())
    }
}

/// One resolved asset.
#[derive(Debug, Clone)]
pub struct ResolvedAsset {}
