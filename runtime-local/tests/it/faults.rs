//! When what a session stands on fails under it: the workspace deleted, the
//! disk full. Each gives a typed error or a failed result, never a hang or
//! a panic, and the session still closes cleanly.

use std::path::Path;
use std::time::Duration;

use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};
use session_core::{EnvironmentSpec, Error};

use runtime_local as _;

async fn session_in(root: &Path, base: Option<&Path>) -> Result<Session, Error> {
    let mut builder = Session::builder(EnvironmentSpec::new("local", "faults")).temp_root(root);
    if let Some(base) = base {
        builder = builder.base_dir(base);
    }
    builder.prepare().await
}

#[tokio::test]
async fn a_deleted_workspace_fails_commands_and_snapshots_but_closes() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session_in(temp.path(), None).await.unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let root = session.workspace_path().unwrap();
    std::fs::remove_dir_all(&root).unwrap();

    let result = tokio::time::timeout(
        Duration::from_secs(30),
        rt.execute(ExecCommand::new("echo hi")),
    )
    .await
    .expect("no hang")
    .unwrap();
    assert_eq!(result.status, ExecStatus::SpawnFailed, "{result:?}");
    assert!(result.stderr_lossy().contains("No such file"), "{result:?}");
    let err = session.snapshot().await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let err = session.get_file_contents(vec!["*".into()]).await;
    assert!(err.is_err() || err.unwrap().is_empty());
    session.close().await.unwrap();
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
}

/// A 2 MiB tmpfs mounted for the test (this suite runs as root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=2m",
                "berth-test-full",
                dir.path().to_str().unwrap(),
            ])
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_gives_typed_errors_and_the_session_still_closes() {
    let Some(disk) = SmallDisk::mount() else {
        // Mounting needs root; CI and development machines here have it.
        panic!("cannot mount a tmpfs: this test needs root");
    };
    // Preparing from a base larger than the disk fails cleanly and leaves
    // nothing on it.
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("big.bin"), vec![7u8; 4 << 20]).unwrap();
    let err = session_in(disk.path(), Some(base.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Io { .. } | Error::Archive { .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(disk.path()).unwrap().count(),
        0,
        "a failed prepare left files"
    );

    // A command that fills the disk gets a failed result; the snapshot of a
    // tree that no longer fits in the archive directory is an I/O error; the
    // session closes and frees the disk.
    let mut session = session_in(disk.path(), None).await.unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(
            ExecCommand::new("head -c 3000000 /dev/zero > fill.bin")
                .wall_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(!result.success(), "{result:?}");
    assert!(
        result.stderr_lossy().contains("No space left"),
        "{result:?}"
    );
    let snapshot = session.snapshot().await;
    assert!(matches!(snapshot, Err(Error::Io { .. })), "{snapshot:?}");
    session.close().await.unwrap();
    assert_eq!(std::fs::read_dir(disk.path()).unwrap().count(), 0);
}
