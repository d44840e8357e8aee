//! Samples and their order statistics, and the alternation that keeps a
//! measurement and its floor under the same conditions.

use std::time::Duration;

/// Wall times of repeated runs of one operation.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    /// Collects `times` (in any order).
    pub fn new(mut times: Vec<Duration>) -> Samples {
        times.sort_unstable();
        Samples { sorted: times }
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `p`-th percentile (0–100) by nearest rank; zero when empty.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// The median (the mean of the two middle samples for an even count).
    pub fn median(&self) -> Duration {
        let n = self.sorted.len();
        match n {
            0 => Duration::ZERO,
            _ if n % 2 == 1 => self.sorted[n / 2],
            _ => (self.sorted[n / 2 - 1] + self.sorted[n / 2]) / 2,
        }
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Duration {
        self.percentile(90.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }

    /// The fastest sample.
    pub fn min(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    /// `median p90 p99 (n)` for a detail line.
    pub fn summary(&self) -> String {
        format!(
            "median {} p90 {} p99 {} (n={})",
            fmt_duration(self.median()),
            fmt_duration(self.p90()),
            fmt_duration(self.p99()),
            self.len()
        )
    }
}

/// How many runs of each side, in which blocks.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Untimed runs of each side first (caches, lazy initialisation).
    pub warmup: usize,
    /// Timed runs of each side.
    pub iterations: usize,
    /// Runs of one side before switching to the next, so slow drift in the
    /// machine's load falls on every side alike.
    pub block: usize,
}

impl Schedule {
    /// The order of runs: `(side, timed)` pairs, warm-up first, then the
    /// timed runs in alternating blocks of `block` per side.
    pub fn order(&self, sides: usize) -> Vec<(usize, bool)> {
        let mut order = Vec::new();
        for _ in 0..self.warmup {
            order.extend((0..sides).map(|side| (side, false)));
        }
        let block = self.block.max(1);
        let mut done = 0;
        while done < self.iterations {
            let n = block.min(self.iterations - done);
            for side in 0..sides {
                order.extend(std::iter::repeat_n((side, true), n));
            }
            done += n;
        }
        order
    }
}

/// A duration with three significant digits and a fitting unit.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{} µs", sig3(ns / 1e3))
    } else if ns < 1e9 {
        format!("{} ms", sig3(ns / 1e6))
    } else {
        format!("{} s", sig3(ns / 1e9))
    }
}

/// A byte count in MiB (or KiB below one MiB).
pub fn fmt_bytes(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", sig3(bytes as f64 / 1024.0))
    } else {
        format!("{} MiB", sig3(bytes as f64 / (1u64 << 20) as f64))
    }
}

/// A rate in bytes per second, as GiB/s or MiB/s.
pub fn fmt_rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= (1u64 << 30) as f64 {
        format!("{} GiB/s", sig3(bytes_per_sec / (1u64 << 30) as f64))
    } else {
        format!("{} MiB/s", sig3(bytes_per_sec / (1u64 << 20) as f64))
    }
}

/// Three significant digits, without a needless fraction.
pub fn sig3(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn order_statistics_by_nearest_rank() {
        let s = Samples::new((1..=100).rev().map(ms).collect());
        assert_eq!(s.median(), (ms(50) + ms(51)) / 2);
        assert_eq!(s.p90(), ms(90));
        assert_eq!(s.p99(), ms(99));
        assert_eq!(s.min(), ms(1));
        let odd = Samples::new(vec![ms(3), ms(1), ms(2)]);
        assert_eq!(odd.median(), ms(2));
        assert_eq!(odd.p99(), ms(3));
        assert_eq!(Samples::default().median(), Duration::ZERO);
    }

    #[test]
    fn schedule_warms_up_then_alternates_blocks() {
        let order = Schedule {
            warmup: 1,
            iterations: 5,
            block: 2,
        }
        .order(2);
        let sides: Vec<usize> = order.iter().map(|(side, _)| *side).collect();
        assert_eq!(sides, [0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1]);
        assert_eq!(order.iter().filter(|(_, timed)| !timed).count(), 2);
        assert_eq!(
            order
                .iter()
                .filter(|(side, timed)| *timed && *side == 1)
                .count(),
            5
        );
    }

    #[test]
    fn units() {
        assert_eq!(fmt_duration(Duration::from_nanos(1_234_000)), "1.23 ms");
        assert_eq!(fmt_duration(Duration::from_micros(456)), "456 µs");
        assert_eq!(fmt_bytes(3 << 20), "3.00 MiB");
        assert_eq!(fmt_rate(2.5 * (1u64 << 30) as f64), "2.50 GiB/s");
    }
}
