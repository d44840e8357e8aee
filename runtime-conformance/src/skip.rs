//! Tests that cannot run on this machine say so, and are counted.
//!
//! A test that returns early because something it needs is missing (a
//! Docker Engine, root, a cgroup hierarchy, a capability the backend does
//! not claim) still passes as far as the test runner knows. [`record`]
//! prints `skipped: WHY` on stderr and, when `$BERTH_TEST_SKIP_LOG` names
//! a file, appends one line to it: the test's name (its thread's), a tab,
//! why. `cargo xtask test` sets the variable and reports the skips and
//! their reasons after the run, so a summary never counts a skipped test
//! as a passed one.

use std::io::Write as _;

/// The variable naming the file skips are appended to.
pub const SKIP_LOG_ENV: &str = "BERTH_TEST_SKIP_LOG";

/// Reports that the running test is skipped, and why (one line).
#[allow(
    clippy::print_stderr,
    reason = "a skipped test says why where its output is shown"
)]
pub fn record(why: &str) {
    let why = why.replace(['\n', '\t'], " ");
    eprintln!("skipped: {why}");
    let Some(log) = std::env::var_os(SKIP_LOG_ENV) else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    // One write of one short line, appended: concurrent test processes
    // never interleave within a line.
    let line = format!("{test}\t{why}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(err) = written {
        eprintln!(
            "cannot record the skip in {}: {err}",
            std::path::Path::new(&log).display()
        );
    }
}

/// [`record`] with `format!` arguments.
#[macro_export]
macro_rules! skipped {
    ($($arg:tt)*) => {
        $crate::skip::record(&format!($($arg)*))
    };
}
