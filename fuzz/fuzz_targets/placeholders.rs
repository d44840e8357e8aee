//! `{{static:NAME}}` substitution over arbitrary JSON: never a panic, and
//! text without the placeholder prefix comes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::assets::{ResolvedAsset, ResolvedAssets};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let assets = ResolvedAssets::new([ResolvedAsset {
        name: "a".into(),
        absolute_path: "/assets/a".into(),
        save_path: "a".into(),
        is_dir: false,
    }])
    .expect("a valid asset");
    let result = session_core::placeholders::resolve_static_placeholders(&value, &assets, |asset| {
        format!("/static/{}", asset.save_path.display())
    });
    if !String::from_utf8_lossy(data).contains("{{static:") {
        assert_eq!(result.expect("nothing to substitute"), value);
    }
});
