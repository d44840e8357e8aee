//! Closed output: `berth … | head -1` ends berth at once and quietly.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader is gone fails
//! with `EPIPE` instead of killing berth. Every command treats that as the
//! end: the failed write's error reaches `main`, which then exits with
//! [`CLOSED`] (128 + SIGPIPE, the status a shell reports for a program
//! SIGPIPE killed) and prints nothing, since nobody reads. A `println!`
//! or `eprintln!` that fails panics instead; [`install_panic_net`] turns
//! exactly that panic into the same quiet exit, so no closed pipe ever
//! ends berth with a panic message and status 101.

use std::io::{self, Write as _};

use crate::ExitCode;

/// berth's exit status when its stdout (or stderr) was closed before it
/// finished writing.
pub(crate) const CLOSED: ExitCode = ExitCode(128 + libc::SIGPIPE as u8);

/// Whether `err` is a write into a closed stdout or stderr: the error says
/// "broken pipe" and one of the two has no reader any more.
pub(crate) fn is_closed_output(err: &anyhow::Error) -> bool {
    let broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|err| err.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(io::ErrorKind::BrokenPipe)
    });
    broken_pipe && (has_no_reader(libc::STDOUT_FILENO) || has_no_reader(libc::STDERR_FILENO))
}

/// Whether writing to `fd` can reach nobody: a pipe or FIFO whose readers
/// are all gone (poll says `POLLERR`), or a socket or terminal hung up.
fn has_no_reader(fd: i32) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout; only `revents` is written.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 1 && poll.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Makes the panic of a `print!`-family macro whose stream is closed exit
/// quietly with [`CLOSED`]; every other panic reports as before.
pub(crate) fn install_panic_net() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // `failed printing to stdout: Broken pipe (os error 32)`
        if message.starts_with("failed printing to std")
            && message.ends_with(&format!("(os error {})", libc::EPIPE))
        {
            std::process::exit(i32::from(CLOSED.0));
        }
        default(info);
    }));
}

/// Writes a line to stderr, ignoring failure (a closed stderr must not end
/// berth with a panic).
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(line);
    let _ = err.write_all(b"\n");
}

/// Writes a line to stderr as [`say`] does, waiting for the write at most
/// `patience`: a stderr that is a full pipe nobody reads (or whose lock a
/// write stuck on it holds) would otherwise keep berth from exiting. The
/// line is dropped then, and the writing thread ends with the process.
pub(crate) fn say_within(line: String, patience: std::time::Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    let writer = std::thread::Builder::new().spawn(move || {
        say(format_args!("{line}"));
        let _ = done.send(());
    });
    if writer.is_ok() {
        let _ = finished.recv_timeout(patience);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_without_reader_is_closed_output() {
        let mut fds = [0; 2];
        // SAFETY: room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert!(!has_no_reader(fds[1]));
        // SAFETY: closing the read end this test made.
        unsafe { libc::close(fds[0]) };
        assert!(has_no_reader(fds[1]));
        // SAFETY: closing the write end this test made.
        unsafe { libc::close(fds[1]) };
    }
}
