//! Environment specs from arbitrary bytes, as YAML and as JSON: never a
//! panic, and a spec that loads survives a round trip through JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::EnvironmentSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for spec in [
        EnvironmentSpec::from_yaml_str(text, "<fuzz>"),
        EnvironmentSpec::from_json_str(text, "<fuzz>"),
    ]
    .into_iter()
    .flatten()
    {
        let json = serde_json::to_string(&spec).expect("a loaded spec serialises");
        let back = EnvironmentSpec::from_json_str(&json, "<fuzz>").expect("a serialised spec loads");
        assert_eq!(back, spec);
    }
});
