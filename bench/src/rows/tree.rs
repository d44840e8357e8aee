//! Rows 4–6: snapshots, extraction, input files and diffs of a tree of
//! small text files.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use session_core::compression::Compression;
use session_core::diff;
use session_core::file_ops::{self, InputFile};
use session_core::snapshot::{ContentHash, ExtractMode, Snapshot, SnapshotRules};

use crate::fixtures::{FileSpec, edit_files, tree_files, write_files};
use crate::stats::{Samples, Schedule, fmt_bytes};
use crate::{Bench, BenchResult, Figure, Target, Value};

/// A generated tree on disk with an archive directory beside it (never
/// inside it), both under the bench directory.
struct TreeFixture {
    /// Holds `tree/`, `archives/` and the scratch destinations.
    dir: tempfile::TempDir,
    files: Vec<FileSpec>,
}

impl TreeFixture {
    fn new(bench: &Bench, seed: u64) -> io::Result<TreeFixture> {
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-")
            .tempdir_in(&bench.dir)?;
        let files = tree_files(bench.sizes.tree_files, bench.sizes.file_size, seed);
        write_files(&dir.path().join("tree"), &files)?;
        fs::create_dir(dir.path().join("archives"))?;
        Ok(TreeFixture { dir, files })
    }

    fn tree(&self) -> PathBuf {
        self.dir.path().join("tree")
    }

    fn archives(&self) -> PathBuf {
        self.dir.path().join("archives")
    }

    /// A path under the fixture that does not exist yet.
    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn capture(&self, compression: Compression) -> BenchResult<Snapshot> {
        let snapshot = Snapshot::capture(
            &self.tree(),
            &SnapshotRules::keep_all(),
            compression,
            &self.archives(),
        )?;
        if snapshot.manifest().len() != self.files.len() {
            return Err(format!(
                "snapshot holds {} entries, the tree {}",
                snapshot.manifest().len(),
                self.files.len()
            )
            .into());
        }
        Ok(snapshot)
    }
}

pub(crate) fn count(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{},000", n / 1000)
    } else {
        n.to_string()
    }
}

fn timed<T>(work: impl FnOnce() -> BenchResult<T>) -> BenchResult<(Duration, T)> {
    let start = Instant::now();
    let value = work()?;
    Ok((start.elapsed(), value))
}

/// Decompresses a whole gz archive through berth's compression layer,
/// opened as the snapshot code opens it, reading `pattern`'s sizes in turn
/// (one 64 KiB size for bulk reads; a header and a member size for the
/// reads a tar reader makes member by member).
fn inflate(archive: &Path, pattern: &[usize]) -> BenchResult<Duration> {
    let start = Instant::now();
    let file = File::open(archive)?;
    let mut reader = Compression::Gzip.reader(io::BufReader::with_capacity(256 << 10, file))?;
    let mut buf = vec![0u8; pattern.iter().copied().max().unwrap_or(1)];
    for &size in pattern.iter().cycle() {
        if reader.read(&mut buf[..size])? == 0 {
            break;
        }
    }
    Ok(start.elapsed())
}

/// The reads a tar reader makes per member of `file_size` bytes: a 512-byte
/// header, then the padded data (skipped in reads of at most 32 KiB).
fn member_reads(file_size: usize) -> [usize; 2] {
    [512, file_size.div_ceil(512).clamp(1, 64) * 512]
}

/// Runs `tar` with `args` and checks it succeeded.
fn tar(args: &[&str]) -> BenchResult<()> {
    let out = Command::new("tar").args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "tar {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// `Snapshot::capture` of the tree (no compression, then gz) against an
/// external `tar -cf` (then `tar -czf`) of the same tree into the same
/// archive directory, alternating one run each. Two more sides, outside the
/// verdict, locate the difference: `tar` followed by an `fsync` of its
/// archive (what a capture cost when it still synced its archive), and
/// hashing every file's bytes from memory (a capture hashes each file for
/// the manifest; `tar` hashes nothing).
pub fn snapshot(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let fixture = TreeFixture::new(bench, 1)?;
    let schedule = Schedule {
        warmup: 2.min(bench.sizes.tree_iterations),
        iterations: bench.sizes.tree_iterations,
        block: 1,
    };
    let tree = fixture.tree();
    let tree_arg = tree.to_str().ok_or("bench directory is not UTF-8")?;
    let n = count(bench.sizes.tree_files);
    let kib = bench.sizes.file_size / 1024;
    let size = if kib > 0 {
        format!("{kib} KiB")
    } else {
        format!("{} B", bench.sizes.file_size)
    };
    let mut figures = Vec::new();
    for (compression, flags) in [(Compression::None, "-cf"), (Compression::Gzip, "-czf")] {
        let floor_archive = fixture
            .archives()
            .join(format!("floor.tar{}", compression.suffix()));
        let floor_arg = floor_archive
            .to_str()
            .ok_or("bench directory is not UTF-8")?;
        let mut samples: [Vec<Duration>; 4] = Default::default();
        let (mut berth_size, mut tar_size) = (0, 0);
        for (side, is_timed) in schedule.order(4) {
            let took = match side {
                3 => {
                    timed(|| {
                        for file in &fixture.files {
                            std::hint::black_box(ContentHash::of(&file.bytes));
                        }
                        Ok(())
                    })?
                    .0
                }
                0 => {
                    let (took, snap) = timed(|| fixture.capture(compression))?;
                    berth_size = fs::metadata(snap.archive_path())?.len();
                    fs::remove_file(snap.archive_path())?;
                    took
                }
                _ => {
                    let (took, ()) = timed(|| {
                        tar(&[flags, floor_arg, "-C", tree_arg, "."])?;
                        if side == 2 {
                            File::open(&floor_archive)?.sync_data()?;
                        }
                        Ok(())
                    })?;
                    tar_size = fs::metadata(&floor_archive)?.len();
                    fs::remove_file(&floor_archive)?;
                    took
                }
            };
            if is_timed {
                samples[side].push(took);
            }
        }
        let [berth, floor, synced, hashing] = samples.map(Samples::new);
        // Compressed, berth is held to a stricter target: at gzip's own
        // level (6), its deflate (zlib-rs) is much faster than gzip's.
        let (label, tar_cmd, target) = match compression {
            Compression::None => (
                format!("snapshot {n} × {size}, no compression"),
                "tar -cf",
                1.0,
            ),
            _ => (format!("snapshot {n} × {size}, gz"), "tar -czf", 0.6),
        };
        figures.push(
            Figure::new(
                label,
                Value::Time(berth.median()),
                Target::RatioAtMost(target),
            )
            .floor(Value::Time(floor.median()))
            .detail(format!("berth capture: {}", berth.summary()))
            .detail(format!("floor `{tar_cmd}`: {}", floor.summary()))
            .detail(format!(
                "`{tar_cmd}` + fsync of the archive: {}",
                synced.summary()
            ))
            .detail(format!(
                "hashing every file's bytes from memory (BLAKE3, as a capture does): {}",
                hashing.summary()
            ))
            .detail(format!(
                "archive sizes: berth {}, tar {}",
                fmt_bytes(berth_size),
                fmt_bytes(tar_size)
            )),
        );
    }
    Ok(figures)
}

/// `Snapshot::extract` of the tree's snapshot (no compression, and gz) into
/// a fresh directory, against writing the same files with plain
/// create+write ([`write_files`]); then `materialize_input_files` of
/// `input_files` text files against plain create+write of the same files.
/// Removing what was written is not timed.
pub fn extract(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let fixture = TreeFixture::new(bench, 1)?;
    let plain = fixture.capture(Compression::None)?;
    let gz = fixture.capture(Compression::Gzip)?;
    let schedule = Schedule {
        warmup: 2.min(bench.sizes.extract_iterations),
        iterations: bench.sizes.extract_iterations,
        block: 1,
    };
    let reads = member_reads(bench.sizes.file_size);
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for (k, (side, is_timed)) in schedule.order(5).into_iter().enumerate() {
        if side >= 3 {
            let pattern: &[usize] = if side == 3 { &[64 << 10] } else { &reads };
            let took = inflate(gz.archive_path(), pattern)?;
            if is_timed {
                samples[side].push(took);
            }
            continue;
        }
        let dest = fixture.scratch(&format!("out-{k}"));
        let (took, ()) = timed(|| {
            match side {
                0 => plain.extract(&dest, ExtractMode::Mirror)?,
                1 => write_files(&dest, &fixture.files)?,
                _ => gz.extract(&dest, ExtractMode::Mirror)?,
            }
            Ok(())
        })?;
        if side != 1 {
            check_tree(&dest, &fixture.files[..1])?;
        }
        fs::remove_dir_all(&dest)?;
        if is_timed {
            samples[side].push(took);
        }
    }
    let [berth, floor, berth_gz, bulk, small] = samples.map(Samples::new);
    let n = count(bench.sizes.tree_files);
    let mut figures = vec![
        Figure::new(
            format!("extract {n}-file snapshot, no compression"),
            Value::Time(berth.median()),
            Target::RatioAtMost(1.5),
        )
        .floor(Value::Time(floor.median()))
        .detail(format!(
            "berth extract (mirror, into a new directory): {}",
            berth.summary()
        ))
        .detail(format!("floor create+write: {}", floor.summary())),
        Figure::new(
            format!("extract {n}-file snapshot, gz"),
            Value::Time(berth_gz.median()),
            Target::RatioAtMost(1.5),
        )
        .floor(Value::Time(floor.median()))
        .detail(format!(
            "berth extract of the gz archive: {}",
            berth_gz.summary()
        ))
        .detail(format!(
            "decompressing that archive alone, 64 KiB reads: {}",
            bulk.summary()
        ))
        .detail(format!(
            "decompressing it in a tar reader's reads ({} then {} bytes per member): {}",
            reads[0],
            reads[1],
            small.summary()
        )),
    ];
    figures.push(materialize(bench, &fixture)?);
    Ok(figures)
}

fn check_tree(dest: &Path, sample: &[FileSpec]) -> BenchResult<()> {
    for file in sample {
        if fs::read(dest.join(&file.path))? != file.bytes {
            return Err(format!("`{}` was not restored", file.path.display()).into());
        }
    }
    Ok(())
}

fn materialize(bench: &Bench, fixture: &TreeFixture) -> BenchResult<Figure> {
    let files: Vec<FileSpec> = tree_files(bench.sizes.input_files, bench.sizes.file_size, 3)
        .into_iter()
        .map(|f| FileSpec {
            path: Path::new("inputs").join(f.path),
            bytes: f.bytes,
        })
        .collect();
    let inputs: Vec<InputFile> = files
        .iter()
        .map(|f| {
            let text = String::from_utf8(f.bytes.clone()).expect("generated text is ASCII");
            InputFile::new(&f.path, text)
        })
        .collect();
    let schedule = Schedule {
        warmup: 3.min(bench.sizes.input_iterations),
        iterations: bench.sizes.input_iterations,
        block: 1,
    };
    let mut samples: [Vec<Duration>; 2] = Default::default();
    for (k, (side, is_timed)) in schedule.order(2).into_iter().enumerate() {
        let root = fixture.scratch(&format!("inputs-{k}"));
        fs::create_dir(&root)?;
        let (took, ()) = timed(|| {
            if side == 0 {
                let written = file_ops::materialize_input_files(&root, &inputs)?;
                if written.len() != inputs.len() {
                    return Err("not every input file was written".into());
                }
            } else {
                write_files(&root, &files)?;
            }
            Ok(())
        })?;
        if side == 0 {
            check_tree(&root, &files[..1])?;
        }
        fs::remove_dir_all(&root)?;
        if is_timed {
            samples[side].push(took);
        }
    }
    let [berth, floor] = samples.map(Samples::new);
    Ok(Figure::new(
        format!(
            "materialize_input_files, {} text files",
            count(bench.sizes.input_files)
        ),
        Value::Time(berth.median()),
        Target::RatioAtMost(1.5),
    )
    .floor(Value::Time(floor.median()))
    .detail(format!(
        "berth materialize_input_files: {}",
        berth.summary()
    ))
    .detail(format!("floor create+write: {}", floor.summary())))
}

/// `diff::diff` of two snapshots of the tree, the second taken after 1% of
/// the files had one line rewritten, for uncompressed and gz archives.
/// Absolute times: the target is at most 20 ms. Outside the verdict,
/// three figures locate the time: a diff of a snapshot with itself
/// (manifests only), the same gz diff on the archives reopened with
/// `Snapshot::open_archive` (no frame index, so each archive is streamed up
/// to its last changed entry), and decompressing one whole gz archive
/// through berth's compression layer in bulk reads.
pub fn diff(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let mut fixture = TreeFixture::new(bench, 2)?;
    let old = [
        fixture.capture(Compression::None)?,
        fixture.capture(Compression::Gzip)?,
    ];
    let n = bench.sizes.tree_files;
    let changed: Vec<usize> = (0..(n / 100).max(1))
        .map(|i| (i * 100 + 37).min(n - 1))
        .collect();
    let tree = fixture.tree();
    edit_files(&tree, &mut fixture.files, &changed, 4)?;
    let new = [
        fixture.capture(Compression::None)?,
        fixture.capture(Compression::Gzip)?,
    ];
    let reopened = [
        Snapshot::open_archive(old[1].archive_path(), Compression::Gzip)?,
        Snapshot::open_archive(new[1].archive_path(), Compression::Gzip)?,
    ];
    let schedule = Schedule {
        warmup: 2.min(bench.sizes.diff_iterations),
        iterations: bench.sizes.diff_iterations,
        block: 1,
    };
    let check = |d: diff::SnapshotDiff| -> BenchResult<()> {
        let s = d.summary;
        let lines = changed.len() as u64;
        if s.modified != changed.len() || s.lines_added != lines || s.lines_removed != lines {
            return Err(format!("unexpected diff: {s:?}").into());
        }
        Ok(())
    };
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for (side, is_timed) in schedule.order(5) {
        let took = match side {
            0 | 1 => {
                let (took, d) = timed(|| Ok(diff::diff(&old[side], &new[side])?))?;
                check(d)?;
                took
            }
            2 => timed(|| Ok(diff::diff(&old[0], &old[0])?))?.0,
            3 => {
                let (took, d) = timed(|| Ok(diff::diff(&reopened[0], &reopened[1])?))?;
                check(d)?;
                took
            }
            _ => inflate(old[1].archive_path(), &[64 << 10])?,
        };
        if is_timed {
            samples[side].push(took);
        }
    }
    let [plain, gz, same, streamed, bulk] = samples.map(Samples::new);
    let label = format!("diff {} files, {} changed", count(n), changed.len());
    Ok(vec![
        Figure::new(
            format!("{label}, no compression"),
            Value::Time(plain.median()),
            Target::TimeAtMost(Duration::from_millis(20)),
        )
        .detail(format!("berth diff: {}", plain.summary()))
        .detail(format!(
            "diff of a snapshot with itself (manifests only): {}",
            same.summary()
        )),
        Figure::new(
            format!("{label}, gz"),
            Value::Time(gz.median()),
            Target::TimeAtMost(Duration::from_millis(20)),
        )
        .detail(format!("berth diff: {}", gz.summary()))
        .detail(format!(
            "the same diff on the archives reopened from disk (no frame index: streamed): {}",
            streamed.summary()
        ))
        .detail(format!(
            "decompressing one whole gz archive ({}), 64 KiB reads: {}",
            fmt_bytes(fs::metadata(old[1].archive_path())?.len()),
            bulk.summary()
        )),
    ])
}
