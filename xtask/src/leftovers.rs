//! The "no leftovers" check run after the test suite: berth-labelled
//! containers, berth temporary directories, berth cgroups and stray
//! processes created during the run must all be gone.
//!
//! Only what this run made counts, so a machine where berth is used for
//! something else at the same time (or holds debris from an earlier run)
//! does not fail the run: the run's tests create their temporary
//! directories in a private temporary root (`TMPDIR`), which is all that
//! is looked at for directories and processes; containers and cgroups
//! count when they appeared after the run started and belong to no live
//! process outside it (a container whose workspace lies in another
//! temporary directory is another berth's).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Everything this run left behind since `since`, one line each; `root`
/// is the run's private temporary root.
pub(crate) fn find(since: SystemTime, root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let berth_dirs = berth_entries(root);
    for dir in &berth_dirs {
        found.push(format!("temporary directory {}", dir.display()));
    }
    for pid in stray_processes(root, &berth_dirs) {
        found.push(format!("process {pid} still runs in a berth workspace"));
    }
    found.extend(containers(since, root));
    for cgroup in cgroups(since) {
        found.push(format!("cgroup {}", cgroup.display()));
    }
    found
}

/// The `berth-*` entries of `root`.
fn berth_entries(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
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
        .unwrap_or_default()
}

/// Whether `pid` is a live process that is not this process nor one of its
/// descendants: what such a process owns is not this run's.
fn live_outsider(pid: u32) -> bool {
    let me = std::process::id();
    let mut current = pid;
    for _ in 0..64 {
        if current == me {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{current}/stat")) else {
            // The owner itself is gone: a dead owner is no outsider. (An
            // ancestor that vanished while this looked left a process that
            // now has another parent, asked on the next look.)
            return current != pid;
        };
        // The parent pid is the second field after the command's `)`.
        let Some(parent) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            return true;
        };
        if parent <= 1 {
            return true;
        }
        current = parent;
    }
    true
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
                if name.starts_with("berth-test-") {
                    // `berth-test-<pid>-<n>`: a test process's own base.
                    let owner = name
                        .strip_prefix("berth-test-")
                        .and_then(|rest| rest.split('-').next())
                        .and_then(|pid| pid.parse().ok());
                    if born_after(&base.path(), since) && !owner.is_some_and(live_outsider) {
                        found.push(base.path());
                    }
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
                        .filter(|path| path.is_dir() && born_after(path, since))
                        .filter(|path| !cgroup_owner(path).is_some_and(live_outsider)),
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

/// The owner pid a command cgroup's name records
/// (`berth-<pid namespace>-<pid>-<start time>-<seq>…`).
fn cgroup_owner(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("berth-")?.split('-').nth(1)?.parse().ok()
}

/// Processes whose working directory is inside one of this run's berth
/// directories (or one that was deleted under them, in `root`).
fn stray_processes(root: &Path, berth_dirs: &[PathBuf]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let root_text = root.to_string_lossy().into_owned();
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
                || (text.starts_with(&root_text)
                    && text.contains("/berth-")
                    && text.ends_with(" (deleted)"))
        })
        .collect()
}

/// berth-labelled containers created since `since` that are this run's,
/// when a Docker Engine is reachable: one whose workspace lies in `root`,
/// or that binds no berth directory elsewhere and whose owner is not a
/// live process outside this run.
fn containers(since: SystemTime, root: &Path) -> Vec<String> {
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
            created_unix(id).is_none_or(|created| created >= since_unix) && ours(id, root)
        })
        .map(|line| format!("container {line}"))
        .collect()
}

/// Whether the container `id` is this run's (see [`containers`]).
fn ours(id: &str, root: &Path) -> bool {
    let Ok(output) = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{index .Config.Labels \"berth.owner_pid\"}} {{range .Mounts}}{{.Source}} {{end}}",
            id,
        ])
        .output()
    else {
        return true;
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut words = text.split_whitespace();
    let owner = words.next().and_then(|pid| pid.parse::<u32>().ok());
    let sources: Vec<&str> = words.collect();
    if sources.iter().any(|s| Path::new(s).starts_with(root)) {
        return true;
    }
    if sources.iter().any(|s| s.contains("/berth-")) {
        return false;
    }
    !owner.is_some_and(live_outsider)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runs_own_root_is_looked_at_for_directories() {
        let shared = tempfile::tempdir().unwrap();
        let private = tempfile::tempdir().unwrap();
        // Another berth's session directory in the shared temporary
        // directory, made during the run, with a process in it: not this
        // run's.
        let elsewhere = shared.path().join("berth-elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let mut outsider = Command::new("sleep")
            .arg("30")
            .current_dir(&elsewhere)
            .spawn()
            .unwrap();
        assert!(berth_entries(private.path()).is_empty());
        let strays = stray_processes(private.path(), &berth_entries(private.path()));
        assert!(!strays.contains(&outsider.id()), "{strays:?}");
        // One in the run's own root is, with the process working in it.
        let ours = private.path().join("berth-ours");
        std::fs::create_dir(&ours).unwrap();
        std::fs::write(private.path().join("berth-test-image.lock"), "").unwrap();
        std::fs::create_dir(private.path().join(".tmp-other")).unwrap();
        let mut stray = Command::new("sleep")
            .arg("30")
            .current_dir(&ours)
            .spawn()
            .unwrap();
        let found = berth_entries(private.path());
        assert_eq!(found, [ours]);
        let strays = stray_processes(private.path(), &found);
        assert!(strays.contains(&stray.id()), "{strays:?}");
        assert!(!strays.contains(&outsider.id()), "{strays:?}");
        for child in [&mut outsider, &mut stray] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn a_live_process_outside_the_run_owns_what_it_made() {
        // This process and its children are the run's.
        assert!(!live_outsider(std::process::id()));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(!live_outsider(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        // A dead owner is no outsider: what it left counts.
        assert!(!live_outsider(child.id()));
        // pid 1 is alive and nobody's descendant.
        assert!(live_outsider(1));
    }

    #[test]
    fn cgroup_names_give_their_owner() {
        assert_eq!(
            cgroup_owner(Path::new(
                "/sys/fs/cgroup/berth/berth-4026531836-1234-98765-0"
            )),
            Some(1234)
        );
        assert_eq!(
            cgroup_owner(Path::new("/x/berth-4026531836-77-1-3-run-python")),
            Some(77)
        );
        assert_eq!(cgroup_owner(Path::new("/x/other")), None);
    }
}
