//! Cases at the trust boundary: what a command can reach of its caller
//! (descriptors left open), what it can hand back (set-id files in a
//! checkpoint), the limits it runs under, and processes that try to
//! outlive it.
//!
//! Some checks can only see what the backend shows them. A backend whose
//! commands run on another machine (`api` to a remote server, a remote
//! Docker Engine) makes the scans of this host's `/proc` vacuous, and so
//! are the checks from a fresh runtime on backends that give every runtime
//! or command a pid namespace of its own; the checks from the runtime that
//! ran the command are not.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use session_core::runtime::{
    Capabilities, Event, EventStream, ExecCommand, ExecResult, ExecStatus, Runtime,
};
use session_core::session::{RuntimeHandle, Session, SpawnOptions};
use session_core::spec::{EnvironmentSpec, Mode};

use super::{close, describe, exec, run};
use crate::{CaseContext, CaseResult};

/// How long a process berth killed may take to disappear from `/proc`.
const DEATH_GRACE: Duration = Duration::from_secs(5);

/// A number that no other case of this process, and (with all but
/// negligible odds) no case of another test process on this host, uses: the
/// `sleep` arguments and file names that scans of `/proc` and `/dev/shm`
/// look for. Nine digits, below 2^31.
fn distinctive() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let serial = u64::from(NEXT.fetch_add(1, Ordering::Relaxed) % 100);
    100_000_000 + u64::from(std::process::id() % 1_000_000) * 100 + serial
}

// ---------------------------------------------------------------------------
// Descriptors

/// Duplicates of a host directory left open in this process without
/// close-on-exec, as a careless caller of berth would leave them; closed
/// again when dropped.
struct LeakedDescriptors {
    fds: Vec<RawFd>,
}

impl LeakedDescriptors {
    /// Opens `dir` at the lowest free descriptor from 3 on and at a high
    /// one (900, or below the descriptor limit). `F_DUPFD` picks a free
    /// number, so no descriptor another thread holds is replaced; in a test
    /// process whose low numbers are all taken, the low one lands above 10.
    fn open(dir: &Path) -> Result<LeakedDescriptors, String> {
        let file =
            std::fs::File::open(dir).map_err(|err| format!("opening {}: {err}", dir.display()))?;
        let mut leaked = LeakedDescriptors { fds: Vec::new() };
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        let high = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_cur.saturating_sub(1).clamp(11, 900) as RawFd
        } else {
            200
        };
        for lowest in [3, high] {
            // SAFETY: F_DUPFD duplicates a descriptor this function owns
            // onto the lowest free number ≥ `lowest`; nothing is replaced.
            let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD, lowest) };
            if fd < 0 {
                return Err(format!(
                    "duplicating a descriptor: {}",
                    std::io::Error::last_os_error()
                ));
            }
            leaked.fds.push(fd);
            // SAFETY: clears FD_CLOEXEC on the duplicate just made.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(format!(
                    "clearing close-on-exec: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(leaked)
    }
}

impl Drop for LeakedDescriptors {
    fn drop(&mut self) {
        for fd in self.fds.drain(..) {
            // SAFETY: closes a duplicate this guard made and still owns.
            unsafe { libc::close(fd) };
        }
    }
}

/// A command starts with exactly stdin, stdout and stderr open, whatever
/// its caller left open: the test process holds a host directory open
/// without close-on-exec (at a low and a high number) while it spawns the
/// runtime and runs the command, and the command's shell must have neither.
pub(super) async fn only_standard_descriptors_reach_a_command(ctx: &CaseContext) -> CaseResult {
    let dir = ctx.scratch().join("host-dir");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let leaked = LeakedDescriptors::open(&dir)?;
    let numbers = leaked
        .fds
        .iter()
        .map(|fd| fd.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let outcome = async {
        let (session, rt) = ctx.runtime().await?;
        // `ls` lists the shell's descriptors from a process of its own, so
        // the listing adds none to the shell; the tests are builtins.
        let result = run(
            rt.as_ref(),
            &format!(
                "ls /proc/$$/fd; for n in {numbers}; do \
                 if [ -e /proc/self/fd/$n ]; then echo \"leaked $n\"; fi; done"
            ),
        )
        .await?;
        let listed: Vec<String> = result.stdout_lossy().lines().map(str::to_owned).collect();
        ensure!(
            result.success() && listed == ["0", "1", "2"],
            "the command's shell has descriptors other than 0, 1 and 2 (berth's caller left \
             {numbers} open): {}",
            describe(&result)
        );
        close(session).await
    }
    .await;
    drop(leaked);
    outcome
}

// ---------------------------------------------------------------------------
// Set-id files

/// Files a command makes with setuid, setgid and sticky bits reach the host
/// through `finish_checkpoint` without those bits, and owned by the caller.
pub(super) async fn set_id_bits_do_not_cross_to_the_host(ctx: &CaseContext) -> CaseResult {
    let mut session = ctx.session_with(Mode::Agent, |_| {}).await?;
    let rt = session
        .spawn(SpawnOptions::default())
        .await
        .map_err(|e| format!("spawn: {e}"))?;
    let made = run(
        rt.as_ref(),
        "cp /bin/sh setuid-shell && chmod 4755 setuid-shell && \
         cp /bin/sh setgid-shell && chmod 2755 setgid-shell && \
         mkdir sticky-dir && chmod 1777 sticky-dir && \
         [ -u setuid-shell ] && [ -g setgid-shell ] && [ -k sticky-dir ]",
    )
    .await?;
    let out = ctx.scratch().join("checkpoint");
    let outcome = if made.success() {
        match session.finish_checkpoint(&out).await {
            Ok(_) => no_set_id_bits(&out, &["setuid-shell", "setgid-shell", "sticky-dir"]),
            Err(err) => Err(format!("finish_checkpoint: {err}")),
        }
    } else {
        Err(format!(
            "the command could not make set-id files: {}",
            describe(&made)
        ))
    };
    close(session).await?;
    outcome
}

fn no_set_id_bits(dir: &Path, names: &[&str]) -> CaseResult {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let caller = unsafe { libc::geteuid() };
    let mut wrong = Vec::new();
    for name in names {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                if meta.mode() & 0o7000 != 0 {
                    wrong.push(format!("{name} has mode {:o}", meta.mode() & 0o7777));
                }
                if meta.uid() != caller {
                    wrong.push(format!(
                        "{name} is owned by uid {}, not the caller's {caller}",
                        meta.uid()
                    ));
                }
            }
            Err(err) => wrong.push(format!("{name} is not in the checkpoint: {err}")),
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

// ---------------------------------------------------------------------------
// Limits

/// One resource limit of the spec, as the limit cases see it.
#[derive(Clone, Copy)]
enum Limit {
    Pids,
    Memory,
    Cpus,
}

impl Limit {
    /// Its key under `limits`, which a refusal must name.
    fn key(self) -> &'static str {
        match self {
            Limit::Pids => "pids",
            Limit::Memory => "memory",
            Limit::Cpus => "cpus",
        }
    }

    fn claimed(self, capabilities: &Capabilities) -> bool {
        match self {
            Limit::Pids => capabilities.pids_limit,
            Limit::Memory => capabilities.memory_limit,
            Limit::Cpus => capabilities.cpu_limit,
        }
    }

    fn set(self, spec: &mut EnvironmentSpec) {
        match self {
            Limit::Pids => spec.limits.pids = Some(32),
            Limit::Memory => spec.limits.memory = Some(64 << 20),
            Limit::Cpus => spec.limits.cpus = Some(0.25),
        }
    }
}

/// Spawns a runtime whose spec sets `limit`. `None` is a clear refusal: a
/// spawn error that names the limit, from a backend that does not claim it.
/// A refusal from a backend that claims the limit, or one that does not
/// name it, fails the case.
async fn spawn_limited(
    ctx: &CaseContext,
    limit: Limit,
) -> Result<Option<(Session, RuntimeHandle)>, String> {
    let mut session = ctx
        .session_with(Mode::Evaluation, |spec| limit.set(spec))
        .await?;
    let key = limit.key();
    match session.spawn(SpawnOptions::default()).await {
        Ok(rt) => Ok(Some((session, rt))),
        Err(err) => {
            let message = err.to_string();
            close(session).await?;
            ensure!(
                !limit.claimed(ctx.capabilities()),
                "the backend claims `limits.{key}` but refused a spec that sets it: {message}"
            );
            ensure!(
                message.contains(key),
                "a spec with `limits.{key}` failed to spawn without naming the limit: {message}"
            );
            Ok(None)
        }
    }
}

/// What a failure says about a limit that was accepted but did not hold.
fn not_enforced(limit: Limit, rt: &dyn Runtime, what: &str) -> String {
    let key = limit.key();
    if limit.claimed(rt.capabilities()) {
        format!("`limits.{key}` is claimed but did not hold: {what}")
    } else {
        format!(
            "`limits.{key}` is not claimed, yet the spawn accepted it and ran unlimited \
             (enforce it or refuse the spawn naming it): {what}"
        )
    }
}

/// With `limits.pids: 32`, a command that starts 100 background processes
/// gets at most 32 of them; or the spawn refuses the limit by name.
pub(super) async fn pids_limit_holds_or_is_refused(ctx: &CaseContext) -> CaseResult {
    let Some((session, rt)) = spawn_limited(ctx, Limit::Pids).await? else {
        return Ok(());
    };
    let n = distinctive();
    // Each fork that succeeds records its pid (a failed one leaves `$!`
    // unchanged, or ends the subshell); the shell kills them after with
    // builtins only, as it may have no pid left to fork.
    let result = run(
        rt.as_ref(),
        &format!(
            ": > started.pids; \
             ( i=0; while [ $i -lt 100 ]; do last=$!; sleep {n} >/dev/null 2>&1 & \
               [ \"$!\" = \"$last\" ] && break; echo $! >> started.pids; i=$((i+1)); done ) \
             2>/dev/null; \
             while read -r p; do kill -KILL $p 2>/dev/null; done < started.pids; true"
        ),
    )
    .await?;
    let root = session.workspace_path().map_err(|e| e.to_string())?;
    let recorded = std::fs::read_to_string(root.join("started.pids"))
        .map_err(|e| format!("reading started.pids: {e} ({})", describe(&result)))?;
    let mut started: Vec<&str> = recorded.lines().filter(|l| !l.is_empty()).collect();
    started.sort_unstable();
    started.dedup();
    let verdict = if started.len() > 32 {
        Err(not_enforced(
            Limit::Pids,
            rt.as_ref(),
            &format!("{} of 100 background processes started", started.len()),
        ))
    } else if started.is_empty() {
        Err(format!(
            "no background process started at all: {}",
            describe(&result)
        ))
    } else {
        Ok(())
    };
    close(session).await?;
    verdict
}

/// With `limits.memory: 64 MiB`, a process that holds 300 MB fails, and so
/// does writing 300 MB to `/dev/shm` (a tmpfs: what a command stores there
/// is memory too); the runtime still runs commands afterwards. Or the spawn
/// refuses the limit by name. What was written is removed, in the sandbox
/// and (for backends whose `/dev/shm` is the host's) on the host.
pub(super) async fn memory_limit_holds_or_is_refused(ctx: &CaseContext) -> CaseResult {
    let Some((session, rt)) = spawn_limited(ctx, Limit::Memory).await? else {
        return Ok(());
    };
    let shm = format!("/dev/shm/berth-conformance-{}", distinctive());
    let verdict = memory_checks(rt.as_ref(), &shm).await;
    let _ = std::fs::remove_file(&shm);
    close(session).await?;
    verdict
}

async fn memory_checks(rt: &dyn Runtime, shm: &str) -> CaseResult {
    // `tail` keeps the one endless line in memory.
    let hog = run(rt, "head -c 300000000 /dev/zero | tail >/dev/null").await?;
    ensure!(
        !hog.success(),
        "{}",
        not_enforced(
            Limit::Memory,
            rt,
            &format!("a process held 300 MB: {}", describe(&hog))
        )
    );
    let stored = run(
        rt,
        &format!(
            "if [ ! -d /dev/shm ] || [ ! -w /dev/shm ]; then echo no-shm; exit 0; fi; \
             head -c 300000000 /dev/zero > {shm}; s=$?; rm -f {shm}; exit $s"
        ),
    )
    .await?;
    ensure!(
        !stored.success() || stored.stdout.bytes == b"no-shm\n",
        "{}",
        not_enforced(
            Limit::Memory,
            rt,
            &format!("300 MB were stored in /dev/shm: {}", describe(&stored))
        )
    );
    let after = run(rt, &format!("rm -f {shm}; echo alive")).await?;
    ensure!(
        after.success() && after.stdout.bytes == b"alive\n",
        "the runtime no longer runs commands after the memory limit held: {}",
        describe(&after)
    );
    Ok(())
}

/// With `limits.cpus: 0.25`, a busy loop of about 1.5 s of wall time gets
/// well under one CPU (measured inside the sandbox from the loop's own CPU
/// time and `/proc/uptime`, and from the reported usage when the backend
/// reports it), in each of a few looks; or the spawn refuses the limit by
/// name. The margin is wide (half a CPU). A loaded machine makes an
/// unlimited loop look slower, never a limited one faster: on a machine
/// that keeps every loop under half a CPU, this case cannot tell.
pub(super) async fn cpu_limit_holds_or_is_refused(ctx: &CaseContext) -> CaseResult {
    let Some((session, rt)) = spawn_limited(ctx, Limit::Cpus).await? else {
        return Ok(());
    };
    let verdict = cpu_checks(rt.as_ref()).await;
    close(session).await?;
    verdict
}

async fn cpu_checks(rt: &dyn Runtime) -> CaseResult {
    // A loaded machine can keep an unlimited loop under half a CPU too, so
    // one look proves nothing either way: a limited loop never gets more
    // than its share, so any of a few looks over half a CPU fails.
    for _ in 0..CPU_LOOKS {
        busy_loop_share(rt).await?;
    }
    Ok(())
}

/// Looks at a busy loop this many times.
const CPU_LOOKS: usize = 3;

/// Runs a busy loop for about 1.5 s and fails when it got more than half a
/// CPU.
async fn busy_loop_share(rt: &dyn Runtime) -> CaseResult {
    // utime and stime are fields 14 and 15 of /proc/PID/stat, counted in
    // clock ticks of 1/100 s (USER_HZ); /proc/uptime counts in 1/100 s too.
    let result = run(
        rt,
        "read -r u0 _ < /proc/uptime; ( while :; do :; done ) & b=$!; sleep 1.5; \
         read -r s < /proc/$b/stat; read -r u1 _ < /proc/uptime; kill -KILL $b; \
         s=${s##*) }; set -- $s; \
         echo \"$(( ${12} + ${13} )) $(( ${u1%.*}${u1#*.} - ${u0%.*}${u0#*.} ))\"",
    )
    .await?;
    let text = result.stdout_lossy();
    let figures: Vec<u64> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    let [busy, wall] = figures[..] else {
        return Err(format!(
            "cannot read the busy loop's times: {}",
            describe(&result)
        ));
    };
    ensure!(
        wall > 0,
        "no wall time passed inside the sandbox: {}",
        describe(&result)
    );
    ensure!(
        busy * 2 <= wall,
        "{}",
        not_enforced(
            Limit::Cpus,
            rt,
            &format!("a busy loop used {busy} of {wall} centiseconds of wall time")
        )
    );
    if let Some(usage) = result.usage {
        let cpu = usage.user_cpu + usage.system_cpu;
        ensure!(
            cpu * 2 <= result.elapsed,
            "{}",
            not_enforced(
                Limit::Cpus,
                rt,
                &format!(
                    "the command used {cpu:?} of CPU in {:?} of wall time",
                    result.elapsed
                )
            )
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Nothing outlives its command

/// Processes a command leaves behind: by default three that try to escape
/// it, one in a session of its own (`setsid`), one that ignores hangups
/// (`nohup`), one orphaned by a double fork; or one plain background
/// process ([`Escapees::lingering`]). Each sleeps for a distinctive number
/// of seconds, so scans of `/proc` find them by their command line (never
/// by a pid, which means nothing outside the command's pid namespace).
/// Dropping it kills, from this host, any that are still there, so a
/// failing backend leaves nothing.
pub(super) struct Escapees {
    numbers: Vec<u64>,
    lingering: bool,
}

impl Escapees {
    fn new() -> Escapees {
        Escapees {
            numbers: vec![distinctive(), distinctive(), distinctive()],
            lingering: false,
        }
    }

    /// One background process that does not try to escape: it merely
    /// outlives the command that started it.
    pub(super) fn lingering() -> Escapees {
        Escapees {
            numbers: vec![distinctive()],
            lingering: true,
        }
    }

    /// A `case` pattern matching their command lines as `read` gives them
    /// (NUL bytes dropped).
    fn pattern(&self) -> String {
        self.numbers
            .iter()
            .map(|n| format!("sleep{n}"))
            .collect::<Vec<_>>()
            .join("|")
    }

    /// Shell that starts them, waits until all run (printing a dot on
    /// stderr per look, so an idle timeout does not fire meanwhile), then
    /// prints `started`. Where there is no `nohup` (busybox builds without
    /// it), the shell does what it does: ignore SIGHUP, then exec.
    pub(super) fn start(&self) -> String {
        let pattern = self.pattern();
        let count = self.numbers.len();
        let launch = if self.lingering {
            let [a] = self.numbers[..] else {
                unreachable!("a lingering process is one")
            };
            format!("sleep {a} </dev/null >/dev/null 2>&1 & ")
        } else {
            let [a, b, c] = self.numbers[..] else {
                unreachable!("escapees are three")
            };
            format!(
                "command -v setsid >/dev/null || {{ echo 'setsid is missing' >&2; exit 91; }}; \
                 setsid sleep {a} </dev/null >/dev/null 2>&1 & \
                 if command -v nohup >/dev/null; then nohup sleep {b} </dev/null >/dev/null 2>&1 & \
                 else ( trap '' HUP; exec sleep {b} </dev/null >/dev/null 2>&1 ) & fi; \
                 ( sleep {c} </dev/null >/dev/null 2>&1 & ) & "
            )
        };
        format!(
            "{launch}\
             i=0; while [ $i -lt 600 ]; do n=0; for d in /proc/[0-9]*; do c=; \
             read -r c 2>/dev/null < \"$d/cmdline\"; case \"$c\" in {pattern}) n=$((n+1));; esac; \
             done; [ $n -ge {count} ] && break; printf . >&2; sleep 0.05; i=$((i+1)); done; \
             [ $n -ge {count} ] || {{ echo 'the background processes never ran' >&2; exit 90; }}; \
             echo started"
        )
    }

    /// Checks from inside `rt` that none of them is alive (a zombie has no
    /// command line), allowing a moment for a kill to land.
    async fn gone_in(&self, rt: &dyn Runtime, from: &str) -> CaseResult {
        let pattern = self.pattern();
        let check = run(
            rt,
            &format!(
                "i=0; while :; do alive=; for d in /proc/[0-9]*; do c=; \
                 read -r c 2>/dev/null < \"$d/cmdline\"; \
                 case \"$c\" in {pattern}) alive=\"$alive ${{d#/proc/}}:$c\";; esac; done; \
                 [ -z \"$alive\" ] && exit 0; [ $i -ge 50 ] && break; sleep 0.1; i=$((i+1)); \
                 done; echo \"still running:$alive\"; exit 1"
            ),
        )
        .await?;
        ensure!(
            check.success(),
            "seen from {from}, processes the command started outlived it: {}",
            describe(&check)
        );
        Ok(())
    }

    /// Checks from a fresh session's runtime. It sees the earlier processes
    /// only on a backend whose runtimes share a pid view (local); elsewhere
    /// it passes without seeing them, and the host scan does the work.
    pub(super) async fn gone_in_a_fresh_runtime(&self, ctx: &CaseContext) -> CaseResult {
        let (session, rt) = ctx.runtime().await?;
        let outcome = self.gone_in(rt.as_ref(), "a fresh runtime").await;
        close(session).await?;
        outcome
    }

    /// This host's processes with one of their command lines.
    fn on_host(&self) -> Vec<(i32, String)> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(line) = self.matching_command_line(pid) {
                found.push((pid, line));
            }
        }
        found
    }

    fn matching_command_line(&self, pid: i32) -> Option<String> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        let [program, seconds] = args[..] else {
            return None;
        };
        let seconds = std::str::from_utf8(seconds).ok()?.parse::<u64>().ok()?;
        (program.ends_with(b"sleep") && self.numbers.contains(&seconds))
            .then(|| format!("sleep {seconds}"))
    }

    /// Checks this host's `/proc` (where the processes of local sandboxes
    /// and of a local Docker Engine's containers appear; vacuous for a
    /// remote backend), allowing a moment for a kill to land.
    pub(super) async fn gone_from_host(&self, after: &str) -> CaseResult {
        let deadline = tokio::time::Instant::now() + DEATH_GRACE;
        loop {
            let alive = self.on_host();
            if alive.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "after {after}, processes the command started still run on this host: \
                     {alive:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Escapees {
    fn drop(&mut self) {
        for (pid, _) in self.on_host() {
            // Looked up again right before the kill, so a reused pid is
            // not hit.
            if self.matching_command_line(pid).is_some() {
                // SAFETY: kill(2) with a pid and a signal number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Reads a stream until the command printed `started`; a command that ends
/// first fails the case with its result.
async fn until_started(stream: &mut EventStream) -> CaseResult {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Event::Stdout(bytes) => {
                stdout.extend_from_slice(&bytes);
                if stdout.ends_with(b"started\n") {
                    return Ok(());
                }
            }
            Event::Stderr(bytes) => stderr.extend_from_slice(&bytes),
            Event::Finished(result) => {
                return Err(format!(
                    "the command ended before its background processes ran: {}",
                    describe(&result)
                ));
            }
        }
    }
    Err(format!(
        "the stream ended without a result; stderr {:?}",
        String::from_utf8_lossy(&stderr)
    ))
}

/// `setsid`, `nohup` and double-forked processes die when `kill()` kills
/// their command: none is left in the runtime or on this host, nor seen
/// from a fresh runtime.
pub(super) async fn escapees_die_with_kill(ctx: &CaseContext) -> CaseResult {
    let escapees = Escapees::new();
    let (session, rt) = ctx.runtime().await?;
    let mut stream = rt
        .stream(
            ExecCommand::new(format!("{}; exec sleep 600", escapees.start()))
                .wall_timeout(Duration::from_secs(120)),
        )
        .await
        .map_err(|err| format!("stream: {err}"))?;
    until_started(&mut stream).await?;
    rt.kill().await.map_err(|err| format!("kill: {err}"))?;
    let result = stream.finish().await;
    ensure!(
        !result.success(),
        "the killed command: {}",
        describe(&result)
    );
    escapees.gone_in(rt.as_ref(), "the same runtime").await?;
    escapees.gone_from_host("kill()").await?;
    close(session).await?;
    escapees.gone_in_a_fresh_runtime(ctx).await
}

/// `setsid`, `nohup` and double-forked processes die when their command
/// times out (here: an idle timeout once they all run).
pub(super) async fn escapees_die_at_a_timeout(ctx: &CaseContext) -> CaseResult {
    let escapees = Escapees::new();
    let (session, rt) = ctx.runtime().await?;
    let result = exec(
        rt.as_ref(),
        ExecCommand::new(format!("{}; exec sleep 600", escapees.start()))
            .idle_timeout(Duration::from_secs(2))
            .wall_timeout(Duration::from_secs(120)),
    )
    .await?;
    ensure!(
        result.status == ExecStatus::IdleTimedOut && result.stdout.bytes.ends_with(b"started\n"),
        "expected an idle timeout once the background processes ran: {}",
        describe(&result)
    );
    escapees.gone_in(rt.as_ref(), "the same runtime").await?;
    escapees.gone_from_host("a timeout").await?;
    close(session).await?;
    escapees.gone_in_a_fresh_runtime(ctx).await
}

/// `setsid`, `nohup` and double-forked processes die when the runtime is
/// cleaned up while their command still runs.
pub(super) async fn escapees_die_with_cleanup_of_a_running_command(
    ctx: &CaseContext,
) -> CaseResult {
    let escapees = Escapees::new();
    let (session, rt) = ctx.runtime().await?;
    let mut stream = rt
        .stream(
            ExecCommand::new(format!("{}; exec sleep 600", escapees.start()))
                .wall_timeout(Duration::from_secs(120)),
        )
        .await
        .map_err(|err| format!("stream: {err}"))?;
    until_started(&mut stream).await?;
    rt.cleanup()
        .await
        .map_err(|err| format!("cleanup: {err}"))?;
    let result: ExecResult = stream.finish().await;
    ensure!(
        !result.success(),
        "the command outlived cleanup: {}",
        describe(&result)
    );
    escapees.gone_from_host("cleanup()").await?;
    close(session).await?;
    escapees.gone_in_a_fresh_runtime(ctx).await
}

/// `setsid`, `nohup` and double-forked processes of a command that exited
/// normally may linger while the runtime lives, but die with its cleanup
/// (here: the session's close).
pub(super) async fn escapees_die_with_cleanup_after_their_command(ctx: &CaseContext) -> CaseResult {
    let escapees = Escapees::new();
    let (session, rt) = ctx.runtime().await?;
    let result = run(rt.as_ref(), &escapees.start()).await?;
    ensure!(
        result.success() && result.stdout.bytes == b"started\n",
        "{}",
        describe(&result)
    );
    drop(rt);
    close(session).await?;
    escapees.gone_from_host("the session's close").await?;
    escapees.gone_in_a_fresh_runtime(ctx).await
}
