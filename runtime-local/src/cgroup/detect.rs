//! What cgroup hierarchies this host has, read from `/proc/self/mountinfo`
//! and `/proc/self/cgroup`, and where in them berth may create cgroups.
//!
//! Everything here that decides is a pure function of the texts and of a
//! few facts probed from the file system ([`V2Facts`]), so each kind of
//! host (cgroup v1, v2, hybrid, delegated to a user, inside a container) is
//! a unit test with a fixture.

use std::path::{Path, PathBuf};

use session_core::paths::unescape_mountinfo;

/// The leaf cgroup berth moves itself into when its own cgroup must enable
/// controllers for its commands (cgroup v2's "no internal processes" rule).
pub(crate) const HOST_LEAF: &str = "berth-host";

/// The cgroup v1 controllers the kernel knows; other options of a `cgroup`
/// mount are flags (`rw`, `xattr`, `name=systemd`...).
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "io",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Which cgroup hierarchies a host has mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// Only the unified cgroup v2 hierarchy (current distributions).
    V2,
    /// Only cgroup v1 controller hierarchies.
    V1,
    /// cgroup v1 controllers and a cgroup v2 hierarchy beside them (which
    /// holds the controllers that no v1 hierarchy took, often none).
    Hybrid,
    /// No cgroup file system is mounted where berth can see it.
    Absent,
}

impl std::fmt::Display for Hierarchy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hierarchy::V2 => "cgroup v2",
            Hierarchy::V1 => "cgroup v1",
            Hierarchy::Hybrid => "hybrid cgroup v1 + v2",
            Hierarchy::Absent => "no cgroup file system",
        })
    }
}

/// One cgroup file system mount, from a line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// `None` for cgroup v2; the controllers for cgroup v1 (empty for a
    /// named hierarchy such as `name=systemd`).
    pub(crate) v1_controllers: Option<Vec<String>>,
    /// The cgroup this mount shows at its mount point (`/` unless it is a
    /// bind mount of a sub-tree, as in some containers).
    pub(crate) root: String,
    /// Where it is mounted.
    pub(crate) mount_point: PathBuf,
}

/// One line of `/proc/self/cgroup`: `ID:CONTROLLERS:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// The hierarchy id (`0` for cgroup v2).
    pub(crate) id: u32,
    /// The controllers of a v1 hierarchy (`name=...` included); empty for
    /// cgroup v2.
    pub(crate) controllers: Vec<String>,
    /// The cgroup, relative to the hierarchy's root (or to the cgroup
    /// namespace's root).
    pub(crate) path: String,
}

/// The cgroup mounts listed in a `/proc/self/mountinfo` text, in order.
/// Lines that are not cgroup mounts, or are malformed, are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // The optional fields end with a lone `-`; paths never contain a
        // bare ` - ` because mountinfo escapes spaces.
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        if fields.len() < 6 {
            continue;
        }
        let mut right = right.split(' ');
        let (Some(fstype), Some(_source)) = (right.next(), right.next()) else {
            continue;
        };
        let super_options = right.next().unwrap_or("");
        let v1_controllers = match fstype {
            "cgroup2" => None,
            "cgroup" => Some(
                super_options
                    .split(',')
                    .filter(|option| V1_CONTROLLERS.contains(option))
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => continue,
        };
        mounts.push(CgroupMount {
            v1_controllers,
            root: unescape_mountinfo(fields[3]),
            mount_point: PathBuf::from(unescape_mountinfo(fields[4])),
        });
    }
    mounts
}

/// The lines of a `/proc/self/cgroup` text. Malformed lines are skipped.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                id,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// A cgroup v1 hierarchy with at least one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Mount {
    /// Its controllers (`cpu`, `cpuacct` when they are mounted together).
    pub(crate) controllers: Vec<String>,
    /// Where it is mounted.
    pub(crate) mount_point: PathBuf,
    /// The directory of this process's own cgroup in this hierarchy, when
    /// the mount shows it.
    pub(crate) own: Option<PathBuf>,
}

/// The cgroup v2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V2Mount {
    /// Where it is mounted.
    pub(crate) mount_point: PathBuf,
    /// The directory of this process's own cgroup, when the mount shows it.
    pub(crate) own: Option<PathBuf>,
}

/// What the two texts say about this host's cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) hierarchy: Hierarchy,
    /// One entry per v1 hierarchy with controllers (its first mount).
    pub(crate) v1: Vec<V1Mount>,
    /// The v2 hierarchy (its first mount showing the whole hierarchy, else
    /// its first mount).
    pub(crate) v2: Option<V2Mount>,
}

#[cfg(test)]
impl Layout {
    /// The v1 hierarchy holding `controller`, if one is mounted.
    pub(crate) fn v1_with(&self, controller: &str) -> Option<&V1Mount> {
        self.v1
            .iter()
            .find(|mount| mount.controllers.iter().any(|c| c == controller))
    }
}

/// The directory of `path` (a cgroup relative to the hierarchy) under a
/// mount that shows the cgroup `root`, or `None` when the mount does not
/// show it.
fn dir_in_mount(mount_point: &Path, root: &str, path: &str) -> Option<PathBuf> {
    let relative = if root == "/" {
        path.strip_prefix('/')?
    } else {
        let rest = path.strip_prefix(root)?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        rest.trim_start_matches('/')
    };
    // A process outside the cgroup namespace's root sees `/../..`.
    if relative.split('/').any(|part| part == "..") {
        return None;
    }
    Some(if relative.is_empty() {
        mount_point.to_path_buf()
    } else {
        mount_point.join(relative)
    })
}

/// Whether a `/proc/self/cgroup` line's controllers are those of a mount
/// (in any order; a named hierarchy's `name=` entry never matches).
fn same_controllers(membership: &[String], mount: &[String]) -> bool {
    membership.len() == mount.len() && mount.iter().all(|c| membership.contains(c))
}

/// Combines the mounts and this process's memberships into a [`Layout`].
pub(crate) fn layout(mounts: &[CgroupMount], memberships: &[Membership]) -> Layout {
    let mut v1: Vec<V1Mount> = Vec::new();
    let mut v2_mounts = Vec::new();
    for mount in mounts {
        match &mount.v1_controllers {
            Some(controllers) if controllers.is_empty() => {}
            Some(controllers) => {
                if !v1.iter().any(|known| &known.controllers == controllers) {
                    let own = memberships
                        .iter()
                        .find(|m| m.id != 0 && same_controllers(&m.controllers, controllers))
                        .and_then(|m| dir_in_mount(&mount.mount_point, &mount.root, &m.path));
                    v1.push(V1Mount {
                        controllers: controllers.clone(),
                        mount_point: mount.mount_point.clone(),
                        own,
                    });
                }
            }
            None => v2_mounts.push(mount),
        }
    }
    let v2_membership = memberships
        .iter()
        .find(|m| m.id == 0 && m.controllers.is_empty());
    let v2 = v2_mounts
        .iter()
        .find(|mount| mount.root == "/")
        .or(v2_mounts.first())
        .map(|mount| V2Mount {
            mount_point: mount.mount_point.clone(),
            own: v2_membership.and_then(|m| dir_in_mount(&mount.mount_point, &mount.root, &m.path)),
        });
    let hierarchy = match (v1.is_empty(), v2.is_some()) {
        (false, true) => Hierarchy::Hybrid,
        (false, false) => Hierarchy::V1,
        (true, true) => Hierarchy::V2,
        (true, false) => Hierarchy::Absent,
    };
    Layout { hierarchy, v1, v2 }
}

/// What was probed about berth's own cgroup in the cgroup v2 hierarchy,
/// the one place berth's cgroup v2 base may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V2Facts {
    /// The mount point of the hierarchy.
    pub(crate) mount_point: PathBuf,
    /// The candidate in berth's own cgroup (see [`own_parent`]), if the
    /// mount shows it.
    pub(crate) own: Option<OwnFacts>,
    /// This process.
    pub(crate) self_pid: u32,
    /// The user berth runs as, for messages.
    pub(crate) uid: u32,
}

/// What was probed about berth's own cgroup (or, when berth already sits
/// in a [`HOST_LEAF`], its parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnFacts {
    /// The cgroup that would hold berth's base.
    pub(crate) dir: PathBuf,
    /// Whether berth may create cgroups in it, move processes into them and
    /// enable controllers (the directory, `cgroup.procs` and
    /// `cgroup.subtree_control` are writable).
    pub(crate) writable: bool,
    /// Whether `dir` is the real root of the hierarchy (which may hold
    /// processes and still enable controllers), not the root of a cgroup
    /// namespace.
    pub(crate) is_real_root: bool,
    /// The processes in `dir` itself.
    pub(crate) procs: Vec<u32>,
}

/// The cgroup in which berth's base would go: its own cgroup, or that
/// cgroup's parent when berth already moved itself into a [`HOST_LEAF`].
pub(crate) fn own_parent(own: &Path) -> PathBuf {
    if own.file_name().is_some_and(|name| name == HOST_LEAF)
        && let Some(parent) = own.parent()
    {
        return parent.to_path_buf();
    }
    own.to_path_buf()
}

/// Where berth's cgroup v2 base goes. It is always below berth's own
/// cgroup, so that whatever binds the cgroup berth runs in (limits, and
/// the BPF programs attached to it) binds its commands too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum V2Decision {
    /// Under `parent`, which can enable controllers for its children now.
    Ready { parent: PathBuf },
    /// Under `parent`, once berth, the only process in `parent`, has moved
    /// itself into `leaf` (`parent/berth-host`).
    MoveSelf { parent: PathBuf, leaf: PathBuf },
    /// Under `parent`, berth's own cgroup, which other processes share:
    /// cgroup v2's "no internal processes" rule keeps it from enabling
    /// controllers, so command cgroups made there serve to kill and freeze
    /// only, and a limit that needs a cgroup v2 controller is refused with
    /// `reason`.
    Shared { parent: PathBuf, reason: String },
    /// Nowhere; why, and what to do about it.
    Refused { reason: String },
}

const SCOPE_ADVICE: &str = "run berth in a delegated cgroup of its own, e.g. \
     `systemd-run --user --scope -p Delegate=yes berth ...` \
     (or `systemd-run --scope -p Delegate=yes berth ...` as root)";

/// Decides where berth's cgroup v2 base goes (see the module documentation
/// of `cgroup` for the rules).
pub(crate) fn decide_v2(facts: &V2Facts) -> V2Decision {
    let Some(own) = &facts.own else {
        return V2Decision::Refused {
            reason: format!(
                "berth's own cgroup is not visible under `{}` (/proc/self/cgroup names \
                 a cgroup outside this mount); {SCOPE_ADVICE}",
                facts.mount_point.display()
            ),
        };
    };
    if !own.writable {
        return V2Decision::Refused {
            reason: format!(
                "berth's own cgroup `{}` is not delegated to uid {} (it, its cgroup.procs \
                 or its cgroup.subtree_control is not writable); {SCOPE_ADVICE}",
                own.dir.display(),
                facts.uid
            ),
        };
    }
    if own.is_real_root || own.procs.is_empty() {
        return V2Decision::Ready {
            parent: own.dir.clone(),
        };
    }
    if own.procs == [facts.self_pid] {
        return V2Decision::MoveSelf {
            parent: own.dir.clone(),
            leaf: own.dir.join(HOST_LEAF),
        };
    }
    let others = own
        .procs
        .iter()
        .filter(|&&pid| pid != facts.self_pid)
        .count();
    V2Decision::Shared {
        parent: own.dir.clone(),
        reason: format!(
            "berth's own cgroup `{}` holds {others} process(es) besides berth, so cgroup \
             v2's \"no internal processes\" rule keeps it from enabling controllers for \
             berth's command cgroups, and berth does not put its commands outside its own \
             cgroup, where that cgroup's limits would not bind them; {SCOPE_ADVICE}",
            own.dir.display()
        ),
    }
}

/// Parses the process ids of a `cgroup.procs` text.
pub(crate) fn parse_pids(text: &str) -> Vec<u32> {
    text.split_ascii_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This project's machines: v1 controllers, an empty cgroup2 at
    /// `/sys/fs/cgroup/unified`.
    const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/3d02
1:cpu:/
0::/
";

    /// A Debian 10 style container host: `cpu,cpuacct` mounted together,
    /// no cgroup2, berth inside a Docker container's sub-tree.
    const V1_MOUNTINFO: &str = "\
25 21 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
26 25 0:23 /docker/abc /sys/fs/cgroup/systemd rw,nosuid shared:5 - cgroup cgroup rw,xattr,name=systemd
29 25 0:26 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:8 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 /docker/abc /sys/fs/cgroup/pids rw,nosuid shared:9 - cgroup cgroup rw,pids
31 25 0:28 /docker/abc /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
32 25 0:28 /docker/abc /sys/fs/cgroup/memory\\040copy rw,nosuid shared:10 - cgroup cgroup rw,memory
";
    const V1_CGROUP: &str = "\
12:pids:/docker/abc
5:cpu,cpuacct:/docker/abc
4:memory:/docker/abc
1:name=systemd:/docker/abc
";

    /// A systemd distribution with cgroup v2 only, berth started by a user
    /// in a terminal.
    const V2_MOUNTINFO: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const V2_CGROUP: &str =
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope\n";

    #[test]
    fn hybrid_host_has_v1_controllers_and_an_unified_mount() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 7, "{mounts:?}");
        assert_eq!(
            mounts[0].v1_controllers.as_deref(),
            Some(&["cpu".to_owned()][..])
        );
        assert_eq!(
            mounts[5].v1_controllers.as_deref(),
            Some(&[][..]),
            "name=systemd is no controller"
        );
        let layout = layout(&mounts, &parse_proc_cgroup(HYBRID_CGROUP));
        assert_eq!(layout.hierarchy, Hierarchy::Hybrid);
        assert_eq!(layout.v1.len(), 5, "the named hierarchy is left out");
        assert_eq!(
            layout.v1_with("pids").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/pids")
        );
        assert_eq!(
            layout.v1_with("cpu").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert!(layout.v1_with("blkio").is_none());
        let v2 = layout.v2.unwrap();
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v2.own.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn v1_container_host_with_comounted_cpu_and_escaped_paths() {
        let mounts = parse_mountinfo(V1_MOUNTINFO);
        assert_eq!(mounts.len(), 5, "{mounts:?}");
        assert_eq!(mounts[1].root, "/docker/abc");
        assert_eq!(
            mounts[4].mount_point,
            Path::new("/sys/fs/cgroup/memory copy"),
            "\\040 is a space"
        );
        let layout = layout(&mounts, &parse_proc_cgroup(V1_CGROUP));
        assert_eq!(layout.hierarchy, Hierarchy::V1);
        assert_eq!(
            layout.v1.len(),
            3,
            "a second mount of memory is one hierarchy"
        );
        let cpu = layout.v1_with("cpu").unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            layout.v1_with("memory").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert!(layout.v1_with("freezer").is_none());
        assert!(layout.v2.is_none());
    }

    #[test]
    fn v2_user_host_finds_the_own_cgroup() {
        let memberships = parse_proc_cgroup(V2_CGROUP);
        assert_eq!(memberships.len(), 1);
        assert_eq!(memberships[0].id, 0);
        assert!(memberships[0].controllers.is_empty());
        let layout = layout(&parse_mountinfo(V2_MOUNTINFO), &memberships);
        assert_eq!(layout.hierarchy, Hierarchy::V2);
        assert!(layout.v1.is_empty());
        let v2 = layout.v2.unwrap();
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            v2.own.as_deref(),
            Some(Path::new(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope"
            ))
        );
    }

    #[test]
    fn no_cgroup_mount_is_absent() {
        let layout = layout(
            &parse_mountinfo("22 28 0:21 / /sys rw - sysfs sysfs rw\n"),
            &parse_proc_cgroup("0::/\n"),
        );
        assert_eq!(layout.hierarchy, Hierarchy::Absent);
    }

    #[test]
    fn own_cgroup_outside_the_mount_is_not_visible() {
        let mount = Path::new("/sys/fs/cgroup");
        assert_eq!(dir_in_mount(mount, "/", "/../../x"), None);
        assert_eq!(dir_in_mount(mount, "/a/b", "/a/bc"), None);
        assert_eq!(
            dir_in_mount(mount, "/a/b", "/a/b/c").as_deref(),
            Some(Path::new("/sys/fs/cgroup/c"))
        );
        assert_eq!(dir_in_mount(mount, "/a/b", "/a/b").as_deref(), Some(mount));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_mountinfo("garbage\n1 2 3 - cgroup2\n").is_empty());
        assert_eq!(parse_proc_cgroup("x:y:z\n3:pids\n0::/ok\n").len(), 1);
    }

    fn facts(own: Option<OwnFacts>) -> V2Facts {
        V2Facts {
            mount_point: PathBuf::from("/sys/fs/cgroup"),
            own,
            self_pid: 42,
            uid: 1000,
        }
    }

    fn own(dir: &str, writable: bool, procs: &[u32]) -> OwnFacts {
        OwnFacts {
            dir: PathBuf::from(dir),
            writable,
            is_real_root: false,
            procs: procs.to_vec(),
        }
    }

    const USER_SCOPE: &str =
        "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope";

    #[test]
    fn berth_in_the_real_root_uses_the_root_even_with_processes_in_it() {
        let root = OwnFacts {
            is_real_root: true,
            ..own("/sys/fs/cgroup", true, &[1, 2, 42])
        };
        assert_eq!(
            decide_v2(&facts(Some(root))),
            V2Decision::Ready {
                parent: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn a_delegated_scope_holding_only_berth_means_moving_berth_into_a_leaf() {
        let decision = decide_v2(&facts(Some(own(USER_SCOPE, true, &[42]))));
        assert_eq!(
            decision,
            V2Decision::MoveSelf {
                parent: PathBuf::from(USER_SCOPE),
                leaf: Path::new(USER_SCOPE).join(HOST_LEAF),
            }
        );
        // After the move, a berth started from the leaf uses the parent,
        // which is then empty.
        assert_eq!(
            own_parent(&Path::new(USER_SCOPE).join(HOST_LEAF)),
            Path::new(USER_SCOPE)
        );
        let decision = decide_v2(&facts(Some(own(USER_SCOPE, true, &[]))));
        assert_eq!(
            decision,
            V2Decision::Ready {
                parent: PathBuf::from(USER_SCOPE)
            }
        );
    }

    #[test]
    fn a_shared_cgroup_keeps_command_cgroups_inside_without_controllers() {
        // As root too: the hierarchy's root is writable, but a command
        // cgroup there would leave the cgroup berth runs in.
        let V2Decision::Shared { parent, reason } =
            decide_v2(&facts(Some(own(USER_SCOPE, true, &[42, 7, 8]))))
        else {
            panic!("a scope shared with a shell must keep berth's cgroups inside it");
        };
        assert_eq!(parent, Path::new(USER_SCOPE));
        assert!(
            reason.contains("holds 2 process(es) besides berth"),
            "{reason}"
        );
        assert!(reason.contains("no internal processes"), "{reason}");
        assert!(reason.contains("would not bind them"), "{reason}");
        assert!(
            reason.contains("systemd-run --user --scope -p Delegate=yes"),
            "{reason}"
        );
    }

    #[test]
    fn an_undelegated_or_invisible_cgroup_is_refused_with_advice() {
        let V2Decision::Refused { reason } = decide_v2(&facts(Some(own(USER_SCOPE, false, &[42]))))
        else {
            panic!("an undelegated cgroup must be refused");
        };
        assert!(reason.contains("is not delegated to uid 1000"), "{reason}");
        assert!(reason.contains("Delegate=yes"), "{reason}");

        let V2Decision::Refused { reason } = decide_v2(&facts(None)) else {
            panic!("no own cgroup must be refused");
        };
        assert!(reason.contains("not visible"), "{reason}");
    }

    #[test]
    fn a_cgroup_namespace_root_is_not_the_real_root() {
        // berth alone in a container's cgroup namespace: it moves into a
        // leaf, as its root is an ordinary cgroup of the host's hierarchy.
        assert_eq!(
            decide_v2(&facts(Some(own("/sys/fs/cgroup", true, &[42])))),
            V2Decision::MoveSelf {
                parent: PathBuf::from("/sys/fs/cgroup"),
                leaf: PathBuf::from("/sys/fs/cgroup/berth-host"),
            }
        );
        // Beside the container's init, controllers cannot be had there.
        assert!(matches!(
            decide_v2(&facts(Some(own("/sys/fs/cgroup", true, &[1, 42])))),
            V2Decision::Shared { .. }
        ));
    }

    #[test]
    fn v1_hierarchies_know_berths_own_cgroup() {
        let hybrid = layout(
            &parse_mountinfo(HYBRID_MOUNTINFO),
            &parse_proc_cgroup(HYBRID_CGROUP),
        );
        assert_eq!(
            hybrid.v1_with("memory").unwrap().own.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/3d02"))
        );
        assert_eq!(
            hybrid.v1_with("pids").unwrap().own.as_deref(),
            Some(Path::new("/sys/fs/cgroup/pids"))
        );
        // A container's view: the mount shows the container's cgroup as
        // its root, and `cpu,cpuacct` matches whatever the order.
        let container = layout(
            &parse_mountinfo(V1_MOUNTINFO),
            &parse_proc_cgroup(
                "12:pids:/docker/abc/inner\n5:cpuacct,cpu:/docker/abc\n4:memory:/elsewhere\n",
            ),
        );
        assert_eq!(
            container.v1_with("pids").unwrap().own.as_deref(),
            Some(Path::new("/sys/fs/cgroup/pids/inner"))
        );
        assert_eq!(
            container.v1_with("cpu").unwrap().own.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            container.v1_with("memory").unwrap().own,
            None,
            "a cgroup outside the mount's root is not visible"
        );
    }

    #[test]
    fn pids_are_parsed_from_procs_text() {
        assert_eq!(parse_pids("12\n345\n\n"), [12, 345]);
        assert!(parse_pids("").is_empty());
    }
}
