//! Compressed archives as a sequence of independently compressed frames
//! (gzip members, zstd frames, bzip2 and xz streams), so that an entry can
//! be read by decoding only the frame that holds it.
//!
//! Concatenated members are a valid file in every format: `tar` and
//! [`Compression::reader`] read the whole archive as one stream. The frame
//! index (where each frame starts, compressed and uncompressed) lives in the
//! in-memory [`super::Snapshot`] that wrote the archive.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;

use crate::compression::{CompressWriter, Compression};

/// A new frame starts at the first tar-member boundary after the current
/// one holds this many uncompressed bytes.
///
/// Reading an entry decodes its frame from the start up to the entry, so a
/// frame bounds what one read costs; each frame also starts with an empty
/// dictionary, which costs size. The figures behind these choices are in
/// BENCHMARKS.md §6:
///
/// * gzip: 32 KiB, DEFLATE's window. It decodes at a few hundred MB/s and
///   is the default, so frames stay small enough for a diff of 1% of
///   10,000 files to take about half of its 20 ms target (BENCHMARKS.md).
/// * zstd: 64 KiB. It decodes a whole block (up to 128 KiB) before it
///   yields a byte, so a frame only bounds a read while it is smaller than
///   a block.
/// * xz and bzip2: 1 MiB. They decode at tens of MB/s, so no frame size
///   brings a diff near 20 ms without growing the archive by tens of
///   percent; users choose them for size. 1 MiB keeps most of the ratio
///   and still bounds what a read decodes.
pub(super) fn frame_target(compression: Compression) -> u64 {
    match compression {
        Compression::None => u64::MAX,
        Compression::Gzip => 32 << 10,
        Compression::Zstd => 64 << 10,
        Compression::Xz | Compression::Bzip2 => 1 << 20,
    }
}

/// Where one frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame {
    /// Offset of the frame's first byte in the archive file.
    pub(super) compressed: u64,
    /// Offset of the frame's first decoded byte in the uncompressed stream.
    pub(super) uncompressed: u64,
}

/// A frame is compressed apart from the stream (on the compressing thread,
/// or by the writer itself) only while it holds at most this many bytes;
/// past it (a large file in one member) the frame is compressed as it is
/// written, once the frames before it are out, so memory stays bounded.
const FRAME_BUFFER: usize = 2 << 20;

/// Closed frames not written out yet; the writer waits for the oldest
/// beyond this.
const FRAMES_PENDING: usize = 4;

/// Frames waiting for the compressing thread; beyond this the writer
/// compresses the frame itself rather than wait (but for xz).
const FRAMES_QUEUED: usize = 2;

/// Writes an uncompressed stream as a sequence of compressed frames,
/// counting the uncompressed bytes (the offset of what is written next).
///
/// A frame is gathered uncompressed and, once closed, compressed on a
/// thread of its own (started with the second frame) or, when that thread
/// is busy, by the caller, so compression overlaps the walk that feeds
/// the writer and runs on both cores; frames are written out in order as
/// they are done. Each frame is compressed whole (a gzip frame's deflate
/// stream may then differ from what a streaming encoder writes; what it
/// decodes to does not). A frame that grows past [`FRAME_BUFFER`] is
/// compressed as it is written instead.
pub(super) struct FramedWriter<W: Write> {
    compression: Compression,
    target: u64,
    state: State<W>,
    /// The open frame's bytes while it is gathered.
    raw: Vec<u8>,
    /// Uncompressed bytes written so far.
    position: u64,
    /// Where the open frame starts in the uncompressed stream.
    frame_start: u64,
    /// Closed frames, oldest first, with where each starts uncompressed.
    pending: VecDeque<(u64, Pending)>,
    worker: Option<Worker>,
    /// Frames written out.
    frames: Vec<Frame>,
}

enum State<W: Write> {
    /// Frames are gathered in `raw`, written out here when compressed (or
    /// the stream as it is, without compression).
    Gathering(CountingWriter<W>),
    /// The open frame is compressed as it is written.
    Streaming(Box<CompressWriter<CountingWriter<W>>>),
    /// An error happened: every later call fails.
    Failed,
}

/// A closed frame: compressed, or being compressed.
enum Pending {
    Done(io::Result<Vec<u8>>),
    Waiting(Receiver<io::Result<Vec<u8>>>),
}

/// A frame to compress, and where its compressed bytes go.
type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

/// The compressing thread.
struct Worker {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // No thread outlives its writer: the queue closes, the thread ends.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One frame, compressed whole.
fn compress(compression: Compression, raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = compression.writer(Vec::with_capacity(raw.len() / 2 + 64))?;
    encoder.write_all(raw)?;
    encoder.finish()
}

impl<W: Write> FramedWriter<W> {
    /// Starts the first frame. With [`Compression::None`] there are no
    /// frames: the stream is written as it is.
    pub(super) fn new(
        compression: Compression,
        target: u64,
        inner: W,
    ) -> io::Result<FramedWriter<W>> {
        // Fails now for a format this build cannot write.
        compression.writer(io::sink())?;
        Ok(FramedWriter {
            compression,
            target,
            state: State::Gathering(CountingWriter { inner, count: 0 }),
            raw: Vec::new(),
            position: 0,
            frame_start: 0,
            pending: VecDeque::new(),
            worker: None,
            frames: Vec::new(),
        })
    }

    /// Offset in the uncompressed stream of the next byte written.
    pub(super) fn position(&self) -> u64 {
        self.position
    }

    /// Marks a boundary between tar members: the current frame is closed
    /// and a new one started when it holds at least the target.
    pub(super) fn boundary(&mut self) -> io::Result<()> {
        if self.compression == Compression::None || self.position - self.frame_start < self.target {
            return self.check();
        }
        let result = self.close_frame();
        self.fail_on(result)
    }

    /// Closes the last frame and writes out every frame; returns the inner
    /// writer and the frame index (empty without compression).
    pub(super) fn finish(mut self) -> io::Result<(W, Vec<Frame>)> {
        if self.compression != Compression::None {
            let result = self.close_frame().and_then(|()| self.drain(0));
            self.fail_on(result)?;
        }
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Gathering(mut counting) => {
                counting.flush()?;
                Ok((counting.inner, std::mem::take(&mut self.frames)))
            }
            _ => Err(closed_after_error()),
        }
    }

    fn check(&self) -> io::Result<()> {
        match self.state {
            State::Failed => Err(closed_after_error()),
            _ => Ok(()),
        }
    }

    /// Keeps `result`, and leaves the writer failed if it is an error.
    fn fail_on<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.state = State::Failed;
            self.pending.clear();
        }
        result
    }

    /// Closes the open frame (the position is its end) and starts the
    /// next.
    fn close_frame(&mut self) -> io::Result<()> {
        let start = self.frame_start;
        self.frame_start = self.position;
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Streaming(encoder) => {
                self.state = State::Gathering(encoder.finish()?);
                return Ok(());
            }
            State::Gathering(counting) => self.state = State::Gathering(counting),
            State::Failed => return Err(closed_after_error()),
        }
        let raw = std::mem::take(&mut self.raw);
        let pending = self.hand_over(raw);
        self.pending.push_back((start, pending));
        self.drain(FRAMES_PENDING)
    }

    /// A closed frame to the compressing thread, or compressed here when
    /// that thread is busy (or there is none).
    fn hand_over(&mut self, raw: Vec<u8>) -> Pending {
        // The first frame may be the only one: no thread for it.
        if !self.pending.is_empty() || !self.frames.is_empty() {
            self.start_worker();
        }
        let Some(jobs) = self.worker.as_ref().and_then(|w| w.jobs.as_ref()) else {
            return Pending::Done(compress(self.compression, &raw));
        };
        let (reply, waiting) = mpsc::sync_channel(1);
        // An xz encoder holds about 100 MiB: never two at once.
        let job = if self.compression == Compression::Xz {
            jobs.send((raw, reply))
                .map_err(|err| TrySendError::Disconnected(err.0))
        } else {
            jobs.try_send((raw, reply))
        };
        match job {
            Ok(()) => Pending::Waiting(waiting),
            Err(TrySendError::Full((raw, _)) | TrySendError::Disconnected((raw, _))) => {
                Pending::Done(compress(self.compression, &raw))
            }
        }
    }

    fn start_worker(&mut self) {
        if self.worker.is_some() {
            return;
        }
        let compression = self.compression;
        let (jobs, queue) = mpsc::sync_channel::<Job>(FRAMES_QUEUED);
        let thread = std::thread::Builder::new()
            .name("berth-compress".into())
            .spawn(move || {
                for (raw, reply) in queue {
                    // The writer may be gone (an error): the frame is moot.
                    let _ = reply.send(compress(compression, &raw));
                }
            });
        self.worker = Some(match thread {
            Ok(thread) => Worker {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            // No thread: every frame is compressed here.
            Err(_) => Worker {
                jobs: None,
                thread: None,
            },
        });
    }

    /// Writes out closed frames, oldest first: those done, then, while
    /// more than `keep` are pending, waiting for the oldest.
    fn drain(&mut self, keep: usize) -> io::Result<()> {
        while let Some((start, pending)) = self.pending.pop_front() {
            let done = match pending {
                Pending::Done(done) => done,
                Pending::Waiting(waiting) if self.pending.len() >= keep => waiting
                    .recv()
                    .unwrap_or_else(|_| Err(io::Error::other("the compressing thread ended"))),
                Pending::Waiting(waiting) => match waiting.try_recv() {
                    Ok(done) => done,
                    Err(TryRecvError::Empty) => {
                        self.pending.push_front((start, Pending::Waiting(waiting)));
                        return Ok(());
                    }
                    Err(TryRecvError::Disconnected) => {
                        Err(io::Error::other("the compressing thread ended"))
                    }
                },
            };
            let State::Gathering(counting) = &mut self.state else {
                return Err(closed_after_error());
            };
            let compressed = counting.count;
            counting.write_all(&done?)?;
            self.frames.push(Frame {
                compressed,
                uncompressed: start,
            });
        }
        Ok(())
    }

    /// The open frame outgrew [`FRAME_BUFFER`]: once every frame before it
    /// is out, it is compressed as it is written.
    fn stream_frame(&mut self) -> io::Result<()> {
        self.drain(0)?;
        let State::Gathering(counting) = std::mem::replace(&mut self.state, State::Failed) else {
            return Err(closed_after_error());
        };
        self.frames.push(Frame {
            compressed: counting.count,
            uncompressed: self.frame_start,
        });
        let mut encoder = self.compression.writer(counting)?;
        encoder.write_all(&self.raw)?;
        self.raw = Vec::new();
        self.state = State::Streaming(Box::new(encoder));
        Ok(())
    }
}

fn closed_after_error() -> io::Error {
    io::Error::other("the archive's frame could not be closed after an earlier error")
}

impl<W: Write> Write for FramedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let result = match &mut self.state {
            State::Failed => return Err(closed_after_error()),
            State::Streaming(encoder) => encoder.write_all(buf),
            State::Gathering(counting) if self.compression == Compression::None => {
                counting.write_all(buf)
            }
            State::Gathering(_) => {
                self.raw.extend_from_slice(buf);
                if self.raw.len() > FRAME_BUFFER {
                    let streamed = self.stream_frame();
                    self.fail_on(streamed)?;
                }
                Ok(())
            }
        };
        self.fail_on(result)?;
        self.position += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Gathered frames are written when they are closed.
        let result = match &mut self.state {
            State::Failed => Err(closed_after_error()),
            State::Streaming(encoder) => encoder.flush(),
            State::Gathering(counting) => counting.flush(),
        };
        self.fail_on(result)
    }
}

/// Counts the compressed bytes, so each frame's start in the file is known.
struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.count += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the uncompressed stream of a framed archive from any offset,
/// decoding from the start of the frame that holds it and moving on to the
/// next frame when one ends. Moving forward inside the frame being decoded
/// reuses it; anything else opens the frame that holds the offset.
pub(super) struct FrameCursor<'a> {
    file: &'a File,
    compression: Compression,
    frames: &'a [Frame],
    /// Length of the archive file: where the last frame ends.
    file_len: u64,
    /// The frame being decoded, and its decoder.
    current: Option<(usize, Box<dyn Read + 'a>)>,
    /// Uncompressed offset of the decoder's next byte.
    position: u64,
    scratch: Vec<u8>,
}

impl<'a> FrameCursor<'a> {
    /// `frames` must be non-empty, sorted, and start at offset 0.
    pub(super) fn new(
        file: &'a File,
        compression: Compression,
        frames: &'a [Frame],
    ) -> io::Result<Self> {
        debug_assert!(frames.first().is_some_and(|f| f.uncompressed == 0));
        Ok(FrameCursor {
            file,
            compression,
            frames,
            file_len: file.metadata()?.len(),
            current: None,
            position: 0,
            scratch: Vec::new(),
        })
    }

    /// Moves to uncompressed offset `offset`.
    pub(super) fn seek(&mut self, offset: u64) -> io::Result<()> {
        let index = self
            .frames
            .partition_point(|f| f.uncompressed <= offset)
            .saturating_sub(1);
        let reuse =
            matches!(self.current, Some((open, _)) if open == index) && self.position <= offset;
        if !reuse {
            self.open(index)?;
        }
        self.skip(offset - self.position)
    }

    fn open(&mut self, index: usize) -> io::Result<()> {
        let frame = self.frames[index];
        let end = self
            .frames
            .get(index + 1)
            .map_or(self.file_len, |next| next.compressed);
        if end < frame.compressed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the frame index does not match the archive",
            ));
        }
        let range = FileRange {
            file: self.file,
            position: frame.compressed,
            end,
        };
        let capacity = (end - frame.compressed).clamp(1, 64 << 10) as usize;
        let decoder = self
            .compression
            .member_reader(BufReader::with_capacity(capacity, range))?;
        self.current = Some((index, decoder));
        self.position = frame.uncompressed;
        Ok(())
    }

    /// Discards `n` decoded bytes.
    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(64 << 10, 0);
        let result = loop {
            if n == 0 {
                break Ok(());
            }
            let want = n.min(scratch.len() as u64) as usize;
            match self.read(&mut scratch[..want]) {
                Ok(0) => break Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(got) => n -= got as u64,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        self.scratch = scratch;
        result
    }
}

impl Read for FrameCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some((index, decoder)) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 {
                self.position += n as u64;
                return Ok(n);
            }
            // The frame ended: it must end where the next one begins.
            let next = *index + 1;
            match self.frames.get(next) {
                Some(frame) if frame.uncompressed == self.position => self.open(next)?,
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a frame's length does not match the frame index",
                    ));
                }
                None => {
                    self.current = None;
                    return Ok(0);
                }
            }
        }
    }
}

/// `[position, end)` of a file, read with `pread` so that frames never share
/// a file offset.
struct FileRange<'a> {
    file: &'a File,
    position: u64,
    end: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.position).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// Bytes that compress somewhat, with no period a decoder could hide a
    /// misplaced read behind.
    fn stream(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if i % 3 == 0 {
                    b'a' + (state % 26) as u8
                } else {
                    (state >> 8) as u8 % 4 + b'0'
                }
            })
            .collect()
    }

    /// Compresses `data` cut at `cuts` (anywhere, not only at tar members)
    /// into one file, and returns it with its frame index.
    fn framed_file(compression: Compression, data: &[u8], cuts: &[usize]) -> (File, Vec<Frame>) {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(data.len());
        let mut packed = Vec::new();
        let mut frames = Vec::new();
        for pair in bounds.windows(2) {
            frames.push(Frame {
                compressed: packed.len() as u64,
                uncompressed: pair[0] as u64,
            });
            packed.extend(compression.compress(&data[pair[0]..pair[1]]).unwrap());
        }
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&packed).unwrap();
        (file, frames)
    }

    const FRAMED: [Compression; 4] = [
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Xz,
        Compression::Zstd,
    ];

    #[test]
    fn cursor_reads_any_range_including_ranges_across_frames() {
        let data = stream(200_000);
        let cuts = [10_000, 10_001, 70_000, 150_000];
        for compression in FRAMED {
            let (file, frames) = framed_file(compression, &data, &cuts);
            let mut cursor = FrameCursor::new(&file, compression, &frames).unwrap();
            // Forward in one frame, across one boundary, across several,
            // backwards, from the very start and up to the very end.
            for (start, len) in [
                (5, 100),
                (200, 9_000),
                (9_990, 20),
                (9_999, 60_100),
                (1_000, 190_000),
                (0, 1),
                (150_000, 50_000),
                (69_999, 2),
                (199_999, 1),
            ] {
                cursor.seek(start as u64).unwrap();
                let mut got = vec![0; len];
                cursor.read_exact(&mut got).unwrap();
                assert!(
                    got == data[start..start + len],
                    "{compression} {start}+{len}"
                );
            }
            let mut rest = Vec::new();
            cursor.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "{compression}: read past the end");
        }
    }

    #[test]
    fn writer_cuts_only_at_boundaries_past_the_target_and_any_decoder_reads_it_whole() {
        let data = stream(100_000);
        for compression in FRAMED {
            let mut writer = FramedWriter::new(compression, 16_000, Vec::new()).unwrap();
            let mut marks = Vec::new();
            for chunk in data.chunks(7_000) {
                writer.boundary().unwrap();
                marks.push(writer.position());
                writer.write_all(chunk).unwrap();
            }
            let (packed, frames) = writer.finish().unwrap();
            let starts: Vec<u64> = frames.iter().map(|f| f.uncompressed).collect();
            assert_eq!(starts, [0, 21_000, 42_000, 63_000, 84_000], "{compression}");
            assert!(starts.iter().all(|s| marks.contains(s)));
            assert_eq!(
                compression.decompress(&packed).unwrap(),
                data,
                "{compression}"
            );
            each_frame_decodes_to_its_slice(compression, &packed, &frames, &data);
        }
    }

    /// Each frame of `packed`, decoded on its own, is exactly its slice of
    /// `data`, and holds at least one compressed byte.
    fn each_frame_decodes_to_its_slice(
        compression: Compression,
        packed: &[u8],
        frames: &[Frame],
        data: &[u8],
    ) {
        for (i, frame) in frames.iter().enumerate() {
            let end = frames
                .get(i + 1)
                .map_or(packed.len(), |f| f.compressed as usize);
            assert!(end > frame.compressed as usize, "{compression} frame {i}");
            let mut one = Vec::new();
            compression
                .member_reader(&packed[frame.compressed as usize..])
                .unwrap()
                .read_to_end(&mut one)
                .unwrap();
            let next = frames
                .get(i + 1)
                .map_or(data.len() as u64, |f| f.uncompressed);
            assert_eq!(
                one.len() as u64,
                next - frame.uncompressed,
                "{compression} frame {i}"
            );
            let from = frame.uncompressed as usize;
            assert!(
                one == data[from..from + one.len()],
                "{compression} frame {i}"
            );
        }
    }

    /// Frames compressed on the thread, by the writer itself, and one too
    /// large to gather (compressed as it is written, after the frames
    /// before it) come out in order, each decoding to its own slice.
    #[test]
    fn gathered_and_streamed_frames_come_out_in_order() {
        let small = stream(50_000);
        let large = stream(FRAME_BUFFER + 100_000);
        for compression in FRAMED {
            let mut writer = FramedWriter::new(compression, 2_000, Vec::new()).unwrap();
            let mut data = Vec::new();
            let mut members = Vec::new();
            for (i, chunk) in small.chunks(3_000).enumerate() {
                members.push(chunk);
                if i == 7 {
                    members.push(&large);
                }
            }
            for member in members {
                writer.boundary().unwrap();
                writer.write_all(member).unwrap();
                data.extend_from_slice(member);
            }
            let (packed, frames) = writer.finish().unwrap();
            assert_eq!(
                compression.decompress(&packed).unwrap(),
                data,
                "{compression}"
            );
            assert!(frames.len() > 10, "{compression}");
            assert!(frames.windows(2).all(
                |w| w[0].uncompressed < w[1].uncompressed && w[0].compressed < w[1].compressed
            ));
            each_frame_decodes_to_its_slice(compression, &packed, &frames, &data);
        }
    }

    #[test]
    fn no_compression_has_no_frames() {
        let mut writer = FramedWriter::new(Compression::None, 10, Vec::new()).unwrap();
        for _ in 0..5 {
            writer.boundary().unwrap();
            writer.write_all(&[7; 100]).unwrap();
        }
        let (out, frames) = writer.finish().unwrap();
        assert_eq!(out, [7; 500]);
        assert!(frames.is_empty());
    }

    #[test]
    fn an_index_that_does_not_match_the_archive_is_an_error() {
        let data = stream(50_000);
        let (file, mut frames) = framed_file(Compression::Gzip, &data, &[20_000]);
        // The second frame claims to start later than the first one ends.
        frames[1].uncompressed += 1;
        let mut buf = vec![0; 2_000];
        let mut cursor = FrameCursor::new(&file, Compression::Gzip, &frames).unwrap();
        cursor.seek(19_000).unwrap();
        let err = cursor.read_exact(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(cursor);
        // A frame that starts beyond the file's end.
        frames[1].compressed = u64::MAX;
        let mut cursor = FrameCursor::new(&file, Compression::Gzip, &frames).unwrap();
        assert!(cursor.seek(30_000).is_err());
    }

    /// A sink that takes `room` bytes and then fails, like a full disk.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::other("no space left"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_frame_that_cannot_be_closed_fails_every_later_write_without_panicking() {
        let mut writer = FramedWriter::new(Compression::Gzip, 16, Full { room: 64 }).unwrap();
        writer.write_all(&stream(4096)).unwrap();
        assert!(writer.boundary().is_err());
        assert!(writer.write_all(&[0; 1024]).is_err());
        assert!(writer.flush().is_err());
        assert!(writer.boundary().is_err());
        assert!(writer.finish().is_err());
    }
}
