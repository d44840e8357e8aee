//! `berth run`'s standard input: forwarded to the command as it arrives.
//!
//! A pipe or file on berth's stdin is forwarded; a terminal only with
//! `-i/--interactive` (a command must not wait on a terminal nobody meant
//! it to read). A thread reads berth's stdin in chunks and hands them to
//! the command's [`StdinStream`], whose bounded channel makes the thread
//! wait while the command does not read: input of any size flows in
//! bounded memory, while output flows the other way. The end of berth's
//! stdin closes the command's.
//!
//! A backend that takes stdin only whole (it claims `stdin` but not
//! `stdin_streaming`: a plugin built before streamed stdin) gets all of it
//! read first, and berth says so; a backend that takes no stdin at all
//! gets none, and berth says so when there was some to give.

use std::io::{IsTerminal as _, Read as _};

use bytes::Bytes;
use session_core::runtime::{ExecCommand, Runtime, StdinSender, StdinStream};

/// How much one read of berth's stdin takes at most.
const CHUNK: usize = 64 * 1024;

/// What berth's stdin is, and whether it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// Forwarded to the command.
    Forward,
    /// A terminal, not forwarded without `-i`.
    Terminal,
    /// Nothing to read (closed, or `/dev/null`-like).
    Nothing,
}

impl Input {
    /// Looks at berth's stdin.
    pub(crate) fn decide(interactive: bool) -> Input {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return if interactive {
                Input::Forward
            } else {
                Input::Terminal
            };
        }
        match stdin_kind() {
            Some(Kind::Data) => Input::Forward,
            // `/dev/null` and other devices: forwarding them would say
            // nothing, and a backend that takes no stdin has no reason to
            // warn.
            Some(Kind::Device) => {
                if interactive {
                    Input::Forward
                } else {
                    Input::Nothing
                }
            }
            None => Input::Nothing,
        }
    }
}

enum Kind {
    /// A pipe, a file or a socket.
    Data,
    /// A character or block device.
    Device,
}

/// What fd 0 is; `None` when it is closed.
fn stdin_kind() -> Option<Kind> {
    // SAFETY: fstat writes into the zeroed struct it is given.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is only looked at; a closed one fails with EBADF.
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        return None;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR | libc::S_IFBLK => Some(Kind::Device),
        _ => Some(Kind::Data),
    }
}

/// Gives `cmd` berth's stdin as `runtime` can take it, or says why it
/// cannot. Reading everything first (for a runtime that takes stdin only
/// whole) runs on a thread of its own; the returned future ends when it is
/// read. The runtime's capabilities are asked for only when there is
/// stdin to give.
pub(crate) async fn attach(
    cmd: &mut ExecCommand,
    input: Input,
    runtime: &dyn Runtime,
) -> anyhow::Result<()> {
    if input != Input::Forward {
        return Ok(());
    }
    let backend = runtime.backend_type();
    let capabilities = runtime.capabilities();
    if capabilities.stdin_streaming {
        let (sender, stream) = StdinStream::channel();
        start_reader(sender)?;
        cmd.stdin_stream = Some(stream);
    } else if capabilities.stdin {
        tracing::warn!(
            "the `{backend}` backend takes stdin only whole (it does not claim \
             stdin_streaming): berth reads all of its stdin before the command starts"
        );
        let (done, whole) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("berth-stdin".into())
            .spawn(move || {
                let mut all = Vec::new();
                let read = std::io::stdin().lock().read_to_end(&mut all).map(|_| all);
                let _ = done.send(read);
            })?;
        let all = whole
            .await
            .map_err(|_| anyhow::anyhow!("reading stdin stopped"))?
            .map_err(|err| anyhow::Error::new(err).context("reading stdin"))?;
        cmd.stdin = Some(all);
    } else if stdin_kind().is_some_and(|kind| matches!(kind, Kind::Data)) {
        tracing::warn!(
            "the `{backend}` backend does not pass stdin to commands: the command's stdin is \
             empty"
        );
    }
    Ok(())
}

/// Starts the thread that reads berth's stdin into `sender` until its end
/// (then the command's stdin is closed) or until nobody reads any more. It
/// is not joined: blocked on a terminal or an idle pipe, it ends with
/// berth.
fn start_reader(sender: StdinSender) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("berth-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = vec![0u8; CHUNK];
            loop {
                match stdin.read(&mut buffer) {
                    Ok(0) => return,
                    Ok(n) => {
                        if !sender.blocking_send(Bytes::copy_from_slice(&buffer[..n])) {
                            return;
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        tracing::warn!(
                            "reading stdin failed: {err}; the command's stdin ends here"
                        );
                        return;
                    }
                }
            }
        })
        .map(drop)
}
