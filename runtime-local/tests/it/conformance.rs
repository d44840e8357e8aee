//! The whole conformance suite against `type: local`.

use runtime_conformance::{Target, conformance_tests};
use session_core::EnvironmentSpec;

use runtime_local as _;

conformance_tests!(local_backend_passes_the_conformance_suite, || {
    Target::builtin(EnvironmentSpec::new("local", "conformance"))
});
