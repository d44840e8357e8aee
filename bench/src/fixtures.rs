//! Trees of text files made by the harness, and the plain create+write that
//! is the floor for every row that writes files.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Files per directory in generated trees: enough directories that the
/// tree is not one flat listing, few enough that directory work stays small.
pub const FILES_PER_DIR: usize = 100;

/// Bytes per line of generated text (the newline included).
pub const LINE_LEN: usize = 64;

/// A deterministic source of text that compresses like source code or prose
/// (lower-case words of varying length), not like zeros or noise.
#[derive(Debug, Clone)]
pub struct TextGen {
    state: u64,
}

impl TextGen {
    /// A generator; equal seeds give equal text.
    pub fn new(seed: u64) -> TextGen {
        TextGen {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Appends one line of `LINE_LEN` bytes, newline included.
    pub fn line(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        while out.len() - start < LINE_LEN - 1 {
            let r = self.next();
            let word = 2 + (r % 8) as usize;
            for i in 0..word {
                if out.len() - start == LINE_LEN - 1 {
                    break;
                }
                out.push(b'a' + ((r >> (8 + 5 * i)) % 26) as u8);
            }
            if out.len() - start < LINE_LEN - 1 {
                out.push(b' ');
            }
        }
        out.push(b'\n');
    }

    /// `size` bytes of whole lines (the last one cut if `size` is not a
    /// multiple of the line length).
    pub fn text(&mut self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + LINE_LEN);
        while out.len() < size {
            self.line(&mut out);
        }
        out.truncate(size);
        out
    }
}

/// One file of a generated tree: its relative path and bytes.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Relative path, `dNNN/fNNNNN.txt`.
    pub path: PathBuf,
    /// Content.
    pub bytes: Vec<u8>,
}

/// `count` text files of `size` bytes, `FILES_PER_DIR` to a directory.
pub fn tree_files(count: usize, size: usize, seed: u64) -> Vec<FileSpec> {
    let mut text = TextGen::new(seed);
    (0..count)
        .map(|i| FileSpec {
            path: PathBuf::from(format!("d{:03}/f{i:05}.txt", i / FILES_PER_DIR)),
            bytes: text.text(size),
        })
        .collect()
}

/// The floor for writing files: each directory created once, each file
/// created and written with one `write_all`, nothing else (no mode, no
/// time, no hashing, no containment checks). `root` must not hold the
/// files yet.
pub fn write_files(root: &Path, files: &[FileSpec]) -> io::Result<()> {
    let mut made: Option<&Path> = None;
    fs::create_dir_all(root)?;
    for file in files {
        let parent = file.path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent
            && made != Some(parent)
        {
            fs::create_dir_all(root.join(parent))?;
            made = Some(parent);
        }
        File::create(root.join(&file.path))?.write_all(&file.bytes)?;
    }
    Ok(())
}

/// Rewrites one line in the middle of each file at `indices` (same size,
/// different bytes), as a small edit by a command would.
pub fn edit_files(
    root: &Path,
    files: &mut [FileSpec],
    indices: &[usize],
    seed: u64,
) -> io::Result<()> {
    let mut text = TextGen::new(seed);
    for &i in indices {
        let file = &mut files[i];
        let mut line = Vec::with_capacity(LINE_LEN);
        text.line(&mut line);
        let at = (file.bytes.len() / 2 / LINE_LEN) * LINE_LEN;
        let end = (at + LINE_LEN).min(file.bytes.len());
        file.bytes[at..end].copy_from_slice(&line[..end - at]);
        fs::write(root.join(&file.path), &file.bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_deterministic_lines_of_words() {
        let a = TextGen::new(7).text(1024);
        assert_eq!(a, TextGen::new(7).text(1024));
        assert_ne!(a, TextGen::new(8).text(1024));
        assert_eq!(a.len(), 1024);
        assert_eq!(a.iter().filter(|b| **b == b'\n').count(), 1024 / LINE_LEN);
        assert!(
            a.iter()
                .all(|b| b.is_ascii_lowercase() || *b == b' ' || *b == b'\n')
        );
    }

    #[test]
    fn trees_are_written_and_edited_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = tree_files(150, 256, 1);
        write_files(dir.path(), &files).unwrap();
        assert!(dir.path().join("d001/f00149.txt").is_file());
        let before = files[3].bytes.clone();
        edit_files(dir.path(), &mut files, &[3], 2).unwrap();
        let after = fs::read(dir.path().join(&files[3].path)).unwrap();
        assert_eq!(after, files[3].bytes);
        assert_eq!(after.len(), before.len());
        assert_ne!(after, before);
    }
}
