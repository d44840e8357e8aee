"""The Python side of berth-bench's `python` row: measures berth from
Python and Python's own subprocess floors, and prints one JSON object.

    python bench.py exec N          N execute("true") and N subprocess.run, in blocks of 10
    python bench.py stream BYTES    one berth stream and one Popen read loop of BYTES
    python bench.py threads T N     T threads x N execute("true") on one runtime: wall time

berth-bench runs it with the release build of the module installed and
does the Rust sides of the comparisons in the same run.
"""

import json
import os
import subprocess
import sys
import threading
import time

import berth

PRODUCER = "head -c {n} /dev/zero"


def runtime_of(session: berth.Session) -> berth.Runtime:
    runtime = session.spawn()
    assert runtime.execute("true").ok
    return runtime


def exec_row(n: int) -> dict:
    berth_times, floor_times = [], []
    with berth.Session(berth.EnvironmentSpec.local()) as session:
        runtime = runtime_of(session)
        cwd = session.workspace
        for _ in range(min(30, n)):  # warm-up, both sides
            runtime.execute("true")
            subprocess.run(["/bin/sh", "-c", "true"], cwd=cwd, check=True)
        done = 0
        while done < n:
            block = min(10, n - done)
            for _ in range(block):
                start = time.perf_counter()
                result = runtime.execute("true")
                berth_times.append(time.perf_counter() - start)
                assert result.ok
            for _ in range(block):
                start = time.perf_counter()
                subprocess.run(["/bin/sh", "-c", "true"], cwd=cwd, check=True)
                floor_times.append(time.perf_counter() - start)
            done += block
    return {"berth": berth_times, "subprocess": floor_times}


def stream_row(n: int, berth_first: bool) -> dict:
    command = PRODUCER.format(n=n)
    out = {}
    with berth.Session(berth.EnvironmentSpec.local()) as session:
        runtime = runtime_of(session)

        def through_berth() -> None:
            start = time.perf_counter()
            total = 0
            for event in runtime.stream(command, output_limit=1 << 20):
                if event.kind == "stdout":
                    total += len(event.data)
            out["berth"] = time.perf_counter() - start
            assert total == n, total

        def through_popen() -> None:
            start = time.perf_counter()
            total = 0
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE)
            fd = proc.stdout.fileno()
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                total += len(chunk)
            proc.wait()
            out["popen"] = time.perf_counter() - start
            assert total == n, total

        for side in (through_berth, through_popen) if berth_first else (through_popen, through_berth):
            side()
    out["bytes"] = n
    return out


def threads_row(threads: int, n: int) -> dict:
    with berth.Session(berth.EnvironmentSpec.local()) as session:
        runtime = runtime_of(session)
        failures = []

        def work() -> None:
            for _ in range(n):
                if not runtime.execute("true").ok:
                    failures.append(1)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        wall = time.perf_counter() - start
        assert not failures
    return {"wall": wall}


def main(args: list) -> None:
    mode = args[0]
    if mode == "exec":
        result = exec_row(int(args[1]))
    elif mode == "stream":
        result = stream_row(int(args[1]), args[2] == "berth-first")
    elif mode == "threads":
        result = threads_row(int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
