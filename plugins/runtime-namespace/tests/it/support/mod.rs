//! What the tests of the namespace backend share: a registry serving it
//! through the plugin boundary in process, sessions in a temporary
//! directory, and a host-side view of a sandbox's processes.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime_namespace::NamespaceBackend;
use session_core::EnvironmentSpec;
use session_core::assets::ResolvedAssets;
use session_core::registry::Registry;
use session_core::runtime::{BackendOrigin, ExecCommand, ExecResult, Runtime};
use session_core::session::{RuntimeHandle, Session, SpawnOptions};

/// A registry whose `namespace` backend goes through the export shims and
/// the host adapter, as a loaded plugin would.
pub fn registry() -> Arc<Registry> {
    let backend = session_core::plugin::in_process::<NamespaceBackend>().expect("the shims start");
    let mut registry = Registry::empty();
    registry
        .register(backend, BackendOrigin::Plugin("<in-process>".into()))
        .unwrap();
    registry.shared()
}

/// A spec from YAML.
pub fn spec(yaml: &str) -> EnvironmentSpec {
    EnvironmentSpec::from_yaml_str(yaml, "<test>").unwrap()
}

/// A prepared session and one runtime in it, with the temporary directory
/// that holds them.
pub struct Sandbox {
    pub temp: tempfile::TempDir,
    pub session: Session,
    pub rt: RuntimeHandle,
}

impl Sandbox {
    /// The workspace on the host.
    pub fn workspace(&self) -> PathBuf {
        self.session.workspace_path().unwrap()
    }

    /// Runs `command` with a generous wall timeout.
    pub async fn run(&self, command: &str) -> ExecResult {
        run(self.rt.as_ref(), command).await
    }

    pub async fn close(self) {
        self.session.close().await.unwrap();
    }
}

/// A sandbox from a spec in YAML (`type: namespace` is added).
pub async fn sandbox(yaml_fields: &str) -> Sandbox {
    sandbox_with(
        yaml_fields,
        ResolvedAssets::default(),
        SpawnOptions::default(),
    )
    .await
}

/// A sandbox with assets and spawn options.
pub async fn sandbox_with(
    yaml_fields: &str,
    assets: ResolvedAssets,
    options: SpawnOptions,
) -> Sandbox {
    let temp = tempfile::tempdir().unwrap();
    let yaml = format!("{{type: namespace, name: test, {yaml_fields}}}");
    let mut session = Session::builder(spec(&yaml))
        .registry(registry())
        .assets(assets)
        .temp_root(temp.path().join("sessions"))
        .prepare()
        .await
        .unwrap();
    let rt = match session.spawn(options).await {
        Ok(rt) => rt,
        Err(err) => panic!("spawn failed: {err}"),
    };
    Sandbox { temp, session, rt }
}

/// Runs `command` with a generous wall timeout.
pub async fn run(rt: &dyn Runtime, command: &str) -> ExecResult {
    rt.execute(ExecCommand::new(command).wall_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
}

/// Runs `command` and insists that it succeeds; returns its stdout.
pub async fn stdout_of(rt: &dyn Runtime, command: &str) -> String {
    let result = run(rt, command).await;
    assert!(
        result.success(),
        "`{command}` failed: {:?} {}\nstdout: {}\nstderr: {}",
        result.status,
        result.exit_code,
        result.stdout_lossy(),
        result.stderr_lossy()
    );
    result.stdout_lossy().into_owned()
}

/// The namespace a host process is in, as `readlink /proc/PID/ns/KIND`
/// says (`pid:[4026532555]`).
pub fn namespace_of(pid: &str, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
}

/// Host pids of the live processes in pid namespace `ns` (`pid:[…]`), seen
/// from the host's /proc. A zombie is not live: it runs nothing and holds
/// nothing, and waits only for its parent (for a killed sandbox's init, the
/// host's init) to reap it.
pub fn processes_in(ns: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        if namespace_of(&name, "pid").as_deref() == Some(ns) && !is_zombie(&name) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether the process is dead and waits to be reaped (or is gone).
fn is_zombie(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which ends at the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('Z' | 'X') | None)
}

/// Waits (up to 10 s) until no process is left in pid namespace `ns`;
/// returns those still there at the end.
pub fn wait_until_empty(ns: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_in(ns);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 30 s) for a file to exist and hold a line, and returns it.
pub fn wait_for_line(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
