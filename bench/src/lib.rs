//! berth's benchmark harness.
//!
//! Every figure of BENCHMARKS.md is a ratio against a floor measured in the same
//! run, on the same machine, under the same load: berth's operation and its
//! floor run in alternating blocks after a warm-up, and each row reports
//! medians with their p90/p99. No criterion: a small harness builds fast on
//! small machines and measures what the targets ask, nothing else.
//!
//! Rows (names as on the command line):
//!
//! * `exec` — local `execute("true")` against `std::process::Command`
//!   spawn + wait of `/bin/sh -c true`.
//! * `stream-latency` — first `Event::Stdout` of `echo hi; sleep 1` against
//!   the first read of a raw pipe from the same command.
//! * `stream-throughput` — 1 GiB through `Runtime::stream` against a raw
//!   pipe-read loop, with peak RSS, each run in a child process of its own.
//! * `snapshot` — capture of 10,000 × 1 KiB files against `tar -cf` and
//!   `tar -czf`.
//! * `extract` — extraction of that snapshot, and `materialize_input_files`
//!   of 1,000 text files, against plain create+write.
//! * `diff` — diff of two 10,000-file snapshots with 1% changed.
//! * `session` — session prepare + spawn + close on the local backend
//!   against `tempfile::tempdir()` create + remove.
//! * `python` — the Python module: `execute("true")` against the same call
//!   from Rust and against `subprocess.run`, 1 GiB through its stream
//!   iterator against a `subprocess.Popen` read loop, and 32 threads × 50
//!   calls against as many tokio tasks.
//! * `diff-dirs` — `berth diff DIR DIR` (the binary) of two live trees
//!   against GNU `diff -r`.
//! * `berth-run` — `berth run -- true` (the binary) against `sh -c true`,
//!   with `berth --version` and an in-process session for its target.
//! * `throughput` — whole sessions per second at concurrency 1, 8 and 32
//!   (local, namespace) against bare processes of the same command.

#![warn(missing_docs)]

pub mod fixtures;
pub mod machine;
pub mod report;
pub mod rows;
pub mod stats;

use std::path::PathBuf;

pub use report::{Figure, Target, Value};

/// What a row returns: its figures, or why it could not measure.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How big and how long every row is.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// A name for the header (`full`, `quick`, `tiny`).
    pub profile: &'static str,
    /// Timed `execute("true")` calls (and as many floor calls).
    pub exec_iterations: usize,
    /// Timed first-event measurements per side.
    pub latency_iterations: usize,
    /// Bytes streamed by the throughput row.
    pub stream_bytes: u64,
    /// Rounds of the throughput row (each round runs every variant once).
    pub stream_rounds: usize,
    /// Files in the snapshot, extract and diff trees.
    pub tree_files: usize,
    /// Bytes per file in those trees.
    pub file_size: usize,
    /// Timed runs per side of the snapshot row.
    pub tree_iterations: usize,
    /// Timed runs per side of the extract row (file creation is the
    /// slowest work here).
    pub extract_iterations: usize,
    /// Input files written by `materialize_input_files`.
    pub input_files: usize,
    /// Timed runs per side of the input-file row.
    pub input_iterations: usize,
    /// Timed diffs.
    pub diff_iterations: usize,
    /// Timed sessions (and as many floor runs).
    pub session_iterations: usize,
    /// Rounds of the `python` row (each starts the Python side once per
    /// comparison).
    pub python_rounds: usize,
    /// Threads, and `execute("true")` calls each, of the `python` row's
    /// concurrency figure.
    pub python_threads: (usize, usize),
    /// Timed runs per side of the rows that start the `berth` binary.
    pub process_iterations: usize,
    /// Sessions (and bare processes) per batch of the throughput row.
    pub throughput_sessions: usize,
    /// Rounds of the throughput row (each runs every side once at every
    /// concurrency).
    pub throughput_rounds: usize,
}

impl Sizes {
    /// The sizes the targets are set for.
    pub fn full() -> Sizes {
        Sizes {
            profile: "full",
            exec_iterations: 300,
            latency_iterations: 100,
            stream_bytes: 1 << 30,
            stream_rounds: 5,
            tree_files: 10_000,
            file_size: 1024,
            tree_iterations: 15,
            extract_iterations: 9,
            input_files: 1_000,
            input_iterations: 30,
            diff_iterations: 30,
            session_iterations: 300,
            python_rounds: 5,
            python_threads: (32, 50),
            process_iterations: 200,
            throughput_sessions: 96,
            throughput_rounds: 3,
        }
    }

    /// Smaller sizes for a smoke run (well under a minute).
    pub fn quick() -> Sizes {
        Sizes {
            profile: "quick",
            exec_iterations: 60,
            latency_iterations: 20,
            stream_bytes: 64 << 20,
            stream_rounds: 1,
            tree_files: 2_000,
            file_size: 1024,
            tree_iterations: 3,
            extract_iterations: 3,
            input_files: 200,
            input_iterations: 5,
            diff_iterations: 5,
            session_iterations: 40,
            python_rounds: 2,
            python_threads: (32, 10),
            process_iterations: 40,
            throughput_sessions: 32,
            throughput_rounds: 1,
        }
    }

    /// Just enough to run every code path, for the test suite.
    pub fn tiny() -> Sizes {
        Sizes {
            profile: "tiny",
            exec_iterations: 4,
            latency_iterations: 2,
            stream_bytes: 1 << 20,
            stream_rounds: 1,
            tree_files: 120,
            file_size: 256,
            tree_iterations: 1,
            extract_iterations: 1,
            input_files: 20,
            input_iterations: 1,
            diff_iterations: 1,
            session_iterations: 3,
            python_rounds: 1,
            python_threads: (4, 2),
            process_iterations: 3,
            throughput_sessions: 4,
            throughput_rounds: 1,
        }
    }
}

/// Where and how a run measures.
#[derive(Debug, Clone)]
pub struct Bench {
    /// Sizes and iteration counts.
    pub sizes: Sizes,
    /// The directory temp trees, archives and workspaces go in; one file
    /// system for everything a row compares.
    pub dir: PathBuf,
    /// This harness's own executable, re-run for rows that need a process
    /// of their own.
    pub exe: PathBuf,
}

/// A row: its command-line name, what it measures, and the function
/// that measures it.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Name on the command line.
    pub name: &'static str,
    /// What it measures, in a few words.
    pub about: &'static str,
    /// The measurement.
    pub run: fn(&Bench) -> BenchResult<Vec<Figure>>,
}

/// Every row, in the order of BENCHMARKS.md.
pub const ROWS: &[Row] = &[
    Row {
        name: "exec",
        about: "local execute(\"true\") vs Command spawn+wait of /bin/sh -c true",
        run: rows::exec::run,
    },
    Row {
        name: "stream-latency",
        about: "first Stdout event vs first raw pipe read",
        run: rows::stream::latency,
    },
    Row {
        name: "stream-throughput",
        about: "1 GiB through Runtime::stream vs a raw pipe-read loop; peak RSS",
        run: rows::stream::throughput,
    },
    Row {
        name: "snapshot",
        about: "capture of 10,000 × 1 KiB files vs tar -cf / tar -czf",
        run: rows::tree::snapshot,
    },
    Row {
        name: "extract",
        about: "extract 10,000 files; materialize 1,000 input files; vs create+write",
        run: rows::tree::extract,
    },
    Row {
        name: "diff",
        about: "diff of two 10,000-file snapshots, 1% changed",
        run: rows::tree::diff,
    },
    Row {
        name: "session",
        about: "session prepare + spawn + close (local, empty base) vs tempdir create+remove",
        run: rows::session::run,
    },
    Row {
        name: "diff-dirs",
        about: "berth diff DIR DIR of two 10,000-file trees, 1% changed, vs GNU diff -r",
        run: rows::binary::diff_dirs,
    },
    Row {
        name: "berth-run",
        about: "berth run -- true as a process vs sh -c true; berth --version; in-process session",
        run: rows::binary::berth_run,
    },
    Row {
        name: "throughput",
        about: "sessions/s (prepare, spawn, python3 -c pass, close) at concurrency 1, 8, 32: local, namespace vs bare processes",
        run: rows::throughput::run,
    },
    Row {
        name: "plugin-load",
        about: "load_library of the release-built namespace plugin (fresh copies)",
        run: rows::backends::plugin_load,
    },
    Row {
        name: "ffi",
        about: "local execute(\"true\") through the plugin boundary vs direct",
        run: rows::backends::ffi,
    },
    Row {
        name: "api",
        about: "api backend execute(\"true\") over loopback vs local",
        run: rows::backends::api,
    },
    Row {
        name: "namespace",
        about: "namespace sandbox spawn + first true vs local",
        run: rows::backends::namespace,
    },
    Row {
        name: "docker-exec",
        about: "docker exec of true: berth vs raw Engine API vs docker exec CLI",
        run: rows::backends::docker_exec,
    },
    Row {
        name: "python",
        about: "berth from Python vs from Rust and vs subprocess: execute, stream, 32 threads",
        run: rows::python::run,
    },
    Row {
        name: "docker-spawn",
        about: "docker spawn + cleanup vs docker run --rm CLI",
        run: rows::backends::docker_spawn,
    },
    Row {
        name: "docker-session",
        about: "docker session prepare + spawn + first true + close vs docker run --rm CLI",
        run: rows::backends::docker_session,
    },
    Row {
        name: "docker-pool",
        about: "docker spawn + first true from a warm pool vs a raw Engine API exec",
        run: rows::backends::docker_pool,
    },
];

/// The row named `name` (or numbered, from 1, in [`ROWS`] order).
pub fn find_row(name: &str) -> Option<&'static Row> {
    if let Ok(n) = name.parse::<usize>() {
        return n.checked_sub(1).and_then(|i| ROWS.get(i));
    }
    ROWS.iter().find(|row| row.name == name)
}
