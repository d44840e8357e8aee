//! Executing a command as glibc's `execvp` does, for berth's static
//! programs (included by `berth-keeper` and by the `namespace` plugin's
//! `berth-sandbox`).

use core::ffi::{c_char, c_int};

use crate::abi::*;

/// The length of a NUL-terminated string.
///
/// # Safety
///
/// `text` must point to a NUL-terminated string.
unsafe fn length(text: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: reading stops at the NUL.
    unsafe {
        while *text.add(n) != 0 {
            n += 1;
        }
    }
    n
}

/// The value of `PATH` in `envp`, if it has one.
///
/// # Safety
///
/// `envp` must be a null-terminated array of NUL-terminated strings.
unsafe fn search_path(envp: *const *const c_char) -> Option<&'static [u8]> {
    let mut at = envp;
    // SAFETY: the array and its strings, as the caller promised; they live
    // as long as the process.
    unsafe {
        while !(*at).is_null() {
            let entry = core::slice::from_raw_parts((*at).cast::<u8>(), length(*at));
            if let Some(value) = entry.strip_prefix(b"PATH=") {
                return Some(value);
            }
            at = at.add(1);
        }
    }
    None
}

/// Executes `file` with `argv` and `envp` as glibc's `execvp` does: a name
/// without a slash is looked for in the directories of the environment's
/// `PATH` (`/bin:/usr/bin` without one; an empty entry is the working
/// directory), skipping those where it is missing or not a directory,
/// failing with `EACCES` if it was found somewhere but not executable, and
/// with `ENOENT` if it was found nowhere; a file the kernel will not
/// execute (`ENOEXEC`, a script without `#!`) is run by `/bin/sh` when
/// `scripts` is set, and is a failure otherwise. Returns the errno of the
/// failure (it returns only on failure).
///
/// # Safety
///
/// `file` must be a NUL-terminated string, `argv` and `envp` null-terminated
/// arrays of them.
pub(crate) unsafe fn execvp(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    scripts: bool,
) -> c_int {
    // SAFETY: as the caller promised.
    let name = unsafe { core::slice::from_raw_parts(file.cast::<u8>(), length(file)) };
    if name.is_empty() {
        return ENOENT;
    }
    if name.contains(&b'/') {
        // SAFETY: as the caller promised.
        return unsafe { execute(file, argv, envp, scripts) };
    }
    if name.len() > 255 {
        return ENAMETOOLONG;
    }
    // SAFETY: as the caller promised.
    let path = unsafe { search_path(envp) }.unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    let mut buffer = [0u8; 4096 + 256 + 2];
    for dir in path.split(|&byte| byte == b':') {
        if dir.len() + name.len() + 2 > buffer.len() {
            continue;
        }
        let mut end = 0;
        if !dir.is_empty() {
            buffer[..dir.len()].copy_from_slice(dir);
            buffer[dir.len()] = b'/';
            end = dir.len() + 1;
        }
        buffer[end..end + name.len()].copy_from_slice(name);
        buffer[end + name.len()] = 0;
        // SAFETY: `buffer` holds a NUL-terminated path; the rest as the
        // caller promised.
        match unsafe { execute(buffer.as_ptr().cast(), argv, envp, scripts) } {
            EACCES => denied = true,
            ENOENT | ENOTDIR | ESTALE | ENODEV | ETIMEDOUT => {}
            error => return error,
        }
    }
    if denied { EACCES } else { ENOENT }
}

/// `execve` of `path`; a file the kernel cannot execute (`ENOEXEC`) is run
/// by `/bin/sh` with the same arguments when `scripts` is set. Returns the
/// errno of the failure.
///
/// # Safety
///
/// `path` must be a NUL-terminated string, `argv` and `envp`
/// null-terminated arrays of them.
unsafe fn execute(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    scripts: bool,
) -> c_int {
    let error = -syscall!(SYS_EXECVE, path, argv, envp) as c_int;
    if error != ENOEXEC || !scripts {
        return error;
    }
    // `/bin/sh PATH ARGS...` (`argv[0]` is replaced by the path).
    let mut words = [core::ptr::null::<c_char>(); 256];
    words[0] = BOURNE_SHELL.as_ptr();
    words[1] = path;
    let mut n = 2;
    // SAFETY: `argv` is null-terminated, as the caller promised.
    unsafe {
        let mut at = if (*argv).is_null() { argv } else { argv.add(1) };
        while !(*at).is_null() {
            if n + 1 >= words.len() {
                return ENOEXEC;
            }
            words[n] = *at;
            n += 1;
            at = at.add(1);
        }
    }
    -syscall!(SYS_EXECVE, BOURNE_SHELL.as_ptr(), words.as_ptr(), envp) as c_int
}
