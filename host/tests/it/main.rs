//! The integration tests of this crate, linked into one binary so a test
//! run builds and links one executable per crate.

mod common;

mod admin_cli;
mod closed_output_cli;
mod install_cli;
mod json_errors_cli;
mod memory_cli;
mod plugin_failures_cli;
mod plugins_cli;
mod plugins_test_cli;
mod readme_tour_cli;
mod run_checkpoint_cli;
mod run_cli;
mod run_env_cli;
mod run_signals_cli;
mod run_stdin_cli;
mod serve_cli;
mod serve_load_cli;
mod session_output_cli;
mod snapshot_cli;
mod spec_reference;
mod tree_shapes_cli;
mod trees_cli;
