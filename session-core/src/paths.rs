//! Path containment: the one place that decides whether a path taken from
//! input stays inside the directory it is meant for.
//!
//! Every path that comes from input (asset paths, input files, file reads,
//! archive members) goes through [`normalize_relative`] first. Writes then go
//! through [`create_file_in`] / [`create_dir_all_in`], which refuse to pass
//! through a symlink, so a link planted in a workspace cannot redirect a write
//! outside it.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::snapshot::PERMISSION_BITS;
use crate::tree::{self, DirCursor, FileKind, Opened, Walker};

/// Normalises a relative path lexically: removes `.` components and resolves
/// `..` against earlier components.
///
/// Fails when the path is empty, absolute, or climbs above its start
/// (`../x`, `a/../../x`). The result has no `.` or `..` components and is
/// never empty.
pub fn normalize_relative(path: impl AsRef<Path>) -> Result<PathBuf> {
    let path = path.as_ref();
    let refuse = |reason| Error::PathEscape {
        path: path.display().to_string(),
        reason,
    };
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                return Err(refuse("absolute paths are not allowed"));
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(refuse("it climbs out with `..`"));
                }
                out.pop();
                depth -= 1;
            }
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
        }
    }
    if depth == 0 {
        return Err(refuse("the path is empty"));
    }
    Ok(out)
}

/// Renders a normalised relative path with `/` separators, the form used in
/// manifests, diffs and file-content maps.
pub fn to_slash(path: &Path) -> String {
    let mut out = String::new();
    for (i, component) in path.components().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&component.as_os_str().to_string_lossy());
    }
    out
}

/// Creates `rel` (already normalised) and its parents under `root`, refusing
/// to pass through an existing symlink or non-directory.
pub fn create_dir_all_in(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut current = root.to_path_buf();
    for component in rel.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::PathEscape {
                    path: rel.display().to_string(),
                    reason: "a parent directory is a symlink",
                });
            }
            Ok(_) => {
                return Err(Error::PathEscape {
                    path: rel.display().to_string(),
                    reason: "a parent of it is not a directory",
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(&current) {
                    Ok(()) => {}
                    // Lost a race with another creator: fine if it is a directory.
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                        if !fs::symlink_metadata(&current).is_ok_and(|m| m.is_dir()) {
                            return Err(Error::io("creating directory", &current)(err));
                        }
                    }
                    Err(err) => return Err(Error::io("creating directory", &current)(err)),
                }
            }
            Err(err) => return Err(Error::io("inspecting", &current)(err)),
        }
    }
    Ok(current)
}

/// Creates (or truncates) the file `rel` (already normalised) under `root`,
/// creating its parents, refusing symlinks anywhere on the way, the file
/// itself included.
pub fn create_file_in(root: &Path, rel: &Path) -> Result<File> {
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_in(root, parent)?;
    }
    let full = root.join(rel);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&full)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
                Error::PathEscape {
                    path: rel.display().to_string(),
                    reason: "the file is a symlink",
                }
            } else {
                Error::io("creating", &full)(err)
            }
        })
}

/// Copies `source` (a file, a symlink or a directory tree) to `rel` under
/// `root`, replacing whatever stands there.
///
/// Permission bits are kept (not set-id or sticky bits, see
/// [`crate::snapshot::PERMISSION_BITS`]), symlinks are copied as links
/// (never followed), and special files are skipped: nothing but a
/// regular file is opened for reading, also when a FIFO or a device is
/// swapped in for a file while it is copied ([`tree::Dir::open_regular`]).
/// Writes refuse to pass through a symlink already in `root`. A directory
/// is walked without recursion and within the bounds of [`crate::tree`]: a
/// tree beyond them is [`Error::TreeBound`].
pub fn copy_into(root: &Path, rel: &Path, source: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(source).map_err(Error::io("inspecting", source))?;
    let dest = root.join(rel);
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_in(root, parent)?;
    }
    remove_existing(&dest)?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(source).map_err(Error::io("reading symlink", source))?;
        std::os::unix::fs::symlink(target, &dest).map_err(Error::io("creating symlink", &dest))?;
    } else if meta.is_dir() {
        create_dir_all_in(root, rel)?;
        copy_tree(source, &dest)?;
        fs::set_permissions(
            &dest,
            fs::Permissions::from_mode(meta.mode() & PERMISSION_BITS),
        )
        .map_err(Error::io("setting mode of", &dest))?;
    } else if meta.is_file() {
        // Opened only if it is still a regular file: never a FIFO or a
        // device swapped in since it was looked at.
        let (mut from, stat) = match tree::open_regular_path(source) {
            Ok(Opened::File(file, stat)) => (file, stat),
            Ok(Opened::NotRegular(_)) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::io("opening", source)(err)),
        };
        let mut to = create_file_in(root, rel)?;
        io::copy(&mut from, &mut to).map_err(Error::io("copying to", &dest))?;
        to.set_permissions(fs::Permissions::from_mode(stat.mode & PERMISSION_BITS))
            .map_err(Error::io("setting mode of", &dest))?;
    }
    Ok(())
}

/// Copies what the directory `source` holds into the empty directory
/// `dest`, depth first; directories get their modes once filled.
fn copy_tree(source: &Path, dest: &Path) -> Result<()> {
    let mut walker = Walker::new(source)?;
    let proc_fd =
        tree::ProcFd::current().map_err(Error::io("opening /proc/self/fd for", source))?;
    let mut cursor = DirCursor::open(dest)?;
    let mut dir_modes = Vec::new();
    while let Some(entry) = walker.next_entry()? {
        let rel = PathBuf::from(entry.rel);
        let from = source.join(&rel);
        let to = dest.join(&rel);
        let parents: Vec<&OsStr> = rel.parent().map(|p| p.iter().collect()).unwrap_or_default();
        let Ok(dir) = cursor.enter(&parents, false)? else {
            return Err(Error::PathEscape {
                path: to.display().to_string(),
                reason: "a parent of it is not a directory it can be written in",
            });
        };
        match entry.kind {
            FileKind::Dir => {
                dir.create_dir(entry.name, 0o700)
                    .map_err(Error::io("creating directory", &to))?;
                let mode = entry
                    .dir
                    .stat_at(entry.name)
                    .map_err(Error::io("inspecting", &from))?
                    .mode;
                dir_modes.push((rel, mode & PERMISSION_BITS));
                walker.descend()?;
            }
            FileKind::File => {
                // Only a regular file is opened: what was swapped in for it
                // since it was listed (a FIFO, a device) is skipped, as it
                // would have been had it been there already.
                let (mut input, stat) = match entry.dir.open_regular_in(entry.name, &proc_fd) {
                    Ok(Opened::File(file, stat)) => (file, stat),
                    Ok(Opened::NotRegular(_)) => continue,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(Error::io("opening", &from)(err)),
                };
                let mode = stat.mode;
                let mut output = dir
                    .open_file(
                        entry.name,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                        0o600,
                    )
                    .map_err(Error::io("creating", &to))?;
                io::copy(&mut input, &mut output).map_err(Error::io("copying to", &to))?;
                output
                    .set_permissions(fs::Permissions::from_mode(mode & PERMISSION_BITS))
                    .map_err(Error::io("setting mode of", &to))?;
            }
            FileKind::Symlink => {
                let target = match entry.dir.read_link(entry.name) {
                    Ok(target) => target,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(Error::io("reading symlink", &from)(err)),
                };
                dir.symlink(&target, entry.name)
                    .map_err(Error::io("creating symlink", &to))?;
            }
            FileKind::Other => {}
        }
    }
    // Deepest first, so a read-only directory is still filled.
    for (rel, mode) in dir_modes.iter().rev() {
        let to = dest.join(rel);
        let parents: Vec<&OsStr> = rel.parent().map(|p| p.iter().collect()).unwrap_or_default();
        let name = rel.file_name().unwrap_or_default();
        let Ok(parent) = cursor.enter(&parents, false)? else {
            return Err(Error::io("setting mode of", &to)(
                io::ErrorKind::NotFound.into(),
            ));
        };
        parent
            .open_dir(name)
            .and_then(|dir| dir.set_mode(*mode))
            .map_err(Error::io("setting mode of", &to))?;
    }
    Ok(())
}

/// Removes a file, symlink or directory tree if it exists
/// ([`crate::tree::remove_tree`]: any depth, never following a symlink).
pub fn remove_existing(path: &Path) -> Result<()> {
    crate::tree::remove_tree(path)
}

/// Resolves `path` (relative to `root`, or absolute) through symlinks and
/// returns it only when the result is inside `canonical_root`.
///
/// `canonical_root` must already be canonical. Returns `None` for a path that
/// does not exist or resolves outside.
pub fn resolve_inside(canonical_root: &Path, path: &Path) -> Option<PathBuf> {
    let resolved = fs::canonicalize(canonical_root.join(path)).ok()?;
    resolved.starts_with(canonical_root).then_some(resolved)
}

/// A file name (or path) as berth prints it on a line of its own output:
/// unchanged when it is plain, else quoted the way git quotes names, C-style
/// escapes inside double quotes, so that no name can add a line, a diff
/// header or a terminal escape to what berth prints.
///
/// A name is quoted when it holds a control character (C0, DEL, C1: a
/// newline, a tab, an ESC …), a Unicode line or paragraph separator or
/// bidirectional control, a double quote or a backslash, or bytes that
/// are not UTF-8. In the quoted form `"` and `\` are escaped with a
/// backslash, `\a \b \t \n \v \f \r` stand for their characters, and
/// every other byte of a character that needs quoting, or not part of
/// UTF-8, is three octal digits (`\033` for ESC, `\377` for a 0xff byte);
/// all other characters, non-ASCII ones included, stay as they are.
pub fn quote_name(name: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(name)
        && !text
            .chars()
            .any(|c| c == '"' || c == '\\' || needs_escape(c))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\u{b}' => out.push_str("\\v"),
                '\u{c}' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if needs_escape(c) => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        push_octal(&mut out, byte);
                    }
                }
                c => out.push(c),
            }
        }
        for &byte in chunk.invalid() {
            push_octal(&mut out, byte);
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// [`quote_name`] of a path's bytes.
pub fn quote_path(path: &Path) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt as _;
    quote_name(path.as_os_str().as_bytes())
}

/// Whether a character is never printed as it is: control characters
/// (C0, DEL, C1), which terminals act on, and the characters that break
/// or reorder lines (line and paragraph separators, bidirectional
/// controls), which make a name read as something else.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{61c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn push_octal(out: &mut String, byte: u8) {
    out.push('\\');
    for shift in [6, 3, 0] {
        out.push(char::from(b'0' + ((byte >> shift) & 7)));
    }
}

/// Decodes the octal escapes (`\040` for a space, `\134` for a
/// backslash) that `/proc/self/mountinfo` uses in its path fields. An
/// escape that is not a byte (`\777`) is kept as it is.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
            && let Ok(byte) = u8::try_from(
                u32::from(bytes[i + 1] - b'0') * 64
                    + u32::from(bytes[i + 2] - b'0') * 8
                    + u32::from(bytes[i + 3] - b'0'),
            )
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mountinfo("a\\040b\\"), "a b\\");
        assert_eq!(unescape_mountinfo("/x\\777"), "/x\\777");
    }

    use super::*;

    #[test]
    fn names_are_quoted_only_when_they_need_it() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain/name.txt", "plain/name.txt"),
            (
                "caf\u{e9} \u{65e5}\u{672c} space'd".as_bytes(),
                "caf\u{e9} \u{65e5}\u{672c} space'd",
            ),
            (
                b"z\n+++ evil\n@@ -0,0 +1 @@\n+pwn",
                r#""z\n+++ evil\n@@ -0,0 +1 @@\n+pwn""#,
            ),
            (b"tab\there", r#""tab\there""#),
            (b"cr\rhere", r#""cr\rhere""#),
            (b"esc\x1b[2Jhere", r#""esc\033[2Jhere""#),
            (b"bad\xff\xfeutf8", r#""bad\377\376utf8""#),
            (
                b"bell\x07bs\x08vt\x0bff\x0cdel\x7f",
                r#""bell\abs\bvt\vff\fdel\177""#,
            ),
            (br#"a"quote"#, r#""a\"quote""#),
            (br"back\slash", r#""back\\slash""#),
            // C1 controls and bidirectional overrides, as their bytes.
            ("csi\u{9b}x".as_bytes(), r#""csi\302\233x""#),
            ("rlo\u{202e}txt".as_bytes(), r#""rlo\342\200\256txt""#),
            ("é\x01".as_bytes(), "\"é\\001\""),
        ];
        for (name, want) in cases {
            assert_eq!(
                quote_name(name),
                *want,
                "{:?}",
                String::from_utf8_lossy(name)
            );
            let quoted = quote_name(name);
            assert!(!quoted.chars().any(char::is_control), "{quoted}");
        }
        assert_eq!(quote_path(Path::new("/tmp/a\nb")), r#""/tmp/a\nb""#);
    }

    #[test]
    fn normalize_keeps_inner_dots_and_refuses_escapes() {
        let ok = |p: &str| normalize_relative(p).unwrap().display().to_string();
        assert_eq!(ok("a/b"), "a/b");
        assert_eq!(ok("./a/./b"), "a/b");
        assert_eq!(ok("a/../b"), "b");
        assert_eq!(ok(".env"), ".env");
        for bad in ["", ".", "/etc/passwd", "..", "../x", "a/../../x", "a/.."] {
            assert!(
                matches!(normalize_relative(bad), Err(Error::PathEscape { .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn writes_refuse_symlinked_parents_and_files() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("file")).unwrap();
        assert!(matches!(
            create_file_in(root.path(), Path::new("link/x")),
            Err(Error::PathEscape { .. })
        ));
        assert!(matches!(
            create_file_in(root.path(), Path::new("file")),
            Err(Error::PathEscape { .. })
        ));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        create_file_in(root.path(), Path::new("new/deep/x")).unwrap();
        assert!(root.path().join("new/deep/x").is_file());
    }

    #[test]
    fn resolve_inside_refuses_outward_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let canonical = fs::canonicalize(root.path()).unwrap();
        fs::write(root.path().join("in"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("out")).unwrap();
        std::os::unix::fs::symlink("in", root.path().join("alias")).unwrap();
        assert!(resolve_inside(&canonical, Path::new("in")).is_some());
        assert!(resolve_inside(&canonical, Path::new("alias")).is_some());
        assert!(resolve_inside(&canonical, Path::new("out")).is_none());
        assert!(resolve_inside(&canonical, Path::new("out/passwd")).is_none());
        assert!(resolve_inside(&canonical, Path::new("missing")).is_none());
    }
}
