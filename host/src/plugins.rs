//! `berth plugins test LIB` and `berth plugins install LIB`: a plugin
//! library checked through the real loader, from a private copy.
//!
//! Both start the same way: LIB is copied into a private temporary plugin
//! directory and loaded from there into a registry of the built-ins, so it
//! passes through every check a plugin directory's library does (trust,
//! ABI version, layout, declared types, no clash with a built-in). `test`
//! then runs the conformance suite against each type it declares; `install`
//! checks its types against the other libraries of the plugin directory and
//! copies the checked bytes into it atomically.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use runtime_conformance::{CaseOutcome, Target, run_suite};
use session_core::EnvironmentSpec;
use session_core::plugin::LoadedPlugin;

use crate::backends;
use crate::cli::{GlobalArgs, PluginInstallArgs, PluginTestArgs};
use crate::{ExitCode, temp_root};

/// The mode an installed library gets (and its private test copy).
const LIBRARY_MODE: u32 = 0o755;

/// The mode of a plugin directory `install` creates.
const DIRECTORY_MODE: u32 = 0o755;

/// `test`'s exit code when the library did not load or a case failed.
const FAILED: ExitCode = ExitCode(1);

/// A library copied into a private plugin directory of its own.
struct Staged {
    /// Removed (with the copy) when dropped; the loaded code stays mapped.
    _dir: tempfile::TempDir,
    /// The copy.
    path: PathBuf,
}

/// Copies `library` into a fresh private directory under `temp_root`, mode
/// 0755, keeping its file name.
fn stage(library: &Path, temp_root: &Path) -> anyhow::Result<Staged> {
    let meta = fs::metadata(library)
        .with_context(|| format!("cannot read the library `{}`", library.display()))?;
    if !meta.is_file() {
        bail!("`{}` is not a library file", library.display());
    }
    let name = library
        .file_name()
        .with_context(|| format!("`{}` has no file name", library.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("berth-plugin-check-")
        .tempdir_in(temp_root)
        .with_context(|| {
            format!(
                "creating a private plugin directory in `{}`",
                temp_root.display()
            )
        })?;
    let path = dir.path().join(name);
    fs::copy(library, &path).with_context(|| format!("copying `{}`", library.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(LIBRARY_MODE))?;
    Ok(Staged { _dir: dir, path })
}

/// One case's result, for the lines and the JSON.
struct CaseLine {
    type_name: Option<String>,
    case: String,
    /// The id, in `docs/backend-contract.md`, of the rule the case checks.
    rule: Option<&'static str>,
    outcome: &'static str,
    reason: Option<String>,
    duration: Duration,
}

impl CaseLine {
    fn text(&self) -> String {
        let Some(type_name) = self.type_name.as_deref() else {
            return format!(
                "FAIL  {}: {}",
                self.case,
                self.reason.as_deref().unwrap_or("failed")
            );
        };
        let case = match self.rule {
            Some(rule) => format!("{} [{rule}]", self.case),
            None => self.case.clone(),
        };
        match (self.outcome, &self.reason) {
            ("passed", _) => format!(
                "pass  {type_name}  {case} ({:.2} s)",
                self.duration.as_secs_f64()
            ),
            ("failed", reason) => format!(
                "FAIL  {type_name}  {case}: {}",
                reason.as_deref().unwrap_or("failed")
            ),
            (_, reason) => format!(
                "skip  {type_name}  {case}: {}",
                reason.as_deref().unwrap_or("skipped")
            ),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.type_name,
            "case": self.case,
            "rule": self.rule,
            "outcome": self.outcome,
            "reason": self.reason,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// A reason on one line: a case's message may hold a command's output.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `berth plugins test LIB`.
pub(crate) fn test(args: &PluginTestArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let staged = stage(&args.library, &temp_root(global))?;
    let mut registry = backends::builtins()?;
    // Loaded from the private copy, named as given in what the cases say.
    let loaded = session_core::plugin::load_library_as(&staged.path, &args.library, &mut registry);
    let mut out = io::stdout().lock();
    let mut lines: Vec<CaseLine> = Vec::new();
    let types = match &loaded {
        Ok(loaded) => {
            if !args.json {
                writeln!(
                    out,
                    "loaded {}: {}",
                    args.library.display(),
                    types_phrase(&loaded.types)
                )?;
                out.flush()?;
            }
            loaded.types.clone()
        }
        Err(reason) => {
            let line = CaseLine {
                type_name: None,
                case: "load".to_owned(),
                rule: None,
                outcome: "failed",
                reason: Some(format!("{}: {reason}", args.library.display())),
                duration: Duration::ZERO,
            };
            if !args.json {
                writeln!(out, "{}", line.text())?;
            }
            lines.push(line);
            Vec::new()
        }
    };
    if !types.is_empty() {
        let runtime = crate::async_runtime()?;
        let registry = registry.shared();
        for type_name in &types {
            let target = Target::with_registry(
                EnvironmentSpec::new(type_name.as_str(), "conformance"),
                Arc::clone(&registry),
            )
            .label(type_name.as_str());
            let report = runtime.block_on(run_suite(target));
            for (case, outcome, duration) in report.cases {
                let (outcome, reason) = match outcome {
                    CaseOutcome::Passed => ("passed", None),
                    CaseOutcome::Failed(why) => ("failed", Some(one_line(&why))),
                    CaseOutcome::Skipped(why) => ("skipped", Some(why.to_owned())),
                };
                let line = CaseLine {
                    type_name: Some(type_name.clone()),
                    case: case.to_owned(),
                    rule: runtime_conformance::case_named(case).map(|c| c.rule),
                    outcome,
                    reason,
                    duration,
                };
                if !args.json {
                    writeln!(out, "{}", line.text())?;
                }
                lines.push(line);
            }
            out.flush()?;
        }
    }
    let count = |outcome: &str| lines.iter().filter(|l| l.outcome == outcome).count();
    let (passed, failed, skipped) = (count("passed"), count("failed"), count("skipped"));
    if args.json {
        let json = serde_json::json!({
            "library": args.library,
            "loaded": loaded.is_ok(),
            "types": types,
            "cases": lines.iter().map(CaseLine::json).collect::<Vec<_>>(),
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
        });
        crate::failure::write_json(&json)?;
    } else {
        writeln!(out, "{passed} passed, {failed} failed, {skipped} skipped")?;
    }
    out.flush()?;
    Ok(if loaded.is_ok() && failed == 0 {
        ExitCode::SUCCESS
    } else {
        FAILED
    })
}

/// "type `a`" or "types `a`, `b`".
fn types_phrase(types: &[String]) -> String {
    let quoted: Vec<String> = types.iter().map(|t| format!("`{t}`")).collect();
    match quoted.as_slice() {
        [one] => format!("type {one}"),
        many => format!("types {}", many.join(", ")),
    }
}

/// `berth plugins install LIB`.
pub(crate) fn install(args: &PluginInstallArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let dir = backends::resolve_plugin_dir(global.plugin_dir.as_deref()).context(
        "no plugin directory is configured: pass --plugin-dir DIR or set $BERTH_PLUGIN_DIR, \
         $XDG_DATA_HOME or $HOME",
    )?;
    let name = args
        .library
        .file_name()
        .with_context(|| format!("`{}` has no file name", args.library.display()))?
        .to_owned();
    if !session_core::plugin::is_library(Path::new(&name)) {
        bail!(
            "`{}` is not named as a library (.so, .dylib or .dll): the loader would not load it",
            args.library.display()
        );
    }

    // The library itself, through the loader, against the built-ins.
    let staged = stage(&args.library, &temp_root(global))?;
    let mut registry = backends::builtins()?;
    let loaded =
        session_core::plugin::load_library(&staged.path, &mut registry).map_err(|reason| {
            anyhow::anyhow!(
                "{}: {reason}; nothing was installed",
                args.library.display()
            )
        })?;

    // The other libraries of the directory.
    let target = dir.path.join(&name);
    let displaced = clashes(&dir.path, &target, &loaded)?;
    if let Some((path, types)) = displaced.iter().find(|_| !args.force) {
        bail!(
            "{} declares {}, which {} already serves; pass --force to replace that library",
            args.library.display(),
            types_phrase(types),
            path.display()
        );
    }

    create_directory(&dir.path)?;
    session_core::plugin::check_directory(&dir.path).map_err(|reason| {
        anyhow::anyhow!("the plugin directory would not be loaded from: {reason}")
    })?;
    let replaced_same_name = target.exists();
    write_atomically(&staged.path, &target)?;
    if let Err(reason) = session_core::plugin::check_library(&target) {
        let _ = fs::remove_file(&target);
        bail!("the installed library would not be loaded ({reason}); it was removed again");
    }
    for (path, _) in &displaced {
        fs::remove_file(path).with_context(|| format!("removing `{}`", path.display()))?;
    }
    sync_directory(&dir.path)?;

    let mut out = io::stdout().lock();
    writeln!(
        out,
        "installed {} (plugin directory from {}): serves {}{}",
        target.display(),
        dir.source,
        types_phrase(&loaded.types),
        if replaced_same_name {
            ", replacing the library of that name"
        } else {
            ""
        }
    )?;
    for (path, types) in &displaced {
        writeln!(
            out,
            "removed {}: it served {}",
            path.display(),
            types_phrase(types)
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The libraries of `dir` (other than `target`, which is replaced anyway)
/// that serve a type `loaded` declares, with those types. A library that
/// does not load serves nothing and is left alone.
fn clashes(
    dir: &Path,
    target: &Path,
    loaded: &LoadedPlugin,
) -> anyhow::Result<Vec<(PathBuf, Vec<String>)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("reading `{}`", dir.display()));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| session_core::plugin::is_library(p) && p != target)
        .collect();
    paths.sort();
    let mut found = Vec::new();
    for path in paths {
        let Ok(infos) = session_core::plugin::inspect_library(&path) else {
            continue;
        };
        let shared: Vec<String> = infos
            .into_iter()
            .map(|i| i.type_name)
            .filter(|t| loaded.types.contains(t))
            .collect();
        if !shared.is_empty() {
            found.push((path, shared));
        }
    }
    Ok(found)
}

/// Creates the plugin directory and any missing parent, each mode 0755
/// whatever the umask.
fn create_directory(dir: &Path) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while fs::symlink_metadata(at).is_err() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for path in missing.iter().rev() {
        fs::DirBuilder::new()
            .mode(DIRECTORY_MODE)
            .create(path)
            .with_context(|| format!("creating `{}`", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(DIRECTORY_MODE))?;
    }
    Ok(())
}

/// Copies `from` to `to` through a temporary file in `to`'s directory,
/// synced before it is renamed into place, so the plugin directory never
/// holds a partial library under a library's name.
fn write_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to.parent().context("the target has no directory")?;
    // Not named like a library: a berth starting meanwhile skips it.
    let mut temp = tempfile::Builder::new()
        .prefix(".berth-install-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in `{}`", dir.display()))?;
    let mut source = fs::File::open(from)?;
    io::copy(&mut source, temp.as_file_mut()).context("copying the library")?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(LIBRARY_MODE))?;
    temp.as_file().sync_all().context("syncing the library")?;
    temp.persist(to)
        .map_err(|err| err.error)
        .with_context(|| format!("renaming the library into `{}`", to.display()))?;
    Ok(())
}

/// Makes the directory's entries (the rename, removals) durable.
fn sync_directory(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing `{}`", dir.display()))
}
