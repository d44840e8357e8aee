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
//! * Symlinks are judged by what they point to: the plugin directory and
//!   each library are resolved to their real paths first.
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

/// Checks a plugin directory and its ancestors. Returns its real path.
///
/// Fails with one line naming the path at fault and the fix.
pub(crate) fn check_directory(dir: &Path) -> Result<PathBuf, String> {
    let real = fs::canonicalize(dir)
        .map_err(|err| format!("refused: cannot resolve `{}`: {err}", dir.display()))?;
    let meta = fs::metadata(&real)
        .map_err(|err| format!("refused: cannot inspect `{}`: {err}", real.display()))?;
    if !meta.is_dir() {
        return Err(format!("refused: `{}` is not a directory", real.display()));
    }
    judge(&real, &meta, Role::Directory)?;
    check_ancestors(&real)?;
    Ok(real)
}

/// Checks a library (what it points to, if it is a symlink) and the
/// ancestors of its real path. Returns its real path.
///
/// Fails with one line naming the path at fault and the fix.
pub(crate) fn check_library(path: &Path) -> Result<PathBuf, String> {
    let real = fs::canonicalize(path)
        .map_err(|err| format!("refused: cannot resolve `{}`: {err}", path.display()))?;
    let meta = fs::metadata(&real)
        .map_err(|err| format!("refused: cannot inspect `{}`: {err}", real.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "refused: `{}` is not a regular file",
            real.display()
        ));
    }
    judge(&real, &meta, Role::Library)?;
    check_ancestors(&real)?;
    Ok(real)
}

fn check_ancestors(real: &Path) -> Result<(), String> {
    for ancestor in real.ancestors().skip(1) {
        let meta = fs::metadata(ancestor)
            .map_err(|err| format!("refused: cannot inspect `{}`: {err}", ancestor.display()))?;
        judge(ancestor, &meta, Role::Ancestor)?;
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
            check_library(&link).unwrap(),
            fs::canonicalize(&target).unwrap()
        );
    }
}
