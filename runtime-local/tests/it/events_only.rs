//! `ExecCommand::events_only`: a stream whose result keeps none of the
//! output still delivers every byte as events, counts it, and spills it;
//! the same directly and through the plugin boundary (in process), where
//! `execute` also takes a path of its own.

use std::sync::Arc;
use std::time::Duration;

use runtime_local::LocalBackend;
use session_core::Mode;
use session_core::runtime::{Backend, Event, ExecCommand, Runtime, SpawnContext};
use session_core::spec::EnvironmentSpec;

/// 3 MiB on stdout (each 1 KiB line numbered, so a lost or repeated chunk
/// shows) and one line on stderr.
const COMMAND: &str = "i=0; while [ $i -lt 3072 ]; do printf '%01023d\\n' $i; i=$((i+1)); done; \
                       echo done >&2";

fn expected_stdout() -> Vec<u8> {
    (0..3072)
        .flat_map(|i| format!("{i:01023}\n").into_bytes())
        .collect()
}

fn backends() -> Vec<(&'static str, Arc<dyn Backend>)> {
    vec![
        ("local", Arc::new(LocalBackend)),
        (
            "local through the plugin boundary",
            session_core::plugin::in_process::<LocalBackend>().expect("the shims start"),
        ),
    ]
}

async fn runtime(backend: &dyn Backend, workspace: &std::path::Path) -> Box<dyn Runtime> {
    let ctx = SpawnContext::new("events-only", workspace, Mode::Evaluation);
    backend
        .spawn(&EnvironmentSpec::new("local", "events-only"), ctx)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_keeps_no_output_delivers_counts_and_spills_it() {
    let expected = expected_stdout();
    for (label, backend) in backends() {
        let temp = tempfile::tempdir().unwrap();
        let rt = runtime(backend.as_ref(), temp.path()).await;
        let spill = temp.path().join("spill");
        for spilled in [false, true] {
            let mut cmd = ExecCommand::new(COMMAND)
                .output_limit(1 << 20)
                .wall_timeout(Duration::from_secs(120))
                .events_only();
            if spilled {
                cmd = cmd.spill_to(&spill);
            }
            let mut stream = rt.stream(cmd).await.unwrap();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut result = None;
            while let Some(event) = stream.next().await {
                match event {
                    Event::Stdout(bytes) => out.extend_from_slice(&bytes),
                    Event::Stderr(bytes) => err.extend_from_slice(&bytes),
                    Event::Finished(r) => result = Some(r),
                }
            }
            let result = result.expect("a Finished event");
            assert!(result.success(), "{label}: {result:?}");
            assert!(out == expected, "{label}: the events lost or changed bytes");
            assert_eq!(err, b"done\n", "{label}");
            assert!(result.stdout.bytes.is_empty(), "{label}: stdout kept");
            assert!(result.stderr.bytes.is_empty(), "{label}: stderr kept");
            assert_eq!(result.stdout.total_bytes, expected.len() as u64, "{label}");
            assert_eq!(result.stderr.total_bytes, 5, "{label}");
            assert!(
                result.stdout.truncated && result.stderr.truncated,
                "{label}"
            );
            if spilled {
                // Past the limit: the whole stream is in the file.
                let path = result.stdout.spill_path.as_ref().expect("stdout spilled");
                assert!(
                    std::fs::read(path).unwrap() == expected,
                    "{label}: spill file"
                );
                // Within it: no file, and none left behind.
                assert_eq!(result.stderr.spill_path, None, "{label}");
                assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 1, "{label}");
            } else {
                assert_eq!(result.stdout.spill_path, None, "{label}");
            }
        }
        rt.cleanup().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_keeps_output_unless_told_and_counts_it_either_way() {
    let expected = expected_stdout();
    for (label, backend) in backends() {
        let temp = tempfile::tempdir().unwrap();
        let rt = runtime(backend.as_ref(), temp.path()).await;
        let kept = rt
            .execute(ExecCommand::new(COMMAND).output_limit(1 << 20))
            .await
            .unwrap();
        assert!(kept.success(), "{label}: {kept:?}");
        assert!(
            kept.stdout.bytes[..] == expected[..1 << 20],
            "{label}: kept bytes"
        );
        assert!(kept.stdout.truncated && !kept.stderr.truncated, "{label}");
        assert_eq!(kept.stdout.total_bytes, expected.len() as u64, "{label}");
        assert_eq!(kept.stderr.bytes, b"done\n", "{label}");

        let counted = rt
            .execute(ExecCommand::new(COMMAND).events_only())
            .await
            .unwrap();
        assert!(counted.success(), "{label}: {counted:?}");
        assert!(counted.stdout.bytes.is_empty() && counted.stderr.bytes.is_empty());
        assert_eq!(counted.stdout.total_bytes, expected.len() as u64, "{label}");
        assert_eq!(counted.stderr.total_bytes, 5, "{label}");
        rt.cleanup().await.unwrap();
    }
}

/// An `execute` whose future is dropped kills its command, through the
/// plugin boundary as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_execute_kills_its_command() {
    for (label, backend) in backends() {
        let temp = tempfile::tempdir().unwrap();
        let rt = runtime(backend.as_ref(), temp.path()).await;
        let marker = temp.path().join("alive");
        let command = format!(
            "while :; do echo . >> {}; sleep 0.05; done",
            marker.display()
        );
        let running = rt.execute(ExecCommand::new(command));
        // Dropped once the loop has written its first line.
        let gave_up = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::select! {
                _ = running => panic!("{label}: the endless command ended"),
                () = async {
                    while std::fs::metadata(&marker).map_or(0, |m| m.len()) == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } => {}
            }
        })
        .await;
        assert!(gave_up.is_ok(), "{label}: the command never started");
        // The loop appends every 50 ms while it lives: within 5 s its file
        // must stop growing.
        let mut last = u64::MAX;
        let mut steady = 0;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = std::fs::metadata(&marker).unwrap().len();
            steady = if now == last { steady + 1 } else { 0 };
            last = now;
            if steady == 3 {
                break;
            }
        }
        assert_eq!(steady, 3, "{label}: the dropped command still runs");
        rt.cleanup().await.unwrap();
    }
}

#[test]
fn events_only_is_sent_only_when_set() {
    let plain = serde_json::to_value(ExecCommand::new("true")).unwrap();
    assert!(plain.get("events_only").is_none(), "{plain}");
    let set = serde_json::to_value(ExecCommand::new("true").events_only()).unwrap();
    assert_eq!(set["events_only"], true);
    let back: ExecCommand = serde_json::from_value(set).unwrap();
    assert!(back.events_only);
}
