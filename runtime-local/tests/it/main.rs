//! The integration tests of this crate, linked into one binary so a test
//! run builds and links one executable per crate.

mod cgroup;
mod conformance;
mod conformance_ffi;
mod events_only;
mod faults;
mod lent_stdout;
mod local_process;
mod soak;
