"""The same calls on the docker backend (the tests' busybox image), the api
backend (against a `berth serve` of the local backend) and the namespace
plugin loaded from a plugin directory."""

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

import berth
from berth import EnvironmentSpec, Session

from conftest import wait_until


def exercise(session: Session, tmp_path: Path) -> None:
    """What every backend must do the same way."""
    runtime = session.spawn()
    result = runtime.execute("cat data.txt; echo err >&2; exit 4", env={"A": "b"})
    assert (result.exit_code, result.stdout, result.stderr) == (4, b"one\ntwo\n", b"err\n")
    assert runtime.execute("echo $A", env={"A": "b"}).stdout == b"b\n"
    assert runtime.execute("cat", stdin=b"in").stdout == b"in"
    timed = runtime.execute("sleep 30", timeout=0.5)
    assert timed.timed_out
    events = list(runtime.stream("echo one; echo two >&2"))
    assert events[-1].kind == "finished" and events[-1].result.ok
    assert b"".join(e.data for e in events if e.kind == "stdout") == b"one\n"
    session.materialize_input_files({"in.json": {"k": 1}})
    assert json.loads(runtime.execute("cat in.json").stdout) == {"k": 1}
    assert runtime.execute("echo made > made.txt").ok
    assert session.get_file_contents(["*.txt"])["made.txt"] == "made\n"

    async def from_asyncio() -> list[bytes]:
        # aexecute starts the command at once and returns its future.
        if runtime.capabilities["concurrent_commands"]:
            results = await asyncio.gather(*(runtime.aexecute(f"echo {i}") for i in range(3)))
        else:
            results = [await runtime.aexecute(f"echo {i}") for i in range(3)]
        return [r.stdout for r in results]

    assert asyncio.run(from_asyncio()) == [b"0\n", b"1\n", b"2\n"]
    runtime.cleanup()
    with pytest.raises(berth.BackendError):
        runtime.execute("true")


def test_docker(docker_spec: EnvironmentSpec, base_dir: Path, tmp_path: Path) -> None:
    with Session(docker_spec, base_dir=base_dir) as session:
        exercise(session, tmp_path)
        runtime = session.spawn()
        assert runtime.backend_type == "docker"
        pidfile = Path(session.workspace) / "pid"
        with pytest.raises(asyncio.CancelledError):

            async def cancel() -> None:
                task = asyncio.ensure_future(
                    runtime.aexecute("sleep 300 & echo $! > pid; wait")
                )
                while not (pidfile.exists() and pidfile.read_text().strip()):
                    await asyncio.sleep(0.01)
                task.cancel()
                await task

            asyncio.run(cancel())
        # The pid is the container's; the command's tree is gone when the
        # container no longer runs it.
        def sleeping() -> bool:
            return b"sleep 300" in runtime.execute("ps -o args").stdout

        wait_until(lambda: not sleeping(), "the cancelled command killed in the container")
        assert runtime.execute("echo next").stdout == b"next\n"


def test_api(api_spec: EnvironmentSpec, base_dir: Path, tmp_path: Path) -> None:
    with Session(api_spec, base_dir=base_dir) as session:
        exercise(session, tmp_path)
        assert session.spawn().backend_type == "api"


def test_namespace_plugin(namespace_plugin_dir: Path, base_dir: Path, tmp_path: Path) -> None:
    listed, problems = berth.backends(plugin_dir=namespace_plugin_dir)
    assert problems == []
    [namespace] = [b for b in listed if b["type"] == "namespace"]
    assert namespace["origin"].endswith("libruntime_namespace.so")
    spec = EnvironmentSpec.from_dict({"type": "namespace", "name": "pytest"})
    with Session(spec, base_dir=base_dir, plugin_dir=namespace_plugin_dir) as session:
        exercise(session, tmp_path)
        runtime = session.spawn()
        assert runtime.backend_type == "namespace"
        # Commands see their own pid namespace, not the host's processes.
        assert runtime.execute("echo $$").stdout != f"{os.getpid()}\n".encode()


def test_a_plugin_dir_others_can_write_is_refused(
    namespace_plugin_dir: Path, tmp_path: Path
) -> None:
    unsafe = tmp_path / "unsafe-plugins"
    shutil.copytree(namespace_plugin_dir, unsafe)
    unsafe.chmod(0o777)
    _, problems = berth.backends(plugin_dir=unsafe)
    assert len(problems) == 1 and str(unsafe) in problems[0], problems
    assert "writable" in problems[0], problems
    with pytest.raises(berth.BackendError) as caught:
        Session({"type": "namespace", "name": "t"}, plugin_dir=unsafe)
    message = str(caught.value)
    assert message.startswith("unknown backend type `namespace`"), message
    assert message.endswith("serves it: the directory itself was refused (see `berth doctor`)")


def test_the_env_var_names_the_plugin_dir(
    namespace_plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BERTH_PLUGIN_DIR", str(namespace_plugin_dir))
    with Session({"type": "namespace", "name": "t"}) as session:
        assert session.spawn().execute("echo via-env").stdout == b"via-env\n"


def test_docker_spawn_takes_mounts(
    docker_spec: EnvironmentSpec, base_dir: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("from the host\n")
    with Session(docker_spec, base_dir=base_dir) as session:
        runtime = session.spawn(
            mounts=[{"source": str(shared), "target": "/shared", "read_only": True}]
        )
        assert runtime.execute("cat /shared/note.txt").stdout == b"from the host\n"
        assert not runtime.execute("touch /shared/new").ok
        assert not (shared / "new").exists()


def test_spawn_refuses_a_malformed_mount(base_dir: Path) -> None:
    with Session(EnvironmentSpec.local(), base_dir=base_dir) as session:
        with pytest.raises(ValueError, match=r"mounts\[0\]"):
            session.spawn(mounts=[{"target": "/x"}])
