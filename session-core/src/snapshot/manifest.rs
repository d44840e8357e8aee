//! The manifest: what a snapshot holds, entry by entry, without the bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A BLAKE3 hash of an entry's content (a file's bytes, a symlink's target).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// The hash as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl From<blake3::Hash> for ContentHash {
    fn from(hash: blake3::Hash) -> Self {
        ContentHash(*hash.as_bytes())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..16])
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        blake3::Hash::from_hex(&text)
            .map(ContentHash::from)
            .map_err(serde::de::Error::custom)
    }
}

/// The mode bits a snapshot records and extraction restores: read, write
/// and execute for owner, group and others. Set-user-id, set-group-id and
/// sticky bits are never recorded, so no file berth writes out of a
/// session (a checkpoint, an extracted snapshot, a synced workspace)
/// carries them, and a tree extracted and captured again has the checksum
/// it was captured with.
pub const PERMISSION_BITS: u32 = 0o777;

/// What kind of file-system object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A symbolic link, recorded as a link and never followed.
    Symlink,
    /// A directory with nothing in it (non-empty directories are implied by
    /// their contents).
    Dir,
}

impl EntryKind {
    fn tag(self) -> u8 {
        match self {
            EntryKind::File => b'f',
            EntryKind::Symlink => b'l',
            EntryKind::Dir => b'd',
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
            EntryKind::Dir => "directory",
        })
    }
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the snapshot root, `/`-separated, normalised.
    pub path: String,
    /// File, symlink or empty directory.
    pub kind: EntryKind,
    /// Permission bits (`mode &` [`PERMISSION_BITS`]).
    pub mode: u32,
    /// Size in bytes (a symlink's target length; 0 for a directory).
    pub size: u64,
    /// Hash of the content (a symlink's target bytes; empty for a directory).
    pub hash: ContentHash,
    /// A symlink's target: exactly the bytes `readlink` gives, never
    /// normalised (`/`, `a//b` and `x/.` are targets of their own). In JSON
    /// a string when it is UTF-8, else `{"base64": "…"}`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "link_target_json"
    )]
    pub link_target: Option<Vec<u8>>,
}

/// The JSON form of a symlink's target: a string when the bytes are UTF-8
/// (every target but the rarest), else an object holding them in base64.
mod link_target_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Form<'a> {
        Text(std::borrow::Cow<'a, str>),
        Bytes { base64: String },
    }

    pub(super) fn serialize<S: Serializer>(
        target: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let Some(bytes) = target else {
            return serializer.serialize_none();
        };
        let form = match std::str::from_utf8(bytes) {
            Ok(text) => Form::Text(text.into()),
            Err(_) => Form::Bytes {
                base64: crate::base64::encode(bytes),
            },
        };
        serializer.serialize_some(&form)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(match Option::<Form<'de>>::deserialize(deserializer)? {
            None => None,
            Some(Form::Text(text)) => Some(text.into_owned().into_bytes()),
            Some(Form::Bytes { base64 }) => {
                Some(crate::base64::decode(&base64).map_err(serde::de::Error::custom)?)
            }
        })
    }
}

impl ManifestEntry {
    /// Whether the executable bit is set for the owner.
    pub fn is_executable(&self) -> bool {
        self.mode & 0o100 != 0
    }
}

/// The list of a snapshot's entries, sorted by path, plus the paths the
/// snapshot rules left out.
///
/// Two manifests of identical trees are equal whatever the walk order, the
/// time or the archive's compression; [`SnapshotManifest::checksum`] hashes
/// exactly what makes them equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    entries: Vec<ManifestEntry>,
    other_paths: Vec<String>,
}

/// The checksum of a manifest without entries (the hash of its header
/// alone), written out: an empty workspace's snapshot then starts no hasher,
/// whose first use asks the CPU for its features, which on a VM traps to the
/// hypervisor (tens of microseconds of a one-session process).
/// `checksum_is_the_hash_of_every_field_in_order` checks it.
const EMPTY_CHECKSUM: [u8; 32] = [
    0xf8, 0x97, 0x6d, 0x0d, 0xc4, 0x26, 0x8b, 0x98, 0x76, 0x08, 0x00, 0x39, 0x28, 0x08, 0x8e, 0x3d,
    0xfe, 0xc1, 0x6e, 0x88, 0x54, 0x15, 0x97, 0x8b, 0xca, 0x3e, 0xd7, 0x7a, 0x5f, 0xdc, 0x25, 0xbe,
];

impl SnapshotManifest {
    /// Builds a manifest, sorting entries by path and dropping duplicate
    /// paths (the last one wins).
    pub fn new(mut entries: Vec<ManifestEntry>, mut other_paths: Vec<String>) -> SnapshotManifest {
        entries.reverse();
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        entries.dedup_by(|later, earlier| later.path == earlier.path);
        other_paths.sort();
        other_paths.dedup();
        SnapshotManifest {
            entries,
            other_paths,
        }
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Paths present in the tree but left out of the snapshot: ignored files,
    /// files matching no keep glob, pruned directories (with a trailing `/`),
    /// special files and names that are not UTF-8.
    pub fn other_paths(&self) -> &[String] {
        &self.other_paths
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total size of the files' content.
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The snapshot's checksum: a hash of the entries (path, kind, mode,
    /// size, content hash) in path order. It does not depend on time,
    /// compression or walk order, nor on `other_paths`.
    pub fn checksum(&self) -> ContentHash {
        if self.entries.is_empty() {
            return ContentHash(EMPTY_CHECKSUM);
        }
        // The fields are gathered into blocks and hashed a block at a time:
        // the same bytes as hashing each field, in a fraction of the calls.
        const BLOCK: usize = 64 << 10;
        let mut hasher = blake3::Hasher::new();
        let mut block = Vec::with_capacity(BLOCK + 256);
        block.extend_from_slice(b"berth-manifest-v1\0");
        for entry in &self.entries {
            block.extend_from_slice(&(entry.path.len() as u64).to_le_bytes());
            block.extend_from_slice(entry.path.as_bytes());
            block.push(entry.kind.tag());
            block.extend_from_slice(&entry.mode.to_le_bytes());
            block.extend_from_slice(&entry.size.to_le_bytes());
            block.extend_from_slice(&entry.hash.0);
            if block.len() >= BLOCK {
                hasher.update(&block);
                block.clear();
            }
        }
        hasher.update(&block);
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            size: content.len() as u64,
            hash: ContentHash::of(content),
            link_target: None,
        }
    }

    /// The checksum is the hash of each entry's fields in order, however
    /// they are fed to the hasher: here one field at a time, over enough
    /// entries to fill several of `checksum`'s blocks.
    #[test]
    fn checksum_is_the_hash_of_every_field_in_order() {
        let entries: Vec<ManifestEntry> = (0..3000)
            .map(|i| {
                let mut entry = file(&format!("dir{}/file-{i}", i % 7), &[i as u8; 3]);
                entry.mode = 0o600 + (i % 3) as u32;
                entry
            })
            .collect();
        let manifest = SnapshotManifest::new(entries, vec![]);
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"berth-manifest-v1\0");
        for entry in manifest.entries() {
            hasher.update(&(entry.path.len() as u64).to_le_bytes());
            hasher.update(entry.path.as_bytes());
            hasher.update(&[entry.kind.tag()]);
            hasher.update(&entry.mode.to_le_bytes());
            hasher.update(&entry.size.to_le_bytes());
            hasher.update(&entry.hash.0);
        }
        assert_eq!(manifest.checksum(), ContentHash::from(hasher.finalize()));
        let empty = SnapshotManifest::new(vec![], vec![]);
        let hash = blake3::hash(b"berth-manifest-v1\0");
        assert_eq!(
            empty.checksum(),
            ContentHash::from(hash),
            "{}",
            hash.to_hex()
        );
    }

    #[test]
    fn checksum_ignores_order_and_other_paths_but_not_content_or_mode() {
        let a = SnapshotManifest::new(vec![file("a", b"1"), file("b/c", b"2")], vec![]);
        let b = SnapshotManifest::new(vec![file("b/c", b"2"), file("a", b"1")], vec!["x".into()]);
        assert_eq!(a.checksum(), b.checksum());
        let changed = SnapshotManifest::new(vec![file("a", b"1"), file("b/c", b"3")], vec![]);
        assert_ne!(a.checksum(), changed.checksum());
        let mut exec = file("a", b"1");
        exec.mode = 0o755;
        let moded = SnapshotManifest::new(vec![exec, file("b/c", b"2")], vec![]);
        assert_ne!(a.checksum(), moded.checksum());
    }

    #[test]
    fn lookup_and_hash_serialisation() {
        let m = SnapshotManifest::new(
            vec![file("z", b""), file("a-b", b""), file("a/b", b"")],
            vec![],
        );
        assert!(m.get("a/b").is_some());
        assert!(m.get("a").is_none());
        let json = serde_json::to_string(&m).unwrap();
        let back: SnapshotManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
