//! One command's cgroup: its directories, the limits written into them,
//! killing what is inside, and removing it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::control::{self, io_error};
use super::detect::parse_pids;
use super::join::{CgroupJoin, FreezerKind, MAX_DIRS, write_fd};
use super::{CgroupError, CgroupLimits};

/// How long killing and removing a cgroup may take before it is reported
/// as failed.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// How long [`CommandCgroup::kill_all`] waits for a freezer to report the
/// cgroup frozen before it signals anyway.
const FREEZE_PATIENCE: Duration = Duration::from_millis(200);

/// The CFS period berth uses for `limits.cpus`, in microseconds.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// The smallest CFS quota the kernel accepts, in microseconds.
pub(crate) const CPU_MIN_QUOTA_US: u64 = 1_000;

/// The largest CFS quota the kernel accepts, in microseconds (2^44 - 1:
/// what its bandwidth arithmetic can hold).
pub(crate) const CPU_MAX_QUOTA_US: u64 = (1 << 44) - 1;

/// The CFS quota for `cpus` CPUs per [`CPU_PERIOD_US`], rounded to the
/// microsecond (validation keeps it within the kernel's range).
pub(crate) fn cpu_quota(cpus: f64) -> u64 {
    (cpus * CPU_PERIOD_US as f64).round() as u64
}

/// Which hierarchy a directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirVersion {
    /// A cgroup v1 hierarchy with these controllers.
    V1(Vec<String>),
    /// The cgroup v2 hierarchy.
    V2,
}

impl DirVersion {
    fn has(&self, controller: &str) -> bool {
        match self {
            DirVersion::V1(controllers) => controllers.iter().any(|c| c == controller),
            DirVersion::V2 => false,
        }
    }
}

#[derive(Debug)]
struct CgroupDir {
    path: PathBuf,
    version: DirVersion,
    /// `cgroup.procs`, for writing (join).
    procs: Option<OwnedFd>,
    /// The directory (`O_PATH`), for reading a fresh `cgroup.procs`.
    dir: Option<OwnedFd>,
}

#[derive(Debug)]
struct Freezer {
    /// `freezer.state` (v1) or `cgroup.freeze` (v2).
    state: PathBuf,
    fd: OwnedFd,
    kind: FreezerKind,
    /// Where to read whether it is frozen: `freezer.state` or
    /// `cgroup.events`.
    status: PathBuf,
}

/// One command's cgroup: a directory in each cgroup v1 hierarchy berth
/// uses and/or one in the cgroup v2 hierarchy, all with the same name,
/// made by [`CgroupHost::create`](super::CgroupHost::create).
///
/// A process enters it through [`CommandCgroup::joiner`] between fork and
/// exec; everything it forks stays in it. Dropping the value removes the
/// cgroup after killing what is left in it ([`CommandCgroup::remove`],
/// best effort, failures logged).
#[derive(Debug)]
pub struct CommandCgroup {
    name: String,
    dirs: Vec<CgroupDir>,
    /// cgroup v2 `cgroup.kill`, when the kernel has it.
    kill: Option<OwnedFd>,
    freezer: Option<Freezer>,
    limits: CgroupLimits,
    removed: bool,
}

impl CommandCgroup {
    /// Makes the directories (`base/name` for each base), writes the limits
    /// that belong to each and opens the descriptors. On failure, whatever
    /// was made is removed again.
    pub(crate) fn make(
        name: String,
        bases: &[(PathBuf, DirVersion, CgroupLimits)],
        limits: CgroupLimits,
    ) -> Result<CommandCgroup, CgroupError> {
        assert!(bases.len() <= MAX_DIRS);
        let mut cgroup = CommandCgroup {
            name,
            dirs: Vec::with_capacity(bases.len()),
            kill: None,
            freezer: None,
            limits,
            removed: false,
        };
        for (base, version, _) in bases {
            let path = base.join(&cgroup.name);
            fs::create_dir(&path).map_err(io_error("creating cgroup", &path))?;
            cgroup.dirs.push(CgroupDir {
                path,
                version: version.clone(),
                procs: None,
                dir: None,
            });
        }
        for (dir, (_, _, own_limits)) in cgroup.dirs.iter().zip(bases) {
            match &dir.version {
                DirVersion::V1(controllers) => write_v1_limits(&dir.path, controllers, own_limits)?,
                DirVersion::V2 => write_v2_limits(&dir.path, own_limits)?,
            }
        }
        cgroup.open()?;
        Ok(cgroup)
    }

    /// Takes charge of existing directories named `name` (garbage
    /// collection of a dead owner's cgroup), to kill and remove them.
    pub(crate) fn adopt(
        name: String,
        dirs: Vec<(PathBuf, DirVersion)>,
    ) -> Result<CommandCgroup, CgroupError> {
        let mut cgroup = CommandCgroup {
            name,
            dirs: dirs
                .into_iter()
                .take(MAX_DIRS)
                .map(|(path, version)| CgroupDir {
                    path,
                    version,
                    procs: None,
                    dir: None,
                })
                .collect(),
            kill: None,
            freezer: None,
            limits: CgroupLimits::default(),
            removed: false,
        };
        cgroup.open()?;
        Ok(cgroup)
    }

    /// Opens every descriptor the cgroup's joiner and killers use.
    fn open(&mut self) -> Result<(), CgroupError> {
        for dir in &mut self.dirs {
            let procs_path = dir.path.join("cgroup.procs");
            dir.procs = Some(open_fd(&procs_path, libc::O_WRONLY)?);
            dir.dir = Some(open_fd(&dir.path, libc::O_PATH | libc::O_DIRECTORY)?);
        }
        if let Some(v2) = self.dirs.iter().find(|d| d.version == DirVersion::V2) {
            let kill = v2.path.join("cgroup.kill");
            match open_fd(&kill, libc::O_WRONLY) {
                Ok(fd) => self.kill = Some(fd),
                Err(CgroupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                }
                Err(err) => return Err(err),
            }
        }
        if self.kill.is_none() {
            self.freezer = self.open_freezer()?;
        }
        Ok(())
    }

    fn open_freezer(&self) -> Result<Option<Freezer>, CgroupError> {
        let candidates = self.dirs.iter().filter_map(|dir| match &dir.version {
            DirVersion::V1(_) if dir.version.has("freezer") => Some((
                dir.path.join("freezer.state"),
                dir.path.join("freezer.state"),
                FreezerKind::V1,
            )),
            DirVersion::V1(_) => None,
            DirVersion::V2 => Some((
                dir.path.join("cgroup.freeze"),
                dir.path.join("cgroup.events"),
                FreezerKind::V2,
            )),
        });
        for (state, status, kind) in candidates {
            match open_fd(&state, libc::O_WRONLY) {
                Ok(fd) => {
                    return Ok(Some(Freezer {
                        state,
                        fd,
                        kind,
                        status,
                    }));
                }
                Err(CgroupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// The cgroup's name (the same in every hierarchy).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directories, one per hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|dir| dir.path.as_path())
    }

    /// The limits it was made with.
    pub fn limits(&self) -> &CgroupLimits {
        &self.limits
    }

    /// How it is emptied: `cgroup.kill`, a freezer, or signals alone.
    pub fn kill_method(&self) -> String {
        if self.kill.is_some() {
            "cgroup v2 cgroup.kill".to_owned()
        } else if let Some(freezer) = &self.freezer {
            format!(
                "freeze through `{}`, SIGKILL each member, thaw, until empty",
                freezer.state.display()
            )
        } else {
            "SIGKILL each member until empty (no freezer)".to_owned()
        }
    }

    /// The value a forked child uses to join this cgroup (and a keeper to
    /// empty it); see [`CgroupJoin`]. It stays valid while `self` lives.
    pub fn joiner(&self) -> CgroupJoin {
        let mut procs = [-1; MAX_DIRS];
        let mut dirs = [-1; MAX_DIRS];
        let mut count = 0;
        for dir in &self.dirs {
            if let (Some(p), Some(d)) = (&dir.procs, &dir.dir) {
                procs[count] = p.as_raw_fd();
                dirs[count] = d.as_raw_fd();
                count += 1;
            }
        }
        CgroupJoin::new(
            &procs[..count],
            &dirs[..count],
            self.kill.as_ref().map(AsRawFd::as_raw_fd),
            self.freezer
                .as_ref()
                .map(|freezer| (freezer.fd.as_raw_fd(), freezer.kind)),
        )
    }

    /// The processes in the cgroup and in any cgroup a member made below
    /// it, in every hierarchy, sorted and without repeats.
    ///
    /// Fails when a `cgroup.procs` file cannot be read.
    pub fn members(&self) -> Result<Vec<u32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            for path in control::subtree(&dir.path)? {
                let procs = path.join("cgroup.procs");
                if let Some(text) = control::read_optional(&procs)? {
                    pids.extend(parse_pids(&text));
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Whether no process is left in the cgroup.
    ///
    /// Fails when a `cgroup.procs` file cannot be read.
    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        Ok(self.members()?.is_empty())
    }

    /// Kills every process in the cgroup and returns once it is empty.
    /// Blocks for at most a few seconds.
    ///
    /// With cgroup v2's `cgroup.kill` the kernel kills them all at once;
    /// otherwise, and to make sure, it repeats: freeze (v1 `freezer.state`
    /// or v2 `cgroup.freeze`, when there), `SIGKILL` every member, thaw,
    /// until none is left, so a process that forks or `setsid`s cannot
    /// slip out. This process is never killed: if it is a member itself,
    /// neither `cgroup.kill` nor the freezer is used, only signals.
    ///
    /// Fails with [`CgroupError::NotEmpty`] when processes are still there
    /// after the patience ran out, or when the cgroup cannot be read.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + KILL_PATIENCE;
        let me = std::process::id();
        // cgroup.kill and the freezer would kill or freeze this process too.
        let member = self.members()?.contains(&me);
        if !member
            && let Some(kill) = &self.kill
            && let Err(err) = write_fd(kill.as_raw_fd(), b"1")
        {
            tracing::debug!(cgroup = %self.name, "cgroup.kill failed, signalling instead: {err}");
        }
        let mut pause = Duration::from_micros(200);
        loop {
            let frozen = !member && self.freeze();
            let members = self.members();
            if let Ok(members) = &members {
                for &pid in members.iter().filter(|&&pid| pid != me) {
                    if let Ok(pid) = libc::pid_t::try_from(pid) {
                        // SAFETY: pid is positive (parsed from cgroup.procs,
                        // where 0 is skipped), so this signals one process.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            if frozen {
                self.thaw();
            }
            let members = members?;
            let remaining = members.iter().filter(|&&pid| pid != me).count();
            if remaining == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::NotEmpty {
                    path: self.dirs[0].path.clone(),
                    remaining,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Freezes the cgroup when it has a freezer, and waits briefly until it
    /// reports frozen. Returns whether a thaw is due.
    fn freeze(&self) -> bool {
        let Some(freezer) = &self.freezer else {
            return false;
        };
        if control::write(&freezer.state, as_text(freezer.kind.freeze_value())).is_err() {
            return false;
        }
        let deadline = Instant::now() + FREEZE_PATIENCE;
        while Instant::now() < deadline {
            let Ok(status) = control::read(&freezer.status) else {
                break;
            };
            let frozen = match freezer.kind {
                FreezerKind::V1 => status.trim() == "FROZEN",
                FreezerKind::V2 => control::keyed(&status, "frozen") == Some(1),
            };
            if frozen {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    fn thaw(&self) {
        if let Some(freezer) = &self.freezer
            && let Err(err) = control::write(&freezer.state, as_text(freezer.kind.thaw_value()))
        {
            tracing::warn!(cgroup = %self.name, "cannot thaw: {err}");
        }
    }

    /// What the kernel counted against the limits so far: whether the
    /// memory limit was hit and processes were killed for it, and whether
    /// forks failed at the pids limit. Use it after the command ended to
    /// say why it died ([`LimitEvents::explanation`]).
    ///
    /// Fails when a counter file exists but cannot be read.
    pub fn limit_events(&self) -> Result<LimitEvents, CgroupError> {
        let mut events = LimitEvents {
            memory_limit: self.limits.memory,
            pids_limit: self.limits.pids,
            ..LimitEvents::default()
        };
        for dir in &self.dirs {
            let path = &dir.path;
            match &dir.version {
                DirVersion::V1(_) => {
                    if dir.version.has("memory") {
                        for file in ["memory.failcnt", "memory.memsw.failcnt"] {
                            if let Some(text) = control::read_optional(&path.join(file))? {
                                let hits = text.trim().parse().unwrap_or(0);
                                events.memory_limit_hits = events.memory_limit_hits.max(hits);
                            }
                        }
                        if let Some(text) =
                            control::read_optional(&path.join("memory.oom_control"))?
                        {
                            events.oom_kills = control::keyed(&text, "oom_kill").unwrap_or(0);
                        }
                    }
                    if dir.version.has("pids")
                        && let Some(text) = control::read_optional(&path.join("pids.events"))?
                    {
                        events.pids_limit_hits = control::keyed(&text, "max").unwrap_or(0);
                    }
                }
                DirVersion::V2 => read_v2_events(path, &mut events)?,
            }
        }
        Ok(events)
    }

    /// Kills what is left (see [`CommandCgroup::kill_all`]) and removes
    /// every directory, with any cgroup a member made below it, retrying
    /// briefly while the kernel still holds the last tasks. The base each
    /// directory is in goes too when nothing else is left in it: it lives
    /// in the cgroup berth runs in, which may be removed once berth ends
    /// (a systemd scope, a CI job's cgroup) and cannot be while it has a
    /// child. [`CgroupHost::create`](super::CgroupHost::create) makes it
    /// again.
    ///
    /// Fails when the cgroup could not be emptied or a directory could not
    /// be removed; the directories that could be are removed anyway.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), CgroupError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let killed = self.kill_all();
        let deadline = Instant::now() + KILL_PATIENCE;
        let mut first_error = killed.err();
        for dir in &mut self.dirs {
            dir.procs = None;
            dir.dir = None;
            let paths = match control::subtree(&dir.path) {
                Ok(paths) => paths,
                Err(err) => {
                    first_error.get_or_insert(err);
                    continue;
                }
            };
            for path in paths.iter().rev() {
                if let Err(err) = control::remove_dir(path, deadline) {
                    first_error.get_or_insert(err);
                }
            }
            // Fails (EBUSY, ENOTEMPTY) while the base holds other command
            // cgroups, which is as it should be.
            if let Some(base) = dir.path.parent() {
                let _ = fs::remove_dir(base);
            }
        }
        self.kill = None;
        self.freezer = None;
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Drop for CommandCgroup {
    fn drop(&mut self) {
        if let Err(err) = self.remove_now() {
            tracing::warn!(cgroup = %self.name, "cannot remove command cgroup: {err}");
        }
    }
}

fn as_text(bytes: &'static [u8]) -> &'static str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Opens `path` close-on-exec with `flags`.
fn open_fd(path: &Path, flags: libc::c_int) -> Result<OwnedFd, CgroupError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| CgroupError::Io {
        action: "opening",
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: a valid C string; the returned fd is owned below.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io_error("opening", path)(io::Error::last_os_error()));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Writes the limits of a cgroup v1 directory whose hierarchy has
/// `controllers`.
pub(crate) fn write_v1_limits(
    dir: &Path,
    controllers: &[String],
    limits: &CgroupLimits,
) -> Result<(), CgroupError> {
    let has = |name: &str| controllers.iter().any(|c| c == name);
    if has("pids")
        && let Some(pids) = limits.pids
    {
        control::write(&dir.join("pids.max"), &pids.to_string())?;
    }
    if has("memory")
        && let Some(bytes) = limits.memory
    {
        let bytes = bytes.to_string();
        control::write(&dir.join("memory.limit_in_bytes"), &bytes)?;
        // memory+swap, so that a command cannot swap its way past the
        // limit (tmpfs pages would go to swap first). It exists when swap
        // accounting is on.
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            control::write(&memsw, &bytes)?;
        }
    }
    if has("cpu")
        && let Some(cpus) = limits.cpus
    {
        // cgroup v1 refuses (EINVAL) a quota above an ancestor's: the
        // ancestors' quota binds the command anyway, so ask for no more.
        let wanted = cpu_quota(cpus);
        let quota = v1_cpu_allowance(dir).map_or(wanted, |allowed| wanted.min(allowed));
        if quota < CPU_MIN_QUOTA_US {
            tracing::debug!(
                cgroup = %dir.display(),
                "an ancestor's CPU quota is below the smallest one berth can set, and binds \
                 the command on its own"
            );
        } else {
            control::write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            control::write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
    }
    Ok(())
}

/// The largest CFS quota per [`CPU_PERIOD_US`] that the cgroup v1
/// ancestors of the `cpu` cgroup `dir` allow (the smallest of their
/// quota-to-period ratios, rounded down), or `None` when none of them has
/// a quota. Ancestors are read up to the hierarchy's root, the first
/// directory above which has no `cpu.cfs_quota_us`; one whose files cannot
/// be read counts as having no quota.
fn v1_cpu_allowance(dir: &Path) -> Option<u64> {
    let mut allowed: Option<u64> = None;
    let mut ancestor = dir.parent();
    while let Some(current) = ancestor {
        let Some(quota) = control::read_optional(&current.join("cpu.cfs_quota_us"))
            .ok()
            .flatten()
        else {
            break;
        };
        let period = control::read_optional(&current.join("cpu.cfs_period_us"))
            .ok()
            .flatten()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|&period| period > 0);
        if let (Ok(quota), Some(period)) = (quota.trim().parse::<i64>(), period)
            && let Ok(quota) = u64::try_from(quota)
        {
            let here = u128::from(quota) * u128::from(CPU_PERIOD_US) / u128::from(period);
            let here = u64::try_from(here).unwrap_or(u64::MAX);
            allowed = Some(allowed.map_or(here, |so_far| so_far.min(here)));
        }
        ancestor = current.parent();
    }
    allowed
}

/// Writes the limits of a cgroup v2 directory (every limit given is one
/// whose controller is enabled for it).
pub(crate) fn write_v2_limits(dir: &Path, limits: &CgroupLimits) -> Result<(), CgroupError> {
    if let Some(pids) = limits.pids {
        control::write(&dir.join("pids.max"), &pids.to_string())?;
    }
    if let Some(bytes) = limits.memory {
        control::write(&dir.join("memory.max"), &bytes.to_string())?;
        // No swap at all: the limit is on what the command holds, tmpfs
        // included. The file exists when swap accounting is on.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            control::write(&swap, "0")?;
        }
    }
    if let Some(cpus) = limits.cpus {
        control::write(
            &dir.join("cpu.max"),
            &format!("{} {CPU_PERIOD_US}", cpu_quota(cpus)),
        )?;
    }
    Ok(())
}

/// Adds the counters of a cgroup v2 directory's `memory.events` and
/// `pids.events` (when those controllers are enabled for it).
pub(crate) fn read_v2_events(dir: &Path, events: &mut LimitEvents) -> Result<(), CgroupError> {
    if let Some(text) = control::read_optional(&dir.join("memory.events"))? {
        events.memory_limit_hits = control::keyed(&text, "max").unwrap_or(0);
        events.oom_kills = control::keyed(&text, "oom_kill").unwrap_or(0);
    }
    if let Some(text) = control::read_optional(&dir.join("pids.events"))? {
        events.pids_limit_hits = control::keyed(&text, "max").unwrap_or(0);
    }
    Ok(())
}

/// What the kernel counted against a command cgroup's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitEvents {
    /// The memory limit the cgroup was made with.
    pub memory_limit: Option<u64>,
    /// The pids limit the cgroup was made with.
    pub pids_limit: Option<u64>,
    /// How often memory use reached the limit (v2 `memory.events` `max`,
    /// v1 `memory.failcnt` or `memory.memsw.failcnt`).
    pub memory_limit_hits: u64,
    /// How many processes the out-of-memory killer killed in the cgroup
    /// (v2 `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`).
    pub oom_kills: u64,
    /// How many forks failed at the pids limit (`pids.events` `max`).
    pub pids_limit_hits: u64,
}

impl LimitEvents {
    /// Whether the out-of-memory killer killed a process of the cgroup.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills > 0
    }

    /// Whether memory use reached the limit (a process may have been
    /// killed, or an allocation or a tmpfs write failed).
    pub fn memory_limit_hit(&self) -> bool {
        self.memory_limit_hits > 0 || self.oom_kills > 0
    }

    /// Whether a fork failed because of the pids limit.
    pub fn pids_limit_hit(&self) -> bool {
        self.pids_limit_hits > 0
    }

    /// A sentence for a result that says which limit the command ran
    /// into, or `None` when it ran into none.
    pub fn explanation(&self) -> Option<String> {
        let mut parts = Vec::new();
        let memory = self
            .memory_limit
            .map_or_else(String::new, |bytes| format!(" ({bytes} bytes)"));
        if self.oom_killed() {
            parts.push(format!(
                "the out-of-memory killer killed {} process(es): limits.memory{memory} was reached",
                self.oom_kills
            ));
        } else if self.memory_limit_hit() {
            parts.push(format!("limits.memory{memory} was reached"));
        }
        if self.pids_limit_hit() {
            let pids = self
                .pids_limit
                .map_or_else(String::new, |pids| format!(" ({pids})"));
            parts.push(format!(
                "limits.pids{pids} was reached: {} fork(s) failed",
                self.pids_limit_hits
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of regular files standing in for a cgroup's control
    /// files.
    fn fake_cgroup(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    fn content(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn v2_limits_are_written_to_their_files() {
        let dir = fake_cgroup(&[
            ("pids.max", "max\n"),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("cpu.max", "max 100000\n"),
        ]);
        let limits = CgroupLimits {
            pids: Some(16),
            memory: Some(64 << 20),
            cpus: Some(1.5),
        };
        write_v2_limits(dir.path(), &limits).unwrap();
        assert_eq!(content(dir.path(), "pids.max"), "16");
        assert_eq!(content(dir.path(), "memory.max"), "67108864");
        assert_eq!(content(dir.path(), "memory.swap.max"), "0");
        assert_eq!(content(dir.path(), "cpu.max"), "150000 100000");
    }

    #[test]
    fn v2_swap_is_left_alone_without_swap_accounting_and_unset_limits_are_not_written() {
        let dir = fake_cgroup(&[("memory.max", "max\n"), ("cpu.max", "max 100000\n")]);
        let limits = CgroupLimits {
            memory: Some(4096),
            cpus: Some(0.01),
            ..CgroupLimits::default()
        };
        write_v2_limits(dir.path(), &limits).unwrap();
        assert_eq!(content(dir.path(), "memory.max"), "4096");
        assert!(!dir.path().join("memory.swap.max").exists());
        assert!(!dir.path().join("pids.max").exists());
        assert_eq!(
            content(dir.path(), "cpu.max"),
            "1000 100000",
            "the kernel's minimum"
        );
    }

    #[test]
    fn a_v2_limit_without_its_controller_file_is_an_error_naming_the_file() {
        let dir = fake_cgroup(&[]);
        let err = write_v2_limits(
            dir.path(),
            &CgroupLimits {
                pids: Some(3),
                ..CgroupLimits::default()
            },
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pids.max") && text.contains('3'), "{text}");
    }

    #[test]
    fn v1_limits_are_written_per_controller() {
        let dir = fake_cgroup(&[
            ("pids.max", "max\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
        ]);
        let limits = CgroupLimits {
            pids: Some(16),
            memory: Some(1 << 20),
            cpus: Some(0.5),
        };
        write_v1_limits(dir.path(), &["memory".to_owned()], &limits).unwrap();
        assert_eq!(content(dir.path(), "memory.limit_in_bytes"), "1048576");
        assert_eq!(
            content(dir.path(), "memory.memsw.limit_in_bytes"),
            "1048576"
        );
        assert_eq!(
            content(dir.path(), "pids.max"),
            "max\n",
            "not this hierarchy's"
        );
        write_v1_limits(
            dir.path(),
            &["cpu".to_owned(), "cpuacct".to_owned()],
            &limits,
        )
        .unwrap();
        assert_eq!(content(dir.path(), "cpu.cfs_quota_us"), "50000");
        assert_eq!(content(dir.path(), "cpu.cfs_period_us"), "100000");
    }

    #[test]
    fn v2_events_are_read_and_explained() {
        let dir = fake_cgroup(&[
            (
                "memory.events",
                "low 0\nhigh 0\nmax 40\noom 2\noom_kill 1\noom_group_kill 0\n",
            ),
            ("pids.events", "max 7\n"),
        ]);
        let mut events = LimitEvents {
            memory_limit: Some(1000),
            pids_limit: Some(16),
            ..LimitEvents::default()
        };
        read_v2_events(dir.path(), &mut events).unwrap();
        assert_eq!(events.memory_limit_hits, 40);
        assert_eq!(events.oom_kills, 1);
        assert_eq!(events.pids_limit_hits, 7);
        let text = events.explanation().unwrap();
        assert!(text.contains("out-of-memory killer killed 1"), "{text}");
        assert!(text.contains("limits.memory (1000 bytes)"), "{text}");
        assert!(
            text.contains("limits.pids (16) was reached: 7 fork(s) failed"),
            "{text}"
        );

        let mut quiet = LimitEvents::default();
        read_v2_events(fake_cgroup(&[]).path(), &mut quiet).unwrap();
        assert_eq!(quiet.explanation(), None);
    }

    #[test]
    fn cpu_quota_rounds_to_microseconds() {
        assert_eq!(cpu_quota(0.5), 50_000);
        assert_eq!(cpu_quota(2.0), 200_000);
        assert_eq!(cpu_quota(0.333_333), 33_333);
        assert_eq!(cpu_quota(0.01), CPU_MIN_QUOTA_US);
        assert_eq!(cpu_quota(175_921_860.444_15), CPU_MAX_QUOTA_US);
    }

    /// `root/a/b/cmd` (in a directory without CPU files, as above a
    /// hierarchy's root), each of `root`, `a` and `b` with the v1 CPU quota
    /// and period given.
    fn cpu_tree(levels: [(&str, &str); 3]) -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let mut dir = top.path().join("root");
        for (index, (quota, period)) in levels.iter().enumerate() {
            if index > 0 {
                dir = dir.join(["a", "b"][index - 1]);
            }
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("cpu.cfs_quota_us"), quota).unwrap();
            fs::write(dir.join("cpu.cfs_period_us"), period).unwrap();
        }
        let cmd = dir.join("cmd");
        fs::create_dir(&cmd).unwrap();
        fs::write(cmd.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        fs::write(cmd.join("cpu.cfs_period_us"), "100000\n").unwrap();
        (top, cmd)
    }

    fn cpus(cpus: f64) -> CgroupLimits {
        CgroupLimits {
            cpus: Some(cpus),
            ..CgroupLimits::default()
        }
    }

    #[test]
    fn a_v1_cpu_quota_is_cut_to_what_the_ancestors_allow() {
        let cpu = ["cpu".to_owned()];
        // berth's own cgroup `a` has 0.5 CPU (per 200 ms), the root none,
        // the base `b` none of its own.
        let (_top, cmd) = cpu_tree([
            ("-1\n", "100000\n"),
            ("100000\n", "200000\n"),
            ("-1\n", "100000\n"),
        ]);
        write_v1_limits(&cmd, &cpu, &cpus(2.0)).unwrap();
        assert_eq!(content(&cmd, "cpu.cfs_quota_us"), "50000");
        write_v1_limits(&cmd, &cpu, &cpus(0.25)).unwrap();
        assert_eq!(
            content(&cmd, "cpu.cfs_quota_us"),
            "25000",
            "a smaller one stays"
        );
        assert_eq!(content(&cmd, "cpu.cfs_period_us"), "100000");

        // No quota above: the limit as asked.
        let unlimited = ("-1\n", "100000\n");
        let (_top, cmd) = cpu_tree([unlimited, unlimited, unlimited]);
        assert_eq!(v1_cpu_allowance(&cmd), None);
        write_v1_limits(&cmd, &cpu, &cpus(3.0)).unwrap();
        assert_eq!(content(&cmd, "cpu.cfs_quota_us"), "300000");

        // The smallest ratio of several wins, rounded down.
        let (_top, cmd) = cpu_tree([
            ("150000\n", "100000\n"),
            ("33333\n", "99999\n"),
            ("-1\n", "100000\n"),
        ]);
        assert_eq!(v1_cpu_allowance(&cmd), Some(33_333));

        // Below the smallest quota berth can write: nothing is written,
        // the ancestor's quota binds.
        let (_top, cmd) = cpu_tree([
            ("-1\n", "100000\n"),
            ("1000\n", "1000000\n"),
            ("-1\n", "100000\n"),
        ]);
        write_v1_limits(&cmd, &cpu, &cpus(1.0)).unwrap();
        assert_eq!(content(&cmd, "cpu.cfs_quota_us"), "-1\n");
    }
}
