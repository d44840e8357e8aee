//! Symlink targets cross an `api` sync exactly, both ways: links the host
//! makes reach the server's workspace as they are, links a command makes
//! come back as they are, and a checkpoint holds them unchanged. Targets a
//! path library would rewrite (`/`, `a//b`, `x/.`) once made the sync fail
//! and the command's work was lost.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::{TestServer, api_spec, client_registry};
use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};
use session_core::spec::Mode;

fn odd_targets() -> Vec<Vec<u8>> {
    let mut long = b"ab//".repeat(1000);
    long.truncate(4000);
    vec![
        b"/".to_vec(),
        b"//".to_vec(),
        b"//x".to_vec(),
        b"a//b".to_vec(),
        b"x/.".to_vec(),
        b"x/".to_vec(),
        b"a\nb".to_vec(),
        b"\xff\xfe/\x80".to_vec(),
        vec![b'u'; 101],
        long,
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_links(root: &Path, prefix: &str, targets: &[Vec<u8>], what: &str) {
    for (i, target) in targets.iter().enumerate() {
        let name = format!("{prefix}{i}");
        let read = fs::read_link(root.join(&name))
            .unwrap_or_else(|err| panic!("{what}: {name}: {err}"))
            .into_os_string()
            .into_vec();
        assert_eq!(
            read,
            *target,
            "{what}: {name} points to {:?}",
            String::from_utf8_lossy(&read)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_link_targets_cross_a_sync_both_ways_exactly() {
    let targets = odd_targets();
    let server = TestServer::start().await;
    let mut session = Session::builder(api_spec(&server.url()))
        .registry(client_registry())
        .mode(Mode::Agent)
        .prepare()
        .await
        .unwrap();
    let runtime = session.spawn(SpawnOptions::default()).await.unwrap();
    let workspace = session.workspace_path().unwrap();

    // Made on the host: pushed before the command, which copies each
    // target it finds (`back*`) and makes links of its own (`made*`).
    for (i, target) in targets.iter().enumerate() {
        symlink(
            OsStr::from_bytes(target),
            workspace.join(format!("host{i}")),
        )
        .unwrap();
    }
    let list = targets
        .iter()
        .map(|t| format!("'{}'", hex(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        "import os\n\
         targets = [bytes.fromhex(t) for t in [{list}]]\n\
         for i, t in enumerate(targets):\n    \
             seen = os.readlink(b'host%d' % i)\n    \
             assert seen == t, (i, seen, t)\n    \
             os.symlink(seen, b'back%d' % i)\n    \
             os.symlink(t, b'made%d' % i)\n\
         print('ok')\n"
    );
    fs::write(workspace.join("links.py"), &script).unwrap();
    let result = runtime
        .execute(ExecCommand::new("python3 links.py"))
        .await
        .unwrap();
    assert_eq!(result.status, ExecStatus::Exited, "{result:?}");
    assert_eq!(
        (result.exit_code, result.stdout_lossy()),
        (0, "ok\n".into()),
        "the server saw every target as the host made it: {}",
        result.stderr_lossy()
    );
    // Pulled back exactly.
    assert_links(&workspace, "back", &targets, "pulled copies");
    assert_links(&workspace, "made", &targets, "pulled links");
    assert_links(&workspace, "host", &targets, "the host's own");

    // Both sides agree: the next command needs no repair, and sees the
    // links it made.
    let result = runtime
        .execute(ExecCommand::new(
            "ls made0 back9 host7 >/dev/null && echo same",
        ))
        .await
        .unwrap();
    assert_eq!(result.stdout_lossy(), "same\n", "{result:?}");

    let out = tempfile::tempdir().unwrap();
    session.finish_checkpoint(out.path()).await.unwrap();
    for prefix in ["host", "back", "made"] {
        assert_links(out.path(), prefix, &targets, "the checkpoint");
    }
    session.close().await.unwrap();
}
