//! The conformance suite against `type: namespace` served through the
//! plugin boundary in process (the export shims and the host adapter a
//! loaded plugin goes through), one test per case
//! (`conformance::namespace::<case>`). `dylib.rs` runs it again through the
//! real loader.

use runtime_conformance::{Target, conformance_tests};
use session_core::EnvironmentSpec;

conformance_tests!(namespace, || {
    Target::with_registry(
        EnvironmentSpec::new("namespace", "conformance"),
        crate::support::registry(),
    )
    .label("namespace via plugin boundary")
});
