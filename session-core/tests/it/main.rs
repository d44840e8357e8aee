//! The integration tests of this crate, linked into one binary so a test
//! run builds and links one executable per crate.

mod assets_config;
mod assets_placeholders;
mod assets_resolve;
mod bad_inputs;
mod diff_bounds;
mod diff_dirs;
mod diff_quoted_names;
mod diff_snapshots;
mod plugin_trust;
mod session_lifecycle;
mod snapshot_frames;
mod snapshot_link_targets;
mod snapshot_roundtrip;
mod snapshot_sparse;
mod spec_bounds;
mod spec_errors;
mod spec_fixtures;
mod spec_helpers;
mod spec_serde;
mod tree_shapes;
mod tree_special_files;
mod workspace_lifecycle;
