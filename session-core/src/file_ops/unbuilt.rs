//! What stands in for the csv/tsv, SQLite and Parquet handlers when
//! session-core is built without its `formats` feature (a backend plugin's
//! build): such files are refused, naming the feature, instead of being
//! written or read wrongly.

use super::{FileType, read_error, write_error};
use crate::error::Error;

/// The error for a `file_type` file at `path` in a build without formats.
pub(super) fn refusal(file_type: FileType, path: &str, writing: bool) -> Error {
    let message =
        format!("{file_type} files are not built in (session-core's `formats` feature is off)");
    if writing {
        write_error(path, file_type, message)
    } else {
        read_error(path, file_type, message)
    }
}
