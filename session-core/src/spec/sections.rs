//! The shared sections of an environment spec: `environment`, `setup`,
//! `commands`, `snapshot` and `limits`.
//!
//! Each section rejects unknown keys and validates its values while it is
//! deserialised, so an error carries the path of the field at fault.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

use super::document::describe;
use super::entry_file;
use crate::compression::Compression;

/// Bytes of each output stream kept in memory when `limits.output_limit` is
/// not given: 64 MiB.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 64 * 1024 * 1024;

/// The globs `snapshot.ignore_globs` holds when the spec does not set it.
pub const DEFAULT_IGNORE_GLOBS: [&str; 4] = ["*.pyc", "venv/*", ".venv/*", ".evaluation_tests/*"];

/// The `environment` section: variables every command sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping with `env` and `include_os_env`"
)]
pub struct EnvironmentConfig {
    /// Variables set for every command. YAML numbers and booleans are taken
    /// in their string form (`PORT: 8080` is `"8080"`).
    #[serde(deserialize_with = "env_map")]
    pub env: IndexMap<String, String>,
    /// Whether commands also inherit the host's environment (under `env`).
    pub include_os_env: bool,
}

/// The `setup` section: commands run once when a runtime is spawned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping with `commands`, `eval_commands`, `resume_commands` and `allow_failure`"
)]
pub struct SetupConfig {
    /// Run in every mode.
    pub commands: Vec<String>,
    /// Appended after `commands` in evaluation mode only.
    pub eval_commands: Vec<String>,
    /// Exposed to callers that resume a session; never run automatically.
    pub resume_commands: Vec<String>,
    /// When true, a failing setup command does not fail the spawn.
    pub allow_failure: bool,
}

/// The `commands` section: how an entry file is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping with `entry_file`, `command` and `agent_command`"
)]
pub struct CommandConfig {
    /// A format string with the single key `entry_file` (`"{entry_file}.py"`);
    /// `{{` and `}}` are literal braces. Checked when the spec is loaded.
    #[serde(deserialize_with = "entry_file_format")]
    pub entry_file: String,
    /// The program the entry file is given to.
    pub command: String,
    /// Replaces `command` in agent mode when set.
    pub agent_command: Option<String>,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            entry_file: "{entry_file}".to_owned(),
            command: "python".to_owned(),
            agent_command: None,
        }
    }
}

/// The `snapshot` section: what a workspace snapshot holds and how it is
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping with `keep_globs`, `ignore_globs`, `compression` and `archive_save_dir`"
)]
pub struct SnapshotConfig {
    /// When set, only files matching one of these globs are archived.
    /// Checked for glob syntax when the spec is loaded.
    #[serde(deserialize_with = "optional_globs")]
    pub keep_globs: Option<Vec<String>>,
    /// Files and directories matching these globs are left out. Setting it
    /// replaces the defaults ([`DEFAULT_IGNORE_GLOBS`]).
    #[serde(deserialize_with = "globs")]
    pub ignore_globs: Vec<String>,
    /// The archive's compression.
    pub compression: Compression,
    /// Where archives are written; a session-owned directory when unset.
    pub archive_save_dir: Option<PathBuf>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            keep_globs: None,
            ignore_globs: DEFAULT_IGNORE_GLOBS.map(str::to_owned).to_vec(),
            compression: Compression::default(),
            archive_save_dir: None,
        }
    }
}

/// The `limits` section: resource limits applied by every backend that can.
///
/// Timeouts are written in seconds (an integer or a decimal) and must be
/// finite and greater than zero. `memory`, `pids` and `cpus` must be greater
/// than zero; `output_limit` and `file_size` may be zero (keep no output in
/// memory; allow no file to grow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping of resource limits"
)]
pub struct Limits {
    /// The default wall-clock timeout of every command.
    #[serde(deserialize_with = "seconds", serialize_with = "serialize_seconds")]
    pub wall_timeout: Option<Duration>,
    /// How long a command may run without producing output.
    #[serde(deserialize_with = "seconds", serialize_with = "serialize_seconds")]
    pub idle_timeout: Option<Duration>,
    /// Bytes of each output stream kept in memory ([`DEFAULT_OUTPUT_LIMIT`]
    /// when unset or `null`).
    #[serde(deserialize_with = "output_limit")]
    pub output_limit: u64,
    /// Memory limit in bytes.
    #[serde(deserialize_with = "positive_bytes")]
    pub memory: Option<u64>,
    /// CPU limit, in CPUs (`0.5` is half of one).
    #[serde(deserialize_with = "positive_cpus")]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[serde(deserialize_with = "positive_pids")]
    pub pids: Option<u64>,
    /// Largest file a command may write, in bytes.
    #[serde(deserialize_with = "file_size")]
    pub file_size: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_timeout: None,
            idle_timeout: None,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            memory: None,
            cpus: None,
            pids: None,
            file_size: None,
        }
    }
}

/// An environment variable's value: YAML and JSON scalars other than null
/// are taken in their string form.
struct EnvValue(String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match Value::deserialize(deserializer)? {
            Value::String(text) => text,
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            other => {
                return Err(D::Error::custom(format!(
                    "expected a string, number or boolean, found {}",
                    describe(&other)
                )));
            }
        };
        if text.contains('\0') {
            return Err(D::Error::custom(
                "an environment variable's value cannot contain a NUL byte",
            ));
        }
        Ok(EnvValue(text))
    }
}

fn env_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, String>, D::Error> {
    let raw = IndexMap::<String, EnvValue>::deserialize(deserializer)?;
    let mut env = IndexMap::with_capacity(raw.len());
    for (key, EnvValue(value)) in raw {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(D::Error::custom(format!(
                "`{key}` is not a valid environment variable name \
                 (it must be non-empty and contain neither `=` nor NUL)"
            )));
        }
        env.insert(key, value);
    }
    Ok(env)
}

fn entry_file_format<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let format = String::deserialize(deserializer)?;
    entry_file::validate(&format).map_err(D::Error::custom)?;
    Ok(format)
}

/// A glob checked for syntax as it is deserialised, so a bad one is reported
/// with its index.
struct CheckedGlob(String);

impl<'de> Deserialize<'de> for CheckedGlob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        globset::Glob::new(&pattern)
            .map_err(|err| D::Error::custom(format!("invalid glob `{pattern}`: {}", err.kind())))?;
        Ok(CheckedGlob(pattern))
    }
}

fn globs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let globs = Vec::<CheckedGlob>::deserialize(deserializer)?;
    Ok(globs.into_iter().map(|CheckedGlob(glob)| glob).collect())
}

fn optional_globs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let globs = Option::<Vec<CheckedGlob>>::deserialize(deserializer)?;
    Ok(globs.map(|globs| globs.into_iter().map(|CheckedGlob(glob)| glob).collect()))
}

/// The value of a number when it is a whole number that fits an `i128`
/// (`3`, `-1`, `2.0e9`), `None` otherwise.
fn whole(number: &Number) -> Option<i128> {
    if let Some(n) = number.as_u64() {
        return Some(i128::from(n));
    }
    if let Some(n) = number.as_i64() {
        return Some(i128::from(n));
    }
    let float = number.as_f64()?;
    // Beyond 2^64 every f64 is whole but no limit is that large; refuse
    // rather than saturate.
    let in_range = float.is_finite() && float.fract() == 0.0 && float.abs() < 1.9e19;
    in_range.then_some(float as i128)
}

/// Deserialises an optional whole number at least `min`, describing it as
/// `what` in errors.
fn bounded_count<'de, D: Deserializer<'de>>(
    deserializer: D,
    min: u64,
    what: &str,
) -> Result<Option<u64>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    let refuse = || {
        let adjective = if min == 0 { "non-negative" } else { "positive" };
        D::Error::custom(format!(
            "expected a {adjective} whole number of {what}, found {}",
            describe(&value)
        ))
    };
    match &value {
        Value::Null => Ok(None),
        Value::Number(number) => match whole(number).and_then(|n| u64::try_from(n).ok()) {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(refuse()),
        },
        _ => Err(refuse()),
    }
}

fn output_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(bounded_count(deserializer, 0, "bytes")?.unwrap_or(DEFAULT_OUTPUT_LIMIT))
}

fn positive_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    bounded_count(deserializer, 1, "bytes")
}

fn positive_pids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    bounded_count(deserializer, 1, "processes")
}

fn file_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    bounded_count(deserializer, 0, "bytes")
}

/// Deserialises an optional finite number greater than zero.
fn positive_number<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
) -> Result<Option<f64>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match value.as_f64() {
        _ if value.is_null() => Ok(None),
        Some(n) if n.is_finite() && n > 0.0 => Ok(Some(n)),
        _ => Err(D::Error::custom(format!(
            "expected a positive number of {what}, found {}",
            describe(&value)
        ))),
    }
}

fn positive_cpus<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    positive_number(deserializer, "CPUs")
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let Some(seconds) = positive_number(deserializer, "seconds")? else {
        return Ok(None);
    };
    if seconds > crate::runtime::MAX_TIMEOUT.as_secs_f64() {
        return Err(D::Error::custom(format!(
            "{seconds:e} seconds is too long a timeout: berth takes at most {} s (about a \
             century)",
            crate::runtime::MAX_TIMEOUT.as_secs()
        )));
    }
    Duration::try_from_secs_f64(seconds)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{seconds} seconds is too long a timeout")))
}

/// Writes a duration as seconds: an integer when it is whole, so a spec
/// that said `30` says `30` again.
#[allow(clippy::ref_option)] // serde's `serialize_with` hands us `&Option<_>`.
fn serialize_seconds<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        None => serializer.serialize_none(),
        Some(d) if d.subsec_nanos() == 0 => serializer.serialize_u64(d.as_secs()),
        Some(d) => serializer.serialize_f64(d.as_secs_f64()),
    }
}
