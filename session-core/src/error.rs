//! The one error type of `session-core`.

use std::io;
use std::path::{Path, PathBuf};

use crate::paths::{quote_name, quote_path};

/// Everything that can go wrong in `session-core`.
///
/// Each variant carries what a caller needs to act on it: the field, the
/// asset, the path or the archive member. Lower-level errors (I/O, archive
/// formats, SQLite, Parquet) are wrapped with the path they concern, never
/// leaked bare. Messages show paths and member names quoted when they hold
/// a control character, a quote or bytes that are not UTF-8
/// ([`crate::paths::quote_name`]), so a name a session made cannot forge a
/// line of berth's output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment spec could not be parsed or failed validation.
    ///
    /// `origin` names where the spec came from (a file path, `<yaml>`,
    /// `<json>`); `field` is the dotted path of the offending field
    /// (`docker.keep_contaner_after_clean`), empty when the document itself is
    /// at fault.
    #[error("{origin}: {}{message}", field_prefix(.field))]
    Spec {
        /// Where the spec came from.
        origin: String,
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A static asset entry is invalid: its path is absolute or climbs out of
    /// the base directory, it does not exist, or the map's shape is wrong (a
    /// grouped map without `ordering`, an ordering naming a missing group).
    #[error("static asset `{name}`: {message}")]
    Asset {
        /// The asset's (or group's) name.
        name: String,
        /// What is wrong with it.
        message: String,
    },

    /// A `{{static:NAME}}` placeholder names an asset that does not exist.
    #[error("placeholder `{{{{static:{name}}}}}` names an unknown static asset `{name}`")]
    UnknownAsset {
        /// The name found in the placeholder.
        name: String,
    },

    /// Substituting placeholders in object keys made two keys equal.
    #[error("placeholder substitution turns key `{key}` into `{resolved}`, which already exists")]
    PlaceholderKeyCollision {
        /// The key as written.
        key: String,
        /// The key after substitution.
        resolved: String,
    },

    /// `commands.entry_file` is not a valid format string (an unknown
    /// placeholder, an unbalanced brace) or formats to an empty name.
    #[error("entry file format `{format}`: {message}")]
    EntryFileFormat {
        /// The format string from the spec.
        format: String,
        /// What is wrong with it.
        message: String,
    },

    /// A path taken from input would leave the directory it must stay in:
    /// it is absolute, it climbs out with `..`, or it goes through a symlink.
    #[error("path `{}` is not allowed: {reason}", quote_name(.path.as_bytes()))]
    PathEscape {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// Content given for an input file does not fit the file's type (a
    /// string for a CSV file, rows that are not objects, a value SQLite cannot
    /// store, ...). Nothing is written.
    #[error("cannot write `{}` as {file_type}: {message}", quote_name(.path.as_bytes()))]
    FileWrite {
        /// The file's path relative to the workspace.
        path: String,
        /// The type the file was written as.
        file_type: crate::file_ops::FileType,
        /// What does not fit.
        message: String,
    },

    /// A file could not be decoded as its type.
    #[error("cannot read `{}` as {file_type}: {message}", quote_name(.path.as_bytes()))]
    FileRead {
        /// The file's path.
        path: String,
        /// The type the file was read as.
        file_type: crate::file_ops::FileType,
        /// What went wrong.
        message: String,
    },

    /// A file is larger than the cap on one file: the configured one of
    /// workspace reads, or [`crate::file_ops::MAX_INPUT_SIZE`] of input
    /// files.
    #[error("`{}` is {size} bytes, over the limit of {limit} bytes", quote_name(.path.as_bytes()))]
    FileTooLarge {
        /// The file's path relative to the workspace.
        path: String,
        /// Its size.
        size: u64,
        /// The cap in force.
        limit: u64,
    },

    /// Reading a file would bring what one read of workspace files returns,
    /// all files together, over its cap.
    #[error(
        "reading `{}` would bring the files read to {total} bytes, over the limit of {limit} bytes for one read",
        quote_name(.path.as_bytes())
    )]
    ReadTooLarge {
        /// The file's path relative to the workspace.
        path: String,
        /// What the read would have returned with it.
        total: u64,
        /// The cap in force.
        limit: u64,
    },

    /// A snapshot archive holds a member berth refuses to extract: an
    /// absolute or climbing name, a hard link, a device, or a path through a
    /// symlink.
    #[error(
        "archive `{}`: member `{}` refused: {reason}",
        quote_path(.archive),
        quote_name(.member.as_bytes())
    )]
    UnsafeArchiveMember {
        /// The archive.
        archive: PathBuf,
        /// The member's name as stored.
        member: String,
        /// Why it is refused.
        reason: String,
    },

    /// A directory tree holds an entry beyond the bounds berth reads trees
    /// within: more than [`crate::tree::MAX_DEPTH`] levels below its root,
    /// or a path relative to the root longer than
    /// [`crate::tree::MAX_PATH_BYTES`]. Capture, sync scans, file reads and
    /// copies stop at the first such entry.
    #[error(
        "`{}`: `{path}` ({depth} levels, {bytes} bytes of path) goes beyond {limit}",
        quote_path(.root)
    )]
    TreeBound {
        /// The root of the tree.
        root: PathBuf,
        /// The entry's path relative to the root, for display: its first
        /// 120 bytes and `…`, quoted when it needs to be
        /// ([`crate::tree::shown_path`]).
        path: String,
        /// How many components the full path has.
        depth: usize,
        /// How many bytes the full path has.
        bytes: usize,
        /// The bound it goes beyond.
        limit: crate::tree::TreeLimit,
    },

    /// A snapshot archive is unreadable or does not match its manifest.
    #[error("archive `{}`: {message}", quote_path(.archive))]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A snapshot archive would be written inside the directory being
    /// snapshotted, where the next snapshot would capture it.
    #[error(
        "archive directory `{}` is inside the snapshotted directory `{}`",
        quote_path(.archive_dir),
        quote_path(.root)
    )]
    ArchiveInsideSnapshot {
        /// The directory the archive was to go to.
        archive_dir: PathBuf,
        /// The directory being snapshotted.
        root: PathBuf,
    },

    /// A glob pattern (in snapshot rules or a file-content query) does not
    /// compile.
    #[error("invalid glob `{pattern}`: {message}")]
    InvalidGlob {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },

    /// `prepare()` was called on a workspace that is already prepared.
    #[error("workspace is already prepared at `{}`", quote_path(.0))]
    AlreadyPrepared(PathBuf),

    /// An operation needs a prepared workspace and this one is not (or was
    /// already cleaned up).
    #[error("workspace is not prepared")]
    NotPrepared,

    /// An operation that only makes sense in agent mode was called in
    /// evaluation mode.
    #[error("{operation} is only available in agent mode")]
    AgentModeOnly {
        /// The operation called.
        operation: &'static str,
    },

    /// A static asset's content changed between the start and the end of a
    /// session.
    #[error("static asset `{name}` changed during the session (`{}`)", quote_path(.path))]
    AssetTampered {
        /// The asset's name.
        name: String,
        /// Its path on the host.
        path: PathBuf,
    },

    /// A spec names a backend `type` that no registered backend serves.
    #[error("unknown backend type `{requested}` (registered: {registered})")]
    UnknownBackend {
        /// The type asked for.
        requested: String,
        /// The registered types, comma-separated.
        registered: String,
    },

    /// Two backends claim the same `type`.
    #[error("backend type `{type_name}` is registered twice: by {first} and by {second}")]
    DuplicateBackend {
        /// The contested type.
        type_name: String,
        /// Where the first registration came from.
        first: String,
        /// Where the second came from.
        second: String,
    },

    /// A setup command failed at spawn (and `setup.allow_failure` is off).
    #[error("setup command `{command}` failed with exit code {exit_code}: {}", tail(.stderr, .stdout))]
    SetupFailed {
        /// The command that failed.
        command: String,
        /// Its exit code (`-N` for signal N).
        exit_code: i32,
        /// What it wrote to stdout.
        stdout: String,
        /// What it wrote to stderr.
        stderr: String,
    },

    /// A runtime was used after `cleanup()`.
    #[error("the {backend} runtime is closed")]
    RuntimeClosed {
        /// The runtime's backend type.
        backend: String,
    },

    /// A backend failed in a way specific to it (engine, server, plugin).
    #[error("{backend} backend: {message}")]
    Backend {
        /// The backend type.
        backend: String,
        /// What went wrong, in one line.
        message: String,
    },

    /// Cleaning up a session failed for one or more of its parts; every part
    /// was still attempted.
    #[error("cleanup failed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Cleanup(Vec<Error>),

    /// An I/O operation failed.
    #[error("{action} `{}`: {source}", quote_path(.path))]
    Io {
        /// What was being done (`reading`, `creating directory`, ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Two input files given to one `materialize_input_files` call cannot
    /// both be written: they have the same path, or the first is a file
    /// where the second needs a directory (`a` and `a/b`). Nothing is
    /// written.
    #[error("input files `{first}` and `{second}` conflict: {reason}")]
    ConflictingInputFiles {
        /// The earlier file's normalised path.
        first: String,
        /// The later file's normalised path.
        second: String,
        /// How they conflict.
        reason: &'static str,
    },

    /// An asset map document as a whole is unusable: it is not valid YAML or
    /// JSON, its top level is not a mapping, or its `ordering` is not a list
    /// of group names. (A problem with one asset or group is
    /// [`Error::Asset`].)
    #[error("asset map {origin}: {message}")]
    AssetMap {
        /// Where the map came from (a file path, `<yaml>`, `<json>`,
        /// `<assets>`).
        origin: String,
        /// What is wrong with it.
        message: String,
    },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The last line worth showing of a failed command's output.
fn tail(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let line = text.trim_end().lines().last().unwrap_or("(no output)");
    line.chars().take(200).collect()
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() || field == "." {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Whose failure an [`Error`] is, for callers that sort errors into their
/// own categories (the binary's exit codes and JSON `kind`, the Python
/// module's exceptions) and must sort them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The spec, the assets or the input files the caller gave are wrong.
    Spec,
    /// A runtime's setup command failed.
    Setup,
    /// A backend failed, is unknown, or is closed.
    Backend,
    /// Reading or writing the workspace, a snapshot or an archive failed,
    /// or a path would leave its root.
    Workspace,
    /// The call is not allowed in this session's mode.
    Usage,
    /// Anything else: a bug in berth, or a call in the wrong state.
    Internal,
}

impl Error {
    /// Whose failure this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Spec { .. }
            | Error::EntryFileFormat { .. }
            | Error::InvalidGlob { .. }
            | Error::AssetMap { .. }
            | Error::Asset { .. }
            | Error::UnknownAsset { .. }
            | Error::PlaceholderKeyCollision { .. }
            | Error::ConflictingInputFiles { .. } => ErrorKind::Spec,
            Error::SetupFailed { .. } => ErrorKind::Setup,
            Error::UnknownBackend { .. }
            | Error::DuplicateBackend { .. }
            | Error::RuntimeClosed { .. }
            | Error::Backend { .. }
            | Error::Cleanup(_) => ErrorKind::Backend,
            Error::Io { .. }
            | Error::FileRead { .. }
            | Error::FileWrite { .. }
            | Error::FileTooLarge { .. }
            | Error::ReadTooLarge { .. }
            | Error::TreeBound { .. }
            | Error::Archive { .. }
            | Error::UnsafeArchiveMember { .. }
            | Error::ArchiveInsideSnapshot { .. }
            | Error::PathEscape { .. }
            | Error::AssetTampered { .. } => ErrorKind::Workspace,
            Error::AgentModeOnly { .. } => ErrorKind::Usage,
            Error::AlreadyPrepared(_) | Error::NotPrepared => ErrorKind::Internal,
        }
    }

    /// Wraps an I/O error with the action and path it concerns; meant for
    /// `map_err(Error::io("reading", path))`.
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_say_whose_failure_an_error_is() {
        let setup = Error::SetupFailed {
            command: "make".into(),
            exit_code: 2,
            stdout: String::new(),
            stderr: String::new(),
        };
        let backend = Error::Backend {
            backend: "docker".into(),
            message: "gone".into(),
        };
        let workspace = Error::io("reading", Path::new("x"))(io::Error::other("bad disk"));
        let cleanup = Error::Cleanup(vec![Error::NotPrepared]);
        assert_eq!(setup.kind(), ErrorKind::Setup);
        assert_eq!(backend.kind(), ErrorKind::Backend);
        assert_eq!(cleanup.kind(), ErrorKind::Backend);
        assert_eq!(workspace.kind(), ErrorKind::Workspace);
        assert_eq!(Error::NotPrepared.kind(), ErrorKind::Internal);
    }
}
