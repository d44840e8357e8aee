//! Input files: typed content written into a workspace, and read back.
//!
//! A harness hands berth files as [`InputFile`]s: a relative path, a content
//! (a JSON value or raw bytes), a [`FileType`] and a [`Compression`]. Each type
//! has a handler that encodes content to bytes and decodes bytes back to
//! content, and every handler reads back what it wrote:
//!
//! | type | content | on disk |
//! |---|---|---|
//! | `text` | a string, or bytes | the string's UTF-8 bytes, byte for byte |
//! | `binary` | bytes, or a string | the bytes as given |
//! | `json` | any value | pretty, two-space indent, key order kept, trailing newline |
//! | `jsonl` | an array | one compact value per line |
//! | `csv` / `tsv` | an array of row objects | header from the first row, `\r\n` line ends |
//! | `yaml` | any value | YAML |
//! | `sqlite` | `{"tables": {name: [row objects]}}` | an SQLite database |
//! | `parquet` | an array of flat row objects | a Parquet file |
//!
//! Compression (gzip, bzip2, xz, zstd) wraps the text-like types (text,
//! json, jsonl, csv, tsv, yaml). Binary, SQLite and Parquet files are never
//! compressed by berth: asking for it is a typed error, and a name such as
//! `data.tar.gz` or `dump.db.gz` is detected as binary written as given.
//!
//! Content that does not fit its type is an [`Error::FileWrite`] before
//! anything touches the disk; [`materialize_input_files`] checks every path
//! and encodes every file before it writes the first one.
//!
//! Raw bytes given for a structured type (say, a ready-made SQLite database
//! for `data.db`) are written as they are once they decode as that type, so a
//! broken file is refused rather than written.

#[cfg(feature = "formats")]
mod columns;
mod detect;
mod json;
#[cfg(feature = "formats")]
mod parquet;
#[cfg(feature = "formats")]
mod sqlite;
#[cfg(feature = "formats")]
mod tabular;
mod text;
#[cfg(not(feature = "formats"))]
mod unbuilt;
mod wire;
mod yaml;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::paths;

pub use detect::detect_file_type;

/// The format of an input file, which decides how its content is encoded.
///
/// Serialised as the lower-case name (`"text"`, `"jsonl"`, ...); `ndjson`,
/// `yml` and `sqlite3` are accepted as aliases when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// Text: a string written byte for byte; reads back as a string, or as
    /// bytes when the file is not UTF-8.
    Text,
    /// Opaque bytes written exactly as given.
    Binary,
    /// One JSON document, pretty-printed.
    Json,
    /// JSON Lines: an array of values, one compact value per line.
    #[serde(alias = "ndjson")]
    Jsonl,
    /// Comma-separated rows with a header line.
    Csv,
    /// Tab-separated rows with a header line.
    Tsv,
    /// One YAML document.
    #[serde(alias = "yml")]
    Yaml,
    /// An SQLite database of tables of rows.
    #[serde(alias = "sqlite3")]
    Sqlite,
    /// A Parquet file of flat rows.
    Parquet,
}

impl FileType {
    /// Every type, in a stable order.
    pub const ALL: [FileType; 9] = [
        FileType::Text,
        FileType::Binary,
        FileType::Json,
        FileType::Jsonl,
        FileType::Csv,
        FileType::Tsv,
        FileType::Yaml,
        FileType::Sqlite,
        FileType::Parquet,
    ];

    /// The lower-case name used in JSON and in messages.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Text => "text",
            FileType::Binary => "binary",
            FileType::Json => "json",
            FileType::Jsonl => "jsonl",
            FileType::Csv => "csv",
            FileType::Tsv => "tsv",
            FileType::Yaml => "yaml",
            FileType::Sqlite => "sqlite",
            FileType::Parquet => "parquet",
        }
    }

    /// Whether berth compresses files of this type when asked to: true for
    /// the text-like types, false for binary, SQLite and Parquet.
    pub fn accepts_compression(self) -> bool {
        !matches!(
            self,
            FileType::Binary | FileType::Sqlite | FileType::Parquet
        )
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an input file holds before encoding, or after decoding.
///
/// Structured types take a [`Value`](InputContent::Json); text and binary
/// take either a string or raw bytes. Raw bytes are always the *uncompressed*
/// payload: compression is applied on top when the file is written.
#[derive(Debug, Clone, PartialEq)]
pub enum InputContent {
    /// A JSON value (a string for text files).
    Json(Value),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl InputContent {
    /// The JSON value, if this content is one.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            InputContent::Json(value) => Some(value),
            InputContent::Bytes(_) => None,
        }
    }

    /// The raw bytes, if this content is bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            InputContent::Json(_) => None,
            InputContent::Bytes(bytes) => Some(bytes),
        }
    }
}

impl From<Value> for InputContent {
    fn from(value: Value) -> Self {
        InputContent::Json(value)
    }
}

impl From<Vec<u8>> for InputContent {
    fn from(bytes: Vec<u8>) -> Self {
        InputContent::Bytes(bytes)
    }
}

impl From<&[u8]> for InputContent {
    fn from(bytes: &[u8]) -> Self {
        InputContent::Bytes(bytes.to_vec())
    }
}

impl From<String> for InputContent {
    fn from(text: String) -> Self {
        InputContent::Json(Value::String(text))
    }
}

impl From<&str> for InputContent {
    fn from(text: &str) -> Self {
        InputContent::Json(Value::String(text.to_owned()))
    }
}

/// A file to write into a workspace.
///
/// Built with [`InputFile::new`], which detects the type and compression from
/// the path, or parsed from JSON:
///
/// ```json
/// {"path": "data/rows.csv.gz", "content": [{"a": 1}]}
/// {"path": "tool.bin", "content_base64": "AAEC", "file_type": "binary"}
/// ```
///
/// Exactly one of `content` (any JSON value, `null` included) and
/// `content_base64` (raw bytes, standard base64 alphabet, padding optional)
/// must be present; keeping bytes in their own field means no JSON content
/// can be mistaken for bytes. `file_type` and `compression` default to what
/// the path's name says (see [`detect_file_type`]); unknown fields are
/// refused so a misspelt one is not silently ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "wire::InputFileWire")]
pub struct InputFile {
    /// Where the file goes, relative to the workspace root.
    pub path: PathBuf,
    /// What the file holds.
    pub content: InputContent,
    /// How the content is encoded.
    pub file_type: FileType,
    /// How the encoded bytes are compressed.
    pub compression: Compression,
}

impl InputFile {
    /// Describes a file, taking its type and compression from the path's
    /// name (see [`detect_file_type`]). Nothing is checked until the file is
    /// encoded or written.
    pub fn new(path: impl Into<PathBuf>, content: impl Into<InputContent>) -> InputFile {
        let path = path.into();
        let (file_type, compression) = detect_file_type(&path);
        InputFile {
            path,
            content: content.into(),
            file_type,
            compression,
        }
    }

    /// Overrides the detected type.
    #[must_use]
    pub fn with_file_type(mut self, file_type: FileType) -> InputFile {
        self.file_type = file_type;
        self
    }

    /// Overrides the detected compression.
    #[must_use]
    pub fn with_compression(mut self, compression: Compression) -> InputFile {
        self.compression = compression;
        self
    }

    /// Encodes the content to the bytes that would be written.
    ///
    /// Fails with [`Error::FileWrite`] when the content does not fit the
    /// type, or when compression is asked for a type that takes none.
    pub fn encode(&self) -> Result<Cow<'_, [u8]>> {
        encode_content(
            &self.content,
            self.file_type,
            self.compression,
            &self.path.display().to_string(),
        )
    }
}

/// Encodes `content` as `file_type`, then compresses it.
///
/// `path` only names the file in errors. Fails with [`Error::FileWrite`] when
/// the content does not fit the type (see the module documentation for what
/// each type takes), or when `compression` is set for binary, SQLite or
/// Parquet. Text and binary content is borrowed, not copied, when no
/// compression applies.
pub fn encode_content<'a>(
    content: &'a InputContent,
    file_type: FileType,
    compression: Compression,
    path: &str,
) -> Result<Cow<'a, [u8]>> {
    check_compression(file_type, compression, || {
        write_error(path, file_type, compression_refusal(file_type))
    })?;
    let encoded = match content {
        InputContent::Json(value) => encode_value(value, file_type, path)?,
        InputContent::Bytes(bytes) if matches!(file_type, FileType::Text | FileType::Binary) => {
            Cow::Borrowed(bytes.as_slice())
        }
        InputContent::Bytes(bytes) => {
            // Ready-made bytes go out as they are, but only once they decode
            // as the type: a file named `.db` must open as a database.
            decode_uncompressed(bytes, file_type, path).map_err(|err| match err {
                Error::FileRead { message, .. } => write_error(
                    path,
                    file_type,
                    format!("the bytes given are not valid {file_type}: {message}"),
                ),
                // Scratch-file trouble is not the content's fault.
                other => other,
            })?;
            Cow::Borrowed(bytes.as_slice())
        }
    };
    if compression == Compression::None {
        return Ok(encoded);
    }
    compression
        .compress(&encoded)
        .map(Cow::Owned)
        .map_err(|err| write_error(path, file_type, format!("{compression} compression: {err}")))
}

/// The largest input file berth reads, and the most bytes it decompresses
/// one into: 64 MiB, the default cap of a workspace file read. Beyond it
/// [`read_input_file`] fails with [`Error::FileTooLarge`] (from the file's
/// size, before reading it) and decompression with [`Error::FileRead`]
/// (as soon as the output passes it), so a small archive that unpacks to
/// gigabytes costs no more than 64 MiB.
pub const MAX_INPUT_SIZE: u64 = 64 << 20;

/// Decompresses `bytes`, then decodes them as `file_type`.
///
/// `path` only names the file in errors. Text decodes to a string, or to
/// bytes when it is not UTF-8; binary decodes to bytes; every other type
/// decodes to a JSON value. Fails with [`Error::FileRead`] when the bytes are
/// not valid for the compression or the type, or decompress to more than
/// [`MAX_INPUT_SIZE`] bytes.
pub fn decode_content(
    bytes: &[u8],
    file_type: FileType,
    compression: Compression,
    path: &str,
) -> Result<InputContent> {
    check_compression(file_type, compression, || {
        read_error(path, file_type, compression_refusal(file_type))
    })?;
    if compression == Compression::None {
        return decode_uncompressed(bytes, file_type, path);
    }
    let plain = decompress_bounded(bytes, compression).map_err(|err| {
        read_error(
            path,
            file_type,
            match err {
                Inflated::TooLarge => {
                    format!("it decompresses to more than {MAX_INPUT_SIZE} bytes, the limit")
                }
                Inflated::Invalid(err) => format!("not valid {compression} data: {err}"),
            },
        )
    })?;
    match file_type {
        // Hand the buffer over rather than copy it.
        FileType::Binary => Ok(InputContent::Bytes(plain)),
        FileType::Text => Ok(text::decode_text_owned(plain)),
        _ => decode_uncompressed(&plain, file_type, path),
    }
}

/// Why [`decompress_bounded`] failed.
enum Inflated {
    /// The output passed [`MAX_INPUT_SIZE`].
    TooLarge,
    /// The input is not valid in its format.
    Invalid(io::Error),
}

/// Decompresses `bytes`, stopping as soon as the output passes
/// [`MAX_INPUT_SIZE`].
fn decompress_bounded(bytes: &[u8], compression: Compression) -> Result<Vec<u8>, Inflated> {
    let mut plain = Vec::new();
    compression
        .reader(bytes)
        .and_then(|reader| reader.take(MAX_INPUT_SIZE + 1).read_to_end(&mut plain))
        .map_err(Inflated::Invalid)?;
    if plain.len() as u64 > MAX_INPUT_SIZE {
        return Err(Inflated::TooLarge);
    }
    Ok(plain)
}

/// Reads a file from the host, detecting its type and compression from its
/// name (see [`detect_file_type`]), and decodes it.
///
/// The path is used as given: containing it within a workspace is the
/// caller's business. Fails with [`Error::Io`] when the file cannot be read,
/// [`Error::FileTooLarge`] when it is larger than [`MAX_INPUT_SIZE`], and
/// [`Error::FileRead`] when it does not decode as its type or decompresses
/// to more than [`MAX_INPUT_SIZE`].
pub fn read_input_file(path: &Path) -> Result<InputContent> {
    let (file_type, compression) = detect_file_type(path);
    read_input_file_as(path, file_type, compression)
}

/// Reads a file from the host as the given type and compression, whatever
/// its name says.
///
/// Fails like [`read_input_file`], and with [`Error::FileRead`] when
/// compression is given for binary, SQLite or Parquet.
pub fn read_input_file_as(
    path: &Path,
    file_type: FileType,
    compression: Compression,
) -> Result<InputContent> {
    let bytes = read_bounded(path)?;
    // Text and binary keep the buffer just read instead of copying it.
    match (file_type, compression) {
        (FileType::Binary, Compression::None) => Ok(InputContent::Bytes(bytes)),
        (FileType::Text, Compression::None) => Ok(text::decode_text_owned(bytes)),
        _ => decode_content(&bytes, file_type, compression, &path.display().to_string()),
    }
}

/// Reads a whole file of at most [`MAX_INPUT_SIZE`] bytes.
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let file = fs::File::open(path).map_err(Error::io("reading", path))?;
    let too_large = |size| Error::FileTooLarge {
        path: path.display().to_string(),
        size,
        limit: MAX_INPUT_SIZE,
    };
    let size = file.metadata().map_err(Error::io("reading", path))?.len();
    if size > MAX_INPUT_SIZE {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_INPUT_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io("reading", path))?;
    if bytes.len() as u64 > MAX_INPUT_SIZE {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Writes `files` under `root`, which must be an existing directory, and
/// returns the paths written (`root` joined with each normalised path), in
/// the order given.
///
/// Nothing is written unless everything can be: first every path is checked
/// (an absolute path or one that climbs out of `root` is
/// [`Error::PathEscape`]; two files with one path, or a file where another
/// needs a directory, is [`Error::ConflictingInputFiles`]); then every
/// destination is inspected (a symlink on the way or at the file itself is
/// [`Error::PathEscape`]); then every file is encoded (a content that does
/// not fit its type is [`Error::FileWrite`]). Only then are the files written,
/// each through [`paths::create_file_in`], which refuses symlinks again at the
/// moment of writing; an existing file is replaced (an existing directory at
/// a file's path is [`Error::Io`]). An I/O failure during the
/// writes themselves ([`Error::Io`]) can still leave the earlier files
/// written.
pub fn materialize_input_files(root: &Path, files: &[InputFile]) -> Result<Vec<PathBuf>> {
    let relative = files
        .iter()
        .map(|file| paths::normalize_relative(&file.path))
        .collect::<Result<Vec<_>>>()?;
    check_conflicts(&relative)?;
    let mut inspected = HashSet::new();
    for rel in &relative {
        inspect_destination(root, rel, &mut inspected)?;
    }
    let encoded = files
        .iter()
        .zip(&relative)
        .map(|(file, rel)| {
            encode_content(
                &file.content,
                file.file_type,
                file.compression,
                &paths::to_slash(rel),
            )
        })
        .collect::<Result<Vec<_>>>()?;

    let mut written = Vec::with_capacity(files.len());
    for (rel, bytes) in relative.iter().zip(&encoded) {
        let full = root.join(rel);
        let mut file = paths::create_file_in(root, rel)?;
        file.write_all(bytes).map_err(Error::io("writing", &full))?;
        written.push(full);
    }
    Ok(written)
}

/// Refuses two files at one path, and a file at a path another file needs as
/// a directory, before anything is written; otherwise the second write would
/// fail (or win) with the first already on disk.
fn check_conflicts(relative: &[PathBuf]) -> Result<()> {
    let mut files: HashMap<&Path, usize> = HashMap::with_capacity(relative.len());
    for (index, rel) in relative.iter().enumerate() {
        if let Some(&first) = files.get(rel.as_path()) {
            return Err(Error::ConflictingInputFiles {
                first: paths::to_slash(&relative[first]),
                second: paths::to_slash(rel),
                reason: "both are the same file",
            });
        }
        files.insert(rel, index);
    }
    for rel in relative {
        for ancestor in rel.ancestors().skip(1) {
            if let Some(&index) = files.get(ancestor) {
                return Err(Error::ConflictingInputFiles {
                    first: paths::to_slash(&relative[index]),
                    second: paths::to_slash(rel),
                    reason: "the first is a file, the second needs it to be a directory",
                });
            }
        }
    }
    Ok(())
}

/// Looks at what already exists on the way to `root/rel` so that a symlink or
/// a file standing where a directory must go is refused before the first
/// write. This is only an early answer for the whole batch:
/// [`paths::create_file_in`] stays the guard at the moment of writing.
fn inspect_destination(root: &Path, rel: &Path, inspected: &mut HashSet<PathBuf>) -> Result<()> {
    let refuse = |reason| Error::PathEscape {
        path: rel.display().to_string(),
        reason,
    };
    let mut current = root.to_path_buf();
    let mut components = rel.components().peekable();
    while let Some(component) = components.next() {
        current.push(component);
        let is_file = components.peek().is_none();
        if !is_file && inspected.contains(&current) {
            continue;
        }
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refuse(if is_file {
                    "the file is a symlink"
                } else {
                    "a parent directory is a symlink"
                }));
            }
            Ok(meta) if is_file && meta.is_dir() => {
                return Err(Error::io("creating", &current)(io::Error::from(
                    io::ErrorKind::IsADirectory,
                )));
            }
            Ok(meta) if !is_file && !meta.is_dir() => {
                return Err(refuse("a parent of it is not a directory"));
            }
            Ok(_) => {}
            // Everything below a missing directory is created fresh.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::io("inspecting", &current)(err)),
        }
        if !is_file {
            inspected.insert(current.clone());
        }
    }
    Ok(())
}

fn encode_value<'a>(value: &'a Value, file_type: FileType, path: &str) -> Result<Cow<'a, [u8]>> {
    let owned = match file_type {
        FileType::Text => return text::encode_text(value, path),
        FileType::Binary => return text::encode_binary(value, path),
        FileType::Json => json::encode_json(value, path)?,
        FileType::Jsonl => json::encode_jsonl(value, path)?,
        FileType::Yaml => yaml::encode(value, path)?,
        #[cfg(feature = "formats")]
        FileType::Csv | FileType::Tsv => tabular::encode(value, file_type, path)?,
        #[cfg(feature = "formats")]
        FileType::Sqlite => sqlite::encode(value, path)?,
        #[cfg(feature = "formats")]
        FileType::Parquet => parquet::encode(value, path)?,
        #[cfg(not(feature = "formats"))]
        FileType::Csv | FileType::Tsv | FileType::Sqlite | FileType::Parquet => {
            return Err(unbuilt::refusal(file_type, path, true));
        }
    };
    Ok(Cow::Owned(owned))
}

fn decode_uncompressed(bytes: &[u8], file_type: FileType, path: &str) -> Result<InputContent> {
    let value = match file_type {
        FileType::Text => return Ok(text::decode_text(bytes)),
        FileType::Binary => return Ok(InputContent::Bytes(bytes.to_vec())),
        FileType::Json => json::decode_json(bytes, path)?,
        FileType::Jsonl => json::decode_jsonl(bytes, path)?,
        FileType::Yaml => yaml::decode(bytes, path)?,
        #[cfg(feature = "formats")]
        FileType::Csv | FileType::Tsv => tabular::decode(bytes, file_type, path)?,
        #[cfg(feature = "formats")]
        FileType::Sqlite => sqlite::decode(bytes, path)?,
        #[cfg(feature = "formats")]
        FileType::Parquet => parquet::decode(bytes, path)?,
        #[cfg(not(feature = "formats"))]
        FileType::Csv | FileType::Tsv | FileType::Sqlite | FileType::Parquet => {
            return Err(unbuilt::refusal(file_type, path, false));
        }
    };
    Ok(InputContent::Json(value))
}

fn check_compression(
    file_type: FileType,
    compression: Compression,
    error: impl FnOnce() -> Error,
) -> Result<()> {
    if compression == Compression::None || file_type.accepts_compression() {
        Ok(())
    } else {
        Err(error())
    }
}

fn compression_refusal(file_type: FileType) -> String {
    format!(
        "berth does not compress {file_type} files; give the compressed bytes as a binary file instead"
    )
}

/// Builds the [`Error::FileWrite`] every handler reports content problems with.
fn write_error(path: &str, file_type: FileType, message: impl Into<String>) -> Error {
    Error::FileWrite {
        path: path.to_owned(),
        file_type,
        message: message.into(),
    }
}

/// Builds the [`Error::FileRead`] every handler reports decoding problems with.
fn read_error(path: &str, file_type: FileType, message: impl Into<String>) -> Error {
    Error::FileRead {
        path: path.to_owned(),
        file_type,
        message: message.into(),
    }
}

/// Names a JSON value's kind for messages ("an object", "a string", ...).
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(all(test, feature = "formats", feature = "compression"))]
mod tests;
