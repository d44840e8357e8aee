//! The terminal: whether to colour, and a progress line for long steps.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Whether stderr is a terminal that may be coloured: it is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>).
pub(crate) fn stderr_colour() -> bool {
    std::io::stderr().is_terminal() && no_colour_unset()
}

/// Whether stdout is a terminal that may be coloured.
pub(crate) fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && no_colour_unset()
}

fn no_colour_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Wraps `text` in an ANSI colour when `enabled`.
pub(crate) fn paint(text: &str, colour: Colour, enabled: bool) -> String {
    if enabled {
        format!("\x1b[{}m{text}\x1b[0m", colour as u8)
    } else {
        text.to_owned()
    }
}

/// The few colours berth uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Colour {
    Red = 31,
    Green = 32,
}

/// How long a step runs before its progress line appears: quick steps stay
/// silent.
const SHOW_AFTER: Duration = Duration::from_millis(700);
const REFRESH: Duration = Duration::from_millis(200);

/// A one-line progress indicator on stderr for a step that may take long
/// (`snapshotting big-dir… 41.2 MiB, 6 s`). Shown only when stderr is a
/// terminal, and only once the step has run for a moment; cleared when
/// dropped.
pub(crate) struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing `label`; `bytes`, when given, is asked for a byte
    /// count to show at each refresh.
    pub(crate) fn start(label: String, bytes: Option<Box<dyn Fn() -> u64 + Send>>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let started = Instant::now();
            if stopped.recv_timeout(SHOW_AFTER) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            loop {
                let elapsed = started.elapsed().as_secs();
                let line = match &bytes {
                    Some(bytes) => format!("{label}… {}, {elapsed} s", human_bytes(bytes())),
                    None => format!("{label}… {elapsed} s"),
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                drop(err);
                if stopped.recv_timeout(REFRESH) != Err(mpsc::RecvTimeoutError::Timeout) {
                    break;
                }
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        });
        Progress {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `1.5 KiB`, `41.2 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The total size of the files under `dir` (for progress on an archive
/// being written there).
pub(crate) fn size_of_tree(dir: &std::path::Path) -> u64 {
    // A list of directories still to visit, not recursion: how deep the
    // tree goes decides nothing about the stack.
    let mut pending = vec![dir.to_path_buf()];
    let mut total = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }

    #[test]
    fn paint_only_when_enabled() {
        assert_eq!(paint("ok", Colour::Green, false), "ok");
        assert_eq!(paint("ok", Colour::Green, true), "\x1b[32mok\x1b[0m");
    }
}
