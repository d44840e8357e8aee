//! How berth reports its own failures: one line plus causes on stderr, and
//! for a command given `--json`, one JSON object on stdout as well.
//!
//! Every command that takes `--json` prints exactly one JSON object on
//! stdout: its result, or when berth itself fails before printing one,
//!
//! ```json
//! {"error": {"message": "typo.yaml: local.shel: unknown field …", "kind": "spec"}}
//! ```
//!
//! with exit code 125. The `kind` says whose the failure is:
//!
//! * `usage` — the command line: an unknown flag, a missing or bad value,
//!   flags that conflict, an argument of the wrong sort.
//! * `spec` — what describes the session: the environment spec, the asset
//!   map, a glob.
//! * `backend` — the backend: an unknown type (or a plugin that did not
//!   load), a failed setup command, a runtime that broke, a remote server
//!   that refused or could not be reached.
//! * `io` — files, directories and archives: missing, unreadable,
//!   unwritable, corrupt, unsafe to extract, or over one of berth's bounds.
//! * `internal` — anything else: a failure berth did not expect.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Whether a command already printed its JSON object on stdout: an error
/// after that (closing a session that failed) is reported on stderr only,
/// so stdout still holds exactly one object.
static JSON_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints `value` as a command's one JSON object on stdout (pretty, then a
/// newline) and flushes.
pub(crate) fn write_json<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    JSON_PRINTED.store(true, Ordering::SeqCst);
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// A mistake on the command line that clap cannot see (an archive name
/// that says no format, two flags that contradict each other).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`] (as `anyhow::bail!` does).
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::failure::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage_bail;

/// Whose failure an error is; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    Usage,
    Spec,
    Backend,
    Io,
    Internal,
}

/// The kind of `err`: that of the outermost error in its chain that berth
/// knows the type of.
pub(crate) fn kind_of(err: &anyhow::Error) -> ErrorKind {
    err.chain()
        .find_map(|cause| {
            if cause.is::<UsageError>() || cause.is::<clap::Error>() {
                Some(ErrorKind::Usage)
            } else if let Some(core) = cause.downcast_ref::<session_core::Error>() {
                Some(core_kind(core))
            } else if let Some(api) = cause.downcast_ref::<runtime_api::Error>() {
                Some(api_kind(api))
            } else if cause.is::<io::Error>() {
                Some(ErrorKind::Io)
            } else {
                None
            }
        })
        .unwrap_or(ErrorKind::Internal)
}

fn core_kind(err: &session_core::Error) -> ErrorKind {
    use session_core::ErrorKind as K;
    match err.kind() {
        K::Spec => ErrorKind::Spec,
        K::Setup | K::Backend => ErrorKind::Backend,
        K::Workspace => ErrorKind::Io,
        K::Usage => ErrorKind::Usage,
        _ => ErrorKind::Internal,
    }
}

fn api_kind(err: &runtime_api::Error) -> ErrorKind {
    use runtime_api::Error as E;
    match err {
        E::Core(core) => core_kind(core),
        E::Bind { .. } => ErrorKind::Io,
        E::Config(_) => ErrorKind::Usage,
        _ => ErrorKind::Backend,
    }
}

#[derive(Debug, Serialize)]
struct JsonError<'a> {
    error: JsonErrorBody<'a>,
}

#[derive(Debug, Serialize)]
struct JsonErrorBody<'a> {
    message: &'a str,
    kind: ErrorKind,
}

/// Prints `{"error": {"message", "kind"}}` on stdout, unless the command
/// already printed its JSON object. Output errors are ignored: berth is
/// failing already, and stderr says why.
pub(crate) fn print_json_error(message: &str, kind: ErrorKind) {
    if JSON_PRINTED.load(Ordering::SeqCst) {
        return;
    }
    let _ = write_json(&JsonError {
        error: JsonErrorBody { message, kind },
    });
}

/// The message of an error for `--json`: the error and each cause the
/// text before it does not already hold, joined by `: `.
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Whether the raw arguments ask for JSON: `--json` before any `--`. Used
/// when the command line did not parse, so no command says it.
pub(crate) fn args_ask_for_json(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

/// The first line of a clap error without its `error: ` prefix.
pub(crate) fn clap_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(Into::into).collect()
    }

    #[test]
    fn json_is_asked_for_before_the_program_only() {
        assert!(args_ask_for_json(os(&["berth", "diff", "--json", "a"])));
        assert!(!args_ask_for_json(os(&[
            "berth", "run", "--", "x", "--json"
        ])));
        assert!(!args_ask_for_json(os(&["--json", "run"])[..1].to_vec()));
    }

    #[test]
    fn kinds_follow_the_error_types() {
        let spec = anyhow::Error::new(session_core::Error::Spec {
            origin: "a.yaml".into(),
            field: "local.shel".into(),
            message: "unknown field".into(),
        })
        .context("loading the spec");
        assert_eq!(kind_of(&spec), ErrorKind::Spec);
        let io = anyhow::Error::new(io::Error::from(io::ErrorKind::NotFound)).context("opening x");
        assert_eq!(kind_of(&io), ErrorKind::Io);
        let usage = anyhow::Error::new(UsageError("no format".into()));
        assert_eq!(kind_of(&usage), ErrorKind::Usage);
        let backend = anyhow::Error::new(session_core::Error::UnknownBackend {
            requested: "x".into(),
            registered: "local".into(),
        });
        assert_eq!(kind_of(&backend), ErrorKind::Backend);
        assert_eq!(kind_of(&anyhow::anyhow!("what")), ErrorKind::Internal);
    }

    #[test]
    fn one_line_joins_new_causes() {
        let err = anyhow::Error::new(io::Error::other("disk full")).context("writing `x`");
        assert_eq!(one_line(&err), "writing `x`: disk full");
        let err = anyhow::anyhow!("a: b").context("a: b");
        assert_eq!(one_line(&err), "a: b");
    }
}
