//! Rows 2 and 3: how soon output arrives, and how fast and in how much
//! memory a large output streams.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use session_core::runtime::{Event, ExecCommand, Runtime, RuntimeStatus};

use super::{local_runtime, tokio_runtime};
use crate::stats::{Samples, Schedule, fmt_bytes, fmt_duration, fmt_rate};
use crate::{Bench, BenchResult, Figure, Target, Value};

/// The command of the latency row: one line, then a long wait, so an event
/// held until exit or until a buffer fills shows as a second's delay.
const LATENCY_COMMAND: &str = "echo hi; sleep 1";

/// Times from the start of a command to its first `Event::Stdout`, against
/// the first `read` of a raw pipe from the same command started with
/// `std::process::Command`. The difference is what berth adds to the
/// delivery of a line (its spawn included); both are reported.
pub fn latency(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let workspace = tempfile::tempdir_in(&bench.dir)?;
    let schedule = Schedule {
        warmup: 5.min(bench.sizes.latency_iterations),
        iterations: bench.sizes.latency_iterations,
        block: 5,
    };
    let rt = tokio_runtime()?;
    let (berth, started, raw) = rt.block_on(async {
        let runtime = local_runtime(workspace.path()).await?;
        let (mut berth, mut started, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for (side, timed) in schedule.order(2) {
            if side == 0 {
                let (start, first) = berth_first_event(runtime.as_ref()).await?;
                if timed {
                    started.push(start);
                    berth.push(first);
                }
            } else {
                let first = raw_first_read()?;
                if timed {
                    raw.push(first);
                }
            }
        }
        runtime.cleanup().await?;
        BenchResult::Ok((
            Samples::new(berth),
            Samples::new(started),
            Samples::new(raw),
        ))
    })?;
    let figure = Figure::new(
        "stream: first event after the child writes",
        Value::Time(berth.median()),
        Target::OverFloorAtMost(Duration::from_millis(1)),
    )
    .floor(Value::Time(raw.median()))
    .detail(format!(
        "berth, spawn to first Stdout event of `{LATENCY_COMMAND}`: {}",
        berth.summary()
    ))
    .detail(format!(
        "of which `stream()` returning (the spawn): {}",
        started.summary()
    ))
    .detail(format!(
        "floor, spawn to first pipe read: {}",
        raw.summary()
    ));
    Ok(vec![figure])
}

/// `(stream() returned, first Stdout event)`, both from the call.
async fn berth_first_event(runtime: &dyn Runtime) -> BenchResult<(Duration, Duration)> {
    let start = Instant::now();
    let mut stream = runtime.stream(ExecCommand::new(LATENCY_COMMAND)).await?;
    let started = start.elapsed();
    let first = loop {
        match stream.next().await {
            Some(Event::Stdout(_)) => break start.elapsed(),
            Some(Event::Stderr(_)) => {}
            Some(Event::Finished(result)) => {
                return Err(format!("finished before any output: {result:?}").into());
            }
            None => return Err("the stream ended without a result".into()),
        }
    };
    // Dropping the stream kills the command; wait until it is reaped so
    // the next sample starts on a quiet machine.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while runtime.poll().await != RuntimeStatus::Idle {
        if Instant::now() > deadline {
            return Err("a cancelled command was still running after 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((started, first))
}

fn raw_first_read() -> io::Result<Duration> {
    let start = Instant::now();
    let mut child = Command::new("/bin/sh")
        .args(["-c", LATENCY_COMMAND])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let mut out = child.stdout.take().expect("piped");
    let mut buf = [0u8; 4096];
    let n = out.read(&mut buf)?;
    let first = start.elapsed();
    // SAFETY: kill(2) on the child's own process group.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    child.wait()?;
    if n == 0 {
        return Err(io::Error::other("no output from the raw child"));
    }
    Ok(first)
}

/// One child process's measurement of the throughput row.
#[derive(Debug, Clone, Copy)]
struct ThroughputRun {
    bytes: u64,
    elapsed: Duration,
    /// VmHWM of the child at the end, in bytes.
    peak_rss: u64,
    /// VmRSS of the child just before streaming, in bytes.
    baseline_rss: u64,
    /// Minor page faults of the child while it streamed.
    faults: u64,
}

impl ThroughputRun {
    fn rate(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// The variants of the throughput row, as the child takes them: the raw
/// loop; berth with `output_limit` 1 MiB; berth at the default limit; and
/// berth at the default limit with `events_only` (a consumer that says it
/// takes the output from the events, so the result keeps none of it).
const VARIANTS: [(&str, Option<u64>); 4] = [
    ("raw", None),
    ("berth", Some(1 << 20)),
    ("berth", None),
    ("berth-events-only", None),
];

/// Streams `stream_bytes` of `head -c N /dev/zero` through
/// `Runtime::stream`, consuming every event, against a raw loop reading the
/// same producer's pipe 64 KiB at a time. Each run is a child process of
/// its own, so its VmHWM is that run's peak memory alone. berth runs with
/// `output_limit` 1 MiB and at the default (64 MiB), since every stream
/// also keeps up to `output_limit` bytes for the final result, and once
/// more at the default with `events_only`, which keeps none. Each run
/// also reports its minor page faults, which is where slow runs differ.
pub fn throughput(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let bytes = bench.sizes.stream_bytes;
    let mut runs: [Vec<ThroughputRun>; 4] = Default::default();
    for round in 0..bench.sizes.stream_rounds {
        // Rotate the order so no variant always runs first or last.
        for k in 0..VARIANTS.len() {
            let i = (round + k) % VARIANTS.len();
            let (mode, limit) = VARIANTS[i];
            runs[i].push(run_child(bench, mode, bytes, limit)?);
        }
    }
    let median_rate = |runs: &[ThroughputRun]| {
        let mut rates: Vec<f64> = runs.iter().map(ThroughputRun::rate).collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let spread = |runs: &[ThroughputRun]| {
        runs.iter()
            .map(|r| format!("{} ({} faults)", fmt_rate(r.rate()), r.faults))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let raw = &runs[0];
    let floor = Value::Rate(median_rate(raw));
    let size = fmt_size(bytes);
    let mut figures = Vec::new();
    for (runs, label) in [
        (&runs[1], "output_limit 1 MiB"),
        (&runs[2], "output_limit 64 MiB (default)"),
        (&runs[3], "output_limit 64 MiB (default), events_only"),
    ] {
        let peak = runs.iter().map(|r| r.peak_rss).max().unwrap_or(0);
        let baseline = runs.iter().map(|r| r.baseline_rss).max().unwrap_or(0);
        figures.push(
            Figure::new(
                format!("stream throughput, {size}, {label}"),
                Value::Rate(median_rate(runs)),
                Target::RatioAtLeast(0.8),
            )
            .floor(floor)
            .detail(format!("berth runs: {}", spread(runs)))
            .detail(format!("raw pipe-read runs: {}", spread(raw))),
        );
        figures.push(
            Figure::new(
                format!("stream peak RSS, {size}, {label}"),
                Value::Bytes(peak),
                Target::BytesAtMost(64 << 20),
            )
            .detail(format!(
                "VmHWM of the child process (highest of {} runs); its RSS before streaming: {}; raw loop's VmHWM: {}",
                runs.len(),
                fmt_bytes(baseline),
                fmt_bytes(raw.iter().map(|r| r.peak_rss).max().unwrap_or(0))
            )),
        );
    }
    Ok(figures)
}

fn fmt_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        fmt_bytes(bytes)
    }
}

fn run_child(
    bench: &Bench,
    mode: &str,
    bytes: u64,
    limit: Option<u64>,
) -> BenchResult<ThroughputRun> {
    let mut command = Command::new(&bench.exe);
    // The child's workspace goes where the rest of the run's files go.
    command.env("TMPDIR", &bench.dir);
    command.args([CHILD_FLAG, mode, &bytes.to_string()]);
    if let Some(limit) = limit {
        command.arg(limit.to_string());
    }
    let out = command.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("the {mode} throughput child failed ({})", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> BenchResult<u64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("`{name}` missing from the child's report `{}`", text.trim()))?
            .parse::<u64>()
            .map_err(|err| format!("`{name}` in `{}`: {err}", text.trim()).into())
    };
    let run = ThroughputRun {
        bytes: field("bytes")?,
        elapsed: Duration::from_nanos(field("ns")?),
        peak_rss: field("hwm_kib")? * 1024,
        baseline_rss: field("rss_kib")? * 1024,
        faults: field("faults")?,
    };
    if run.bytes != bytes {
        return Err(format!("the {mode} child read {} of {bytes} bytes", run.bytes).into());
    }
    Ok(run)
}

/// The first argument that makes the harness's executable run one
/// throughput measurement and report it instead of running rows.
pub const CHILD_FLAG: &str = "--child-throughput";

/// Runs one throughput measurement in this process and returns its report
/// line. `args` are what follows [`CHILD_FLAG`]: `raw BYTES` or
/// `berth|berth-events-only BYTES [OUTPUT_LIMIT]`.
pub fn throughput_child(args: &[String]) -> BenchResult<String> {
    let usage = || format!("usage: {CHILD_FLAG} raw|berth|berth-events-only BYTES [OUTPUT_LIMIT]");
    let mode = args.first().ok_or_else(usage)?;
    let bytes: u64 = args.get(1).ok_or_else(usage)?.parse()?;
    let limit: Option<u64> = args.get(2).map(|s| s.parse()).transpose()?;
    let producer = format!("head -c {bytes} /dev/zero");
    let (read, elapsed, baseline, faults) = match mode.as_str() {
        "raw" => {
            let baseline = proc_status_kib("VmRSS")?;
            let faults = minor_faults();
            let (read, elapsed) = raw_read_loop(&producer)?;
            (read, elapsed, baseline, minor_faults() - faults)
        }
        "berth" | "berth-events-only" => {
            let workspace = tempfile::tempdir()?;
            let rt = tokio_runtime()?;
            rt.block_on(async {
                let runtime = local_runtime(workspace.path()).await?;
                let baseline = proc_status_kib("VmRSS")?;
                let faults = minor_faults();
                let mut cmd = ExecCommand::new(producer);
                cmd.output_limit = limit;
                cmd.events_only = mode.as_str() == "berth-events-only";
                let start = Instant::now();
                let mut stream = runtime.stream(cmd).await?;
                let mut read = 0u64;
                let result = loop {
                    match stream.next().await {
                        Some(Event::Stdout(chunk)) => read += chunk.len() as u64,
                        Some(Event::Stderr(_)) => {}
                        Some(Event::Finished(result)) => break result,
                        None => return Err("the stream ended without a result".into()),
                    }
                };
                let elapsed = start.elapsed();
                let faults = minor_faults() - faults;
                if !result.success() || result.stdout.total_bytes != bytes {
                    return Err(format!(
                        "producer failed or was cut: {:?}, {} bytes counted",
                        result.status, result.stdout.total_bytes
                    )
                    .into());
                }
                runtime.cleanup().await?;
                BenchResult::Ok((read, elapsed, baseline, faults))
            })?
        }
        other => return Err(format!("unknown throughput mode `{other}`; {}", usage()).into()),
    };
    let peak = proc_status_kib("VmHWM")?;
    Ok(format!(
        "bytes={read} ns={} hwm_kib={peak} rss_kib={baseline} faults={faults} ({} in {})",
        elapsed.as_nanos(),
        fmt_rate(read as f64 / elapsed.as_secs_f64()),
        fmt_duration(elapsed)
    ))
}

/// Reads the producer's stdout 64 KiB at a time (the local backend's read
/// size) until the end, discarding it.
fn raw_read_loop(producer: &str) -> io::Result<(u64, Duration)> {
    let start = Instant::now();
    let mut child = Command::new("/bin/sh")
        .args(["-c", producer])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take().expect("piped");
    let mut buf = vec![0u8; 64 << 10];
    let mut read = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read += n as u64,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let status = child.wait()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(io::Error::other(format!("producer: {status}")));
    }
    Ok((read, elapsed))
}

/// Minor page faults of this process so far (all its threads).
fn minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage with a valid pointer to a local struct.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_minflt.max(0) as u64
}

/// A `kB` field of `/proc/self/status` (`VmHWM`, `VmRSS`).
fn proc_status_kib(field: &str) -> BenchResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no `{field}` in /proc/self/status").into())
}
