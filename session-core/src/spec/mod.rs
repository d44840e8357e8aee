//! Environment specs: which backend runs a session's commands, and
//! the settings every backend shares.
//!
//! A spec is a YAML or JSON document. Its shared part (`type`, `name`,
//! `environment`, `setup`, `commands`, `snapshot`, `limits`) is validated
//! here, with every unknown key refused and every error naming its dotted
//! field path. The spec may carry one more top-level key, named exactly after
//! `type` (`local:`, `docker:`, a plugin's type): the backend block. It is
//! kept as data and deserialised by the backend through
//! [`EnvironmentSpec::backend_config`], with errors of the same quality.
//!
//! ```
//! use session_core::spec::{EnvironmentSpec, Mode};
//!
//! let spec = EnvironmentSpec::from_yaml_str(
//!     "type: local\nname: python\ncommands: {entry_file: '{entry_file}.py'}\n",
//!     "<yaml>",
//! )
//! .unwrap();
//! assert_eq!(spec.command_for("main", Mode::Evaluation).unwrap(), "python main.py");
//! ```

pub(crate) mod bounds;
mod document;
mod entry_file;
mod sections;

use std::fmt;
use std::path::Path;

use indexmap::IndexMap;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use bounds::{MAX_ALIASES, MAX_DOCUMENT_BYTES, MAX_NESTING, MAX_VALUES};
pub use sections::{
    CommandConfig, DEFAULT_IGNORE_GLOBS, DEFAULT_OUTPUT_LIMIT, EnvironmentConfig, Limits,
    SetupConfig, SnapshotConfig,
};

use crate::assets::ResolvedAssets;
use crate::error::{Error, Result};
use crate::paths;

/// The origin recorded for a spec built through its `Deserialize` impl
/// (nested in another document), where no file name is known.
pub const NESTED_ORIGIN: &str = "<spec>";

/// Why a session runs: an agent working in the workspace, or an evaluation
/// of what it produced.
///
/// Specs and requests spell these `agent` and `evaluation` (`eval` is
/// accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An agent works in the workspace: assets are copied in, checkpoints
    /// are taken, `commands.agent_command` is used.
    Agent,
    /// The workspace is evaluated: assets stay outside (read-only), and
    /// `setup.eval_commands` run after `setup.commands`.
    #[serde(alias = "eval")]
    Evaluation,
}

impl Mode {
    /// The mode's name: `agent` or `evaluation`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Agent => "agent",
            Mode::Evaluation => "evaluation",
        }
    }

    /// The mode a name spells (`agent`, `evaluation` or `eval`), if any.
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "agent" => Some(Mode::Agent),
            "evaluation" | "eval" => Some(Mode::Evaluation),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An environment spec: the backend to run on, and the shared settings.
///
/// Load one with [`from_path`](Self::from_path),
/// [`from_yaml_str`](Self::from_yaml_str) or
/// [`from_json_str`](Self::from_json_str); a spec nested in another document
/// (an `api` block's `remote` spec) deserialises through `Deserialize` with
/// the same rules. `Serialize` writes the same file format back, backend
/// block included, so a spec round-trips through JSON or YAML.
///
/// Equality compares the content and ignores where the spec was loaded from.
#[derive(Debug, Clone)]
pub struct EnvironmentSpec {
    /// The backend's type (`local`, `docker`, `api`, a plugin's type): the
    /// spec's `type` key.
    pub backend_type: String,
    /// The environment's name.
    pub name: String,
    /// Environment variables.
    pub environment: EnvironmentConfig,
    /// Commands run once per runtime, at spawn.
    pub setup: SetupConfig,
    /// How an entry file is run.
    pub commands: CommandConfig,
    /// What snapshots hold and how they are stored.
    pub snapshot: SnapshotConfig,
    /// Resource limits.
    pub limits: Limits,
    /// The block named after `backend_type`, as data for the backend.
    backend: Option<Value>,
    /// Where the spec came from, for error messages.
    origin: String,
}

impl EnvironmentSpec {
    /// A spec for `backend_type` with every shared setting at its default
    /// and no backend block.
    pub fn new(backend_type: impl Into<String>, name: impl Into<String>) -> Self {
        EnvironmentSpec {
            backend_type: backend_type.into(),
            name: name.into(),
            environment: EnvironmentConfig::default(),
            setup: SetupConfig::default(),
            commands: CommandConfig::default(),
            snapshot: SnapshotConfig::default(),
            limits: Limits::default(),
            backend: None,
            origin: NESTED_ORIGIN.to_owned(),
        }
    }

    /// Parses a YAML spec. `origin` names it in errors (`<yaml>` when there
    /// is no file); syntax errors carry their line and column.
    ///
    /// Hostile text is refused in time proportional to its length: a
    /// document over [`MAX_DOCUMENT_BYTES`], nesting deeper than
    /// [`MAX_NESTING`] (flow `[`/`{` and indented blocks alike), using more
    /// than [`MAX_ALIASES`] aliases, or expanding to more than
    /// [`MAX_VALUES`] values is an [`Error::Spec`] naming the line and
    /// column where the bound was crossed.
    ///
    /// Fails with [`Error::Spec`] on invalid YAML, an unknown key, a missing
    /// or invalid field, or a bound crossed.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Self> {
        document::parse_yaml_text(text)
            .and_then(|doc| document::from_document(doc, origin.to_owned()))
            .map_err(|problem| spec_error(origin, problem))
    }

    /// Parses a JSON spec. `origin` names it in errors (`<json>` when there
    /// is no file). The size and nesting bounds of
    /// [`from_yaml_str`](Self::from_yaml_str) hold here too.
    ///
    /// Fails like [`from_yaml_str`](Self::from_yaml_str).
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self> {
        document::parse_json_text(text)
            .and_then(|doc| document::from_document(doc, origin.to_owned()))
            .map_err(|problem| spec_error(origin, problem))
    }

    /// Reads a spec file: JSON when its extension is `.json`, YAML otherwise.
    /// Errors name the file.
    ///
    /// Fails with [`Error::Io`] when the file cannot be read, and like
    /// [`from_yaml_str`](Self::from_yaml_str) otherwise. A file longer than
    /// [`MAX_DOCUMENT_BYTES`] is refused without being read whole.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        use std::io::Read as _;
        let path = path.as_ref();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| {
                file.take(MAX_DOCUMENT_BYTES as u64 + 1)
                    .read_to_end(&mut bytes)
            })
            .map_err(Error::io("reading environment spec", path))?;
        let text = if bytes.len() > MAX_DOCUMENT_BYTES {
            // Too long either way; the parser names the line where the
            // limit falls (a character cut at the end does not matter).
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            String::from_utf8(bytes).map_err(|err| {
                Error::io("reading environment spec", path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    err.utf8_error(),
                ))
            })?
        };
        let origin = path.display().to_string();
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        if is_json {
            Self::from_json_str(&text, &origin)
        } else {
            Self::from_yaml_str(&text, &origin)
        }
    }

    /// Where the spec came from: a file path, `<yaml>`, `<json>`, or
    /// [`NESTED_ORIGIN`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Replaces the origin used in error messages (a server naming the
    /// request a spec came in).
    #[must_use]
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// The backend block (the top-level key named after `type`), if the
    /// spec has one.
    pub fn backend_block(&self) -> Option<&Value> {
        self.backend.as_ref()
    }

    /// Replaces the backend block. `None`, like `null`, means no block.
    pub fn set_backend_block(&mut self, block: Option<Value>) {
        self.backend = block.filter(|block| !block.is_null());
    }

    /// Deserialises the backend block into the backend's own config type;
    /// a spec without a block gives `T::default()`.
    ///
    /// Fails with [`Error::Spec`] whose field is the path inside the block,
    /// prefixed by the block's name (`docker.keep_contaner_after_clean`).
    pub fn backend_config<T: DeserializeOwned + Default>(&self) -> Result<T> {
        let Some(block) = &self.backend else {
            return Ok(T::default());
        };
        serde_path_to_error::deserialize(block).map_err(|err| {
            spec_error(
                &self.origin,
                document::path_problem(&err, &self.backend_type),
            )
        })
    }

    /// The environment a command sees before its own variables: the host's
    /// (when `include_os_env`; variables that are not UTF-8 are skipped),
    /// then the spec's `env`, then `extra`. Later wins.
    pub fn full_env(&self, extra: &IndexMap<String, String>) -> IndexMap<String, String> {
        let mut env = IndexMap::new();
        if self.environment.include_os_env {
            env.extend(std::env::vars_os().filter_map(|(key, value)| {
                Some((key.into_string().ok()?, value.into_string().ok()?))
            }));
        }
        for (key, value) in self.environment.env.iter().chain(extra) {
            env.insert(key.clone(), value.clone());
        }
        env
    }

    /// The setup commands to run in `mode`: `setup.commands`, then
    /// `setup.eval_commands` in evaluation mode. The spec is not changed.
    pub fn setup_commands(&self, mode: Mode) -> Vec<String> {
        let mut commands = self.setup.commands.clone();
        if mode == Mode::Evaluation {
            commands.extend(self.setup.eval_commands.iter().cloned());
        }
        commands
    }

    /// Formats `commands.entry_file` with `name`: `{entry_file}` becomes
    /// `name`, `{{` and `}}` become braces.
    ///
    /// Fails with [`Error::EntryFileFormat`] when the format has another
    /// placeholder or an unbalanced brace, or formats to an empty string.
    pub fn format_entry_file(&self, name: &str) -> Result<String> {
        let format = &self.commands.entry_file;
        entry_file::render(format, name).map_err(|message| Error::EntryFileFormat {
            format: format.clone(),
            message,
        })
    }

    /// The shell command that runs entry `entry` in `mode`: the program
    /// (`commands.agent_command` in agent mode when it is set, else
    /// `commands.command`), trimmed, then one space, then the formatted entry
    /// file. The entry is not quoted: the format may carry arguments.
    ///
    /// A program that is empty after trimming gives the formatted entry file
    /// alone, so an executable entry runs directly. An `agent_command` that
    /// is set but empty counts as set.
    ///
    /// Fails like [`format_entry_file`](Self::format_entry_file).
    pub fn command_for(&self, entry: &str, mode: Mode) -> Result<String> {
        let program = match (mode, &self.commands.agent_command) {
            (Mode::Agent, Some(agent_command)) => agent_command,
            _ => &self.commands.command,
        };
        let program = program.trim();
        let entry = self.format_entry_file(entry)?;
        Ok(if program.is_empty() {
            entry
        } else {
            format!("{program} {entry}")
        })
    }

    /// The globs a snapshot of a workspace holding `assets` ignores:
    /// `snapshot.ignore_globs`, then each asset's save path (and
    /// `save_path/*` for a directory), so assets copied into the workspace
    /// never end up in a snapshot or a diff. Glob characters in save paths
    /// are escaped so each matches only its asset.
    pub fn ignore_globs(&self, assets: &ResolvedAssets) -> Vec<String> {
        let mut globs = self.snapshot.ignore_globs.clone();
        let mut add = |glob: String| {
            if !globs.contains(&glob) {
                globs.push(glob);
            }
        };
        for asset in assets.iter() {
            let save_path = escape_glob(&paths::to_slash(&asset.save_path));
            let inside = asset.is_dir.then(|| format!("{save_path}/*"));
            add(save_path);
            if let Some(inside) = inside {
                add(inside);
            }
        }
        globs
    }
}

/// Escapes the glob metacharacters of a literal path by putting each in a
/// one-character class (`a*b` → `a[*]b`).
fn escape_glob(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses YAML text the way specs are parsed (merge keys applied; tags,
/// non-finite numbers and non-scalar keys refused), for the crate's other
/// YAML documents. The error is one line, with line and column for syntax
/// errors.
pub(crate) fn parse_yaml_document(text: &str) -> std::result::Result<Value, String> {
    document::parse_yaml_text(text).map_err(document::Problem::into_message)
}

fn spec_error(origin: &str, problem: document::Problem) -> Error {
    Error::Spec {
        origin: origin.to_owned(),
        field: problem.field,
        message: problem.message,
    }
}

impl PartialEq for EnvironmentSpec {
    fn eq(&self, other: &Self) -> bool {
        self.backend_type == other.backend_type
            && self.name == other.name
            && self.environment == other.environment
            && self.setup == other.setup
            && self.commands == other.commands
            && self.snapshot == other.snapshot
            && self.limits == other.limits
            && self.backend == other.backend
    }
}

impl std::str::FromStr for EnvironmentSpec {
    type Err = Error;

    /// Parses YAML (or JSON, which is YAML too) with origin `<yaml>`.
    fn from_str(text: &str) -> Result<Self> {
        Self::from_yaml_str(text, "<yaml>")
    }
}

impl Serialize for EnvironmentSpec {
    /// Writes the spec in its file format: the shared sections, then the
    /// backend block under its `type`. Fails when `backend_type` cannot name
    /// a block (empty, or one of the shared keys).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        document::check_backend_type(&self.backend_type)
            .map_err(|message| S::Error::custom(format!("type: {message}")))?;
        let len = 7 + usize::from(self.backend.is_some());
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("type", &self.backend_type)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("environment", &self.environment)?;
        map.serialize_entry("setup", &self.setup)?;
        map.serialize_entry("commands", &self.commands)?;
        map.serialize_entry("snapshot", &self.snapshot)?;
        map.serialize_entry("limits", &self.limits)?;
        if let Some(block) = &self.backend {
            map.serialize_entry(&self.backend_type, block)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for EnvironmentSpec {
    /// Reads a spec nested in another document with the same rules as the
    /// loaders. The error message starts with the field path inside the
    /// nested spec; the outer document's path comes from the caller.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a YAML value so that YAML-only content (non-finite
        // numbers, tags) is refused by the same checks as in a file.
        let yaml = serde_yaml::Value::deserialize(deserializer)?;
        document::yaml_to_json(yaml, "")
            .and_then(|doc| document::from_document(doc, NESTED_ORIGIN.to_owned()))
            .map_err(|problem| D::Error::custom(problem.into_message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_save_paths_match_only_themselves() {
        let escaped = escape_glob("data/[v1]*{a,b}?.csv");
        assert_eq!(escaped, "data/[[]v1[]][*][{]a,b[}][?].csv");
        let glob = globset::Glob::new(&escaped).unwrap().compile_matcher();
        assert!(glob.is_match("data/[v1]*{a,b}?.csv"));
        assert!(!glob.is_match("data/v-xa.csv"));
        assert!(!glob.is_match("data/[v1]x{a,b}?.csv"));
        let backslash = globset::Glob::new(&escape_glob(r"a\b*")).unwrap();
        assert!(backslash.compile_matcher().is_match(r"a\b*"));
        assert!(!backslash.compile_matcher().is_match(r"a\bc"));
    }

    #[test]
    fn mode_names() {
        for mode in [Mode::Agent, Mode::Evaluation] {
            assert_eq!(Mode::from_name(mode.name()), Some(mode));
            assert_eq!(mode.to_string(), mode.name());
        }
        assert_eq!(Mode::from_name("eval"), Some(Mode::Evaluation));
        assert_eq!(Mode::from_name("Agent"), None);
    }
}
