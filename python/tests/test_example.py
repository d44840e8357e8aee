"""The seed's example, written with berth, as the docs show it."""

from pathlib import Path

from berth import EnvironmentSpec, Session


def test_the_seed_example_runs(base_dir: Path) -> None:
    spec = EnvironmentSpec.local()
    session = Session.from_environment_spec(spec, base_dir=base_dir, static_assets=None)
    with session as active:
        runtime = active.spawn()
        result = runtime.execute("python main.py", env={}, stdin=None, timeout=30)
    assert result.exit_code == 0, result.stderr_text
    assert result.stdout_text == "hello from main\n"
    assert result.status == "exited"
    assert not result.timed_out
    assert session.closed


def test_the_constructor_is_the_same(base_dir: Path) -> None:
    with Session(EnvironmentSpec.from_dict({"type": "local", "name": "example"}), base_dir=base_dir) as active:
        result = active.spawn().execute("cat data.txt")
    assert result.stdout == b"one\ntwo\n"
