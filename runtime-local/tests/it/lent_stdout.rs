//! A consumer that reads a command's stdout pipe itself
//! (`EventStream::try_next_direct`, as the Python stream iterator does):
//! the same bytes in the same order as through events, the same result,
//! and the same timeouts, kills and endings.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use session_core::EnvironmentSpec;
use session_core::runtime::{
    Direct, Event, EventStream, ExecCommand, ExecResult, ExecStatus, Waited,
};
use session_core::session::{RuntimeHandle, Session, SpawnOptions};

use runtime_local as _;

async fn session(temp: &Path) -> Session {
    Session::builder(EnvironmentSpec::new("local", "t"))
        .temp_root(temp.join("sessions"))
        .prepare()
        .await
        .unwrap()
}

/// A copy of what was read, as a consumer of its own would make it.
fn read_vec(bytes: &[u8]) -> std::io::Result<Bytes> {
    Ok(Bytes::copy_from_slice(bytes))
}

/// Everything a stream brought: stdout, stderr, how many stdout bytes came
/// from the pipe directly, and the result.
#[derive(Default)]
struct Taken {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    direct: usize,
    result: Option<ExecResult>,
}

/// Reads `stream` to its end, reading the pipe directly where it can and,
/// every `plain`-th step, taking an event the ordinary way instead (0:
/// never); `pause` between steps lets the command run ahead. With `poll`,
/// waits block the thread in `poll_direct` (a runtime with more than one
/// thread is needed then).
async fn take(stream: EventStream, plain: usize, pause: Option<Duration>, poll: bool) -> Taken {
    take_with(stream, plain, |_| pause, poll).await
}

/// Reads `stream` to its end as [`take`] does, sleeping `pause` before
/// the step numbered `at` (the first step is 1) and nowhere else.
async fn take_pausing_once(stream: EventStream, at: usize, pause: Duration) -> Taken {
    take_with(stream, 0, |step| (step == at).then_some(pause), false).await
}

/// [`take`], sleeping before each step what `pause_at` says.
async fn take_with(
    mut stream: EventStream,
    plain: usize,
    pause_at: impl Fn(usize) -> Option<Duration>,
    poll: bool,
) -> Taken {
    let mut taken = Taken::default();
    for step in 1.. {
        if let Some(pause) = pause_at(step) {
            tokio::time::sleep(pause).await;
        }
        let event = if plain != 0 && step % plain == 0 {
            stream.next().await
        } else {
            match stream.try_next_direct(read_vec).unwrap() {
                Direct::Read(bytes) => {
                    taken.direct += bytes.len();
                    Some(Event::Stdout(bytes))
                }
                Direct::Event(event) => Some(event),
                Direct::End => None,
                Direct::Wait => {
                    if poll
                        && tokio::task::block_in_place(|| {
                            stream.poll_direct(Duration::from_millis(50))
                        })
                    {
                        continue;
                    }
                    match stream.wait_direct().await {
                        Waited::Event(event) => event,
                        Waited::Readable => continue,
                    }
                }
            }
        };
        match event {
            Some(Event::Stdout(bytes)) => taken.stdout.extend_from_slice(&bytes),
            Some(Event::Stderr(bytes)) => taken.stderr.extend_from_slice(&bytes),
            Some(Event::Finished(result)) => taken.result = Some(result),
            None => break,
        }
    }
    taken
}

/// The numbers 1..=n, one per line, as `seq` writes them.
fn seq(n: usize) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

async fn stream(rt: &RuntimeHandle, cmd: ExecCommand) -> EventStream {
    rt.stream(cmd).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reading_the_pipe_gets_every_byte_in_order() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let command = "seq 1 300000; echo done >&2; seq 1 5000 >&2";
    let mut err_expected = b"done\n".to_vec();
    err_expected.extend_from_slice(&seq(5000));
    // Direct reads only (waiting in tokio, or in poll(2)), mixed with
    // ordinary ones, and a consumer slower than the command (the pipe
    // fills and grows).
    for (plain, pause, poll) in [
        (0, None, false),
        (0, None, true),
        (3, None, true),
        (2, Some(Duration::from_micros(300)), false),
    ] {
        let taken = take(
            stream(&rt, ExecCommand::new(command)).await,
            plain,
            pause,
            poll,
        )
        .await;
        assert!(
            taken.stdout == seq(300_000),
            "stdout differs ({plain}, {pause:?})"
        );
        assert_eq!(taken.stderr, err_expected);
        // The consumer takes the pipe once it finds the stream empty, which
        // one that pauses may never do.
        assert!(
            taken.direct > 0 || pause.is_some(),
            "nothing was read directly"
        );
        let result = taken.result.expect("a result");
        assert!(result.success(), "{result:?}");
        // The result holds what the consumer read itself too.
        assert!(result.stdout.bytes == seq(300_000));
        assert_eq!(result.stdout.total_bytes, seq(300_000).len() as u64);
        assert!(!result.stdout.truncated);
    }
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_read_from_the_pipe_counts_against_the_limit_and_the_idle_timeout() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    // Output every 100 ms for 1.2 s against an idle timeout of 400 ms:
    // never idle, though the driver reads none of it.
    let mut cmd =
        ExecCommand::new("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $i; sleep 0.1; done");
    cmd.idle_timeout = Some(Duration::from_millis(400));
    cmd.output_limit = Some(8);
    let taken = take(stream(&rt, cmd).await, 0, None, true).await;
    let result = taken.result.unwrap();
    assert_eq!(result.status, ExecStatus::Exited, "{result:?}");
    assert_eq!(taken.stdout, seq(12));
    assert_eq!(result.stdout.bytes, b"1\n2\n3\n4\n");
    assert!(result.stdout.truncated);
    assert_eq!(result.stdout.total_bytes, seq(12).len() as u64);
    // Silence after output is still idle.
    let mut cmd = ExecCommand::new("echo a; sleep 5");
    cmd.idle_timeout = Some(Duration::from_millis(300));
    let begun = Instant::now();
    let taken = take(stream(&rt, cmd).await, 0, None, true).await;
    let result = taken.result.unwrap();
    assert_eq!(result.status, ExecStatus::IdleTimedOut, "{result:?}");
    assert!(begun.elapsed() < Duration::from_secs(4));
    assert_eq!(taken.stdout, b"a\n");
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lent_pipe_keeps_timeouts_kills_and_endings() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();

    // The wall timeout of a command whose output the consumer reads.
    let mut cmd = ExecCommand::new("yes");
    cmd.wall_timeout = Some(Duration::from_millis(300));
    let taken = take(stream(&rt, cmd).await, 0, None, true).await;
    let result = taken.result.unwrap();
    assert_eq!(result.status, ExecStatus::TimedOut, "{result:?}");
    assert!(taken.direct > 0);

    // A consumer that reads directly, then stops and drops the stream:
    // the command's tree is killed.
    let pidfile = temp.path().join("pid");
    let mut stream1 = stream(
        &rt,
        ExecCommand::new(format!("sh -c 'echo $$ > {}; exec yes'", pidfile.display())),
    )
    .await;
    let mut direct = 0;
    while direct == 0 {
        match stream1.try_next_direct(read_vec).unwrap() {
            Direct::Read(bytes) => direct += bytes.len(),
            Direct::Wait => {
                stream1.wait_direct().await;
            }
            Direct::Event(_) => {}
            Direct::End => panic!("ended early"),
        }
    }
    drop(stream1);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let begun = Instant::now();
    // SAFETY: kill(2) with signal 0 only checks whether the pid exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(begun.elapsed() < Duration::from_secs(5), "yes still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A background process that keeps stdout open does not hold the
    // stream past the command's exit.
    let begun = Instant::now();
    let taken = take(
        stream(&rt, ExecCommand::new("echo hi; (sleep 5; echo late) &")).await,
        0,
        None,
        true,
    )
    .await;
    assert!(
        begun.elapsed() < Duration::from_secs(3),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(taken.stdout, b"hi\n");
    assert!(taken.result.unwrap().success());

    // A consumer that takes the pipe, then reads only through `next()`.
    let mut stream2 = stream(&rt, ExecCommand::new("seq 1 100000")).await;
    let mut stdout = Vec::new();
    loop {
        match stream2.try_next_direct(read_vec).unwrap() {
            Direct::Read(bytes) => {
                stdout.extend_from_slice(&bytes);
                break;
            }
            Direct::Event(Event::Stdout(bytes)) => stdout.extend_from_slice(&bytes),
            Direct::Event(other) => panic!("{other:?}"),
            Direct::Wait => {
                stream2.wait_direct().await;
            }
            Direct::End => panic!("ended early"),
        }
    }
    while let Some(event) = stream2.next().await {
        if let Event::Stdout(bytes) = event {
            stdout.extend_from_slice(&bytes);
        }
    }
    assert!(stdout == seq(100_000));
    // And one that takes it, then waits for the result alone.
    let mut stream3 = stream(&rt, ExecCommand::new("seq 1 100000")).await;
    while !matches!(stream3.try_next_direct(read_vec).unwrap(), Direct::Read(_)) {
        stream3.wait_direct().await;
    }
    let result = stream3.finish().await;
    assert!(result.success());
    assert!(result.stdout.bytes == seq(100_000));
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_pauses_loses_nothing_and_idles_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();

    // The stream fills with stderr while the consumer sleeps, and the
    // command exits with stdout still in its pipe: the driver waits for
    // room rather than give up on the pipe once the exit's grace is over.
    let command = "for i in $(seq 1 20); do echo err$i >&2; sleep 0.01; done; echo TAIL";
    let taken = take_pausing_once(
        stream(&rt, ExecCommand::new(command)).await,
        2,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(taken.stdout, b"TAIL\n");
    let result = taken.result.unwrap();
    assert_eq!(result.stdout.bytes, b"TAIL\n", "{result:?}");
    assert_eq!(result.stdout.total_bytes, 5);
    // The same with stdout lines filling the stream.
    let command = "for i in $(seq 1 20); do echo line$i; sleep 0.01; done; echo TAIL";
    let taken = take_pausing_once(
        stream(&rt, ExecCommand::new(command)).await,
        2,
        Duration::from_secs(1),
    )
    .await;
    let expected: Vec<u8> = (1..=20)
        .map(|i| format!("line{i}\n"))
        .chain(["TAIL\n".to_owned()])
        .collect::<String>()
        .into_bytes();
    assert_eq!(taken.stdout, expected);
    assert_eq!(taken.result.unwrap().stdout.bytes, expected);

    // A command that writes all along is not idle while the consumer
    // sleeps, whether the consumer has the pipe or not.
    let mut cmd = ExecCommand::new("for i in $(seq 1 30); do echo line$i; sleep 0.05; done");
    cmd.idle_timeout = Some(Duration::from_millis(500));
    let taken = take_pausing_once(stream(&rt, cmd).await, 3, Duration::from_secs(1)).await;
    let result = taken.result.unwrap();
    assert_eq!(result.status, ExecStatus::Exited, "{result:?}");
    assert_eq!(
        taken.stdout,
        (1..=30)
            .map(|i| format!("line{i}\n"))
            .collect::<String>()
            .into_bytes()
    );

    // One that wrote once and went silent is idle all the same, though
    // its line waits unread in the pipe the consumer took (it sleeps from
    // the moment the line is there).
    let mut cmd = ExecCommand::new("sleep 0.2; echo once; sleep 10");
    cmd.idle_timeout = Some(Duration::from_millis(300));
    let begun = Instant::now();
    let taken = take_pausing_once(stream(&rt, cmd).await, 2, Duration::from_secs(2)).await;
    let result = taken.result.unwrap();
    assert_eq!(result.status, ExecStatus::IdleTimedOut, "{result:?}");
    assert!(result.elapsed < Duration::from_millis(1500), "{result:?}");
    assert!(
        begun.elapsed() < Duration::from_secs(4),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(result.stdout.bytes, b"once\n");
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_meet_the_drain_the_wall_and_the_idle_timeout_as_fast_ones_do() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();

    // A background writer that outlives the command does not hold a slow
    // consumer's stream past the drain after the exit.
    let begun = Instant::now();
    let taken = take(
        stream(&rt, ExecCommand::new("yes & sleep 0.3")).await,
        0,
        Some(Duration::from_millis(20)),
        false,
    )
    .await;
    assert!(
        begun.elapsed() < Duration::from_secs(4),
        "{:?}",
        begun.elapsed()
    );
    assert!(taken.result.unwrap().success());

    // Past the wall deadline the events stop rather than skip: what came
    // is a run of whole numbers from 1.
    let mut cmd = ExecCommand::new("seq 1 1000000000");
    cmd.wall_timeout = Some(Duration::from_millis(400));
    let taken = take(stream(&rt, cmd).await, 1, None, false).await;
    assert_eq!(taken.result.unwrap().status, ExecStatus::TimedOut);
    let text = String::from_utf8(taken.stdout).unwrap();
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    for (i, line) in whole.lines().enumerate() {
        assert_eq!(line, (i + 1).to_string(), "a hole after line {i}");
    }

    // A command that writes without pause is not idle while the consumer
    // that has its pipe sleeps, though the pipe is full.
    let mut cmd = ExecCommand::new("head -c 100000000 /dev/zero");
    cmd.idle_timeout = Some(Duration::from_millis(500));
    let taken = take_pausing_once(stream(&rt, cmd).await, 50, Duration::from_millis(1500)).await;
    let result = taken.result.unwrap();
    assert_eq!(result.status, ExecStatus::Exited, "{result:?}");
    assert_eq!(taken.stdout.len(), 100_000_000);
    session.close().await.unwrap();
}
