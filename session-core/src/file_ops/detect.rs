//! File type and compression from a file's name.

use std::path::Path;

use super::FileType;
use crate::compression::Compression;

/// The type and compression a file's name says it has.
///
/// Only the name counts, lower-cased, and of it only the last two suffixes
/// (a leading dot, as in `.bashrc`, does not start a suffix):
///
/// * a compression suffix (`.gz`, `.bz2`, `.xz`, `.zst`) after a text-like
///   type's suffix is that type, compressed: `rows.csv.gz`, `notes.md.bz2`;
/// * a compression suffix after anything else (`.tar.gz`, `.db.gz`,
///   `.bin.xz`, `dump.gz`) is a binary file written as given, without berth
///   compressing it again;
/// * otherwise the last suffix decides: `.json`, `.jsonl`/`.ndjson`, `.csv`,
///   `.tsv`, `.yaml`/`.yml`, `.sqlite`/`.sqlite3`/`.db`, `.parquet`, text
///   (`.txt .md .py .js .html .css .xml`) and binary (`.bin .tar .tgz .tbz2
///   .tbz .txz`);
/// * anything else is text (which reads back as bytes when it is not UTF-8).
///
/// Never fails.
pub fn detect_file_type(path: impl AsRef<Path>) -> (FileType, Compression) {
    let name = path
        .as_ref()
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let suffixes: Vec<&str> = name.trim_start_matches('.').split('.').skip(1).collect();
    let (before, last) = match suffixes.as_slice() {
        [] => ("", ""),
        [last] => ("", *last),
        [.., before, last] => (*before, *last),
    };
    if let Some(compression) = Compression::from_suffix(last) {
        return match type_of_suffix(before) {
            Some(file_type) if file_type.accepts_compression() => (file_type, compression),
            _ => (FileType::Binary, Compression::None),
        };
    }
    (
        type_of_suffix(last).unwrap_or(FileType::Text),
        Compression::None,
    )
}

fn type_of_suffix(suffix: &str) -> Option<FileType> {
    Some(match suffix {
        "json" => FileType::Json,
        "jsonl" | "ndjson" => FileType::Jsonl,
        "csv" => FileType::Csv,
        "tsv" => FileType::Tsv,
        "yaml" | "yml" => FileType::Yaml,
        "sqlite" | "sqlite3" | "db" => FileType::Sqlite,
        "parquet" => FileType::Parquet,
        "txt" | "md" | "py" | "js" | "html" | "css" | "xml" => FileType::Text,
        "bin" | "tar" | "tgz" | "tbz2" | "tbz" | "txz" => FileType::Binary,
        _ => return None,
    })
}
