//! The "no leftovers" check run after the test suite: berth-labelled
//! containers, berth temporary directories, berth cgroups and stray
//! processes created during the run must all be gone.
//!
//! Only what appeared after the run started counts, so a machine that has
//! other berth activity (or debris from an earlier run) does not fail CI
//! for something this run did not leave.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Everything left behind since `since`, one line each.
pub(crate) fn find(since: SystemTime) -> Vec<String> {
    let mut found = Vec::new();
    let temp = std::env::temp_dir();
    let berth_dirs: Vec<PathBuf> = std::fs::read_dir(&temp)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("berth-"))
                // A lock file (the test image's build lock) lives as long as
                // what it guards; it is not a session's debris.
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    for dir in &berth_dirs {
        if born_after(dir, since) {
            found.push(format!("temporary directory {}", dir.display()));
        }
    }
    for pid in stray_processes(&berth_dirs) {
        found.push(format!("process {pid} still runs in a berth workspace"));
    }
    found.extend(containers(since));
    for cgroup in cgroups(since) {
        found.push(format!("cgroup {}", cgroup.display()));
    }
    found
}

/// Command cgroups (`berth-*`) made since `since` under berth's cgroup
/// bases (`berth`, and the tests' own `berth-test-*` bases), in every
/// cgroup hierarchy mounted under /sys/fs/cgroup. berth puts its bases
/// below the cgroup it runs in, so each hierarchy is searched a few levels
/// deep, breadth first.
fn cgroups(since: SystemTime) -> Vec<PathBuf> {
    const MAX_DEPTH: usize = 16;
    let root = Path::new("/sys/fs/cgroup");
    // The cgroup v2 root itself, or each v1 controller or the hybrid
    // unified hierarchy below it (symlinks such as `cpu` -> `cpu,cpuacct`
    // left out).
    let hierarchies: Vec<PathBuf> = if root.join("cgroup.procs").exists() {
        vec![root.to_path_buf()]
    } else {
        std::fs::read_dir(root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for hierarchy in hierarchies {
        let mut queue = std::collections::VecDeque::from([(hierarchy, 0)]);
        while let Some((dir, depth)) = queue.pop_front() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for base in entries.flatten() {
                if !base.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = base.file_name().to_string_lossy().into_owned();
                if name != "berth" && !name.starts_with("berth-test-") {
                    if depth < MAX_DEPTH {
                        queue.push_back((base.path(), depth + 1));
                    }
                    continue;
                }
                if name.starts_with("berth-test-") && born_after(&base.path(), since) {
                    found.push(base.path());
                    continue;
                }
                let Ok(children) = std::fs::read_dir(base.path()) else {
                    continue;
                };
                found.extend(
                    children
                        .flatten()
                        .filter(|c| c.file_name().to_string_lossy().starts_with("berth-"))
                        .map(|c| c.path())
                        .filter(|path| path.is_dir() && born_after(path, since)),
                );
            }
        }
    }
    found
}

fn born_after(path: &Path, since: SystemTime) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .is_ok_and(|t| t >= since)
}

/// Processes whose working directory is inside a berth session directory
/// (or one that was deleted under them).
fn stray_processes(berth_dirs: &[PathBuf]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let dead = status
                .lines()
                .any(|l| l.starts_with("State:") && (l.contains("Z (") || l.contains("X (")));
            if dead {
                return false;
            }
            let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
                return false;
            };
            let text = cwd.to_string_lossy();
            berth_dirs.iter().any(|d| cwd.starts_with(d))
                || (text.contains("/berth-") && text.ends_with(" (deleted)"))
        })
        .collect()
}

/// berth-labelled containers created since `since`, when a Docker engine
/// is reachable.
fn containers(since: SystemTime) -> Vec<String> {
    let Ok(output) = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=berth.session",
            "--format",
            "{{.ID}} {{.CreatedAt}} {{.Names}}",
        ])
        .output()
    else {
        return Vec::new();
    };
    if !output.status.success() {
        return Vec::new();
    }
    let since_unix = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            let id = line.split_whitespace().next().unwrap_or_default();
            created_unix(id).is_none_or(|created| created >= since_unix)
        })
        .map(|line| format!("container {line}"))
        .collect()
}

fn created_unix(id: &str) -> Option<u64> {
    let output = Command::new("docker")
        .args(["inspect", "--format", "{{.Created}}", id])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let date = Command::new("date")
        .args(["-d", text.trim(), "+%s"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&date.stdout).trim().parse().ok()
}
