//! Command cgroups on this host's real hierarchies: limits that hold as
//! root (a fork bomb, tmpfs pages, CPU quota), joining between fork and
//! exec, killing what `setsid`s and double-forks, removal and garbage
//! collection; command cgroups nested in the cgroup berth runs in, whose
//! limits keep binding them. Each test makes its cgroups under a base of
//! its own and removes them, also when it fails; a test that moves this
//! process into a cgroup of its own moves it back. A test whose hierarchy
//! or privilege is missing here says `skipped:` and why.

#![allow(clippy::print_stderr, reason = "a skipped test says why")]

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use runtime_local::cgroup::{
    CGROUP_KIND, CgroupError, CgroupHost, CgroupLimits, CommandCgroup, DetectOptions, Hierarchy,
    Owner, V2_HOST_LEAF,
};

/// A host detected with a base directory of the test's own, whose empty
/// base directories are removed when the test ends.
struct TestHost {
    host: CgroupHost,
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Err(err) = self.host.remove_bases() {
            eprintln!("cannot remove test cgroup bases: {err}");
        }
    }
}

impl std::ops::Deref for TestHost {
    type Target = CgroupHost;
    fn deref(&self) -> &CgroupHost {
        &self.host
    }
}

fn unique_base() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "berth-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A host using the hierarchies `options` selects, or `None` (after saying
/// why) when this process is not root or `needs` cannot be enforced.
fn host(test: &str, options: &DetectOptions, needs: &CgroupLimits) -> Option<TestHost> {
    if !is_root() {
        runtime_conformance::skipped!("{test} makes cgroups as root and this process is not root");
        return None;
    }
    let host = TestHost {
        host: CgroupHost::detect(DetectOptions {
            base_name: unique_base(),
            ..options.clone()
        }),
    };
    if let Err(err) = host.check(needs) {
        runtime_conformance::skipped!("{test}: {err}");
        return None;
    }
    if let Err(err) = host.create(&CgroupLimits::default(), "probe") {
        runtime_conformance::skipped!("{test}: {err}");
        return None;
    }
    Some(host)
}

fn v1_only() -> DetectOptions {
    DetectOptions {
        use_v2: false,
        ..DetectOptions::default()
    }
}

fn v2_only() -> DetectOptions {
    DetectOptions {
        use_v1: false,
        ..DetectOptions::default()
    }
}

/// Starts `sh -c script` in `cgroup`, joined through a `pre_exec` hook.
fn spawn_in(cgroup: &CommandCgroup, script: &str) -> Child {
    let join = cgroup.joiner();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: join() only writes to descriptors opened before the fork.
    unsafe {
        command.pre_exec(move || join.join());
    }
    command.spawn().unwrap()
}

/// Starts processes that leave the shell's process group and session
/// (`setsid`, a double fork, `nohup`) and returns their pids once the shell
/// has exited.
fn start_escapees(cgroup: &CommandCgroup) -> Vec<u32> {
    let child = spawn_in(
        cgroup,
        "setsid sleep 1000 >/dev/null 2>&1 & echo $!
         (sleep 1000 >/dev/null 2>&1 & echo $!)
         nohup sleep 1000 >/dev/null 2>&1 & echo $!",
    );
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let pids: Vec<u32> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    pids
}

/// Whether `pid` is gone or a zombie waiting for its (new) parent.
fn dead(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn dirs(cgroup: &CommandCgroup) -> Vec<PathBuf> {
    cgroup.dirs().map(Path::to_path_buf).collect()
}

/// The directory of `cgroup` that has `file`.
fn dir_with(cgroup: &CommandCgroup, file: &str) -> PathBuf {
    cgroup
        .dirs()
        .find(|dir| dir.join(file).exists())
        .unwrap_or_else(|| panic!("no directory of {:?} has {file}", dirs(cgroup)))
        .to_path_buf()
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let limits = CgroupLimits {
        pids: Some(16),
        ..CgroupLimits::default()
    };
    let Some(host) = host("pids_limit_stops_a_fork_bomb", &v1_only(), &limits) else {
        return;
    };
    let cgroup = host.create(&limits, "forkbomb").unwrap();
    let pids_dir = dir_with(&cgroup, "pids.max");
    assert_eq!(
        fs::read_to_string(pids_dir.join("pids.max"))
            .unwrap()
            .trim(),
        "16"
    );

    let child = spawn_in(
        &cgroup,
        "i=0; while [ $i -lt 64 ]; do sleep 1000 >/dev/null 2>&1 & echo $!; i=$((i+1)); done
         echo all started",
    );
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stdout.contains("all started"), "{stdout}");
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr.to_lowercase().contains("fork"), "{stderr}");
    let started = stdout.lines().count();
    assert!((1..16).contains(&started), "{started} sleeps started");

    let members = cgroup.members().unwrap();
    assert!(members.len() <= 16, "{} processes", members.len());
    assert_eq!(members.len(), started, "the sleeps stay in the cgroup");
    let current: u64 = fs::read_to_string(pids_dir.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 16, "pids.current = {current}");

    let events = cgroup.limit_events().unwrap();
    assert!(events.pids_limit_hit(), "{events:?}");
    assert!(!events.oom_killed(), "{events:?}");
    let explanation = events.explanation().unwrap();
    assert!(explanation.contains("limits.pids (16)"), "{explanation}");

    cgroup.kill_all().unwrap();
    assert!(cgroup.is_empty().unwrap());
    let made = dirs(&cgroup);
    cgroup.remove().unwrap();
    assert!(made.iter().all(|dir| !dir.exists()), "{made:?}");
}

#[test]
fn memory_limit_counts_tmpfs_pages_and_reports_the_oom_kill() {
    let limits = CgroupLimits {
        memory: Some(64 << 20),
        ..CgroupLimits::default()
    };
    let test = "memory_limit_counts_tmpfs_pages_and_reports_the_oom_kill";
    let Some(host) = host(test, &DetectOptions::default(), &limits) else {
        return;
    };
    if !Path::new("/usr/bin/unshare").exists() && !Path::new("/bin/unshare").exists() {
        runtime_conformance::skipped!("{test} needs util-linux `unshare` for a private tmpfs");
        return;
    }
    let cgroup = host.create(&limits, "tmpfs").unwrap();
    let mount_point = tempfile::tempdir().unwrap();
    // A private tmpfs in a mount namespace of the command's own: it goes
    // away with the command, whatever happens to the test.
    let script = format!(
        "exec unshare -m sh -c 'mount -t tmpfs -o size=512m berth-test \"$0\" || exit 99
         dd if=/dev/zero of=\"$0/fill\" bs=1M count=200 2>/dev/null
         echo dd=$?' '{}'",
        mount_point.path().display()
    );
    let output = spawn_in(&cgroup, &script).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_ne!(output.status.code(), Some(99), "{output:?}");
    assert!(
        !stdout.contains("dd=0"),
        "200 MB went into tmpfs under a 64 MB limit: {output:?}"
    );

    let events = cgroup.limit_events().unwrap();
    assert!(events.memory_limit_hit(), "{events:?}");
    assert!(events.oom_killed(), "{events:?} {output:?}");
    let explanation = events.explanation().unwrap();
    assert!(
        explanation.contains("out-of-memory killer") && explanation.contains("limits.memory"),
        "{explanation}"
    );
    let made = dirs(&cgroup);
    cgroup.remove().unwrap();
    assert!(made.iter().all(|dir| !dir.exists()), "{made:?}");
}

#[test]
fn memory_limit_files_are_written() {
    let limits = CgroupLimits {
        memory: Some(64 << 20),
        ..CgroupLimits::default()
    };
    let Some(host) = host("memory_limit_files_are_written", &v1_only(), &limits) else {
        return;
    };
    let cgroup = host.create(&limits, "memfiles").unwrap();
    let dir = dir_with(&cgroup, "memory.limit_in_bytes");
    let read = |file: &str| {
        fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(read("memory.limit_in_bytes"), (64u64 << 20).to_string());
    if dir.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            read("memory.memsw.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
    }
}

#[test]
fn cpu_limit_values_are_written() {
    let limits = CgroupLimits {
        cpus: Some(0.5),
        ..CgroupLimits::default()
    };
    let Some(host) = host("cpu_limit_values_are_written", &v1_only(), &limits) else {
        return;
    };
    let cgroup = host.create(&limits, "cpu").unwrap();
    let dir = dir_with(&cgroup, "cpu.cfs_quota_us");
    let read = |file: &str| {
        fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(read("cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu.cfs_quota_us"), "50000");
    // The limit holds for a process in it: a busy loop is throttled.
    let mut child = spawn_in(&cgroup, "while :; do :; done");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut throttled = 0;
    while throttled == 0 && std::time::Instant::now() < deadline {
        let stat = fs::read_to_string(dir.join("cpu.stat")).unwrap();
        throttled = stat
            .lines()
            .find_map(|line| line.strip_prefix("nr_throttled "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        std::thread::yield_now();
    }
    cgroup.kill_all().unwrap();
    child.wait().unwrap();
    assert!(throttled > 0, "a busy loop at 0.5 CPU was never throttled");
}

#[test]
fn join_writes_zero_and_the_child_is_in_every_directory() {
    let limits = CgroupLimits {
        pids: Some(64),
        memory: Some(256 << 20),
        cpus: Some(1.0),
    };
    let Some(host) = host(
        "join_writes_zero_and_the_child_is_in_every_directory",
        &DetectOptions::default(),
        &limits,
    ) else {
        return;
    };
    let cgroup = host.create(&limits, "join").unwrap();
    let mut child = spawn_in(&cgroup, "exec cat");
    let pid = child.id();
    let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for dir in cgroup.dirs() {
        let relative = format!("/{}/{}", host_base_name(dir), cgroup.name());
        assert!(
            membership.lines().any(|line| line.ends_with(&relative)),
            "{pid} is not in {}: {membership}",
            dir.display()
        );
    }
    assert_eq!(cgroup.members().unwrap(), [pid]);
    drop(child.stdin.take());
    child.wait().unwrap();
    assert!(cgroup.is_empty().unwrap());
}

/// The base directory's name of a command cgroup directory.
fn host_base_name(dir: &Path) -> String {
    dir.parent()
        .and_then(Path::file_name)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn kill_all_empties(test: &str, options: &DetectOptions, method: &str) {
    let Some(host) = host(test, options, &CgroupLimits::default()) else {
        return;
    };
    let cgroup = host.create(&CgroupLimits::default(), "escape").unwrap();
    assert!(
        cgroup.kill_method().contains(method),
        "{}",
        cgroup.kill_method()
    );
    let pids = start_escapees(&cgroup);
    let members = cgroup.members().unwrap();
    for pid in &pids {
        assert!(members.contains(pid), "{pid} not in {members:?}");
    }
    cgroup.kill_all().unwrap();
    assert!(cgroup.is_empty().unwrap());
    for pid in pids {
        assert!(dead(pid), "{pid} survived");
    }
    let made = dirs(&cgroup);
    cgroup.remove().unwrap();
    assert!(made.iter().all(|dir| !dir.exists()), "{made:?}");
}

#[test]
fn kill_all_with_the_v1_freezer_empties_setsid_and_double_forked_processes() {
    kill_all_empties(
        "kill_all_with_the_v1_freezer_empties_setsid_and_double_forked_processes",
        &v1_only(),
        "freeze",
    );
}

#[test]
fn kill_all_with_cgroup_kill_empties_setsid_and_double_forked_processes() {
    kill_all_empties(
        "kill_all_with_cgroup_kill_empties_setsid_and_double_forked_processes",
        &v2_only(),
        "cgroup.kill",
    );
}

/// Forks a helper that calls `kill_in_child` (after joining the cgroup
/// itself when `join_first`) and returns its exit status.
fn kill_from_forked_helper(cgroup: &CommandCgroup, join_first: bool) -> i32 {
    let join = cgroup.joiner();
    // SAFETY: the child only calls async-signal-safe functions (through
    // join() and kill_in_child()) and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        if join_first && join.join().is_err() {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(3) };
        }
        let code = if join.kill_in_child().is_ok() { 0 } else { 1 };
        // SAFETY: as above.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "helper died: {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn kill_in_child_from_a_forked_helper_empties_the_cgroup() {
    for (options, label) in [(v1_only(), "v1"), (DetectOptions::default(), "default")] {
        let test = format!("kill_in_child_from_a_forked_helper_empties_the_cgroup ({label})");
        let Some(host) = host(&test, &options, &CgroupLimits::default()) else {
            continue;
        };
        let cgroup = host.create(&CgroupLimits::default(), "keeper").unwrap();
        let pids = start_escapees(&cgroup);
        assert_eq!(kill_from_forked_helper(&cgroup, false), 0, "{label}");
        assert!(cgroup.is_empty().unwrap(), "{label}");
        assert!(pids.iter().all(|&pid| dead(pid)), "{label}");
    }
}

#[test]
fn kill_in_child_spares_a_helper_that_is_a_member() {
    for (options, label) in [(v1_only(), "v1"), (DetectOptions::default(), "default")] {
        let test = format!("kill_in_child_spares_a_helper_that_is_a_member ({label})");
        let Some(host) = host(&test, &options, &CgroupLimits::default()) else {
            continue;
        };
        let cgroup = host.create(&CgroupLimits::default(), "member").unwrap();
        let pids = start_escapees(&cgroup);
        // Neither frozen nor killed by cgroup.kill: it exits 0 itself.
        assert_eq!(kill_from_forked_helper(&cgroup, true), 0, "{label}");
        assert!(cgroup.is_empty().unwrap(), "{label}");
        assert!(pids.iter().all(|&pid| dead(pid)), "{label}");
    }
}

#[test]
fn remove_kills_what_is_left_and_leaves_no_directory() {
    let limits = CgroupLimits {
        pids: Some(32),
        memory: Some(128 << 20),
        cpus: Some(0.25),
    };
    let Some(host) = host(
        "remove_kills_what_is_left_and_leaves_no_directory",
        &DetectOptions::default(),
        &limits,
    ) else {
        return;
    };
    let cgroup = host.create(&limits, "remove").unwrap();
    let made = dirs(&cgroup);
    assert!(made.len() >= 3, "{made:?}");
    let pids = start_escapees(&cgroup);
    // A cgroup a member made inside its own (root may).
    let nested = made[0].join("nested");
    fs::create_dir(&nested).unwrap();
    cgroup.remove().unwrap();
    assert!(made.iter().all(|dir| !dir.exists()), "{made:?}");
    assert!(pids.iter().all(|&pid| dead(pid)));

    // Dropping removes too.
    let dropped = host.create(&limits, "drop").unwrap();
    let made = dirs(&dropped);
    start_escapees(&dropped);
    drop(dropped);
    assert!(made.iter().all(|dir| !dir.exists()), "{made:?}");
}

#[test]
fn a_base_goes_with_its_last_command_cgroup_and_comes_back_when_needed() {
    let limits = CgroupLimits {
        pids: Some(64),
        ..CgroupLimits::default()
    };
    let Some(host) = host(
        "a_base_goes_with_its_last_command_cgroup_and_comes_back_when_needed",
        &DetectOptions::default(),
        &limits,
    ) else {
        return;
    };
    let first = host.create(&limits, "first").unwrap();
    let second = host.create(&limits, "second").unwrap();
    let bases: Vec<PathBuf> = first
        .dirs()
        .map(|dir| dir.parent().unwrap().to_path_buf())
        .collect();
    assert!(!bases.is_empty());
    first.remove().unwrap();
    assert!(bases.iter().all(|base| base.is_dir()), "second is in them");
    second.remove().unwrap();
    assert!(
        bases.iter().all(|base| !base.exists()),
        "nothing of berth's is left in the cgroup it runs in: {bases:?}"
    );

    // Commands made and removed at once on several threads: a base one
    // removal takes away is made again for the next command.
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let host = &host;
            let limits = &limits;
            scope.spawn(move || {
                for round in 0..50 {
                    let cgroup = host
                        .create(limits, "race")
                        .unwrap_or_else(|err| panic!("thread {thread}, round {round}: {err}"));
                    assert!(cgroup.dirs().all(Path::is_dir));
                    cgroup.remove().unwrap();
                }
            });
        }
    });
    assert!(bases.iter().all(|base| !base.exists()), "{bases:?}");
}

#[test]
fn collect_garbage_removes_only_a_dead_owners_cgroup() {
    let Some(host) = host(
        "collect_garbage_removes_only_a_dead_owners_cgroup",
        &DetectOptions::default(),
        &CgroupLimits::default(),
    ) else {
        return;
    };
    let mut owner_process = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
    let owner = Owner::of_pid(owner_process.id()).unwrap();
    let orphan = host
        .create_owned_by(&owner, &CgroupLimits::default(), "orphan")
        .unwrap();
    let orphan_dirs = dirs(&orphan);
    let orphan_pids = start_escapees(&orphan);
    let live = host.create(&CgroupLimits::default(), "live").unwrap();
    let live_pids = start_escapees(&live);

    assert!(
        host.collect_garbage(false).unwrap().is_empty(),
        "nothing is garbage while its owner lives"
    );
    drop(owner_process.stdin.take());
    owner_process.wait().unwrap();

    let listed = host.collect_garbage(true).unwrap();
    assert_eq!(listed.len(), orphan_dirs.len(), "{listed:?}");
    for leftover in &listed {
        assert_eq!(leftover.kind, CGROUP_KIND);
        assert!(!leftover.removed);
        assert!(
            leftover.reason.contains(&owner.pid.to_string()),
            "{leftover:?}"
        );
        assert!(
            orphan_dirs
                .iter()
                .any(|dir| dir.display().to_string() == leftover.id)
        );
    }
    assert!(
        orphan_dirs.iter().all(|dir| dir.exists()),
        "a dry run removes nothing"
    );

    let removed = host.collect_garbage(false).unwrap();
    assert_eq!(removed.len(), orphan_dirs.len(), "{removed:?}");
    assert!(
        removed.iter().all(|leftover| leftover.removed),
        "{removed:?}"
    );
    assert!(orphan_dirs.iter().all(|dir| !dir.exists()));
    assert!(orphan_pids.iter().all(|&pid| dead(pid)));

    assert!(live.dirs().all(Path::exists));
    assert!(live_pids.iter().all(|&pid| !dead(pid)));
    drop(orphan);
    live.remove().unwrap();
    assert!(live_pids.iter().all(|&pid| dead(pid)));
}

#[test]
fn empty_v2_hierarchy_refuses_limits_but_joins_kills_and_removes() {
    let test = "empty_v2_hierarchy_refuses_limits_but_joins_kills_and_removes";
    let Some(host) = host(test, &v2_only(), &CgroupLimits::default()) else {
        return;
    };
    for (limits, name) in [
        (
            CgroupLimits {
                pids: Some(16),
                ..CgroupLimits::default()
            },
            "limits.pids",
        ),
        (
            CgroupLimits {
                memory: Some(1 << 30),
                ..CgroupLimits::default()
            },
            "limits.memory",
        ),
        (
            CgroupLimits {
                cpus: Some(1.0),
                ..CgroupLimits::default()
            },
            "limits.cpus",
        ),
    ] {
        match host.check(&limits) {
            Ok(()) => {
                eprintln!(
                    "skipped: {test}: this cgroup v2 hierarchy offers controllers, so it is \
                     not the empty one this test is about"
                );
                return;
            }
            Err(CgroupError::Unenforceable { limit, reason }) => {
                assert_eq!(limit, name);
                assert!(reason.contains("cgroup.controllers"), "{reason}");
                let err = host.create(&limits, "refused").unwrap_err();
                assert!(
                    err.to_string().contains(name),
                    "create refuses as check does: {err}"
                );
            }
            Err(err) => panic!("{err}"),
        }
    }
    let cgroup = host.create(&CgroupLimits::default(), "v2").unwrap();
    let made = dirs(&cgroup);
    assert_eq!(made.len(), 1, "{made:?}");
    let mut child = spawn_in(&cgroup, "exec cat");
    let membership = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let expected = format!("0::/{}/{}", host_base_name(&made[0]), cgroup.name());
    assert!(
        membership.lines().any(|line| line.ends_with(&expected)),
        "{membership}"
    );
    let pids = start_escapees(&cgroup);
    cgroup.kill_all().unwrap();
    assert!(cgroup.is_empty().unwrap());
    assert!(pids.iter().all(|&pid| dead(pid)));
    child.wait().unwrap();
    cgroup.remove().unwrap();
    assert!(!made[0].exists());
}

/// Puts this process back into the cgroup v2 cgroup it came from and
/// removes the test's own cgroup, also when the test fails.
struct OwnCgroup {
    original: PathBuf,
    own: PathBuf,
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        if let Err(err) = fs::write(self.original.join("cgroup.procs"), &pid) {
            eprintln!("cannot move back to {}: {err}", self.original.display());
        }
        for dir in [self.own.join(V2_HOST_LEAF), self.own.clone()] {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The cgroup v2 mount point and this process's cgroup in it.
fn v2_mount_and_own() -> Option<(PathBuf, PathBuf)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        (right.starts_with("cgroup2 ") && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(fields[4]))
    })?;
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some((mount.clone(), mount.join(own.trim_start_matches('/'))))
}

#[test]
fn own_cgroup_placement_moves_berth_into_a_leaf_beside_its_cgroups() {
    let test = "own_cgroup_placement_moves_berth_into_a_leaf_beside_its_cgroups";
    if !is_root() {
        runtime_conformance::skipped!(
            "{test} moves this process between cgroups, which needs root"
        );
        return;
    }
    let Some((mount, original)) = v2_mount_and_own() else {
        runtime_conformance::skipped!("{test}: no cgroup v2 hierarchy mounted at its root");
        return;
    };
    let own = mount.join(unique_base());
    if let Err(err) = fs::create_dir(&own) {
        runtime_conformance::skipped!("{test}: cannot create {}: {err}", own.display());
        return;
    }
    let guard = OwnCgroup {
        original,
        own: own.clone(),
    };
    fs::write(own.join("cgroup.procs"), std::process::id().to_string()).unwrap();

    let host = TestHost {
        host: CgroupHost::detect(DetectOptions {
            base_name: unique_base(),
            ..v2_only()
        }),
    };
    assert_ne!(host.hierarchy(), Hierarchy::Absent);
    let described = host.describe();
    let placement = described
        .iter()
        .find(|line| line.check == "cgroup placement")
        .unwrap_or_else(|| panic!("{described:?}"));
    assert!(placement.detail.contains(V2_HOST_LEAF), "{placement:?}");

    let cgroup = host.create(&CgroupLimits::default(), "own").unwrap();
    let membership = fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(
        membership.contains(&format!(
            "{}/{V2_HOST_LEAF}",
            own.file_name().unwrap().to_string_lossy()
        )),
        "berth moved itself into the leaf: {membership}"
    );
    let made = dirs(&cgroup);
    assert_eq!(made[0].parent().and_then(Path::parent), Some(own.as_path()));
    let mut child = spawn_in(&cgroup, "exec cat");
    assert_eq!(cgroup.members().unwrap(), [child.id()]);
    cgroup.remove().unwrap();
    child.wait().unwrap();
    assert!(!made[0].exists());
    drop(host);
    drop(guard);
    assert!(!own.exists());
}

#[test]
fn describe_says_how_each_limit_is_enforced() {
    let host = CgroupHost::get();
    let lines = host.describe();
    let checks: Vec<&str> = lines.iter().map(|line| line.check.as_str()).collect();
    assert_eq!(
        &checks[..5],
        [
            "cgroups",
            "limits.pids",
            "limits.memory",
            "limits.cpus",
            "cgroup kill"
        ]
    );
    for line in &lines[1..4] {
        if line.ok {
            assert!(line.detail.contains("controller at"), "{line:?}");
        } else {
            assert!(line.detail.len() > 20, "a refusal says why: {line:?}");
        }
    }
    if is_root()
        && host.hierarchy() == Hierarchy::Hybrid
        && let Some((_, own)) = v1_mount_and_own("pids")
    {
        assert!(lines[1].ok, "{lines:?}");
        let base = own.join("berth");
        assert!(
            lines[1].detail.contains(&format!(
                "cgroup v1 pids controller at `{}`",
                base.display()
            )),
            "{lines:?}"
        );
        let placement = lines
            .iter()
            .find(|line| line.check == "cgroup placement")
            .unwrap_or_else(|| panic!("{lines:?}"));
        assert!(
            placement.detail.contains("below berth's own cgroup")
                && placement.detail.contains(&base.display().to_string()),
            "{placement:?}"
        );
    }
}

/// The mount point of the cgroup v1 hierarchy holding `controller`
/// (mounted at its root) and this process's cgroup in it.
fn v1_mount_and_own(controller: &str) -> Option<(PathBuf, PathBuf)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let is_it = right.next() == Some("cgroup")
            && right
                .nth(1)
                .is_some_and(|options| options.split(',').any(|o| o == controller));
        (is_it && fields.get(3) == Some(&"/")).then(|| PathBuf::from(fields[4]))
    })?;
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })?;
    Some((mount.clone(), mount.join(own.trim_start_matches('/'))))
}

/// This process, moved into a fresh cgroup `dir` of one hierarchy: moved
/// back into the cgroup it came from and `dir` removed (with the empty
/// cgroups left in it) when dropped, also when the test fails.
struct MovedInto {
    original: PathBuf,
    dir: PathBuf,
}

impl MovedInto {
    /// Makes `<mount>/<name>`, lets `prepare` write its limits, and moves
    /// this process into it.
    fn new(
        (mount, original): (PathBuf, PathBuf),
        name: &str,
        prepare: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<MovedInto> {
        let dir = mount.join(name);
        fs::create_dir(&dir)?;
        let moved = MovedInto { original, dir };
        prepare(&moved.dir)?;
        fs::write(
            moved.dir.join("cgroup.procs"),
            std::process::id().to_string(),
        )?;
        Ok(moved)
    }

    /// Moves this process back where it came from, keeping `dir`.
    fn move_back(&self) {
        if let Err(err) = fs::write(
            self.original.join("cgroup.procs"),
            std::process::id().to_string(),
        ) {
            eprintln!("cannot move back to {}: {err}", self.original.display());
        }
    }
}

impl Drop for MovedInto {
    fn drop(&mut self) {
        self.move_back();
        // Deepest first; cgroup trees made by a test are shallow.
        let mut dirs = vec![self.dir.clone()];
        let mut next = 0;
        while next < dirs.len() {
            if let Ok(entries) = fs::read_dir(&dirs[next]) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            next += 1;
        }
        for dir in dirs.iter().rev() {
            if let Err(err) = fs::remove_dir(dir) {
                eprintln!("cannot remove {}: {err}", dir.display());
            }
        }
    }
}

/// The cgroups this process is in, as `/proc/self/cgroup` lists them.
fn membership() -> String {
    fs::read_to_string("/proc/self/cgroup").unwrap()
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_owned()
}

#[test]
fn a_parents_memory_limit_binds_a_command_cgroup_with_a_larger_limit() {
    let test = "a_parents_memory_limit_binds_a_command_cgroup_with_a_larger_limit";
    if !is_root() {
        runtime_conformance::skipped!(
            "{test} moves this process between cgroups, which needs root"
        );
        return;
    }
    let Some(memory) = v1_mount_and_own("memory") else {
        runtime_conformance::skipped!("{test}: no cgroup v1 memory hierarchy mounted at its root");
        return;
    };
    if !Path::new("/usr/bin/unshare").exists() && !Path::new("/bin/unshare").exists() {
        runtime_conformance::skipped!("{test} needs util-linux `unshare` for a private tmpfs");
        return;
    }
    const PARENT_LIMIT: u64 = 64 << 20;
    const COMMAND_LIMIT: u64 = 1 << 30;
    let parent = MovedInto::new(memory, &unique_base(), |dir| {
        let limit = PARENT_LIMIT.to_string();
        fs::write(dir.join("memory.limit_in_bytes"), &limit)?;
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            fs::write(memsw, &limit)?;
        }
        Ok(())
    })
    .unwrap();
    let limits = CgroupLimits {
        memory: Some(COMMAND_LIMIT),
        ..CgroupLimits::default()
    };
    let Some(host) = host(test, &v1_only(), &limits) else {
        return;
    };
    let cgroup = host.create(&limits, "nested").unwrap();
    let dir = dir_with(&cgroup, "memory.limit_in_bytes");
    assert!(
        dir.starts_with(&parent.dir),
        "{} is not below the cgroup berth runs in, {}",
        dir.display(),
        parent.dir.display()
    );
    assert_eq!(
        read_trimmed(&dir.join("memory.limit_in_bytes")),
        COMMAND_LIMIT.to_string()
    );

    // 200 MB into a private tmpfs: the command's own limit would allow it,
    // the parent's does not. The command is the out-of-memory killer's
    // choice in the parent (oom_score_adj 1000), never this test process.
    let mount_point = tempfile::tempdir().unwrap();
    let script = format!(
        "echo 1000 > /proc/self/oom_score_adj
         exec unshare -m sh -c 'mount -t tmpfs -o size=512m berth-test \"$0\" || exit 99
         dd if=/dev/zero of=\"$0/fill\" bs=1M count=200 2>/dev/null
         echo dd=$?' '{}'",
        mount_point.path().display()
    );
    let output = spawn_in(&cgroup, &script).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_ne!(output.status.code(), Some(99), "{output:?}");
    assert!(
        !stdout.contains("dd=0"),
        "200 MB went into tmpfs under a parent limited to 64 MB: {output:?}"
    );
    // The command never held more than the parent allows, far below its
    // own limit, and the out-of-memory killer ended it.
    let peak = |dir: &Path| -> u64 {
        read_trimmed(&dir.join("memory.max_usage_in_bytes"))
            .parse()
            .unwrap()
    };
    assert!(
        peak(&dir) <= PARENT_LIMIT,
        "the command peaked at {} bytes",
        peak(&dir)
    );
    assert!(
        peak(&parent.dir) <= PARENT_LIMIT,
        "the parent peaked at {} bytes",
        peak(&parent.dir)
    );
    let events = cgroup.limit_events().unwrap();
    assert!(events.oom_killed(), "{events:?} {output:?}");
    let made = dirs(&cgroup);
    cgroup.remove().unwrap();
    assert!(made.iter().all(|dir| !dir.exists()), "{made:?}");
    drop(host);
    drop(parent);
}

#[test]
fn a_command_cpu_quota_is_cut_to_the_parents_on_cgroup_v1() {
    let test = "a_command_cpu_quota_is_cut_to_the_parents_on_cgroup_v1";
    if !is_root() {
        runtime_conformance::skipped!(
            "{test} moves this process between cgroups, which needs root"
        );
        return;
    }
    let Some(cpu) = v1_mount_and_own("cpu") else {
        runtime_conformance::skipped!("{test}: no cgroup v1 cpu hierarchy mounted at its root");
        return;
    };
    // Half a CPU, per 200 ms.
    let parent = MovedInto::new(cpu, &unique_base(), |dir| {
        fs::write(dir.join("cpu.cfs_period_us"), "200000")?;
        fs::write(dir.join("cpu.cfs_quota_us"), "100000")
    })
    .unwrap();
    let limits = CgroupLimits {
        cpus: Some(2.0),
        ..CgroupLimits::default()
    };
    let Some(host) = host(test, &v1_only(), &limits) else {
        return;
    };
    // The kernel refuses a child quota above its parent's on cgroup v1:
    // berth asks for what the parent allows.
    let cgroup = host.create(&limits, "cpucut").unwrap();
    let dir = dir_with(&cgroup, "cpu.cfs_quota_us");
    assert!(dir.starts_with(&parent.dir), "{}", dir.display());
    assert_eq!(read_trimmed(&dir.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trimmed(&dir.join("cpu.cfs_quota_us")), "50000");
    let smaller = host
        .create(
            &CgroupLimits {
                cpus: Some(0.25),
                ..CgroupLimits::default()
            },
            "cpukept",
        )
        .unwrap();
    let smaller_dir = dir_with(&smaller, "cpu.cfs_quota_us");
    assert_eq!(read_trimmed(&smaller_dir.join("cpu.cfs_quota_us")), "25000");
    cgroup.remove().unwrap();
    smaller.remove().unwrap();
    drop(host);
    drop(parent);
}

#[test]
fn gc_from_another_cgroup_removes_a_dead_owners_nested_cgroup() {
    let test = "gc_from_another_cgroup_removes_a_dead_owners_nested_cgroup";
    if !is_root() {
        runtime_conformance::skipped!(
            "{test} moves this process between cgroups, which needs root"
        );
        return;
    }
    let Some(memory) = v1_mount_and_own("memory") else {
        runtime_conformance::skipped!("{test}: no cgroup v1 memory hierarchy mounted at its root");
        return;
    };
    let parent = MovedInto::new(memory, &unique_base(), |_| Ok(())).unwrap();
    let base_name = unique_base();
    let limits = CgroupLimits {
        memory: Some(256 << 20),
        ..CgroupLimits::default()
    };
    let inside = TestHost {
        host: CgroupHost::detect(DetectOptions {
            base_name: base_name.clone(),
            ..DetectOptions::default()
        }),
    };
    if let Err(err) = inside.check(&limits) {
        runtime_conformance::skipped!("{test}: {err}");
        return;
    }
    let mut owner_process = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
    let owner = Owner::of_pid(owner_process.id()).unwrap();
    let orphan = inside.create_owned_by(&owner, &limits, "orphan").unwrap();
    let orphan_dirs = dirs(&orphan);
    assert!(
        orphan_dirs.iter().any(|dir| dir.starts_with(&parent.dir)),
        "{orphan_dirs:?}"
    );
    let orphan_pids = start_escapees(&orphan);

    // A berth in another cgroup, with a base elsewhere.
    parent.move_back();
    assert!(
        !membership().contains(&*parent.dir.file_name().unwrap().to_string_lossy()),
        "{}",
        membership()
    );
    let outside = TestHost {
        host: CgroupHost::detect(DetectOptions {
            base_name,
            ..DetectOptions::default()
        }),
    };
    assert!(
        outside
            .base_dirs()
            .iter()
            .all(|base| !base.starts_with(&parent.dir)),
        "{:?}",
        outside.base_dirs()
    );
    assert!(
        outside.collect_garbage(true).unwrap().is_empty(),
        "nothing is garbage while its owner lives"
    );
    drop(owner_process.stdin.take());
    owner_process.wait().unwrap();

    let listed = outside.collect_garbage(true).unwrap();
    let mut listed_ids: Vec<String> = listed.iter().map(|l| l.id.clone()).collect();
    let mut expected: Vec<String> = orphan_dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    listed_ids.sort();
    expected.sort();
    assert_eq!(listed_ids, expected, "{listed:?}");
    assert!(listed.iter().all(|l| !l.removed && l.kind == CGROUP_KIND));
    assert!(orphan_dirs.iter().all(|dir| dir.exists()));

    let removed = outside.collect_garbage(false).unwrap();
    assert_eq!(removed.len(), orphan_dirs.len(), "{removed:?}");
    assert!(removed.iter().all(|l| l.removed), "{removed:?}");
    assert!(orphan_dirs.iter().all(|dir| !dir.exists()));
    assert!(orphan_pids.iter().all(|&pid| dead(pid)));
    drop(orphan);
    drop(outside);
    drop(inside);
    drop(parent);
}

#[test]
fn a_shared_v2_cgroup_refuses_limits_and_keeps_command_cgroups_inside() {
    let test = "a_shared_v2_cgroup_refuses_limits_and_keeps_command_cgroups_inside";
    if !is_root() {
        runtime_conformance::skipped!(
            "{test} moves this process between cgroups, which needs root"
        );
        return;
    }
    let Some(v2) = v2_mount_and_own() else {
        runtime_conformance::skipped!("{test}: no cgroup v2 hierarchy mounted at its root");
        return;
    };
    let shared = match MovedInto::new(v2, &unique_base(), |_| Ok(())) {
        Ok(shared) => shared,
        Err(err) => {
            runtime_conformance::skipped!("{test}: cannot make a cgroup v2 cgroup: {err}");
            return;
        }
    };
    // Another process in berth's cgroup, as a shell in a login scope.
    let mut neighbour = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
    let host = TestHost {
        host: CgroupHost::detect(DetectOptions {
            base_name: unique_base(),
            ..v2_only()
        }),
    };
    for limits in [
        CgroupLimits {
            pids: Some(16),
            ..CgroupLimits::default()
        },
        CgroupLimits {
            memory: Some(1 << 30),
            ..CgroupLimits::default()
        },
    ] {
        let err = host.check(&limits).unwrap_err();
        let CgroupError::Unenforceable { reason, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            reason.contains("1 process(es) besides berth")
                && reason.contains("would not bind them")
                && reason.contains("Delegate=yes"),
            "{reason}"
        );
    }
    let described = host.describe();
    let placement = described
        .iter()
        .find(|line| line.check == "cgroup placement")
        .unwrap_or_else(|| panic!("{described:?}"));
    assert!(
        placement.detail.contains("to kill commands only"),
        "{placement:?}"
    );

    // Without limits, a command cgroup still goes inside, to be killed.
    let cgroup = host.create(&CgroupLimits::default(), "shared").unwrap();
    let made = dirs(&cgroup);
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].starts_with(&shared.dir), "{made:?}");
    let pids = start_escapees(&cgroup);
    cgroup.kill_all().unwrap();
    assert!(pids.iter().all(|&pid| dead(pid)));
    cgroup.remove().unwrap();
    assert!(!made[0].exists());
    drop(neighbour.stdin.take());
    neighbour.wait().unwrap();
    drop(host);
    drop(shared);
}
