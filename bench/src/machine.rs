//! What the figures were measured on, for the report's header.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The machine and the moment of a run.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// The CPU's model name, when `/proc/cpuinfo` says.
    pub cpu_model: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// Today's date (UTC), `YYYY-MM-DD`.
    pub date: String,
    /// Compilers running beside the benchmark, which make figures noisy.
    pub busy: Vec<String>,
}

impl Machine {
    /// Looks the machine up.
    pub fn probe() -> Machine {
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            date: today(),
            busy: running_compilers(),
        }
    }
}

/// The UTC date, from days since the epoch (civil-from-days).
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Watches, twice a second on a thread of its own, for compilers running
/// beside the benchmark, so a row measured under someone else's build says
/// so. Stops when dropped.
#[derive(Debug)]
pub struct BusyWatch {
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl BusyWatch {
    /// Starts watching.
    pub fn start() -> BusyWatch {
        let seen = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    seen.fetch_max(running_compilers().len(), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(500));
                }
            })
        };
        BusyWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The most compilers seen at once since the last call (or the start),
    /// and starts counting afresh.
    pub fn take(&self) -> usize {
        self.seen
            .swap(running_compilers().len(), Ordering::Relaxed)
            .max(running_compilers().len())
    }
}

impl Drop for BusyWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// CPU time counters at one moment: the whole machine's busy time and this
/// process's own (its reaped children included), in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    machine_busy: u64,
    machine_total: u64,
    own: u64,
}

impl CpuTimes {
    /// Reads `/proc/stat` and `/proc/self/stat`; zeros when unreadable.
    pub fn now() -> CpuTimes {
        let (machine_busy, machine_total) = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| {
                let fields: Vec<u64> = text
                    .lines()
                    .next()?
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal ...
                let total: u64 = fields.iter().take(8).sum();
                let idle = fields.get(3)? + fields.get(4)?;
                Some((total - idle, total))
            })
            .unwrap_or((0, 0));
        // utime stime cutime cstime are fields 14–17; the command name
        // (field 2) may hold spaces, so count from its closing parenthesis.
        let own = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| {
                let rest = &text[text.rfind(')')? + 1..];
                let fields: Vec<u64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(4)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                Some(fields.iter().sum())
            })
            .unwrap_or(0);
        CpuTimes {
            machine_busy,
            machine_total,
            own,
        }
    }

    /// The share of the machine's CPUs (0–1) busy with work other than this
    /// process and its children since `earlier`. Kernel work done on this
    /// process's behalf in other threads (file-system journalling,
    /// write-back) counts as other work.
    pub fn others_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.machine_total.saturating_sub(earlier.machine_total);
        if total == 0 {
            return 0.0;
        }
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy);
        let own = self.own.saturating_sub(earlier.own);
        busy.saturating_sub(own) as f64 / total as f64
    }
}

/// Waits until the machine has been quiet for `quiet_for`: no `rustc`
/// running and less than a quarter of the CPUs busy with other work.
/// Returns `false` if that has not happened after `give_up`.
pub fn wait_for_quiet(quiet_for: Duration, give_up: Duration) -> bool {
    let start = Instant::now();
    let mut quiet_since = Instant::now();
    loop {
        let before = CpuTimes::now();
        thread::sleep(Duration::from_secs(1));
        let others = CpuTimes::now().others_since(&before);
        if !running_compilers().is_empty() || others > 0.25 {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= quiet_for {
            return true;
        }
        if start.elapsed() > give_up {
            return false;
        }
    }
}

/// `rustc` processes running now (other builds on a shared machine).
fn running_compilers() -> Vec<String> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| {
            let comm = fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "rustc")
                .then(|| format!("rustc (pid {})", entry.file_name().to_string_lossy()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
