//! `berth gc`: remove what crashed sessions left behind.

use std::io::{self, Write};

use serde::Serialize;
use session_core::gc::{self, GcPolicy, SESSION_DIR_KIND, Verdict};
use session_core::runtime::Leftover;

use crate::cli::{GcArgs, GlobalArgs};
use crate::{ExitCode, backends, temp_root};

/// `berth gc`.
pub(crate) async fn gc(args: &GcArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let root = temp_root(global);
    let (registry, plugins) = backends::load(global.plugin_dir.as_deref())?;
    backends::warn_problems(&plugins);
    let mut report = GcReport {
        dry_run: args.dry_run,
        temp_root: root.display().to_string(),
        leftovers: Vec::new(),
        errors: Vec::new(),
    };

    match gc::scan_session_dirs(&root, &GcPolicy::default()) {
        Ok(dirs) => {
            for dir in dirs {
                if let Verdict::InUse { reason } = &dir.verdict {
                    tracing::debug!(dir = %dir.path.display(), reason, "kept");
                    continue;
                }
                let mut entry = Entry {
                    action: Action::Kept,
                    leftover: Leftover {
                        kind: SESSION_DIR_KIND.to_owned(),
                        id: dir.path.display().to_string(),
                        reason: dir.verdict.reason().to_owned(),
                        removed: false,
                    },
                };
                if dir.verdict.removable() {
                    if args.dry_run {
                        entry.action = Action::WouldRemove;
                    } else {
                        match gc::remove_session_dir(&dir.path) {
                            Ok(()) => {
                                entry.action = Action::Removed;
                                entry.leftover.removed = true;
                            }
                            Err(err) => {
                                entry.action = Action::Failed;
                                entry.leftover.reason.push_str(&format!("; {err}"));
                            }
                        }
                    }
                }
                report.leftovers.push(entry);
            }
        }
        Err(err) => report.errors.push(format!("session directories: {err}")),
    }

    for type_name in registry.types() {
        let backend = registry.get(&type_name)?;
        match backend.collect_garbage(args.dry_run).await {
            Ok(found) => report
                .leftovers
                .extend(found.into_iter().map(|leftover| Entry {
                    action: match (leftover.removed, args.dry_run) {
                        (true, _) => Action::Removed,
                        (false, true) => Action::WouldRemove,
                        (false, false) => Action::Kept,
                    },
                    leftover,
                })),
            Err(err) => report.errors.push(format!("backend {type_name}: {err}")),
        }
    }

    let mut out = io::stdout().lock();
    if args.json {
        crate::failure::write_json(&report)?;
    } else {
        for entry in &report.leftovers {
            // Anyone who can write the temporary directory chooses these
            // names: quoted, one cannot add lines to this report.
            writeln!(
                out,
                "{:<12}  {} {}: {}",
                entry.action.label(),
                entry.leftover.kind,
                session_core::paths::quote_name(entry.leftover.id.as_bytes()),
                session_core::paths::quote_name(entry.leftover.reason.as_bytes())
            )?;
        }
    }
    out.flush()?;
    drop(out);
    for error in &report.errors {
        eprintln!("berth: error: {error}");
    }
    let count = |action: Action| {
        report
            .leftovers
            .iter()
            .filter(|e| e.action == action)
            .count()
    };
    if !args.json {
        eprintln!(
            "berth: {} leftover{} in {} and the backends: {} removed, {} would be removed, {} kept, {} failed",
            report.leftovers.len(),
            if report.leftovers.len() == 1 { "" } else { "s" },
            report.temp_root,
            count(Action::Removed),
            count(Action::WouldRemove),
            count(Action::Kept),
            count(Action::Failed),
        );
    }
    let failed = count(Action::Failed) > 0 || !report.errors.is_empty();
    Ok(if failed {
        ExitCode::BERTH_ERROR
    } else {
        ExitCode::SUCCESS
    })
}

/// What `berth gc` did, as `--json` prints it.
#[derive(Debug, Serialize)]
struct GcReport {
    dry_run: bool,
    temp_root: String,
    leftovers: Vec<Entry>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Entry {
    action: Action,
    #[serde(flatten)]
    leftover: Leftover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    /// Removed now.
    Removed,
    /// Would be removed without `--dry-run`.
    WouldRemove,
    /// Reported but deliberately left (too young to judge).
    Kept,
    /// Removing it failed.
    Failed,
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::Removed => "removed",
            Action::WouldRemove => "would remove",
            Action::Kept => "kept",
            Action::Failed => "failed",
        }
    }
}
