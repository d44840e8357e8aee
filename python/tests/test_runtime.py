"""Runtimes on the local backend: results, live streams, threads, asyncio,
Ctrl-C and task cancellation, cleanup on garbage collection, fork."""

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import berth
from berth import EnvironmentSpec, Session

from conftest import process_gone, read_pid, wait_until

LOCAL = EnvironmentSpec.local()

# Starts a child that sleeps, writes its pid, and waits for it: a command
# that runs until it is killed, with a process of its tree to look for.
LONG = "sleep 300 & echo $! > {pidfile}; wait"


@pytest.fixture
def session(base_dir: Path) -> Iterator[Session]:
    with Session(LOCAL, base_dir=base_dir) as s:
        yield s


@pytest.fixture
def runtime(session: Session) -> berth.Runtime:
    return session.spawn()


def test_results_carry_everything(runtime: berth.Runtime) -> None:
    result = runtime.execute(
        "echo out; printf 'err\\377' >&2; read line; echo \"got $line $VAR\"; exit 3",
        env={"VAR": "v"},
        stdin="hello\n",
    )
    assert (result.exit_code, result.status, result.signal) == (3, "exited", None)
    assert not result.ok and not result
    assert result.stdout == b"out\ngot hello v\n"
    assert result.stderr == b"err\xff"
    assert result.stderr_text == "err\ufffd"
    assert result.elapsed > 0
    assert result.usage is not None and result.usage.max_rss_bytes > 0
    assert runtime.execute("cat", stdin=b"\x00bytes").stdout == b"\x00bytes"
    assert runtime.execute("cat").stdout == b""


def test_timeouts_and_signals_are_results(runtime: berth.Runtime) -> None:
    timed = runtime.execute("sleep 30", timeout=0.2)
    assert timed.timed_out and timed.status == "timed_out"
    idle = runtime.execute("echo a; sleep 30", idle_timeout=0.2)
    assert idle.timed_out and idle.status == "idle_timed_out"
    killed = runtime.execute("kill -9 $$")
    assert (killed.status, killed.signal, killed.exit_code) == ("signaled", 9, -9)
    with pytest.raises(ValueError):
        runtime.execute("true", timeout=-1)


def test_output_past_the_limit_is_truncated(runtime: berth.Runtime) -> None:
    result = runtime.execute("head -c 10000 /dev/zero", output_limit=100)
    assert result.stdout_truncated and not result.stderr_truncated
    assert len(result.stdout) == 100 and result.stdout_total_bytes == 10000


def test_stream_events_arrive_while_the_command_runs(
    session: Session, runtime: berth.Runtime
) -> None:
    go = Path(session.workspace) / "go"
    stream = runtime.stream("echo ready; while [ ! -e go ]; do sleep 0.01; done; echo done >&2")
    first = next(stream)
    assert (first.kind, first.data) == ("stdout", b"ready\n")
    go.touch()
    rest = list(stream)
    assert [(e.kind, e.data) for e in rest[:-1]] == [("stderr", b"done\n")]
    assert rest[-1].kind == "finished" and rest[-1].result is not None
    assert rest[-1].result.ok and stream.result is not None
    assert rest[-1].result.stdout == b"ready\n"
    assert list(stream) == []
    assert runtime.stream("echo x").finish().stdout == b"x\n"


def test_a_stream_read_in_every_way_brings_every_byte_in_order(runtime: berth.Runtime) -> None:
    # The iterator reads the command's stdout pipe itself where it can:
    # the bytes must be those of the events, in order, with stderr beside
    # them and the result holding them too.
    expected = b"".join(b"%d\n" % i for i in range(1, 200001))
    command = "seq 1 200000; echo done >&2"
    chunks = [e.data for e in runtime.stream(command, output_limit=1 << 24) if e.kind == "stdout"]
    assert b"".join(chunks) == expected
    stream = runtime.stream(command, output_limit=1 << 24)
    # A few chunks by iteration, the rest by async iteration, then the
    # result.
    head = [next(stream) for _ in range(3)]

    async def rest() -> list[berth.Event]:
        return [e async for e in stream]

    tail = asyncio.run(rest())
    events = head + tail
    assert b"".join(e.data for e in events if e.kind == "stdout") == expected
    assert b"".join(e.data for e in events if e.kind == "stderr") == b"done\n"
    result = events[-1].result
    assert result is not None and result.ok and result.stdout == expected
    # Iterated a little, then finished.
    stream = runtime.stream(command, output_limit=1 << 24)
    next(stream)
    assert stream.finish().stdout == expected


def test_a_consumer_that_pauses_loses_nothing_and_idles_nothing(runtime: berth.Runtime) -> None:
    # The stream fills with stderr while the consumer sleeps and the
    # command exits with stdout still in its pipe.
    command = "for i in $(seq 1 20); do echo err$i >&2; sleep 0.01; done; echo TAIL"
    out = b""
    for n, event in enumerate(runtime.stream(command)):
        out += event.data if event.kind == "stdout" else b""
        if n == 0:
            time.sleep(1)
        result = event.result
    assert out == b"TAIL\n"
    assert result is not None and result.stdout == b"TAIL\n" and result.stdout_total_bytes == 5
    # A command that writes all along is not idle while its consumer sleeps.
    command = "for i in $(seq 1 30); do echo line$i; sleep 0.05; done"
    for n, event in enumerate(runtime.stream(command, idle_timeout=0.5)):
        if n == 2:
            time.sleep(1)
        result = event.result
    assert result is not None and result.status == "exited", result
    assert result.stdout.count(b"\n") == 30


def test_closing_a_stream_kills_the_command(session: Session, runtime: berth.Runtime) -> None:
    pidfile = Path(session.workspace) / "pid"
    with runtime.stream("echo started; " + LONG.format(pidfile="pid")) as stream:
        assert next(stream).data == b"started\n"
        pid = read_pid(pidfile)
    wait_until(lambda: process_gone(pid), "the stream's command killed")


def test_closing_a_stream_from_another_thread_ends_a_waiting_read(
    session: Session, runtime: berth.Runtime
) -> None:
    pidfile = Path(session.workspace) / "pid"
    stream = runtime.stream("echo started; " + LONG.format(pidfile="pid"))
    assert next(stream).data == b"started\n"
    pid = read_pid(pidfile)
    closer = threading.Timer(0.3, stream.close)
    closer.start()
    begun = time.monotonic()
    # The command prints nothing more: the read waits until the close.
    assert list(stream) == []
    assert time.monotonic() - begun < 5
    closer.join()
    wait_until(lambda: process_gone(pid), "the closed stream's command killed")
    assert runtime.execute("echo after").stdout == b"after\n"
    # Before the first event, and under async iteration.
    stream = runtime.stream("sleep 30; echo late")
    threading.Timer(0.3, stream.close).start()
    begun = time.monotonic()
    assert list(stream) == []
    assert time.monotonic() - begun < 5

    async def read_async() -> list[berth.Event]:
        stream = runtime.stream("echo a; sleep 30; echo b")
        asyncio.get_running_loop().call_later(0.3, stream.close)
        return [e async for e in stream]

    begun = time.monotonic()
    assert [e.data for e in asyncio.run(read_async())] == [b"a\n"]
    assert time.monotonic() - begun < 5


def test_threads_run_commands_at_once(session: Session, runtime: berth.Runtime) -> None:
    # Each command waits for all the others to have started: run one at a
    # time, they would time out.
    n = 8
    barrier = f'touch "started.$1"; while [ "$(ls started.* | wc -l)" -lt {n} ]; do sleep 0.01; done'
    results: list[berth.ExecResult] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        result = runtime.execute(f"set -- {i}; {barrier}", timeout=60)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == n
    assert all(r.ok and not r.timed_out for r in results), results


def test_asyncio_runs_commands_at_once_and_streams(session: Session) -> None:
    n = 6
    barrier = f'touch "a.$1"; while [ "$(ls a.* | wc -l)" -lt {n} ]; do sleep 0.01; done; echo $1'

    async def main() -> list[bytes]:
        runtime = await session.aspawn()
        results = await asyncio.gather(
            *(runtime.aexecute(f"set -- {i}; {barrier}", timeout=60) for i in range(n))
        )
        assert all(r.ok for r in results), results
        events = [e async for e in runtime.stream("echo one; echo two >&2")]
        assert events[-1].kind == "finished"
        return [e.data for e in events[:-1]]

    chunks = asyncio.run(main())
    assert b"".join(chunks) in (b"one\ntwo\n", b"two\none\n")


def test_cancelling_a_task_kills_the_command_and_the_runtime_goes_on(
    session: Session, runtime: berth.Runtime
) -> None:
    pidfile = Path(session.workspace) / "pid"

    async def main() -> int:
        task = asyncio.ensure_future(runtime.aexecute(LONG.format(pidfile="pid")))
        while not (pidfile.exists() and pidfile.read_text().strip()):
            await asyncio.sleep(0.01)
        pid = int(pidfile.read_text())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(main())
    wait_until(lambda: process_gone(pid), "the cancelled command killed")
    assert runtime.execute("echo next").stdout == b"next\n"

    pidfile.unlink()

    async def cancel_stream() -> int:
        stream = runtime.stream(LONG.format(pidfile="pid"))

        async def read() -> None:
            async for _ in stream:
                pass

        task = asyncio.ensure_future(read())
        while not (pidfile.exists() and pidfile.read_text().strip()):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(pidfile.read_text())

    pid = asyncio.run(cancel_stream())
    wait_until(lambda: process_gone(pid), "the cancelled stream's command killed")
    assert runtime.execute("echo after").stdout == b"after\n"


def interrupt_when_written(pidfile: Path) -> threading.Thread:
    """Sends this process SIGINT once `pidfile` holds a pid."""

    def send() -> None:
        read_pid(pidfile)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_kills_the_command_and_the_session_stays_usable(
    session: Session, runtime: berth.Runtime
) -> None:
    pidfile = Path(session.workspace) / "pid"
    sender = interrupt_when_written(pidfile)
    with pytest.raises(KeyboardInterrupt):
        runtime.execute(LONG.format(pidfile="pid"))
    sender.join()
    pid = int(pidfile.read_text())
    wait_until(lambda: process_gone(pid), "the interrupted command killed")
    assert runtime.execute("echo next").stdout == b"next\n"

    pidfile.unlink()
    sender = interrupt_when_written(pidfile)
    stream = runtime.stream(LONG.format(pidfile="pid"))
    with pytest.raises(KeyboardInterrupt):
        for _ in stream:
            pass
    sender.join()
    pid = int(pidfile.read_text())
    wait_until(lambda: process_gone(pid), "the interrupted stream's command killed")
    assert list(stream) == []
    assert runtime.execute("echo again").stdout == b"again\n"


def test_a_session_dropped_without_close_cleans_up(base_dir: Path) -> None:
    session = Session(LOCAL, base_dir=base_dir)
    runtime = session.spawn()
    workspace = Path(session.workspace)
    pidfile = workspace / "pid"
    # A command streaming, and a server another command left running.
    stream = runtime.stream("echo started; " + LONG.format(pidfile="pid"))
    assert next(stream).data == b"started\n"
    streaming = read_pid(pidfile)
    assert runtime.execute("(sleep 300 & echo $! > pid2) ; true").ok
    server = read_pid(workspace / "pid2")
    del stream, runtime, session
    gc.collect()
    wait_until(lambda: not workspace.exists(), "the workspace removed")
    wait_until(lambda: process_gone(streaming), "the streaming command killed")
    wait_until(lambda: process_gone(server), "the left-behind server killed")


def test_a_forked_child_cannot_touch_the_parent_session(
    session: Session, runtime: berth.Runtime
) -> None:
    workspace = Path(session.workspace)
    assert runtime.execute("(sleep 300 & echo $! > bg) ; true").ok
    background = read_pid(workspace / "bg")
    child = os.fork()
    if child == 0:
        code = 1
        try:
            try:
                runtime.execute("true")
            except berth.BerthError as err:
                assert "forked child" in str(err), str(err)
                try:
                    session.close()
                except berth.BerthError:
                    pass
                else:
                    raise AssertionError("close() worked in the child")
                # The child's own sessions work.
                with Session(LOCAL) as own:
                    assert own.spawn().execute("echo child").stdout == b"child\n"
                code = 0
        except BaseException as err:  # report anything, then leave
            print(f"child failed: {err!r}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert workspace.exists()
    assert not process_gone(background)
    assert runtime.execute("echo parent").stdout == b"parent\n"


def test_a_forked_child_that_drops_inherited_objects_leaves_them_alone(
    session: Session, runtime: berth.Runtime
) -> None:
    workspace = Path(session.workspace)
    assert runtime.execute("(sleep 300 & echo $! > bg) ; true").ok
    background = read_pid(workspace / "bg")
    holder = {"session": session, "runtime": runtime}
    child = os.fork()
    if child == 0:
        holder.clear()
        gc.collect()
        os._exit(0)
    os.waitpid(child, 0)
    assert workspace.exists()
    assert not process_gone(background)
    assert runtime.execute("cat bg").ok


def work_in_a_pool(n: int) -> bytes:
    with Session(LOCAL) as s:
        return s.spawn().execute(f"echo {n}").stdout


def test_multiprocessing_with_fork() -> None:
    import multiprocessing

    # The parent has a runtime going before the pool forks.
    with Session(LOCAL) as s:
        assert s.spawn().execute("true").ok
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(work_in_a_pool, [1, 2, 3]) == [b"1\n", b"2\n", b"3\n"]
        assert s.spawn().execute("echo still").stdout == b"still\n"
