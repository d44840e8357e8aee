//! The api server's request bodies from arbitrary bytes: every request type
//! the server decodes, a frame's JSON head, and the ids taken from request
//! paths. Never a panic; a decoded request re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime_api::protocol::{CreateSession, ExecRequest, SpawnRequest, StreamLine, SyncHead};

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        serde_json::to_vec(&value).expect("a decoded request re-encodes");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<CreateSession>(data);
    round_trip::<SpawnRequest>(data);
    round_trip::<ExecRequest>(data);
    round_trip::<SyncHead>(data);
    round_trip::<StreamLine>(data);
    // A frame: one JSON line, then the archive.
    if let Some(newline) = data.iter().position(|b| *b == b'\n') {
        round_trip::<SyncHead>(&data[..newline]);
        round_trip::<CreateSession>(&data[..newline]);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runtime_api::protocol::is_valid_id(text);
    }
});
