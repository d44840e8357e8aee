//! What the figures were measured on, for the report's header.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

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
