//! Whether a plugin directory or library may be loaded at all: nobody but
//! its owner may be able to change it, and its owner must be root or the
//! user berth runs as, checked before anything is opened (as ssh does with
//! its `StrictModes`).
//!
//! Loading a library runs its code (its ELF constructors run inside
//! `dlopen`), in berth's process and with berth's privileges, so a library
//! another user can replace, or drop into the plugin directory, is that
//! user's code running as berth's user. The rules:
//!
//! * Paths are resolved one component at a time, the way the kernel does,
//!   and every step is judged: each directory passed through by the rule
//!   for ancestors below, and each **symlink** followed must itself be
//!   owned by root or this user (in a sticky directory such as `/tmp`, a
//!   symlink's owner can swap it for another at any time). So what is
//!   checked is what is opened: no user other than root and this one can
//!   change where the path leads between the check and the load.
//! * The **plugin directory** and each **library** must be owned by root or
//!   by this process's effective user, and must not be writable by group or
//!   others. A library must be a regular file.
//! * Each **ancestor** of the directory (and of a library's real path, which
//!   may lie elsewhere) must be owned by root or this user, and may be
//!   writable by group or others only with the sticky bit set (like
//!   `/tmp`), since in a sticky directory nobody but an entry's owner can
//!   rename or remove it.
//!
//! Access control lists are not looked at: the mode bits decide.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// What is being judged, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Directory,
    Library,
    Ancestor,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Directory => "the plugin directory",
            Role::Library => "the library",
            Role::Ancestor => "its ancestor directory",
        }
    }
}

/// The effective user id of this process.
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks a plugin directory, every directory and symlink on the way to
/// it. Returns its real path.
///
/// Fails with one line naming the path at fault and the fix.
pub(crate) fn check_directory(dir: &Path) -> Result<PathBuf, String> {
    let (real, meta) = resolve(dir, Role::Directory)?;
    if !meta.is_dir() {
        return Err(format!("refused: `{}` is not a directory", real.display()));
    }
    Ok(real)
}

/// Checks a library, every directory and symlink on the way to it.
/// Returns its real path and what it is (to check that the file opened is
/// the file checked).
///
/// Fails with one line naming the path at fault and the fix.
pub(crate) fn check_library(path: &Path) -> Result<(PathBuf, fs::Metadata), String> {
    let (real, meta) = resolve(path, Role::Library)?;
    if !meta.is_file() {
        return Err(format!(
            "refused: `{}` is not a regular file",
            real.display()
        ));
    }
    Ok((real, meta))
}

/// How many symlinks one resolution may follow (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` one component at a time, judging every directory it
/// passes through as an ancestor, every symlink it follows by its owner,
/// and what it ends at as `role`.
fn resolve(path: &Path, role: Role) -> Result<(PathBuf, fs::Metadata), String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|err| format!("refused: cannot resolve `{}`: {err}", path.display()))?
            .join(path)
    };
    let inspect = |at: &Path| {
        fs::symlink_metadata(at)
            .map_err(|err| format!("refused: cannot inspect `{}`: {err}", at.display()))
    };
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = absolute
        .components()
        .filter(|c| !matches!(c, std::path::Component::RootDir))
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut real = PathBuf::from("/");
    let mut meta = inspect(&real)?;
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        // The directory about to be searched: nobody else may change it.
        judge(&real, &meta, Role::Ancestor)?;
        if name == "." {
            continue;
        }
        if name == ".." {
            real.pop();
            meta = inspect(&real)?;
            continue;
        }
        let next = real.join(&name);
        let next_meta = inspect(&next)?;
        if next_meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(format!(
                    "refused: `{}` leads through more than {MAX_SYMLINKS} symlinks",
                    path.display()
                ));
            }
            judge_link(&next, &next_meta)?;
            let target = fs::read_link(&next)
                .map_err(|err| format!("refused: cannot read `{}`: {err}", next.display()))?;
            if target.is_absolute() {
                real = PathBuf::from("/");
                meta = inspect(&real)?;
            }
            for component in target
                .components()
                .filter(|c| !matches!(c, std::path::Component::RootDir))
                .rev()
            {
                pending.push_front(component.as_os_str().to_owned());
            }
            continue;
        }
        real = next;
        meta = next_meta;
    }
    judge(&real, &meta, role)?;
    Ok((real, meta))
}

/// A symlink on the way must belong to root or this user: whoever owns it
/// may replace it, even in a sticky directory.
fn judge_link(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    let me = effective_uid();
    let owner = meta.uid();
    if owner != 0 && owner != me {
        return Err(format!(
            "refused: the symlink `{}` is owned by uid {owner}, neither root nor this user \
             (uid {me}), who could point it elsewhere at any time",
            path.display()
        ));
    }
    Ok(())
}

fn judge(path: &Path, meta: &fs::Metadata, role: Role) -> Result<(), String> {
    let me = effective_uid();
    let owner = meta.uid();
    if owner != 0 && owner != me {
        return Err(format!(
            "refused: {} `{}` is owned by uid {owner}, neither root nor this user (uid {me}); \
             only code that root or this user controls is loaded",
            role.name(),
            path.display()
        ));
    }
    let mode = meta.permissions().mode();
    let shared_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if shared_write && !(role == Role::Ancestor && sticky) {
        let fix = if role == Role::Ancestor {
            format!("chmod go-w (or +t) `{}`", path.display())
        } else {
            format!("chmod go-w `{}`", path.display())
        };
        return Err(format!(
            "refused: {} `{}` is writable by {} (mode {:04o}); fix with {fix}",
            role.name(),
            path.display(),
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            },
            mode & 0o7777,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn shared_write_is_refused_except_for_sticky_ancestors() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("plugins");
        fs::create_dir(&dir).unwrap();
        let lib = dir.join("libx.so");
        fs::write(&lib, "x").unwrap();
        chmod(&dir, 0o755);
        chmod(&lib, 0o644);
        assert!(check_directory(&dir).is_ok());
        assert!(check_library(&lib).is_ok());

        chmod(&lib, 0o664);
        let err = check_library(&lib).unwrap_err();
        assert!(
            err.contains("the library") && err.contains("its group"),
            "{err}"
        );
        assert!(err.contains(&lib.display().to_string()), "{err}");
        chmod(&lib, 0o644);

        chmod(&dir, 0o777);
        let err = check_directory(&dir).unwrap_err();
        assert!(
            err.contains("the plugin directory") && err.contains("0777"),
            "{err}"
        );
        // The directory is the library's ancestor too, and is not sticky.
        assert!(check_library(&lib).unwrap_err().contains("ancestor"));
        chmod(&dir, 0o1777);
        // As the plugin directory, even sticky is refused (others can add
        // libraries); as an ancestor, sticky is enough.
        assert!(check_directory(&dir).is_err());
        assert!(check_library(&lib).is_ok());
        chmod(&dir, 0o755);

        let inner = dir.join("inner");
        fs::create_dir(&inner).unwrap();
        chmod(&inner, 0o755);
        chmod(root.path(), 0o757);
        let err = check_directory(&inner).unwrap_err();
        assert!(err.contains("ancestor") && err.contains("others"), "{err}");
        chmod(root.path(), 0o700);
    }

    #[test]
    fn symlinks_are_judged_by_their_target() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let target = elsewhere.join("libreal.so");
        fs::write(&target, "x").unwrap();
        chmod(&target, 0o666);
        let dir = root.path().join("plugins");
        fs::create_dir(&dir).unwrap();
        let link = dir.join("liblink.so");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = check_library(&link).unwrap_err();
        assert!(err.contains("libreal.so"), "{err}");
        chmod(&target, 0o644);
        assert_eq!(
            check_library(&link).unwrap().0,
            fs::canonicalize(&target).unwrap()
        );
    }
}
