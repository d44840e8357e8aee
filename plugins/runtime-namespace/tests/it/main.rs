//! The integration tests of this crate, linked into one binary so a test
//! run builds and links one executable per crate.

mod support;

mod config;
mod conformance;
mod dylib;
mod isolation;
mod processes;
mod quotas;
mod seccomp;
mod spec_reference;
