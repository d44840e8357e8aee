//! The cases. Each is an `async fn(&CaseContext) -> CaseResult`, listed in
//! `__with_cases!` (in `lib.rs`) with the rule of the contract document it
//! checks and the capability it needs; those at the trust boundary
//! (descriptors, set-id files, limits, processes that try to outlive their
//! command) live in `boundary`.
//!
//! No case carries a process id from one command to another: a backend may
//! give every command a pid namespace of its own, where pids repeat. What
//! must stop is watched through files it would keep writing, or found by a
//! command line no other process has.

use std::time::Duration;

use bytes::Bytes;
use session_core::Error;
use session_core::runtime::{
    Capabilities, Event, ExecCommand, ExecResult, ExecStatus, Runtime, RuntimeStatus, StdinStream,
};
use session_core::session::SpawnOptions;
use session_core::spec::Mode;

use crate::{Case, CaseContext, CaseResult};

/// Fails the case with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

mod boundary;

use self::boundary::{
    Escapees, cpu_limit_holds_or_is_refused, escapees_die_at_a_timeout,
    escapees_die_with_cleanup_after_their_command, escapees_die_with_cleanup_of_a_running_command,
    escapees_die_with_kill, memory_limit_holds_or_is_refused,
    only_standard_descriptors_reach_a_command, pids_limit_holds_or_is_refused,
    set_id_bits_do_not_cross_to_the_host,
};

fn always(_: &Capabilities) -> Result<(), &'static str> {
    Ok(())
}

fn needs_stdin(c: &Capabilities) -> Result<(), &'static str> {
    if c.stdin {
        Ok(())
    } else {
        Err("backend does not feed stdin")
    }
}

fn needs_stdin_streaming(c: &Capabilities) -> Result<(), &'static str> {
    if c.stdin_streaming {
        Ok(())
    } else {
        Err("backend does not stream stdin")
    }
}

fn needs_streaming(c: &Capabilities) -> Result<(), &'static str> {
    if c.live_streaming {
        Ok(())
    } else {
        Err("backend does not stream live")
    }
}

/// Live events, checked through a file the host writes into its workspace
/// while the command runs: only a runtime working in that very directory
/// can see it before the command ends.
fn needs_streaming_in_shared_workspace(c: &Capabilities) -> Result<(), &'static str> {
    needs_streaming(c)?;
    if c.shared_workspace {
        Ok(())
    } else {
        Err("commands work on a synchronised copy of the workspace")
    }
}

fn needs_timeouts(c: &Capabilities) -> Result<(), &'static str> {
    if c.timeouts {
        Ok(())
    } else {
        Err("backend does not enforce timeouts")
    }
}

fn needs_signals(c: &Capabilities) -> Result<(), &'static str> {
    if c.signals {
        Ok(())
    } else {
        Err("backend does not report signals")
    }
}

fn needs_output_limit(c: &Capabilities) -> Result<(), &'static str> {
    if c.output_limit {
        Ok(())
    } else {
        Err("backend does not bound output")
    }
}

/// Every case, in report order.
pub fn all_cases() -> Vec<Case> {
    crate::__with_cases! { __case_list {} }
}

/// The case called `name`.
pub fn case_named(name: &str) -> Option<Case> {
    all_cases().into_iter().find(|case| case.name == name)
}

async fn exec(rt: &dyn Runtime, cmd: ExecCommand) -> Result<ExecResult, String> {
    rt.execute(cmd)
        .await
        .map_err(|err| format!("execute failed: {err}"))
}

async fn run(rt: &dyn Runtime, command: &str) -> Result<ExecResult, String> {
    exec(
        rt,
        ExecCommand::new(command).wall_timeout(Duration::from_secs(60)),
    )
    .await
}

async fn close(session: session_core::session::Session) -> CaseResult {
    session
        .close()
        .await
        .map_err(|err| format!("close failed: {err}"))
}

fn describe(result: &ExecResult) -> String {
    format!(
        "status {:?}, exit {}, stdout {:?}, stderr {:?}",
        result.status,
        result.exit_code,
        truncate(&result.stdout_lossy()),
        truncate(&result.stderr_lossy())
    )
}

fn truncate(text: &str) -> String {
    if text.len() > 200 {
        format!("{}…", &text[..text.floor_char_boundary(200)])
    } else {
        text.to_owned()
    }
}

async fn exit_code_is_reported(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let ok = run(rt.as_ref(), "true").await?;
    ensure!(
        ok.success() && ok.exit_code == 0 && ok.signal.is_none(),
        "true: {}",
        describe(&ok)
    );
    let failed = run(rt.as_ref(), "exit 42").await?;
    ensure!(
        failed.status == ExecStatus::Exited && failed.exit_code == 42 && !failed.timed_out,
        "exit 42: {}",
        describe(&failed)
    );
    close(session).await
}

async fn signal_is_reported(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = run(rt.as_ref(), "kill -TERM $$").await?;
    ensure!(
        result.status == ExecStatus::Signaled
            && result.exit_code == -15
            && result.signal == Some(15),
        "kill -TERM $$: {}",
        describe(&result)
    );
    close(session).await
}

async fn stdout_and_stderr_are_separate(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = run(rt.as_ref(), "echo out; echo err >&2; echo out2").await?;
    ensure!(
        result.stdout.bytes == b"out\nout2\n",
        "stdout: {}",
        describe(&result)
    );
    ensure!(
        result.stderr.bytes == b"err\n",
        "stderr: {}",
        describe(&result)
    );
    close(session).await
}

async fn output_without_trailing_newline(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = run(rt.as_ref(), "printf 'no newline'; printf 'err' >&2").await?;
    ensure!(
        result.stdout.bytes == b"no newline",
        "stdout: {}",
        describe(&result)
    );
    ensure!(
        result.stderr.bytes == b"err",
        "stderr: {}",
        describe(&result)
    );
    close(session).await
}

async fn ten_mebibytes_of_output(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let size = 10 * 1024 * 1024;
    let result = run(
        rt.as_ref(),
        &format!("head -c {size} /dev/zero | tr '\\0' 'a'"),
    )
    .await?;
    ensure!(result.success(), "{}", describe(&result));
    ensure!(
        result.stdout.total_bytes == size
            && result.stdout.bytes.len() as u64 == size
            && !result.stdout.truncated,
        "got {} bytes kept of {} total (truncated: {})",
        result.stdout.bytes.len(),
        result.stdout.total_bytes,
        result.stdout.truncated
    );
    ensure!(
        result.stdout.bytes.iter().all(|b| *b == b'a'),
        "content changed"
    );
    close(session).await
}

async fn non_utf8_bytes_are_kept(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = run(rt.as_ref(), "printf '\\377\\376\\000\\200x'").await?;
    ensure!(
        result.stdout.bytes == [0xff, 0xfe, 0x00, 0x80, b'x'],
        "bytes: {:?}",
        result.stdout.bytes
    );
    ensure!(
        result.stdout_lossy().contains('\u{fffd}'),
        "lossy view has no replacement character"
    );
    close(session).await
}

async fn utf8_split_across_reads_is_kept(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    // The two halves of `é` are written 200 ms apart, so they arrive in
    // separate reads.
    let mut stream = rt
        .stream(
            ExecCommand::new("printf '\\303'; sleep 0.2; printf '\\251\\n'")
                .wall_timeout(Duration::from_secs(30)),
        )
        .await
        .map_err(|err| format!("stream: {err}"))?;
    let mut chunks = Vec::new();
    let mut result = None;
    while let Some(event) = stream.next().await {
        match event {
            Event::Stdout(bytes) => chunks.extend_from_slice(&bytes),
            Event::Stderr(_) => {}
            Event::Finished(r) => result = Some(r),
        }
    }
    let result = result.ok_or("no Finished event")?;
    ensure!(chunks == "é\n".as_bytes(), "streamed bytes: {chunks:?}");
    ensure!(
        result.stdout_lossy() == "é\n",
        "result: {}",
        describe(&result)
    );
    close(session).await
}

async fn stdin_reaches_cat(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let result = exec(
        rt.as_ref(),
        ExecCommand::new("cat")
            .stdin(input.clone())
            .wall_timeout(Duration::from_secs(60)),
    )
    .await?;
    ensure!(result.success(), "{}", describe(&result));
    ensure!(
        result.stdout.bytes == input,
        "cat returned {} bytes, expected {}",
        result.stdout.bytes.len(),
        input.len()
    );
    let ignored = exec(
        rt.as_ref(),
        ExecCommand::new("echo ignored")
            .stdin(vec![b'x'; 1 << 20])
            .wall_timeout(Duration::from_secs(60)),
    )
    .await?;
    ensure!(
        ignored.success() && ignored.stdout.bytes == b"ignored\n",
        "unread stdin: {}",
        describe(&ignored)
    );
    close(session).await
}

/// Streamed stdin: chunks reach the command while it runs, more of them
/// than any buffer on the way holds, and the stream's end closes its
/// stdin.
async fn stdin_streams_while_the_command_runs(ctx: &CaseContext) -> CaseResult {
    const MORE: usize = 4 << 20;
    let (session, rt) = ctx.runtime().await?;
    let (tx, stdin) = StdinStream::channel();
    let mut events = rt
        .stream(
            ExecCommand::new("IFS= read -r line; echo \"got $line\"; wc -c")
                .stdin_stream(stdin)
                .wall_timeout(Duration::from_secs(60)),
        )
        .await
        .map_err(|err| format!("stream: {err}"))?;
    ensure!(
        tx.send(Bytes::from_static(b"first\n")).await,
        "the stream's receiver is gone before the command read anything"
    );
    let mut stdout = Vec::new();
    let mut finished = None;
    if rt.capabilities().live_streaming {
        // The answer to the first line comes while the input is still
        // open: the chunk reached the command before the input ended.
        let answered = tokio::time::timeout(Duration::from_secs(30), async {
            while !stdout.starts_with(b"got first\n") {
                match events.next().await {
                    Some(Event::Stdout(bytes)) => stdout.extend_from_slice(&bytes),
                    Some(Event::Stderr(_)) => {}
                    Some(Event::Finished(result)) => {
                        finished = Some(result);
                        break;
                    }
                    None => break,
                }
            }
        })
        .await;
        ensure!(
            answered.is_ok() && finished.is_none(),
            "the command did not answer its first line while its input was open (stdout so far: \
             {:?})",
            String::from_utf8_lossy(&stdout)
        );
    }
    let chunk = Bytes::from(vec![b'x'; 64 << 10]);
    for _ in 0..MORE / chunk.len() {
        ensure!(
            tx.send(chunk.clone()).await,
            "the command stopped taking stdin after {} bytes",
            stdout.len()
        );
    }
    // The end of the input: the command's stdin closes and `wc` ends.
    drop(tx);
    while let Some(event) = events.next().await {
        match event {
            Event::Stdout(bytes) => stdout.extend_from_slice(&bytes),
            Event::Stderr(_) => {}
            Event::Finished(result) => finished = Some(result),
        }
    }
    let result = finished.ok_or("no Finished event")?;
    ensure!(result.success(), "{}", describe(&result));
    let text = String::from_utf8_lossy(&stdout);
    let counted = text
        .strip_prefix("got first\n")
        .map(|rest| rest.trim().to_owned());
    ensure!(
        counted == Some(MORE.to_string()),
        "expected `got first` then {MORE} counted, got {text:?}"
    );

    // A command that never reads its stream ends anyway, and then nobody
    // reads the stream any more.
    let (tx, stdin) = StdinStream::channel();
    let result = exec(
        rt.as_ref(),
        ExecCommand::new("echo done")
            .stdin_stream(stdin)
            .wall_timeout(Duration::from_secs(60)),
    )
    .await?;
    ensure!(
        result.success() && result.stdout.bytes == b"done\n",
        "{}",
        describe(&result)
    );
    tx.closed().await;
    ensure!(
        !tx.send(Bytes::from_static(b"late")).await,
        "a finished command's stream still takes chunks"
    );
    close(session).await
}

async fn no_stdin_is_empty(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = run(rt.as_ref(), "cat; echo done").await?;
    ensure!(
        result.success() && result.stdout.bytes == b"done\n",
        "{}",
        describe(&result)
    );
    close(session).await
}

async fn env_precedence(ctx: &CaseContext) -> CaseResult {
    let mut session = ctx
        .session_with(Mode::Evaluation, |spec| {
            for key in ["A", "B", "C"] {
                spec.environment.env.insert(key.into(), "spec".into());
            }
        })
        .await?;
    let mut options = SpawnOptions::default();
    options.env.insert("B".into(), "spawn".into());
    options.env.insert("C".into(), "spawn".into());
    let rt = session
        .spawn(options)
        .await
        .map_err(|err| format!("spawn: {err}"))?;
    let result = exec(
        rt.as_ref(),
        ExecCommand::new("echo \"$A $B $C\"")
            .env("C", "command")
            .wall_timeout(Duration::from_secs(30)),
    )
    .await?;
    ensure!(
        result.stdout.bytes == b"spec spawn command\n",
        "{}",
        describe(&result)
    );
    close(session).await
}

async fn working_directory_is_the_workspace(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let root = session.workspace_path().map_err(|e| e.to_string())?;
    std::fs::write(root.join("from_host.txt"), "host\n").map_err(|e| e.to_string())?;
    let result = run(
        rt.as_ref(),
        "cat from_host.txt && echo written > from_command.txt",
    )
    .await?;
    ensure!(
        result.success() && result.stdout.bytes == b"host\n",
        "{}",
        describe(&result)
    );
    let written = std::fs::read_to_string(root.join("from_command.txt"))
        .map_err(|e| format!("reading back: {e}"))?;
    ensure!(
        written == "written\n",
        "file written by the command holds {written:?}"
    );
    close(session).await
}

async fn shell_syntax(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = exec(
        rt.as_ref(),
        ExecCommand::new(
            "X=1 && echo \"a$X\" | tr a b; false || echo or; echo $((2+3)); echo \"$GREETING\"",
        )
        .env("GREETING", "hello world")
        .wall_timeout(Duration::from_secs(30)),
    )
    .await?;
    ensure!(
        result.stdout.bytes == b"b1\nor\n5\nhello world\n",
        "{}",
        describe(&result)
    );
    close(session).await
}

async fn missing_command_fails_cleanly(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = run(rt.as_ref(), "nonexistent_cmd_for_berth").await?;
    let ok = match result.status {
        ExecStatus::SpawnFailed => true,
        ExecStatus::Exited => result.exit_code == 127 && !result.stderr.bytes.is_empty(),
        _ => false,
    };
    ensure!(ok, "{}", describe(&result));
    close(session).await
}

async fn events_are_live(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let root = session.workspace_path().map_err(|e| e.to_string())?;
    // The command prints, then waits for a file only the test creates after
    // seeing that output: with buffered events it could never finish.
    let mut stream = rt
        .stream(
            ExecCommand::new("echo first; while [ ! -e go ]; do sleep 0.02; done; echo second")
                .wall_timeout(Duration::from_secs(30)),
        )
        .await
        .map_err(|err| format!("stream: {err}"))?;
    match stream.next().await {
        Some(Event::Stdout(bytes)) if bytes == b"first\n"[..] => {}
        other => return Err(format!("first event: {other:?}")),
    }
    std::fs::write(root.join("go"), "").map_err(|e| e.to_string())?;
    let result = stream.finish().await;
    ensure!(
        result.success() && result.stdout.bytes == b"first\nsecond\n",
        "{}",
        describe(&result)
    );
    close(session).await
}

async fn stream_concatenation_equals_result(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let mut stream = rt
        .stream(
            ExecCommand::new(
                "i=0; while [ $i -lt 300 ]; do echo line $i; echo err $i >&2; i=$((i+1)); done",
            )
            .wall_timeout(Duration::from_secs(60)),
        )
        .await
        .map_err(|err| format!("stream: {err}"))?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut result = None;
    while let Some(event) = stream.next().await {
        match event {
            Event::Stdout(bytes) => out.extend_from_slice(&bytes),
            Event::Stderr(bytes) => err.extend_from_slice(&bytes),
            Event::Finished(r) => {
                ensure!(result.is_none(), "two Finished events");
                result = Some(r);
            }
        }
    }
    let result = result.ok_or("no Finished event")?;
    ensure!(
        out == result.stdout.bytes,
        "stdout events differ from the result"
    );
    ensure!(
        err == result.stderr.bytes,
        "stderr events differ from the result"
    );
    ensure!(
        out.starts_with(b"line 0\n") && out.ends_with(b"line 299\n"),
        "stdout incomplete"
    );
    close(session).await
}

/// Shell that starts a background loop appending a line to `file` every
/// 50 ms, and waits until the first line is there. The loop ends by itself
/// once it cannot append (the workspace is gone), so a backend that fails
/// to kill it leaves it running no longer than the case's session.
fn heartbeat(file: &str) -> String {
    format!(
        "( while echo . >> {file}; do sleep 0.05; done ) </dev/null >/dev/null 2>&1 & \
         while [ ! -s {file} ]; do sleep 0.01; done"
    )
}

/// Checks, from a later command of `rt`, that none of `files` grows any
/// more: each must hold something (its writer ran), and their sizes must
/// stay the same over three looks in a row, 200 ms apart, within 5 s (a
/// writer appends every 50 ms, so a live one adds a dozen lines over those
/// looks; the 5 s leave time for a kill to land).
///
/// A later command in the same runtime sees the files wherever the
/// runtime's commands run, and no process id is involved: the check holds
/// on a backend that gives each command a pid namespace of its own.
async fn files_stop_growing(rt: &dyn Runtime, files: &[&str]) -> CaseResult {
    let list = files.join(" ");
    let check = run(
        rt,
        &format!(
            "for f in {list}; do [ -s \"$f\" ] || {{ echo \"$f is empty: its writer never ran\"; \
             exit 2; }}; done; \
             sizes() {{ for f in {list}; do printf '%s ' \"$f=$(wc -c < \"$f\")\"; done; }}; \
             last=$(sizes); same=0; i=0; \
             while [ $i -lt 25 ]; do sleep 0.2; now=$(sizes); \
             if [ \"$now\" = \"$last\" ]; then same=$((same+1)); [ $same -ge 3 ] && exit 0; \
             else same=0; fi; last=$now; i=$((i+1)); done; \
             echo \"still growing after 5 s: $now\"; exit 1"
        ),
    )
    .await?;
    ensure!(
        check.success(),
        "a process the command started outlived it: {}",
        describe(&check)
    );
    Ok(())
}

/// The command a timeout case times out: a background loop (a grandchild
/// of the runtime), `started` once it runs, then a long sleep.
fn timed_out_command() -> String {
    format!("{}; echo started; sleep 30", heartbeat("bg.beat"))
}

async fn wall_timeout_kills_grandchildren(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = exec(
        rt.as_ref(),
        ExecCommand::new(timed_out_command()).wall_timeout(Duration::from_millis(500)),
    )
    .await?;
    ensure!(
        result.status == ExecStatus::TimedOut && result.timed_out,
        "{}",
        describe(&result)
    );
    ensure!(
        result.elapsed < Duration::from_secs(20),
        "returned after {:?}",
        result.elapsed
    );
    ensure!(
        result.stdout.bytes == b"started\n",
        "partial output lost: {}",
        describe(&result)
    );
    files_stop_growing(rt.as_ref(), &["bg.beat"]).await?;
    close(session).await
}

async fn idle_timeout_kills_grandchildren(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = exec(
        rt.as_ref(),
        ExecCommand::new(timed_out_command())
            .idle_timeout(Duration::from_millis(500))
            .wall_timeout(Duration::from_secs(60)),
    )
    .await?;
    ensure!(
        result.status == ExecStatus::IdleTimedOut && result.timed_out,
        "{}",
        describe(&result)
    );
    ensure!(
        result.stdout.bytes == b"started\n",
        "partial output lost: {}",
        describe(&result)
    );
    files_stop_growing(rt.as_ref(), &["bg.beat"]).await?;
    close(session).await
}

async fn output_limit_truncates_and_counts(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let result = exec(
        rt.as_ref(),
        ExecCommand::new("head -c 100000 /dev/zero | tr '\\0' 'x'; head -c 50 /dev/zero >&2")
            .output_limit(1000)
            .wall_timeout(Duration::from_secs(60)),
    )
    .await?;
    ensure!(result.success(), "{}", describe(&result));
    ensure!(
        result.stdout.truncated
            && result.stdout.total_bytes == 100_000
            && result.stdout.bytes.len() == 1000,
        "stdout kept {} of {} (truncated {})",
        result.stdout.bytes.len(),
        result.stdout.total_bytes,
        result.stdout.truncated
    );
    ensure!(
        !result.stderr.truncated && result.stderr.total_bytes == 50,
        "stderr: {:?}",
        result.stderr
    );
    close(session).await
}

async fn output_limit_spills_to_file(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let spill = ctx.scratch();
    let result = exec(
        rt.as_ref(),
        ExecCommand::new("head -c 100000 /dev/zero | tr '\\0' 'y'")
            .output_limit(1000)
            .spill_to(&spill)
            .wall_timeout(Duration::from_secs(60)),
    )
    .await?;
    let path = result
        .stdout
        .spill_path
        .clone()
        .ok_or_else(|| format!("no spill file: {}", describe(&result)))?;
    let spilled = std::fs::read(&path).map_err(|e| format!("reading the spill file: {e}"))?;
    ensure!(
        spilled.len() == 100_000 && spilled.iter().all(|b| *b == b'y'),
        "spill file holds {} bytes",
        spilled.len()
    );
    ensure!(
        result.stdout.bytes.len() == 1000,
        "kept {} bytes",
        result.stdout.bytes.len()
    );
    close(session).await
}

async fn kill_stops_a_running_command(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let mut stream = rt
        .stream(ExecCommand::new("echo ready; sleep 30").wall_timeout(Duration::from_secs(60)))
        .await
        .map_err(|err| format!("stream: {err}"))?;
    match stream.next().await {
        Some(Event::Stdout(bytes)) if bytes == b"ready\n"[..] => {}
        other => return Err(format!("first event: {other:?}")),
    }
    ensure!(
        matches!(rt.poll().await, RuntimeStatus::Running(_)),
        "poll does not say running"
    );
    rt.kill().await.map_err(|err| format!("kill: {err}"))?;
    let result = stream.finish().await;
    ensure!(
        matches!(result.status, ExecStatus::Signaled | ExecStatus::Lost) && result.exit_code != 0,
        "{}",
        describe(&result)
    );
    ensure!(
        result.elapsed < Duration::from_secs(20),
        "kill took {:?}",
        result.elapsed
    );
    rt.kill()
        .await
        .map_err(|err| format!("second kill: {err}"))?;
    let after = run(rt.as_ref(), "echo still usable").await?;
    ensure!(after.success(), "after kill: {}", describe(&after));
    close(session).await
}

/// Dropping a stream before its `Finished` event kills the command and
/// what it started: its shell and a background loop of its both append to
/// files, which must stop growing.
async fn dropped_stream_kills_the_command(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let mut stream = rt
        .stream(
            ExecCommand::new(format!(
                "{}; echo . >> shell.beat; echo ready; \
                 while echo . >> shell.beat; do sleep 0.05; done 2>/dev/null",
                heartbeat("child.beat")
            ))
            .wall_timeout(Duration::from_secs(60)),
        )
        .await
        .map_err(|err| format!("stream: {err}"))?;
    match stream.next().await {
        Some(Event::Stdout(bytes)) if bytes == b"ready\n"[..] => {}
        other => return Err(format!("first event: {other:?}")),
    }
    drop(stream);
    files_stop_growing(rt.as_ref(), &["child.beat", "shell.beat"]).await?;
    close(session).await
}

async fn cleanup_twice(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    rt.cleanup()
        .await
        .map_err(|err| format!("first cleanup: {err}"))?;
    rt.cleanup()
        .await
        .map_err(|err| format!("second cleanup: {err}"))?;
    ensure!(
        rt.poll().await == RuntimeStatus::Closed,
        "poll after cleanup: {:?}",
        rt.poll().await
    );
    match rt.execute(ExecCommand::new("true")).await {
        Err(Error::RuntimeClosed { .. }) => {}
        other => return Err(format!("execute after cleanup: {other:?}")),
    }
    close(session).await
}

/// Dropping a session (and its runtime) without closing it removes the
/// session's directory and kills what its commands left running: a
/// background process of a command that exited, found afterwards by its
/// distinctive command line on this host and from a fresh session's
/// runtime.
async fn drop_without_cleanup(ctx: &CaseContext) -> CaseResult {
    let lingering = Escapees::lingering();
    let mut session = ctx.session().await?;
    let first = session
        .spawn(SpawnOptions::default())
        .await
        .map_err(|e| format!("spawn: {e}"))?;
    let started = run(first.as_ref(), &lingering.start()).await?;
    ensure!(
        started.success() && started.stdout.bytes == b"started\n",
        "{}",
        describe(&started)
    );
    drop(first);
    // The session still holds the runtime; dropping the session drops both.
    let root = session.workspace_path().map_err(|e| e.to_string())?;
    drop(session);
    ensure!(
        !root.exists(),
        "workspace {} survived the dropped session",
        root.display()
    );
    ensure!(
        ctx.leftover_sessions().is_empty(),
        "session directory survived"
    );
    lingering.gone_from_host("the dropped session").await?;
    lingering.gone_in_a_fresh_runtime(ctx).await
}

async fn setup_runs_once_at_spawn(ctx: &CaseContext) -> CaseResult {
    let mut session = ctx
        .session_with(Mode::Evaluation, |spec| {
            spec.setup.commands = vec!["echo setup-out; echo once >> setup.log".into()];
            spec.setup.eval_commands = vec!["echo eval >> setup.log".into()];
        })
        .await?;
    let rt = session
        .spawn(SpawnOptions::default())
        .await
        .map_err(|e| format!("spawn: {e}"))?;
    let setup = rt.setup_output();
    ensure!(
        setup.commands.len() == 2,
        "setup ran {} commands",
        setup.commands.len()
    );
    ensure!(
        setup.commands[0].1.stdout.bytes == b"setup-out\n",
        "setup output: {:?}",
        setup.commands[0].1.stdout
    );
    for _ in 0..2 {
        let result = run(rt.as_ref(), "cat setup.log").await?;
        ensure!(
            result.stdout.bytes == b"once\neval\n",
            "setup ran again or not at all: {}",
            describe(&result)
        );
    }
    close(session).await
}

async fn setup_failure_fails_spawn(ctx: &CaseContext) -> CaseResult {
    let mut session = ctx
        .session_with(Mode::Evaluation, |spec| {
            spec.setup.commands = vec![
                "echo fine".into(),
                "echo broken >&2; exit 3".into(),
                "echo never > never".into(),
            ];
        })
        .await?;
    match session.spawn(SpawnOptions::default()).await {
        Err(Error::SetupFailed {
            command,
            exit_code,
            stderr,
            ..
        }) => {
            ensure!(exit_code == 3, "exit code {exit_code}");
            ensure!(command.contains("exit 3"), "command {command:?}");
            ensure!(stderr.contains("broken"), "stderr {stderr:?}");
        }
        Err(other) => return Err(format!("expected SetupFailed, got {other}")),
        Ok(_) => return Err("spawn succeeded despite a failing setup command".into()),
    }
    let root = session.workspace_path().map_err(|e| e.to_string())?;
    ensure!(
        !root.join("never").exists(),
        "setup went on after the failure"
    );
    close(session).await
}

async fn setup_failure_allowed(ctx: &CaseContext) -> CaseResult {
    let mut session = ctx
        .session_with(Mode::Evaluation, |spec| {
            spec.setup.commands = vec!["exit 4".into()];
            spec.setup.allow_failure = true;
        })
        .await?;
    let rt = session
        .spawn(SpawnOptions::default())
        .await
        .map_err(|e| format!("spawn: {e}"))?;
    let setup = rt.setup_output();
    ensure!(
        setup.commands.len() == 1 && setup.commands[0].1.exit_code == 4,
        "setup output: {setup:?}"
    );
    let result = run(rt.as_ref(), "echo usable").await?;
    ensure!(result.success(), "{}", describe(&result));
    close(session).await
}

async fn disable_setup_skips_it(ctx: &CaseContext) -> CaseResult {
    let mut session = ctx
        .session_with(Mode::Evaluation, |spec| {
            spec.setup.commands = vec!["exit 5".into()];
        })
        .await?;
    let rt = session
        .spawn(SpawnOptions {
            disable_setup: true,
            ..SpawnOptions::default()
        })
        .await
        .map_err(|e| format!("spawn: {e}"))?;
    ensure!(rt.setup_output().commands.is_empty(), "setup ran");
    let extra = session
        .spawn(SpawnOptions {
            extra_setup_command: Some("echo extra > extra.txt".into()),
            ..SpawnOptions::default()
        })
        .await;
    ensure!(
        matches!(extra, Err(Error::SetupFailed { .. })),
        "spec setup must still run with an extra command"
    );
    close(session).await
}

async fn runtime_usable_after_timeout(ctx: &CaseContext) -> CaseResult {
    let (session, rt) = ctx.runtime().await?;
    let timed_out = exec(
        rt.as_ref(),
        ExecCommand::new("sleep 30").wall_timeout(Duration::from_millis(300)),
    )
    .await?;
    ensure!(
        timed_out.status == ExecStatus::TimedOut,
        "{}",
        describe(&timed_out)
    );
    let next = run(rt.as_ref(), "echo next").await?;
    ensure!(
        next.success() && next.stdout.bytes == b"next\n",
        "{}",
        describe(&next)
    );
    close(session).await
}

async fn concurrent_runtimes_on_one_session(ctx: &CaseContext) -> CaseResult {
    let mut session = ctx.session().await?;
    let mut runtimes = Vec::new();
    for _ in 0..3 {
        runtimes.push(
            session
                .spawn(SpawnOptions::default())
                .await
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, rt) in runtimes.iter().enumerate() {
        let rt = std::sync::Arc::clone(rt);
        tasks.spawn(async move {
            let result = rt
                .execute(ExecCommand::new(format!(
                    "echo runtime-{i} > r{i}.txt; cat r{i}.txt"
                )))
                .await;
            (i, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.map_err(|e| format!("task: {e}"))?;
        let result = result.map_err(|e| format!("runtime {i}: {e}"))?;
        ensure!(
            result.stdout.bytes == format!("runtime-{i}\n").as_bytes(),
            "runtime {i}: {}",
            describe(&result)
        );
    }
    close(session).await
}

async fn asset_path_is_readable(ctx: &CaseContext) -> CaseResult {
    let assets_dir = ctx.scratch().join("assets");
    std::fs::create_dir_all(&assets_dir).map_err(|e| e.to_string())?;
    std::fs::write(assets_dir.join("data.txt"), "asset content\n").map_err(|e| e.to_string())?;
    let map = session_core::assets::AssetMap::from_yaml_str(
        "data: {path: data.txt, save_path: data/data.txt}",
    )
    .map_err(|e| e.to_string())?;
    let assets = map.resolve(&assets_dir).map_err(|e| e.to_string())?;
    let mut session = ctx
        .session_builder(|_| {})
        .assets(assets)
        .prepare()
        .await
        .map_err(|e| format!("prepare: {e}"))?;
    let rt = session
        .spawn(SpawnOptions::default())
        .await
        .map_err(|e| format!("spawn: {e}"))?;
    let value = serde_json::json!({"cmd": "cat {{static:data}}"});
    let resolved = session
        .resolve_static_placeholders(&value, rt.as_ref())
        .map_err(|e| format!("placeholders: {e}"))?;
    let command = resolved["cmd"]
        .as_str()
        .ok_or("placeholder result is not a string")?;
    let result = run(rt.as_ref(), command).await?;
    ensure!(
        result.stdout.bytes == b"asset content\n",
        "`{command}`: {}",
        describe(&result)
    );
    close(session).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract document, read from the repository.
    fn contract() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(crate::CONTRACT);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
    }

    /// Takes one claim back.
    type Deny = fn(&mut Capabilities);

    /// Every capability a case can be gated on, by its field name.
    const CAPABILITIES: [(&str, Deny); 7] = [
        ("signals", |c| c.signals = false),
        ("stdin", |c| c.stdin = false),
        ("stdin_streaming", |c| c.stdin_streaming = false),
        ("live_streaming", |c| c.live_streaming = false),
        ("shared_workspace", |c| c.shared_workspace = false),
        ("timeouts", |c| c.timeouts = false),
        ("output_limit", |c| c.output_limit = false),
    ];

    fn all_claimed() -> Capabilities {
        Capabilities {
            stdin: true,
            stdin_streaming: true,
            live_streaming: true,
            signals: true,
            timeouts: true,
            output_limit: true,
            concurrent_commands: true,
            usage: true,
            mounts: true,
            ports: true,
            network_isolation: true,
            memory_limit: true,
            cpu_limit: true,
            pids_limit: true,
            file_size_limit: true,
            shared_workspace: true,
        }
    }

    /// The capabilities `case` needs: those whose absence alone skips it.
    fn gates(case: &Case) -> Vec<&'static str> {
        assert!(
            (case.requires)(&all_claimed()).is_ok(),
            "{} is skipped with every capability claimed",
            case.name
        );
        CAPABILITIES
            .iter()
            .filter(|(_, deny)| {
                let mut capabilities = all_claimed();
                deny(&mut capabilities);
                (case.requires)(&capabilities).is_err()
            })
            .map(|(name, _)| *name)
            .collect()
    }

    /// The rows of the document's table of cases: case, rule, gates.
    fn table_rows(document: &str) -> Vec<(String, String, Vec<String>)> {
        let start = document
            .find("## Which case checks which rule")
            .expect("the document has its table of cases");
        document[start..]
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                let unquote = |cell: &str| cell.trim_matches('`').to_owned();
                let gates = cells[2]
                    .split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(unquote)
                    .collect();
                (unquote(cells[0]), unquote(cells[1]), gates)
            })
            .collect()
    }

    #[test]
    fn the_contract_lists_every_case_with_its_rule_and_gates() {
        let document = contract();
        let rows = table_rows(&document);
        let cases = all_cases();
        for case in &cases {
            let row = rows
                .iter()
                .find(|(name, _, _)| name == case.name)
                .unwrap_or_else(|| panic!("{} is not in the contract's table", case.name));
            assert_eq!(row.1, case.rule, "the rule of {}", case.name);
            assert_eq!(row.2, gates(case), "the gates of {}", case.name);
            assert!(
                document.contains(&format!("#### `{}`\n", case.rule))
                    || document.contains(&format!("### `{}`\n", case.rule)),
                "the rule {} of {} has no heading in the contract",
                case.rule,
                case.name
            );
        }
        for (name, rule, _) in &rows {
            assert!(
                name == "every case" || cases.iter().any(|c| c.name == name),
                "the contract's table names {name}, which is no case"
            );
            assert!(
                document.contains(&format!("### `{rule}`\n"))
                    || document.contains(&format!("#### `{rule}`\n")),
                "the table's rule {rule} has no heading"
            );
        }
    }

    #[test]
    fn case_names_are_unique_and_found_by_name() {
        let cases = all_cases();
        for case in &cases {
            assert_eq!(
                cases.iter().filter(|c| c.name == case.name).count(),
                1,
                "{} twice",
                case.name
            );
            assert_eq!(case_named(case.name).map(|c| c.rule), Some(case.rule));
        }
        assert!(case_named("no_such_case").is_none());
    }
}
