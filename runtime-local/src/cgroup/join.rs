//! The part of a command cgroup that runs in forked children: joining it
//! between fork and exec, and emptying it from a keeper process. Both only
//! make async-signal-safe system calls on descriptors opened beforehand.

use std::io;
use std::os::fd::RawFd;

/// The most directories one command cgroup has: one per cgroup v1
/// hierarchy berth uses (pids, memory, cpu, freezer) and a cgroup v2 one.
pub(crate) const MAX_DIRS: usize = 5;

/// How many rounds [`CgroupJoin::kill_in_child`] makes before giving up.
const KILL_ROUNDS: u32 = 2000;

/// The pause between two rounds that found processes, so that the killed
/// ones can exit.
const ROUND_PAUSE_NANOS: libc::c_long = 1_000_000;

/// What to write to a freezer to freeze and thaw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreezerKind {
    /// cgroup v1 `freezer.state`: `FROZEN` / `THAWED`.
    V1,
    /// cgroup v2 `cgroup.freeze`: `1` / `0`.
    V2,
}

impl FreezerKind {
    pub(crate) fn freeze_value(self) -> &'static [u8] {
        match self {
            FreezerKind::V1 => b"FROZEN",
            FreezerKind::V2 => b"1",
        }
    }

    pub(crate) fn thaw_value(self) -> &'static [u8] {
        match self {
            FreezerKind::V1 => b"THAWED",
            FreezerKind::V2 => b"0",
        }
    }
}

/// A command cgroup's descriptors, for forked children: a small `Copy`
/// value that can move into a `pre_exec` hook or a keeper process.
///
/// It holds raw descriptors owned by the
/// [`CommandCgroup`](super::CommandCgroup) it came from: it is valid while
/// that value lives (in the process that made it, and in children forked
/// meanwhile, which inherit the descriptors). The descriptors are
/// close-on-exec, so an exec'd command never holds them.
#[derive(Debug, Clone, Copy)]
pub struct CgroupJoin {
    /// `cgroup.procs` of each directory, open for writing.
    procs: [RawFd; MAX_DIRS],
    /// Each directory itself (`O_PATH`), to read a fresh `cgroup.procs`.
    dirs: [RawFd; MAX_DIRS],
    count: usize,
    /// cgroup v2 `cgroup.kill`, open for writing, or -1.
    kill: RawFd,
    /// The freezer's state file, open for writing, or -1.
    freezer: RawFd,
    freezer_kind: FreezerKind,
}

impl CgroupJoin {
    pub(crate) fn new(
        procs: &[RawFd],
        dirs: &[RawFd],
        kill: Option<RawFd>,
        freezer: Option<(RawFd, FreezerKind)>,
    ) -> CgroupJoin {
        assert!(procs.len() == dirs.len() && procs.len() <= MAX_DIRS);
        let mut join = CgroupJoin {
            procs: [-1; MAX_DIRS],
            dirs: [-1; MAX_DIRS],
            count: procs.len(),
            kill: kill.unwrap_or(-1),
            freezer: freezer.map_or(-1, |(fd, _)| fd),
            freezer_kind: freezer.map_or(FreezerKind::V1, |(_, kind)| kind),
        };
        join.procs[..procs.len()].copy_from_slice(procs);
        join.dirs[..dirs.len()].copy_from_slice(dirs);
        join
    }

    /// The descriptors this value uses, ascending (`count` of the array are
    /// valid), so that a process that closes everything else (a keeper)
    /// keeps them. Allocates nothing.
    pub fn descriptors(&self) -> ([RawFd; 2 * MAX_DIRS + 2], usize) {
        let mut fds = [-1; 2 * MAX_DIRS + 2];
        let mut count = 0;
        for fd in self.procs[..self.count]
            .iter()
            .chain(&self.dirs[..self.count])
            .chain([&self.kill, &self.freezer])
        {
            if *fd >= 0 {
                fds[count] = *fd;
                count += 1;
            }
        }
        fds[..count].sort_unstable();
        (fds, count)
    }

    /// `cgroup.procs` of each directory, open for writing: what a program
    /// started in the command's place writes `0` to, as [`join`](Self::join)
    /// does, to join the cgroup itself.
    pub fn procs(&self) -> &[RawFd] {
        &self.procs[..self.count]
    }

    /// Moves the calling process into the cgroup (writes `0`, which means
    /// "the writing process" in cgroup v1 and v2, to each directory's
    /// `cgroup.procs`). Meant for a `pre_exec` hook: it only calls
    /// `write(2)`, allocates nothing and takes no lock. Run it before
    /// closing inherited descriptors.
    ///
    /// Fails with the first failed write's error (`EBUSY` from a cgroup v2
    /// directory that gained children with controllers, `ENOENT` after the
    /// cgroup was removed, `EAGAIN`/`ENOMEM` from the kernel); the process
    /// may then be in some of the directories already.
    pub fn join(&self) -> io::Result<()> {
        for &fd in &self.procs[..self.count] {
            write_fd(fd, b"0")?;
        }
        Ok(())
    }

    /// Kills every process in the cgroup and returns once it is empty, for
    /// a keeper process that must empty it when berth dies: only
    /// async-signal-safe calls (`write`, `openat`, `read`, `kill`,
    /// `nanosleep`), no allocation.
    ///
    /// With cgroup v2's `cgroup.kill` (Linux 5.14 and later) the kernel
    /// kills every member at once, forks in flight included; then the
    /// members are signalled again until none is left. Otherwise it
    /// repeats freeze (when a freezer is there), read `cgroup.procs` of
    /// each directory, `SIGKILL` each process, thaw, until a round finds
    /// none. The caller is never killed: when it is a member itself, it
    /// uses neither `cgroup.kill` nor the freezer (which would kill or
    /// freeze it too) and only signals the others, which a fork bomb can
    /// outrun for a while; a keeper should stay out of the cgroup.
    ///
    /// Fails with `EBUSY` when processes are still listed after
    /// [`KILL_ROUNDS`] rounds (a process stuck in the kernel).
    pub fn kill_in_child(&self) -> io::Result<()> {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let mut member = false;
        for &dir in &self.dirs[..self.count] {
            member |= scan_members(dir, me, false).1;
        }
        if self.kill >= 0 && !member {
            // A failure leaves the loop below to do the work.
            let _ = write_fd(self.kill, b"1");
        }
        let freezer = if member { -1 } else { self.freezer };
        for _ in 0..KILL_ROUNDS {
            if freezer >= 0 {
                let _ = write_fd(freezer, self.freezer_kind.freeze_value());
            }
            let mut found = 0usize;
            for &dir in &self.dirs[..self.count] {
                found += scan_members(dir, me, true).0;
            }
            if freezer >= 0 {
                let _ = write_fd(freezer, self.freezer_kind.thaw_value());
            }
            if found == 0 {
                return Ok(());
            }
            pause();
        }
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    }
}

/// Writes `bytes` to `fd` in one `write(2)`, as cgroup files need.
pub(crate) fn write_fd(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: the buffer is valid for its length; a bad fd is an error.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn pause() {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: ROUND_PAUSE_NANOS,
    };
    // SAFETY: nanosleep reads a valid timespec; a NULL remainder is allowed.
    unsafe {
        libc::nanosleep(&pause, std::ptr::null_mut());
    }
}

/// Reads `cgroup.procs` under the directory `dir`, sends `SIGKILL` to
/// every process listed but `me` when `signal`, and returns how many others
/// it found and whether `me` is listed.
///
/// The file is opened afresh each time: cgroup v1 keeps the list it built
/// for an open file for a while and serves it again to reads from offset 0,
/// so a descriptor opened once would show stale members.
fn scan_members(dir: RawFd, me: libc::pid_t, signal: bool) -> (usize, bool) {
    // SAFETY: the path is a valid C string; openat with a directory fd
    // that may have been closed just fails.
    let fd = unsafe {
        libc::openat(
            dir,
            c"cgroup.procs".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return (0, false);
    }
    let mut buf = [0u8; 4096];
    let mut parser = PidParser::default();
    let mut found = 0;
    let mut listed = false;
    let mut each = |pid: libc::pid_t| {
        if pid == me {
            listed = true;
            return;
        }
        found += 1;
        if signal {
            // SAFETY: pid is positive (PidParser never yields 0), so this
            // signals one process, never a group.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    };
    loop {
        // SAFETY: reads into a stack buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        parser.feed(&buf[..n as usize], &mut each);
    }
    parser.finish(&mut each);
    // SAFETY: fd was opened above and is closed once.
    unsafe {
        libc::close(fd);
    }
    (found, listed)
}

/// Parses the decimal pids of a `cgroup.procs` text fed in arbitrary
/// chunks, without allocating. Zero (a process outside this pid namespace)
/// and numbers out of range are skipped.
#[derive(Debug, Default)]
pub(crate) struct PidParser {
    value: i64,
    digits: bool,
}

impl PidParser {
    pub(crate) fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(libc::pid_t)) {
        for &byte in bytes {
            if byte.is_ascii_digit() {
                self.value =
                    (self.value * 10 + i64::from(byte - b'0')).min(i64::from(i32::MAX) + 1);
                self.digits = true;
            } else {
                self.emit(&mut each);
            }
        }
    }

    pub(crate) fn finish(&mut self, mut each: impl FnMut(libc::pid_t)) {
        self.emit(&mut each);
    }

    fn emit(&mut self, each: &mut impl FnMut(libc::pid_t)) {
        if self.digits
            && let Ok(pid) = libc::pid_t::try_from(self.value)
            && pid > 0
        {
            each(pid);
        }
        self.value = 0;
        self.digits = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(text: &[u8], chunk: usize) -> Vec<i32> {
        let mut parser = PidParser::default();
        let mut pids = Vec::new();
        for part in text.chunks(chunk) {
            parser.feed(part, |pid| pids.push(pid));
        }
        parser.finish(|pid| pids.push(pid));
        pids
    }

    #[test]
    fn pids_split_across_reads_are_parsed_whole() {
        let text = b"1\n23\n456\n0\n99999999999\n7890";
        for chunk in 1..=text.len() {
            assert_eq!(parse_in_chunks(text, chunk), [1, 23, 456, 7890], "{chunk}");
        }
        assert!(parse_in_chunks(b"", 4).is_empty());
    }

    #[test]
    fn join_with_no_directory_does_nothing() {
        let join = CgroupJoin::new(&[], &[], None, None);
        join.join().unwrap();
        join.kill_in_child().unwrap();
    }
}
