//! Who owns a command cgroup, written into its name so that garbage
//! collection can tell a live owner from a dead one without any other
//! record (a cgroup file system holds no files of berth's).
//!
//! A name is `berth-<pid namespace>-<pid>-<start time>-<seq>[-<hint>]`:
//! the owner's pid namespace (the inode of `/proc/<pid>/ns/pid`), its pid
//! and its start time (field 22 of `/proc/<pid>/stat`, in clock ticks since
//! boot), so a pid reused by another process does not keep a dead owner's
//! cgroup alive, a sequence number unique within the owner, and a short
//! hint for people reading `/sys/fs/cgroup`.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

/// The prefix of every command cgroup's name.
pub(crate) const NAME_PREFIX: &str = "berth-";

/// The longest hint kept in a name.
const HINT_LEN: usize = 32;

/// The process that owns a command cgroup: when it is gone, the cgroup is
/// garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The inode of the owner's pid namespace, in which `pid` is valid.
    pub pid_namespace: u64,
    /// The owner's process id.
    pub pid: u32,
    /// The owner's start time, in clock ticks after boot.
    pub start_time: u64,
}

impl Owner {
    /// This process.
    ///
    /// Fails when `/proc` is not mounted or unreadable.
    pub fn current() -> io::Result<Owner> {
        Owner::of_pid(std::process::id())
    }

    /// The running process `pid`, as seen from this process's pid
    /// namespace.
    ///
    /// Fails when the process does not exist, or `/proc` is not mounted or
    /// not readable for it.
    pub fn of_pid(pid: u32) -> io::Result<Owner> {
        let pid_namespace = fs::metadata(format!("/proc/{pid}/ns/pid"))?.ino();
        let start_time = start_time(pid)?;
        Ok(Owner {
            pid_namespace,
            pid,
            start_time,
        })
    }

    /// Whether this owner is still running (its pid exists with the same
    /// start time). `None` when it lives in another pid namespace than this
    /// process, so nothing can be said about it from here.
    pub fn is_alive(&self) -> Option<bool> {
        let here = fs::metadata("/proc/self/ns/pid").ok()?.ino();
        if here != self.pid_namespace {
            return None;
        }
        Some(start_time(self.pid).is_ok_and(|start| start == self.start_time))
    }

    /// The name of this owner's cgroup number `seq`.
    pub(crate) fn cgroup_name(&self, seq: u64, hint: &str) -> String {
        let mut name = format!(
            "{NAME_PREFIX}{}-{}-{}-{seq}",
            self.pid_namespace, self.pid, self.start_time
        );
        let hint: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .take(HINT_LEN)
            .collect();
        if !hint.is_empty() {
            name.push('-');
            name.push_str(&hint);
        }
        name
    }

    /// The owner a cgroup name written by [`Owner::cgroup_name`] records,
    /// or `None` for any other name.
    pub(crate) fn from_cgroup_name(name: &str) -> Option<Owner> {
        let rest = name.strip_prefix(NAME_PREFIX)?;
        let mut parts = rest.splitn(5, '-');
        let pid_namespace = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        let _seq: u64 = parts.next()?.parse().ok()?;
        Some(Owner {
            pid_namespace,
            pid,
            start_time,
        })
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no start time"),
        )
    })
}

/// Field 22 of a `/proc/<pid>/stat` text. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name come fields 3 (state) onwards: field 22 is the 20th.
    after_name.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_hints_are_sanitised() {
        let owner = Owner {
            pid_namespace: 4026531836,
            pid: 1234,
            start_time: 98765,
        };
        let name = owner.cgroup_name(7, "run python/../x y");
        assert_eq!(name, "berth-4026531836-1234-98765-7-runpython..xy");
        assert_eq!(Owner::from_cgroup_name(&name), Some(owner));
        assert_eq!(owner.cgroup_name(0, ""), "berth-4026531836-1234-98765-0");
        assert_eq!(
            Owner::from_cgroup_name("berth-4026531836-1234-98765-0"),
            Some(owner)
        );
        let long = owner.cgroup_name(1, &"h".repeat(100));
        assert!(long.ends_with(&format!("-{}", "h".repeat(HINT_LEN))));
    }

    #[test]
    fn foreign_names_have_no_owner() {
        for name in [
            "berth-host",
            "berth",
            "berth-1-2-3",
            "berth-x-2-3-4",
            "docker-1-2-3-4",
            "berth-1-2-3-x",
        ] {
            assert_eq!(Owner::from_cgroup_name(name), None, "{name}");
        }
    }

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat = "26989 (a) b (c) R 26966 26966 8217 0 -1 4194304 126 0 0 0 0 0 0 0 20 0 1 0 80163 3133440 384";
        assert_eq!(parse_start_time(stat), Some(80163));
        assert_eq!(parse_start_time("1 (x) R 2 3"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        let me = Owner::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.is_alive(), Some(true));

        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let owner = Owner::of_pid(child.id()).unwrap();
        assert_eq!(owner.is_alive(), Some(true));
        drop(child.stdin.take());
        child.wait().unwrap();
        assert_eq!(owner.is_alive(), Some(false));

        let reused = Owner {
            start_time: me.start_time + 1,
            ..me
        };
        assert_eq!(reused.is_alive(), Some(false), "same pid, other start");
        let elsewhere = Owner {
            pid_namespace: me.pid_namespace + 1,
            ..me
        };
        assert_eq!(elsewhere.is_alive(), None);
    }
}
