//! What a row reports: berth's figure, the floor measured beside it, the
//! target and whether it was met.

use std::fmt::Write as _;
use std::time::Duration;

use crate::stats::{fmt_bytes, fmt_duration, fmt_rate, sig3};

/// One measured quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A wall time (a median, unless the row says otherwise).
    Time(Duration),
    /// Bytes per second.
    Rate(f64),
    /// A size in bytes (peak memory).
    Bytes(u64),
    /// Things done per second (sessions, processes).
    PerSecond(f64),
}

impl Value {
    fn scalar(self) -> f64 {
        match self {
            Value::Time(d) => d.as_secs_f64(),
            Value::Rate(r) => r,
            Value::Bytes(b) => b as f64,
            Value::PerSecond(r) => r,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Time(d) => f.write_str(&fmt_duration(*d)),
            Value::Rate(r) => f.write_str(&fmt_rate(*r)),
            Value::Bytes(b) => f.write_str(&fmt_bytes(*b)),
            Value::PerSecond(r) => write!(f, "{}/s", sig3(*r)),
        }
    }
}

/// A row's target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// berth ÷ floor must not exceed this.
    RatioAtMost(f64),
    /// berth ÷ floor must reach at least this (throughputs).
    RatioAtLeast(f64),
    /// berth − floor must not exceed this.
    OverFloorAtMost(Duration),
    /// berth's time must not exceed this, whatever the floor.
    TimeAtMost(Duration),
    /// berth's size must not exceed this.
    BytesAtMost(u64),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::RatioAtMost(r) => write!(f, "≤ {r}×"),
            Target::RatioAtLeast(r) => write!(f, "≥ {r}×"),
            Target::OverFloorAtMost(d) => write!(f, "≤ floor + {}", fmt_duration(*d)),
            Target::TimeAtMost(d) => write!(f, "≤ {}", fmt_duration(*d)),
            Target::BytesAtMost(b) => write!(f, "≤ {}", fmt_bytes(*b)),
        }
    }
}

/// One line of the results table, with the detail lines that explain it.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub row: String,
    /// berth's figure.
    pub berth: Value,
    /// The floor measured in the same run, when the row has one.
    pub floor: Option<Value>,
    /// The target.
    pub target: Target,
    /// Spread, breakdowns and anything else needed to read the figure.
    pub details: Vec<String>,
}

impl Figure {
    /// A figure without a floor or details yet.
    pub fn new(row: impl Into<String>, berth: Value, target: Target) -> Figure {
        Figure {
            row: row.into(),
            berth,
            floor: None,
            target,
            details: Vec::new(),
        }
    }

    /// Sets the floor.
    #[must_use]
    pub fn floor(mut self, floor: Value) -> Figure {
        self.floor = Some(floor);
        self
    }

    /// Adds a detail line.
    #[must_use]
    pub fn detail(mut self, line: impl Into<String>) -> Figure {
        self.details.push(line.into());
        self
    }

    /// berth ÷ floor, when there is a floor.
    pub fn ratio(&self) -> Option<f64> {
        let floor = self.floor?.scalar();
        (floor > 0.0).then(|| self.berth.scalar() / floor)
    }

    /// berth − floor for times, when there is a floor.
    pub fn over_floor(&self) -> Option<Duration> {
        match (self.berth, self.floor?) {
            (Value::Time(b), Value::Time(f)) => Some(b.saturating_sub(f)),
            _ => None,
        }
    }

    /// Whether the target is met; `None` when the figures cannot say (a
    /// ratio target without a floor).
    pub fn passed(&self) -> Option<bool> {
        match self.target {
            Target::RatioAtMost(max) => self.ratio().map(|r| r <= max),
            Target::RatioAtLeast(min) => self.ratio().map(|r| r >= min),
            Target::OverFloorAtMost(max) => self.over_floor().map(|d| d <= max),
            Target::TimeAtMost(max) => match self.berth {
                Value::Time(d) => Some(d <= max),
                _ => None,
            },
            Target::BytesAtMost(max) => match self.berth {
                Value::Bytes(b) => Some(b <= max),
                _ => None,
            },
        }
    }

    /// The comparison column: a ratio, or the excess over the floor for
    /// rows whose target is an excess.
    pub fn comparison(&self) -> String {
        match self.target {
            Target::OverFloorAtMost(_) => self
                .over_floor()
                .map_or_else(|| "—".to_owned(), |d| format!("+{}", fmt_duration(d))),
            _ => self
                .ratio()
                .map_or_else(|| "—".to_owned(), |r| format!("{}×", sig3(r))),
        }
    }

    /// `pass`, `MISS` or `—`.
    pub fn verdict(&self) -> &'static str {
        match self.passed() {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "—",
        }
    }
}

/// The results as a Markdown table.
pub fn markdown_table(figures: &[Figure]) -> String {
    let mut out = String::new();
    out.push_str("| row | berth | floor | ratio | target | result |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for fig in figures {
        let floor = fig.floor.map_or_else(|| "—".to_owned(), |f| f.to_string());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            fig.row,
            fig.berth,
            floor,
            fig.comparison(),
            fig.target,
            fig.verdict()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_target() {
        let ms = Duration::from_millis;
        let ratio = Figure::new("r", Value::Time(ms(3)), Target::RatioAtMost(1.5))
            .floor(Value::Time(ms(2)));
        assert_eq!(ratio.passed(), Some(true));
        assert_eq!(ratio.comparison(), "1.50×");
        let over = Figure::new(
            "o",
            Value::Time(ms(5)),
            Target::OverFloorAtMost(Duration::from_millis(1)),
        )
        .floor(Value::Time(ms(3)));
        assert_eq!(over.passed(), Some(false));
        assert_eq!(over.comparison(), "+2.00 ms");
        let rate =
            Figure::new("t", Value::Rate(8.0), Target::RatioAtLeast(0.8)).floor(Value::Rate(10.0));
        assert_eq!(rate.verdict(), "pass");
        let bytes = Figure::new("m", Value::Bytes(65 << 20), Target::BytesAtMost(64 << 20));
        assert_eq!(bytes.verdict(), "MISS");
        let lone = Figure::new("l", Value::Time(ms(1)), Target::RatioAtMost(1.0));
        assert_eq!(lone.verdict(), "—");
        assert!(
            markdown_table(&[ratio]).contains("| r | 3.00 ms | 2.00 ms | 1.50× | ≤ 1.5× | pass |")
        );
    }
}
