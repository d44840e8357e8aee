//! Sparse files: where a live file's holes are, and a writer that leaves
//! runs of zeros as holes.
//!
//! A file a command makes with `truncate -s 2G` holds no data, and nothing
//! berth does with it may cost what its length says in memory or on disk.
//! Reading, [`data_region`] tells a reader where the next hole is, so holes
//! are yielded as zeros without reading them. Writing, [`SparseWriter`]
//! skips every whole, aligned block of zeros, so a file extracted from an
//! archive (and an uncompressed archive itself) has a hole wherever its
//! content has a block of zeros, whether or not the source had one there:
//! archives hold no holes, only zeros, and a block of zeros reads back the
//! same as a hole.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

/// The unit of holes: a block of zeros of this size, at an offset that is
/// a multiple of it, is left unwritten. It is the page size and the block
/// size of the common Linux file systems (ext4, xfs, btrfs, tmpfs).
pub(crate) const HOLE_BLOCK: usize = 4096;

static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];

/// Whether `bytes` (at most [`HOLE_BLOCK`] of them) are all zero. A slice
/// comparison is a `memcmp`, fast in any build profile.
fn all_zero(bytes: &[u8]) -> bool {
    bytes == &ZEROS[..bytes.len()]
}

/// Whether a file may have holes: it occupies fewer blocks on disk than its
/// length needs. A dense file is read straight through.
pub(crate) fn may_have_holes(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.blocks().saturating_mul(512) < meta.len()
}

/// A stretch of a file that starts at the offset it was asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    /// Whether the stretch is a hole (reads as zeros).
    pub(crate) hole: bool,
    /// Where it ends (`u64::MAX`: at the end of the file, or beyond).
    pub(crate) end: u64,
}

/// The data or hole region of `file` at `offset`, from `SEEK_DATA` and
/// `SEEK_HOLE`. `None` when the file system cannot tell, or the file
/// changed under the question: then the caller reads the rest as data.
pub(crate) fn data_region(file: &File, offset: u64) -> Option<Region> {
    let at = libc::off_t::try_from(offset).ok()?;
    let seek = |whence| {
        // SAFETY: `lseek` on an open descriptor the caller owns; it only
        // moves that descriptor's offset, which nothing here relies on
        // (readers use `pread`).
        let got = unsafe { libc::lseek(file.as_raw_fd(), at, whence) };
        if got < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(got as u64)
        }
    };
    match seek(libc::SEEK_DATA) {
        // No data at or after `offset`: the rest is a hole.
        Err(err) if err.raw_os_error() == Some(libc::ENXIO) => Some(Region {
            hole: true,
            end: u64::MAX,
        }),
        Err(_) => None,
        Ok(data) if data > offset => Some(Region {
            hole: true,
            end: data,
        }),
        Ok(_) => match seek(libc::SEEK_HOLE) {
            Ok(hole) if hole > offset => Some(Region {
                hole: false,
                end: hole,
            }),
            _ => None,
        },
    }
}

/// Writes a new file front to back, leaving each whole, aligned block of
/// zeros as a hole.
///
/// Bytes are written with `pwrite` at their offset; a block is held back
/// until it is complete (or [`SparseWriter::finish`]), so however the
/// writes are cut, every block of zeros is seen whole. The file must be
/// empty when the writer starts.
#[derive(Debug)]
pub(crate) struct SparseWriter {
    file: File,
    /// Offset of `block[0]` in the file: a multiple of [`HOLE_BLOCK`].
    offset: u64,
    /// The block being filled.
    block: Box<[u8; HOLE_BLOCK]>,
    filled: usize,
    /// Where the last byte written ends: the file's length unless it ends
    /// in a hole.
    written_end: u64,
}

impl SparseWriter {
    /// A writer of the empty file `file`.
    pub(crate) fn new(file: File) -> SparseWriter {
        SparseWriter {
            file,
            offset: 0,
            block: Box::new([0; HOLE_BLOCK]),
            filled: 0,
            written_end: 0,
        }
    }

    /// Writes the last, partial block and sets the file's length when a
    /// hole at its end left it short; returns the file.
    pub(crate) fn finish(mut self) -> io::Result<File> {
        let end = self.offset + self.filled as u64;
        self.write_partial()?;
        if end > self.written_end {
            self.file.set_len(end)?;
        }
        Ok(self.file)
    }

    /// Writes the partial block, unless it is all zero.
    fn write_partial(&mut self) -> io::Result<()> {
        if !all_zero(&self.block[..self.filled]) {
            self.file
                .write_all_at(&self.block[..self.filled], self.offset)?;
            self.written_end = self.written_end.max(self.offset + self.filled as u64);
        }
        Ok(())
    }

    /// Writes whole blocks at `self.offset` and moves past them.
    fn put_blocks(&mut self, blocks: &[u8]) -> io::Result<()> {
        if let Some(end) = put_blocks(&self.file, self.offset, blocks)? {
            self.written_end = end;
        }
        self.offset += blocks.len() as u64;
        Ok(())
    }
}

/// Writes whole blocks of `blocks` at `offset` (a multiple of
/// [`HOLE_BLOCK`]), each run of blocks that are not all zero in one call,
/// and skips the others; returns where the last byte written ends, if any
/// was.
fn put_blocks(file: &File, offset: u64, blocks: &[u8]) -> io::Result<Option<u64>> {
    debug_assert_eq!(blocks.len() % HOLE_BLOCK, 0);
    let mut written_end = None;
    let mut run: Option<usize> = None;
    for (index, block) in blocks.chunks_exact(HOLE_BLOCK).enumerate() {
        let at = index * HOLE_BLOCK;
        match (all_zero(block), run) {
            (true, Some(start)) => {
                file.write_all_at(&blocks[start..at], offset + start as u64)?;
                written_end = Some(offset + at as u64);
                run = None;
            }
            (false, None) => run = Some(at),
            _ => {}
        }
    }
    if let Some(start) = run {
        file.write_all_at(&blocks[start..], offset + start as u64)?;
        written_end = Some(offset + blocks.len() as u64);
    }
    Ok(written_end)
}

impl Write for SparseWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        if self.filled > 0 {
            let take = (HOLE_BLOCK - self.filled).min(rest.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&rest[..take]);
            self.filled += take;
            rest = &rest[take..];
            if self.filled < HOLE_BLOCK {
                return Ok(buf.len());
            }
            // The fields apart: the block is written from where it is.
            if let Some(end) = put_blocks(&self.file, self.offset, &self.block[..])? {
                self.written_end = end;
            }
            self.offset += HOLE_BLOCK as u64;
            self.filled = 0;
        }
        let whole = rest.len() / HOLE_BLOCK * HOLE_BLOCK;
        self.put_blocks(&rest[..whole])?;
        let tail = &rest[whole..];
        self.block[..tail.len()].copy_from_slice(tail);
        self.filled = tail.len();
        Ok(buf.len())
    }

    /// Writes the partial block too (it stays held, and is written again
    /// once complete), so what was written so far is in the file.
    fn flush(&mut self) -> io::Result<()> {
        self.write_partial()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Content with data and zero runs of every alignment: runs shorter
    /// than a block, runs covering whole blocks, a run at the very end.
    fn patchwork() -> Vec<u8> {
        let mut bytes = Vec::new();
        for (data, zeros) in [
            (10, 3),
            (1, HOLE_BLOCK * 3 + 17),
            (HOLE_BLOCK, HOLE_BLOCK),
            (5000, 64 << 10),
            (1, 0),
            (0, HOLE_BLOCK * 40 + 1),
        ] {
            bytes.extend((0..data).map(|i| (i % 251) as u8 + 1));
            bytes.extend(std::iter::repeat_n(0, zeros));
        }
        bytes
    }

    /// However the writes are cut, and flushed or not, the file reads
    /// back exactly, with the length of what was written.
    #[test]
    fn any_cut_of_the_writes_reads_back_exactly() {
        let content = patchwork();
        for cut in [
            1,
            7,
            512,
            HOLE_BLOCK - 1,
            HOLE_BLOCK,
            3 * HOLE_BLOCK + 5,
            1 << 20,
        ] {
            for flush in [false, true] {
                let mut writer = SparseWriter::new(tempfile::tempfile().unwrap());
                for chunk in content.chunks(cut) {
                    writer.write_all(chunk).unwrap();
                    if flush {
                        writer.flush().unwrap();
                    }
                }
                let mut file = writer.finish().unwrap();
                let mut back = Vec::new();
                file.read_to_end(&mut back).unwrap();
                assert!(back == content, "cut at {cut}, flushed: {flush}");
            }
        }
        let empty = SparseWriter::new(tempfile::tempfile().unwrap())
            .finish()
            .unwrap();
        assert_eq!(empty.metadata().unwrap().len(), 0);
    }

    /// Blocks of zeros take no space, and the regions of the result say
    /// where the holes are.
    #[test]
    fn zero_blocks_become_holes_that_regions_find() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut writer = SparseWriter::new(File::create(&path).unwrap());
        writer.write_all(b"head").unwrap();
        writer.write_all(&vec![0; 64 << 20]).unwrap();
        writer.write_all(b"tail").unwrap();
        writer.write_all(&vec![0; 16 << 20]).unwrap();
        let file = writer.finish().unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 4 + (64 << 20) + 4 + (16 << 20));
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "{} blocks allocated",
            meta.blocks()
        );
        assert!(may_have_holes(&meta));
        let first = data_region(&file, 0).unwrap();
        assert!(!first.hole && first.end < 1 << 20, "{first:?}");
        let hole = data_region(&file, first.end).unwrap();
        assert!(hole.hole && hole.end <= 4 + (64 << 20), "{hole:?}");
        let last = data_region(&file, meta.len() - 10).unwrap();
        assert!(last.hole, "{last:?}");
    }
}
