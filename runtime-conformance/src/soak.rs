//! The soak: many concurrent sessions on one backend, each running a mix of
//! quick commands, timeouts, large outputs and kills, checked for lost
//! bytes and for leftovers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::runtime::{Event, ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};
use tokio::sync::Semaphore;

use crate::Target;

/// How big a soak is.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Sessions in all.
    pub sessions: usize,
    /// Sessions alive at once.
    pub concurrency: usize,
    /// Bytes of the large-output command.
    pub large_output: u64,
}

impl SoakConfig {
    /// `sessions` sessions, all at once.
    pub fn new(sessions: usize) -> SoakConfig {
        SoakConfig {
            sessions,
            concurrency: sessions,
            large_output: 4 << 20,
        }
    }
}

/// What a soak measured and found.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Sessions completed.
    pub sessions: usize,
    /// Wall time of the whole soak.
    pub wall: Duration,
    /// Latency of every quick command, sorted.
    pub exec_latencies: Vec<Duration>,
    /// Everything that went wrong.
    pub failures: Vec<String>,
    /// Session directories left behind.
    pub leftover_dirs: Vec<std::path::PathBuf>,
}

impl SoakReport {
    /// Sessions per second.
    pub fn sessions_per_second(&self) -> f64 {
        self.sessions as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    /// The `p`-quantile (0..=1) of the quick-command latency.
    pub fn exec_latency(&self, p: f64) -> Duration {
        if self.exec_latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.exec_latencies.len() - 1) as f64 * p).round() as usize;
        self.exec_latencies[index]
    }

    /// One line with the figures.
    pub fn summary(&self) -> String {
        format!(
            "{} sessions in {:.2} s ({:.1} sessions/s), quick exec p50 {:.2} ms p99 {:.2} ms, {} failures, {} leftover dirs",
            self.sessions,
            self.wall.as_secs_f64(),
            self.sessions_per_second(),
            self.exec_latency(0.5).as_secs_f64() * 1000.0,
            self.exec_latency(0.99).as_secs_f64() * 1000.0,
            self.failures.len(),
            self.leftover_dirs.len()
        )
    }
}

/// Runs the soak. Session directories go to `temp_root`, which must be
/// empty and is checked for leftovers at the end; every command carries
/// `BERTH_SOAK_RUN=<run_id>` in its environment so a caller can look for
/// surviving processes.
pub async fn soak(
    target: &Target,
    config: &SoakConfig,
    temp_root: &std::path::Path,
    run_id: &str,
) -> SoakReport {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..config.sessions {
        let gate = Arc::clone(&gate);
        let target = target.clone();
        let temp_root = temp_root.to_path_buf();
        let run_id = run_id.to_owned();
        let large = config.large_output;
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            one_session(&target, &temp_root, &run_id, index, large).await
        });
    }
    let mut report = SoakReport::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(latencies)) => {
                report.sessions += 1;
                report.exec_latencies.extend(latencies);
            }
            Ok(Err(failure)) => report.failures.push(failure),
            Err(err) => report
                .failures
                .push(format!("a session task failed: {err}")),
        }
    }
    report.wall = started.elapsed();
    report.exec_latencies.sort();
    report.leftover_dirs = std::fs::read_dir(temp_root)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    report
}

async fn one_session(
    target: &Target,
    temp_root: &std::path::Path,
    run_id: &str,
    index: usize,
    large: u64,
) -> Result<Vec<Duration>, String> {
    let fail = |what: &str, detail: String| format!("session {index}: {what}: {detail}");
    let mut session = Session::builder(target.spec.clone())
        .registry(Arc::clone(&target.registry))
        .temp_root(temp_root)
        .prepare()
        .await
        .map_err(|e| fail("prepare", e.to_string()))?;
    let mut options = SpawnOptions::default();
    options
        .env
        .insert("BERTH_SOAK_RUN".into(), run_id.to_owned());
    let rt = session
        .spawn(options)
        .await
        .map_err(|e| fail("spawn", e.to_string()))?;
    let mut latencies = Vec::new();

    for round in 0..3 {
        let text = format!("session {index} round {round}");
        let begun = Instant::now();
        let quick = rt
            .execute(ExecCommand::new(format!("echo '{text}'")))
            .await
            .map_err(|e| fail("quick", e.to_string()))?;
        latencies.push(begun.elapsed());
        if !quick.success() || quick.stdout.bytes != format!("{text}\n").as_bytes() {
            return Err(fail("quick", format!("{quick:?}")));
        }
    }

    let big = rt
        .execute(
            ExecCommand::new(format!(
                "head -c {large} /dev/zero | tr '\\0' 'z'; echo -n tail >&2"
            ))
            .wall_timeout(Duration::from_secs(120)),
        )
        .await
        .map_err(|e| fail("large", e.to_string()))?;
    if big.stdout.total_bytes != large
        || big.stdout.bytes.len() as u64 != large
        || big.stderr.bytes != b"tail"
    {
        return Err(fail(
            "large",
            format!(
                "{} of {} bytes, stderr {:?}, status {:?}",
                big.stdout.bytes.len(),
                big.stdout.total_bytes,
                big.stderr.lossy(),
                big.status
            ),
        ));
    }

    // Timeouts count from when the command runs, so even a loaded engine
    // gets to print `before`; the shell itself still needs the CPU for
    // that, which on a 2-core machine running many sessions and other
    // tests can take longer than a few hundred milliseconds.
    let timed = rt
        .execute(
            ExecCommand::new("echo before; sleep 60 & sleep 60")
                .wall_timeout(Duration::from_secs(2)),
        )
        .await
        .map_err(|e| fail("timeout", e.to_string()))?;
    if timed.status != ExecStatus::TimedOut || timed.stdout.bytes != b"before\n" {
        return Err(fail("timeout", format!("{timed:?}")));
    }

    let mut stream = rt
        .stream(ExecCommand::new("echo ready; sleep 60").wall_timeout(Duration::from_secs(120)))
        .await
        .map_err(|e| fail("kill", e.to_string()))?;
    match stream.next().await {
        Some(Event::Stdout(bytes)) if bytes == b"ready\n"[..] => {}
        other => return Err(fail("kill", format!("first event {other:?}"))),
    }
    rt.kill().await.map_err(|e| fail("kill", e.to_string()))?;
    let killed = stream.finish().await;
    if killed.exit_code == 0 || killed.stdout.bytes != b"ready\n" {
        return Err(fail("kill", format!("{killed:?}")));
    }

    session
        .close()
        .await
        .map_err(|e| fail("close", e.to_string()))?;
    Ok(latencies)
}

/// Pids of live processes whose environment carries
/// `BERTH_SOAK_RUN=<run_id>` (host-visible processes only: the local
/// backend's).
pub fn processes_of_run(run_id: &str) -> Vec<u32> {
    let marker = format!("BERTH_SOAK_RUN={run_id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                !s.lines()
                    .any(|l| l.starts_with("State:") && (l.contains("Z (") || l.contains("X (")))
            });
            alive
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()))
        })
        .collect()
}

/// This process's peak resident set size in bytes (`VmHWM`).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
