//! Static assets: files and directories a session exposes to the
//! code it runs, named so that inputs can refer to them as
//! `{{static:NAME}}`.
//!
//! An [`AssetMap`] is the configuration: names to `{path, save_path}`,
//! validated when it is loaded (both paths relative and not climbing out).
//! [`AssetMap::resolve`] ties it to a base directory and gives
//! [`ResolvedAssets`]: canonical host paths, save paths, and whether each is
//! a directory. From there a session records an [`AssetFingerprint`] at
//! start and checks it at the end, and in agent mode copies the assets into
//! the workspace with [`ResolvedAssets::materialize_into`].

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use walkdir::WalkDir;

use crate::error::{Error, Result};
use crate::paths;

/// The key of a grouped asset map that lists its groups, earliest first.
pub const ORDERING_KEY: &str = "ordering";

/// One configured asset: a path relative to the base directory, and where it
/// appears (in the workspace in agent mode, under `/static` in a container).
///
/// In a file it is either `{path, save_path}` or just the path as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticAsset {
    /// The asset's path relative to the base directory.
    pub path: PathBuf,
    /// Where the asset appears, relative; [`path`](Self::path) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_path: Option<PathBuf>,
}

impl StaticAsset {
    /// An asset at `path`, saved at the same relative path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StaticAsset {
            path: path.into(),
            save_path: None,
        }
    }

    /// Sets where the asset appears.
    #[must_use]
    pub fn with_save_path(mut self, save_path: impl Into<PathBuf>) -> Self {
        self.save_path = Some(save_path.into());
        self
    }

    /// Where the asset appears: `save_path`, or `path` when unset.
    pub fn effective_save_path(&self) -> &Path {
        self.save_path.as_deref().unwrap_or(&self.path)
    }

    /// Checks both paths and returns the asset with them normalised
    /// (`./a/b` → `a/b`). Errors name the asset.
    fn normalized(&self, name: &str) -> Result<StaticAsset> {
        let path = normalize_field(name, "path", &self.path)?;
        let save_path = self
            .save_path
            .as_deref()
            .map(|save_path| normalize_field(name, "save_path", save_path))
            .transpose()?;
        Ok(StaticAsset { path, save_path })
    }
}

fn normalize_field(name: &str, field: &str, path: &Path) -> Result<PathBuf> {
    paths::normalize_relative(path).map_err(|err| {
        let reason = match &err {
            Error::PathEscape { reason, .. } => (*reason).to_owned(),
            other => other.to_string(),
        };
        Error::Asset {
            name: name.to_owned(),
            message: format!("{field} `{}` is not allowed: {reason}", path.display()),
        }
    })
}

impl<'de> Deserialize<'de> for StaticAsset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            path: PathBuf,
            #[serde(default)]
            save_path: Option<PathBuf>,
        }
        match Value::deserialize(deserializer)? {
            Value::String(path) => Ok(StaticAsset::new(path)),
            value @ Value::Object(_) => {
                let full = Full::deserialize(value).map_err(D::Error::custom)?;
                Ok(StaticAsset {
                    path: full.path,
                    save_path: full.save_path,
                })
            }
            other => Err(D::Error::custom(format!(
                "expected a path or a mapping with `path` and `save_path`, found {}",
                kind(&other)
            ))),
        }
    }
}

/// The asset configuration: names to assets, in order, every path checked.
///
/// In a file it is either a flat map `{name: asset}`, or named groups of
/// such maps plus `ordering: [group, ...]`; a name in several groups takes
/// its asset from the latest group (keeping the position where it first
/// appeared). Groups that `ordering` does not name are not used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetMap {
    assets: IndexMap<String, StaticAsset>,
}

impl AssetMap {
    /// An empty map.
    pub fn new() -> Self {
        AssetMap::default()
    }

    /// Adds `asset` under `name`, replacing an asset of the same name.
    ///
    /// Fails with [`Error::Asset`] when a path is absolute, climbs out or is
    /// empty, or when another asset already has the same save path.
    pub fn insert(&mut self, name: impl Into<String>, asset: &StaticAsset) -> Result<()> {
        let name = name.into();
        let asset = asset.normalized(&name)?;
        if let Some((other, _)) = self.assets.iter().find(|(other, existing)| {
            **other != name && existing.effective_save_path() == asset.effective_save_path()
        }) {
            return Err(save_path_clash(&name, &asset, other));
        }
        self.assets.insert(name, asset);
        Ok(())
    }

    /// Reads an asset map from a parsed document (`null` is an empty map).
    ///
    /// Fails with [`Error::Asset`] naming the asset or group at fault (a bad
    /// path, a grouped map without `ordering`, an ordering naming a missing
    /// group, two assets with one save path), or [`Error::AssetMap`] when
    /// the document is not a mapping or `ordering` is not a list of names.
    pub fn from_value(value: &Value) -> Result<Self> {
        Self::from_document(value, "<assets>")
    }

    /// Parses a YAML asset map; errors name `<yaml>`.
    ///
    /// Fails like [`from_value`](Self::from_value), or with
    /// [`Error::AssetMap`] on invalid YAML.
    pub fn from_yaml_str(text: &str) -> Result<Self> {
        Self::from_yaml_text(text, "<yaml>")
    }

    /// Parses a JSON asset map; errors name `<json>`.
    ///
    /// Fails like [`from_value`](Self::from_value), or with
    /// [`Error::AssetMap`] on invalid JSON.
    pub fn from_json_str(text: &str) -> Result<Self> {
        Self::from_json_text(text, "<json>")
    }

    /// Reads an asset map file: JSON when its extension is `.json`, YAML
    /// otherwise.
    ///
    /// Fails with [`Error::Io`] when the file cannot be read, and like
    /// [`from_yaml_str`](Self::from_yaml_str) otherwise.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(Error::io("reading asset map", path))?;
        let origin = path.display().to_string();
        if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
        {
            Self::from_json_text(&text, &origin)
        } else {
            Self::from_yaml_text(&text, &origin)
        }
    }

    fn from_yaml_text(text: &str, origin: &str) -> Result<Self> {
        let value = crate::spec::parse_yaml_document(text).map_err(|message| Error::AssetMap {
            origin: origin.to_owned(),
            message,
        })?;
        Self::from_document(&value, origin)
    }

    fn from_json_text(text: &str, origin: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|err| Error::AssetMap {
            origin: origin.to_owned(),
            message: err.to_string(),
        })?;
        Self::from_document(&value, origin)
    }

    fn from_document(value: &Value, origin: &str) -> Result<Self> {
        let document_error = |message: String| Error::AssetMap {
            origin: origin.to_owned(),
            message,
        };
        let map = match value {
            Value::Null => return Ok(AssetMap::new()),
            Value::Object(map) => map,
            other => {
                return Err(document_error(format!(
                    "expected a mapping of asset names to assets, found {}",
                    kind(other)
                )));
            }
        };
        let mut assets = AssetMap::new();
        match map.get(ORDERING_KEY) {
            Some(ordering) => {
                let ordering = group_names(ordering).ok_or_else(|| {
                    let found = match ordering.as_array() {
                        Some(items) => format!(
                            "{} in it",
                            items
                                .iter()
                                .find(|item| !item.is_string())
                                .map_or("a non-string", kind)
                        ),
                        None => kind(ordering).to_owned(),
                    };
                    document_error(format!(
                        "`{ORDERING_KEY}` must be a list of group names, found {found}"
                    ))
                })?;
                for group in ordering {
                    let entries = match map.get(group) {
                        Some(Value::Object(entries)) if group != ORDERING_KEY => entries,
                        Some(other) if group != ORDERING_KEY => {
                            return Err(Error::Asset {
                                name: group.to_owned(),
                                message: format!(
                                    "a group must be a mapping of asset names to assets, found {}",
                                    kind(other)
                                ),
                            });
                        }
                        _ => {
                            return Err(Error::Asset {
                                name: group.to_owned(),
                                message: format!(
                                    "`{ORDERING_KEY}` names this group, but no such group is defined"
                                ),
                            });
                        }
                    };
                    for (name, entry) in entries {
                        assets.put(name, parse_entry(name, entry)?);
                    }
                }
            }
            None => {
                for (name, entry) in map {
                    if looks_like_group(entry) {
                        return Err(Error::Asset {
                            name: name.clone(),
                            message: format!(
                                "this looks like a group of assets, but the map has no \
                                 `{ORDERING_KEY}` list saying which groups apply, in which order"
                            ),
                        });
                    }
                    assets.put(name, parse_entry(name, entry)?);
                }
            }
        }
        assets.check_save_paths()?;
        Ok(assets)
    }

    /// Inserts an already normalised asset; save paths are checked once
    /// the whole map is read, since a later group may move them.
    fn put(&mut self, name: &str, asset: StaticAsset) {
        self.assets.insert(name.to_owned(), asset);
    }

    fn check_save_paths(&self) -> Result<()> {
        let mut seen: IndexMap<&Path, &str> = IndexMap::with_capacity(self.assets.len());
        for (name, asset) in &self.assets {
            if let Some(other) = seen.insert(asset.effective_save_path(), name) {
                return Err(save_path_clash(name, asset, other));
            }
        }
        Ok(())
    }

    /// The asset named `name`.
    pub fn get(&self, name: &str) -> Option<&StaticAsset> {
        self.assets.get(name)
    }

    /// The assets and their names, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &StaticAsset)> {
        self.assets
            .iter()
            .map(|(name, asset)| (name.as_str(), asset))
    }

    /// How many assets there are.
    pub fn len(&self) -> usize {
        self.assets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Finds every asset under `base_dir`.
    ///
    /// Fails with [`Error::Asset`] naming the asset and the path tried when
    /// an asset does not exist, resolves (through a symlink) outside
    /// `base_dir`, or is neither a file nor a directory; with [`Error::Io`]
    /// when `base_dir` cannot be resolved.
    pub fn resolve(&self, base_dir: impl AsRef<Path>) -> Result<ResolvedAssets> {
        let base_dir = base_dir.as_ref();
        let base = fs::canonicalize(base_dir)
            .map_err(Error::io("resolving asset base directory", base_dir))?;
        let mut resolved = IndexMap::with_capacity(self.assets.len());
        for (name, asset) in &self.assets {
            let asset_error = |message: String| Error::Asset {
                name: name.clone(),
                message,
            };
            let tried = base.join(&asset.path);
            let absolute_path = match fs::canonicalize(&tried) {
                Ok(path) => path,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    return Err(asset_error(format!(
                        "`{}` does not exist (looked for `{}`)",
                        asset.path.display(),
                        tried.display()
                    )));
                }
                Err(err) => return Err(Error::io("resolving static asset", &tried)(err)),
            };
            if !absolute_path.starts_with(&base) {
                return Err(asset_error(format!(
                    "`{}` resolves to `{}`, outside the base directory `{}`",
                    asset.path.display(),
                    absolute_path.display(),
                    base.display()
                )));
            }
            let meta = fs::metadata(&absolute_path)
                .map_err(Error::io("inspecting static asset", &absolute_path))?;
            if !meta.is_dir() && !meta.is_file() {
                return Err(asset_error(format!(
                    "`{}` is neither a file nor a directory",
                    tried.display()
                )));
            }
            resolved.insert(
                name.clone(),
                ResolvedAsset {
                    name: name.clone(),
                    absolute_path,
                    save_path: asset.effective_save_path().to_path_buf(),
                    is_dir: meta.is_dir(),
                },
            );
        }
        Ok(ResolvedAssets {
            assets: Arc::new(resolved),
        })
    }
}

fn save_path_clash(name: &str, asset: &StaticAsset, other: &str) -> Error {
    Error::Asset {
        name: name.to_owned(),
        message: format!(
            "save path `{}` is also the save path of asset `{other}`",
            asset.effective_save_path().display()
        ),
    }
}

/// Parses and normalises one entry of an asset map.
fn parse_entry(name: &str, entry: &Value) -> Result<StaticAsset> {
    let asset = StaticAsset::deserialize(entry).map_err(|err| Error::Asset {
        name: name.to_owned(),
        message: err.to_string(),
    })?;
    asset.normalized(name)
}

/// Whether an entry of a map without `ordering` is a group rather than an
/// asset: a mapping with no `path` that holds something besides `save_path`.
fn looks_like_group(entry: &Value) -> bool {
    entry.as_object().is_some_and(|object| {
        !object.contains_key("path") && object.keys().any(|key| key != "save_path")
    })
}

fn group_names(ordering: &Value) -> Option<Vec<&str>> {
    ordering.as_array()?.iter().map(Value::as_str).collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// An asset found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResolvedAsset {
    /// The asset's name.
    pub name: String,
    /// Its canonical path on the host.
    pub absolute_path: PathBuf,
    /// Where it appears: a normalised relative path.
    pub save_path: PathBuf,
    /// Whether it is a directory (else a regular file).
    pub is_dir: bool,
}

/// The resolved assets of a session, in configuration order.
///
/// Cloning is cheap (the list is shared). Serialises as a list of
/// [`ResolvedAsset`]; deserialising checks it like
/// [`ResolvedAssets::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedAssets {
    assets: Arc<IndexMap<String, ResolvedAsset>>,
}

impl ResolvedAssets {
    /// Builds the list from assets resolved elsewhere (received from a host
    /// or a server).
    ///
    /// Fails with [`Error::Asset`] when a name appears twice, an
    /// `absolute_path` is relative, or a `save_path` is not a normalised
    /// relative path.
    pub fn new(assets: impl IntoIterator<Item = ResolvedAsset>) -> Result<Self> {
        let mut map = IndexMap::new();
        for asset in assets {
            let invalid = |message: String| Error::Asset {
                name: asset.name.clone(),
                message,
            };
            if !asset.absolute_path.is_absolute() {
                return Err(invalid(format!(
                    "absolute_path `{}` is relative",
                    asset.absolute_path.display()
                )));
            }
            let normal = normalize_field(&asset.name, "save_path", &asset.save_path)?;
            if normal != asset.save_path {
                return Err(invalid(format!(
                    "save_path `{}` is not normalised (expected `{}`)",
                    asset.save_path.display(),
                    normal.display()
                )));
            }
            if map.contains_key(&asset.name) {
                return Err(invalid("the name appears twice".to_owned()));
            }
            map.insert(asset.name.clone(), asset);
        }
        Ok(ResolvedAssets {
            assets: Arc::new(map),
        })
    }

    /// The asset named `name`.
    pub fn get(&self, name: &str) -> Option<&ResolvedAsset> {
        self.assets.get(name)
    }

    /// The assets, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ResolvedAsset> {
        self.assets.values()
    }

    /// How many assets there are.
    pub fn len(&self) -> usize {
        self.assets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Hashes every asset's content (BLAKE3 over relative paths, kinds,
    /// modes, file bytes and link targets, directories walked in sorted
    /// order), to be compared with [`AssetFingerprint::check`] later. An
    /// asset that no longer exists hashes to a value of its own.
    ///
    /// Fails with [`Error::Io`] when an asset cannot be read.
    pub fn fingerprint(&self) -> Result<AssetFingerprint> {
        let digests = self
            .iter()
            .map(|asset| {
                Ok(AssetDigest {
                    name: asset.name.clone(),
                    path: asset.absolute_path.clone(),
                    hash: hash_tree(&asset.absolute_path)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(AssetFingerprint { digests })
    }

    /// Copies every asset into `root` at its save path, creating parents: a
    /// file, or a directory tree with executable bits kept and symlinks
    /// copied as links. A file or link already at a destination is
    /// replaced. Writes go through [`paths::create_dir_all_in`] and
    /// [`paths::create_file_in`], so a symlink planted in `root` cannot
    /// redirect them.
    ///
    /// Fails with [`Error::PathEscape`] when a destination's parent is a
    /// symlink, [`Error::Asset`] when a destination is a directory where a
    /// file should go or the asset holds a special file (a FIFO, a device),
    /// and [`Error::Io`] when reading or writing fails.
    pub fn materialize_into(&self, root: &Path) -> Result<()> {
        for asset in self.iter() {
            if !asset.is_dir {
                copy_file(asset, &asset.absolute_path, root, &asset.save_path)?;
                continue;
            }
            for entry in WalkDir::new(&asset.absolute_path)
                .follow_links(false)
                .sort_by_file_name()
            {
                let entry = entry.map_err(|err| walk_error(&asset.absolute_path, err))?;
                let inner = entry
                    .path()
                    .strip_prefix(&asset.absolute_path)
                    .unwrap_or(entry.path());
                let rel = if inner.as_os_str().is_empty() {
                    asset.save_path.clone()
                } else {
                    asset.save_path.join(inner)
                };
                let file_type = entry.file_type();
                if file_type.is_dir() {
                    paths::create_dir_all_in(root, &rel)?;
                } else if file_type.is_file() {
                    copy_file(asset, entry.path(), root, &rel)?;
                } else if file_type.is_symlink() {
                    let target = fs::read_link(entry.path())
                        .map_err(Error::io("reading link", entry.path()))?;
                    let dest = clear_destination(asset, root, &rel)?;
                    std::os::unix::fs::symlink(&target, &dest)
                        .map_err(Error::io("creating link", &dest))?;
                } else {
                    return Err(Error::Asset {
                        name: asset.name.clone(),
                        message: format!(
                            "`{}` is not a regular file, directory or symlink",
                            entry.path().display()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ResolvedAssets {
    type Item = &'a ResolvedAsset;
    type IntoIter = indexmap::map::Values<'a, String, ResolvedAsset>;

    fn into_iter(self) -> Self::IntoIter {
        self.assets.values()
    }
}

impl Serialize for ResolvedAssets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ResolvedAssets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let assets = Vec::<ResolvedAsset>::deserialize(deserializer)?;
        ResolvedAssets::new(assets).map_err(D::Error::custom)
    }
}

/// Creates the parents of `rel` under `root` (refusing symlinks), and
/// removes a file or link already at `rel` so it can be replaced.
fn clear_destination(asset: &ResolvedAsset, root: &Path, rel: &Path) -> Result<PathBuf> {
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        paths::create_dir_all_in(root, parent)?;
    }
    let dest = root.join(rel);
    match fs::symlink_metadata(&dest) {
        Ok(meta) if meta.is_dir() => Err(Error::Asset {
            name: asset.name.clone(),
            message: format!(
                "cannot copy over the directory `{}` in `{}`",
                rel.display(),
                root.display()
            ),
        }),
        Ok(_) => fs::remove_file(&dest)
            .map(|()| dest.clone())
            .map_err(Error::io("replacing", &dest)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(dest),
        Err(err) => Err(Error::io("inspecting", &dest)(err)),
    }
}

/// Copies the regular file `source` to `rel` under `root`, keeping its
/// permission bits (not set-id or sticky bits).
fn copy_file(asset: &ResolvedAsset, source: &Path, root: &Path, rel: &Path) -> Result<()> {
    let dest = clear_destination(asset, root, rel)?;
    let mut input = File::open(source).map_err(Error::io("reading static asset", source))?;
    let mode = input
        .metadata()
        .map_err(Error::io("inspecting static asset", source))?
        .mode()
        & 0o777;
    let mut output = paths::create_file_in(root, rel)?;
    io::copy(&mut input, &mut output).map_err(Error::io("writing", &dest))?;
    output
        .set_permissions(Permissions::from_mode(mode))
        .map_err(Error::io("setting permissions of", &dest))
}

fn walk_error(root: &Path, err: walkdir::Error) -> Error {
    let path = err.path().unwrap_or(root).to_path_buf();
    let source = err
        .into_io_error()
        .unwrap_or_else(|| io::Error::other("filesystem loop"));
    Error::Io {
        action: "walking static asset",
        path,
        source,
    }
}

/// Feeds `bytes` to `hasher` with its length first, so consecutive fields
/// cannot run into each other.
fn update_field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// The BLAKE3 digest of a file or directory tree.
fn hash_tree(root: &Path) -> Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"berth static asset v1\0");
    for entry in WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let entry = match entry {
            Ok(entry) => entry,
            // Gone since the walk listed it (or the asset itself is gone):
            // that is a change, recorded as such rather than an error.
            Err(err) if err.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {
                hasher.update(b"M");
                update_field(
                    &mut hasher,
                    err.path().unwrap_or(root).as_os_str().as_bytes(),
                );
                continue;
            }
            Err(err) => return Err(walk_error(root, err)),
        };
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let meta = entry.metadata().map_err(|err| walk_error(root, err))?;
        let file_type = meta.file_type();
        let tag: &[u8] = if file_type.is_file() {
            b"F"
        } else if file_type.is_dir() {
            b"D"
        } else if file_type.is_symlink() {
            b"L"
        } else {
            b"O"
        };
        hasher.update(tag);
        update_field(&mut hasher, rel.as_os_str().as_bytes());
        hasher.update(&(meta.mode() & 0o7777).to_le_bytes());
        if file_type.is_file() {
            let file = File::open(entry.path()).map_err(Error::io("reading", entry.path()))?;
            let mut content = blake3::Hasher::new();
            content
                .update_reader(file)
                .map_err(Error::io("reading", entry.path()))?;
            hasher.update(content.finalize().as_bytes());
        } else if file_type.is_symlink() {
            let target =
                fs::read_link(entry.path()).map_err(Error::io("reading link", entry.path()))?;
            update_field(&mut hasher, target.as_os_str().as_bytes());
        }
    }
    Ok(hasher.finalize())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AssetDigest {
    name: String,
    path: PathBuf,
    hash: blake3::Hash,
}

/// The content hashes of a session's assets, taken when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetFingerprint {
    digests: Vec<AssetDigest>,
}

impl AssetFingerprint {
    /// The hex digest recorded for the asset `name`.
    pub fn digest(&self, name: &str) -> Option<String> {
        self.digests
            .iter()
            .find(|digest| digest.name == name)
            .map(|digest| digest.hash.to_hex().to_string())
    }

    /// Compares this (earlier) fingerprint with `current`.
    ///
    /// Fails with [`Error::AssetTampered`] for the first asset whose content
    /// changed, that is missing from `current`, or that `current` has and
    /// this one does not.
    pub fn check(&self, current: &AssetFingerprint) -> Result<()> {
        let tampered = |digest: &AssetDigest| Error::AssetTampered {
            name: digest.name.clone(),
            path: digest.path.clone(),
        };
        for before in &self.digests {
            match current.digests.iter().find(|now| now.name == before.name) {
                Some(now) if now.hash == before.hash => {}
                _ => return Err(tampered(before)),
            }
        }
        match current
            .digests
            .iter()
            .find(|now| !self.digests.iter().any(|before| before.name == now.name))
        {
            Some(added) => Err(tampered(added)),
            None => Ok(()),
        }
    }
}
