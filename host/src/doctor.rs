//! `berth doctor`: what works on this machine.
//!
//! Backends answer for themselves through `Backend::diagnose`; the host
//! adds what only it knows: the plugin directory, whether namespaces can be
//! created, and the temporary directory.

use std::io::{self, Write};
use std::path::Path;

use session_core::runtime::Diagnostic;

use crate::backends::{self, PluginReport};
use crate::cli::{DoctorArgs, GlobalArgs};
use crate::term::{Colour, paint, stdout_colour};
use crate::{ExitCode, temp_root};

/// `berth doctor`.
pub(crate) async fn doctor(args: &DoctorArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (registry, plugins) = backends::load(global.plugin_dir.as_deref())?;
    let mut checks = Vec::new();
    for (info, origin) in registry.describe() {
        checks.push(Diagnostic {
            check: format!("backend {}", info.type_name),
            ok: true,
            detail: format!("{} from {origin}: {}", info.version, info.description),
        });
        let backend = registry.get(&info.type_name)?;
        checks.extend(backend.diagnose().await.into_iter().map(|d| Diagnostic {
            check: format!("{}: {}", info.type_name, d.check),
            ..d
        }));
    }
    checks.extend(plugin_checks(&plugins));
    checks.push(tokio::task::spawn_blocking(namespace_check).await?);
    checks.push(temp_dir_check(&temp_root(global)));

    let mut out = io::stdout().lock();
    if args.json {
        crate::failure::write_json(&checks)?;
    } else {
        let colour = stdout_colour();
        for check in &checks {
            let status = if check.ok {
                paint("ok  ", Colour::Green, colour)
            } else {
                paint("FAIL", Colour::Red, colour)
            };
            writeln!(out, "{status}  {}: {}", check.check, check.detail)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The plugin directory, and one line per library that did not load. A
/// directory the loader refused (others can write it, say) fails its own
/// check, with the path and the reason.
pub(crate) fn plugin_checks(plugins: &PluginReport) -> Vec<Diagnostic> {
    let mut checks = Vec::new();
    let refused = plugins.dir.as_ref().and_then(|dir| {
        plugins
            .problems
            .iter()
            .find(|(path, _)| *path == dir.path)
            .map(|(_, reason)| (dir, reason))
    });
    if let Some((dir, reason)) = refused {
        checks.push(Diagnostic {
            check: "plugin directory".to_owned(),
            ok: false,
            detail: format!(
                "{} (from {}): nothing loaded: {reason}",
                dir.path.display(),
                dir.source
            ),
        });
        return checks;
    }
    let detail = match &plugins.dir {
        None => "none configured (no --plugin-dir, $BERTH_PLUGIN_DIR, $XDG_DATA_HOME or $HOME)"
            .to_owned(),
        Some(dir) if !plugins.dir_exists => format!(
            "{} (from {}) does not exist: no plugins loaded",
            dir.path.display(),
            dir.source
        ),
        Some(dir) => format!(
            "{} (from {}): {} loaded, {} not loaded",
            dir.path.display(),
            dir.source,
            plugins.loaded.len(),
            plugins.problems.len()
        ),
    };
    checks.push(Diagnostic {
        check: "plugin directory".to_owned(),
        ok: true,
        detail,
    });
    for (path, backend_type) in &plugins.loaded {
        checks.push(Diagnostic {
            check: format!("plugin {}", path.display()),
            ok: true,
            detail: format!("loaded, type `{backend_type}`"),
        });
    }
    for (path, problem) in &plugins.problems {
        checks.push(Diagnostic {
            check: format!("plugin {}", path.display()),
            ok: false,
            detail: problem.clone(),
        });
    }
    checks
}

/// The namespaces a sandbox needs, each with its `unshare` flag.
const NAMESPACES: [(&str, libc::c_int); 4] = [
    ("user", libc::CLONE_NEWUSER),
    ("pid", libc::CLONE_NEWPID),
    ("mount", libc::CLONE_NEWNS),
    ("network", libc::CLONE_NEWNET),
];

/// Whether a child of this process can enter new user, pid, mount and
/// network namespaces; when it cannot, which of them fail and why.
fn namespace_check() -> Diagnostic {
    let all = NAMESPACES.iter().fold(0, |flags, (_, flag)| flags | flag);
    let (ok, detail) = match probe_unshare(all) {
        Ok(()) => (
            true,
            "a child process can create user, pid, mount and network namespaces".to_owned(),
        ),
        Err(err) => {
            let failing: Vec<String> = NAMESPACES
                .iter()
                .filter_map(|(name, flag)| {
                    probe_unshare(*flag)
                        .err()
                        .map(|err| format!("{name}: {err}"))
                })
                .collect();
            let detail = if failing.is_empty() {
                format!("each namespace works alone, but not all together: {err}")
            } else {
                failing.join("; ")
            };
            (false, detail)
        }
    };
    Diagnostic {
        check: "namespaces".to_owned(),
        ok,
        detail,
    }
}

/// Forks a child that calls `unshare(flags)` and reports its outcome.
///
/// The probe runs in a child because `unshare(CLONE_NEWUSER)` refuses a
/// multi-threaded process, and because the host must never change its own
/// namespaces.
fn probe_unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: after fork the child runs only async-signal-safe calls
    // (unshare, reading errno, _exit) and touches no lock or allocation, so
    // forking a multi-threaded process is sound here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; _exit never returns.
        unsafe {
            let code = if libc::unshare(flags) == 0 {
                0
            } else {
                *libc::__errno_location()
            };
            libc::_exit(code.clamp(0, 255));
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid out-pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        if waited == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    } else {
        Err(io::Error::other("the probe process was killed"))
    }
}

/// Whether session directories can be created in the temporary root.
fn temp_dir_check(root: &Path) -> Diagnostic {
    let (ok, detail) = match tempfile::Builder::new()
        .prefix(".berth-doctor-")
        .tempdir_in(root)
    {
        Ok(dir) => {
            drop(dir);
            (true, format!("{} is writable", root.display()))
        }
        Err(err) => (false, format!("{}: {err}", root.display())),
    };
    Diagnostic {
        check: "temporary directory".to_owned(),
        ok,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reports_success_or_an_os_error() {
        // Creating no namespace at all always works.
        probe_unshare(0).unwrap();
        // An invalid flag is refused by the kernel with EINVAL.
        let err = probe_unshare(-1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn a_missing_temp_root_fails_its_check() {
        let check = temp_dir_check(Path::new("/nonexistent/berth-doctor"));
        assert!(!check.ok);
        assert!(check.detail.contains("/nonexistent/berth-doctor"));
    }
}
