//! Host-side semantics: the same commands in a local session and in an api
//! session leave identical checkpoint diffs, snapshots and file contents.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use crate::support::TestServer;
use session_core::EnvironmentSpec;
use session_core::assets::AssetMap;
use session_core::runtime::ExecCommand;
use session_core::session::{Session, SpawnOptions};
use session_core::spec::Mode;

/// What one step left behind in a session.
#[derive(Debug, PartialEq)]
struct Observed {
    stdout: String,
    exit_code: i32,
    diff: serde_json::Value,
    manifest: serde_json::Value,
    checksum: String,
    files: serde_json::Value,
}

fn base_dir(dir: &Path) {
    std::fs::create_dir_all(dir.join("src/nested")).unwrap();
    std::fs::write(dir.join("text.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(dir.join("old.txt"), "to be removed\n").unwrap();
    std::fs::write(dir.join("moved_from.txt"), "moving content\n").unwrap();
    std::fs::write(dir.join("src/nested/deep.py"), "print('deep')\n").unwrap();
    std::fs::write(dir.join("binary.bin"), [0u8, 1, 2, 255, 0, 7]).unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("private.txt"), "secret\n").unwrap();
    std::fs::set_permissions(
        dir.join("private.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    symlink("text.txt", dir.join("link")).unwrap();
    std::fs::create_dir(dir.join("emptydir")).unwrap();
}

/// The steps: a command, or a change the host makes to its workspace.
enum Step {
    Command(&'static str),
    Host(fn(&Path)),
}

const STEPS: &[Step] = &[
    Step::Command("cat text.txt; ./run.sh; cat {{static:data}}"),
    Step::Command(
        "echo new > created.txt && printf 'a\\000b' > created.bin && chmod -x run.sh && \
         echo four >> text.txt && rm old.txt && mv moved_from.txt moved_to.txt && \
         mkdir -p fresh_empty deep/er && echo z > deep/er/f && ln -s created.txt link2 && \
         rmdir emptydir && mkdir venv && echo ignored > venv/lib.py && echo c > x.pyc",
    ),
    Step::Host(|root| {
        std::fs::write(root.join("from_host.txt"), "host wrote this\n").unwrap();
        std::fs::remove_file(root.join("created.bin")).unwrap();
        std::fs::set_permissions(
            root.join("text.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
    }),
    Step::Command(
        "cat from_host.txt > copy.txt; ls created.bin 2>&1; rm link && mkdir link && \
         echo inside > link/f; rm -r src; echo replaced > fresh_empty; \
         printf 'no newline' > text.txt; stat -c %a text.txt",
    ),
    Step::Command("true"),
    Step::Command("exit 3"),
];

async fn run_steps(spec: EnvironmentSpec, base: &Path, assets_dir: &Path) -> Vec<Observed> {
    let map =
        AssetMap::from_yaml_str("data: {path: data.txt, save_path: assets/data.txt}").unwrap();
    let assets = map.resolve(assets_dir).unwrap();
    let registry = if spec.backend_type == "api" {
        crate::support::client_registry()
    } else {
        crate::support::server_registry()
    };
    let mut session = Session::builder(spec)
        .registry(registry)
        .mode(Mode::Agent)
        .base_dir(base)
        .assets(assets)
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let root = session.workspace_path().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut observed = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        let (stdout, exit_code) = match step {
            Step::Host(change) => {
                change(&root);
                (String::new(), 0)
            }
            Step::Command(command) => {
                let resolved = session
                    .resolve_static_placeholders(&serde_json::json!(command), rt.as_ref())
                    .unwrap();
                let result = rt
                    .execute(
                        ExecCommand::new(resolved.as_str().unwrap())
                            .wall_timeout(Duration::from_secs(60)),
                    )
                    .await
                    .unwrap();
                (result.stdout_lossy().into_owned(), result.exit_code)
            }
        };
        let checkpoint = session
            .finish_checkpoint(out.path().join(format!("step{i}")))
            .await
            .unwrap();
        let files = session.get_file_contents(vec!["*".into()]).await.unwrap();
        observed.push(Observed {
            stdout,
            exit_code,
            diff: serde_json::to_value(&checkpoint.diff).unwrap(),
            manifest: serde_json::to_value(checkpoint.snapshot.manifest()).unwrap(),
            checksum: checkpoint.snapshot.checksum().to_hex(),
            files: serde_json::to_value(&files).unwrap(),
        });
    }
    session.close().await.unwrap();
    observed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_session_leaves_what_a_local_session_leaves() {
    let server = TestServer::start().await;
    let temp = tempfile::tempdir().unwrap();
    let base = temp.path().join("base");
    base_dir(&base);
    let assets_dir = temp.path().join("assets");
    std::fs::create_dir_all(&assets_dir).unwrap();
    std::fs::write(assets_dir.join("data.txt"), "asset content\n").unwrap();

    let setup = "setup:\n  commands: ['echo from setup > setup.txt']\n";
    let local =
        EnvironmentSpec::from_yaml_str(&format!("type: local\nname: same\n{setup}"), "<test>")
            .unwrap();
    let api = EnvironmentSpec::from_yaml_str(
        &format!(
            "type: api\nname: same\n{setup}api:\n  url: {}\n  remote:\n    type: local\n    name: remote\n",
            server.url()
        ),
        "<test>",
    )
    .unwrap();

    let from_local = run_steps(local, &base, &assets_dir).await;
    let from_api = run_steps(api, &base, &assets_dir).await;
    assert_eq!(from_local.len(), STEPS.len());
    for (i, (l, a)) in from_local.iter().zip(&from_api).enumerate() {
        assert_eq!(l, a, "step {i} differs between local and api");
    }
    // The steps did change things (the comparison is not of empty diffs).
    assert!(from_local[1].diff["changes"].as_array().unwrap().len() > 5);
    assert_eq!(
        from_local[0].stdout,
        "one\ntwo\nthree\nran\nasset content\n"
    );
    assert_eq!(from_local[5].exit_code, 3);
    assert!(server.remote_dirs().is_empty());
}
