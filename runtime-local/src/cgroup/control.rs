//! Reading and writing cgroup control files and directories, each failure
//! naming its path.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// The most directories [`subtree`] lists under one command cgroup (a
/// command that made more sub-cgroups than this is not cleaned up whole).
const SUBTREE_LIMIT: usize = 4096;

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// Writes `value` to a control file in a single `write(2)` (cgroup files
/// take one value per write). The file must exist: a missing control file
/// means the controller is not there, which is an error, not something to
/// create.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let failed = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(failed)?;
    file.write_all(value.as_bytes()).map_err(failed)
}

/// Reads a control file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(io_error("reading", path))
}

/// Reads a control file that may not exist (a controller's optional file).
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error("reading", path)(err)),
    }
}

/// The value of `key` in a flat keyed file (`key value` lines, as in
/// `memory.events`, `pids.events`, `memory.oom_control`).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// Whether the effective user may write `path` (its mode, its owner, and a
/// read-only mount all count).
pub(crate) fn writable(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid C string; faccessat only reads it.
    let status = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK,
            libc::AT_EACCESS,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates a directory whose parent exists; one that already exists is
/// fine.
pub(crate) fn make_dir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(io_error("creating cgroup", path)(err)),
    }
}

/// `dir` and every cgroup below it, parents before children, without
/// recursion. A directory that vanishes meanwhile is left out.
pub(crate) fn subtree(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut found = vec![dir.to_path_buf()];
    let mut next = 0;
    while next < found.len() && found.len() < SUBTREE_LIMIT {
        let current = found[next].clone();
        next += 1;
        let entries = match fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io_error("listing cgroup", &current)(err)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error("listing cgroup", &current))?;
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                found.push(entry.path());
            }
        }
    }
    if !dir.exists() {
        found.remove(0);
    }
    Ok(found)
}

/// Removes a cgroup directory, retrying while the kernel still answers
/// `EBUSY` (a killed task not yet released) until `deadline`. One that is
/// already gone is fine.
pub(crate) fn remove_dir(path: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let mut pause = Duration::from_micros(200);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(err) => return Err(io_error("removing cgroup", path)(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_found_by_whole_key() {
        let text = "low 0\nhigh 3\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(text, "max"), Some(12));
        assert_eq!(keyed(text, "oom"), Some(2));
        assert_eq!(keyed(text, "oom_kill"), Some(1));
        assert_eq!(keyed(text, "missing"), None);
        assert_eq!(keyed("max x\n", "max"), None);
    }

    #[test]
    fn writes_replace_the_content_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids.max");
        fs::write(&file, "max\n").unwrap();
        write(&file, "16").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "16");
        let err = write(&dir.path().join("absent"), "1").unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
        assert_eq!(read_optional(&dir.path().join("absent")).unwrap(), None);
    }

    #[test]
    fn subtree_lists_parents_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cg");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("c")).unwrap();
        fs::write(root.join("cgroup.procs"), "").unwrap();
        let found = subtree(&root).unwrap();
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found[0], root);
        let a = found.iter().position(|p| p.ends_with("a")).unwrap();
        let b = found.iter().position(|p| p.ends_with("a/b")).unwrap();
        assert!(a < b);
        assert!(subtree(&dir.path().join("gone")).unwrap().is_empty());
        let deadline = Instant::now();
        for path in found.iter().rev().filter(|p| p.is_dir()) {
            if path != &root {
                remove_dir(path, deadline).unwrap();
            }
        }
        remove_dir(&dir.path().join("gone"), deadline).unwrap();
    }
}
