//! The integration tests of this crate, linked into one binary so a test
//! run builds and links one executable per crate.

#[macro_use]
mod support;

mod conformance;
mod docker_engine;
mod docker_hand_back;
mod docker_lifecycle;
mod docker_lifetime;
mod docker_limits;
mod docker_mounts;
mod docker_network;
mod docker_pool;
mod soak;
