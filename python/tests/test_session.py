"""Sessions on the local backend: workspace, assets, input files,
checkpoints, placeholders, reset, close."""

import asyncio
from pathlib import Path

import pytest

import berth
from berth import EnvironmentSpec, Session

LOCAL = EnvironmentSpec.local()


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    root = tmp_path / "assets"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "helper.py").write_text("X = 1\n")
    (root / "weights.bin").write_bytes(b"\x00\x01")
    return root


def test_the_workspace_starts_from_the_base_dir_and_goes_at_close(base_dir: Path) -> None:
    session = Session(LOCAL, base_dir=base_dir)
    workspace = Path(session.workspace)
    assert workspace != base_dir
    assert (workspace / "main.py").read_text() == "print('hello from main')\n"
    runtime = session.spawn()
    assert runtime.execute("echo changed > data.txt").ok
    assert (base_dir / "data.txt").read_text() == "one\ntwo\n"
    session.close()
    session.close()
    assert not workspace.exists()
    with pytest.raises(berth.BerthError, match="closed"):
        session.spawn()


def test_flat_assets_resolve_against_the_base_dir_and_fill_placeholders(
    base_dir: Path, assets: Path
) -> None:
    static = {"helper": "lib/helper.py", "blob": {"path": "weights.bin"}}
    # Resolved against the base dir by default, where they are not.
    with pytest.raises(berth.SpecError, match="static asset `helper`"):
        Session(LOCAL, base_dir=base_dir, static_assets=static)
    with pytest.raises(berth.SpecError, match="static asset `up`"):
        Session(LOCAL, static_assets={"up": "../x"}, assets_dir=assets)
    with Session(LOCAL, base_dir=base_dir, static_assets=static, assets_dir=assets) as s:
        assert sorted(s.asset_names) == ["blob", "helper"]
        runtime = s.spawn()
        resolved = s.resolve_static_placeholders("python {{static:helper}}", runtime)
        assert resolved == f"python {assets / 'lib' / 'helper.py'}"
        nested = s.resolve_static_placeholders({"args": ["{{static:blob}}"]}, runtime)
        assert nested == {"args": [str(assets / "weights.bin")]}
        with pytest.raises(berth.SpecError, match="unknown static asset `nope`"):
            s.resolve_static_placeholders("{{static:nope}}", runtime)


def test_grouped_assets_take_the_last_group_in_order_and_agent_mode_copies_them(
    tmp_path: Path, assets: Path
) -> None:
    static = {
        "ordering": ["base", "override"],
        "base": {"helper": {"path": "weights.bin", "save_path": "static/h"}},
        "override": {"helper": {"path": "lib/helper.py", "save_path": "static/h.py"}},
    }
    with Session(LOCAL, static_assets=static, assets_dir=assets, mode="agent") as s:
        assert s.mode == "agent"
        assert s.asset_names == ["helper"]
        result = s.spawn().execute("cat static/h.py")
        assert result.stdout == b"X = 1\n"
    map_file = assets / "assets.yaml"
    map_file.write_text("helper: lib/helper.py\n")
    with Session(LOCAL, static_assets=map_file) as s:
        assert s.asset_names == ["helper"]
    with pytest.raises(berth.SpecError, match="ordering"):
        Session(LOCAL, static_assets={"ordering": ["missing"]}, assets_dir=assets)


def test_input_files_and_file_contents_with_globs(tmp_path: Path) -> None:
    with Session(LOCAL) as s:
        written = s.materialize_input_files(
            {
                "in/a.txt": "text\n",
                "in/b.json": {"k": [1, 2]},
                "in/c.csv": [{"x": 1, "y": "a"}],
                "in/raw.bin": b"\xff\x00",
            }
        )
        assert len(written) == 4
        result = s.spawn().execute("cat in/a.txt; cat in/c.csv; echo out > out.txt")
        assert result.stdout_text == "text\nx,y\r\n1,a\r\n"
        files = s.get_file_contents(["in/*.txt", "in/*.bin", "*.txt"])
        assert files["in/a.txt"] == "text\n"
        assert files["in/raw.bin"] == b"\xff\x00"
        assert files["out.txt"] == "out\n"
        assert "in/b.json" not in files
        with pytest.raises(berth.WorkspaceError):
            s.materialize_input_files({"../escape.txt": "no"})


def test_checkpoints_return_the_snapshot_and_the_diff(base_dir: Path, tmp_path: Path) -> None:
    with Session(LOCAL, base_dir=base_dir, mode="agent") as s:
        runtime = s.spawn()
        runtime.execute("echo three >> data.txt; echo new > new.txt; rm main.py")
        snapshot, diff = s.finish_checkpoint(tmp_path / "out")
        assert diff.stat == "+1 -1 ~1 files"
        assert {c.path: c.kind for c in diff.changes} == {
            "data.txt": "modified",
            "main.py": "deleted",
            "new.txt": "created",
        }
        assert "+three" in diff.unified
        assert (tmp_path / "out" / "new.txt").read_text() == "new\n"
        assert sorted(snapshot.paths) == ["data.txt", "new.txt"]
        second = s.finish_checkpoint(tmp_path / "out2")
        assert not second.diff
    with Session(LOCAL, base_dir=base_dir) as s:
        with pytest.raises(berth.BerthError, match="agent"):
            s.finish_checkpoint(tmp_path / "out3")


def test_reset_restores_the_initial_snapshot(base_dir: Path) -> None:
    with Session(LOCAL, base_dir=base_dir) as s:
        runtime = s.spawn()
        runtime.execute("rm data.txt; echo x > extra")
        s.reset()
        assert sorted(s.get_file_contents(["*"])) == ["data.txt", "main.py"]


def test_setup_output_and_a_failing_setup(base_dir: Path) -> None:
    spec = EnvironmentSpec.from_dict({"type": "local", "name": "t", "setup": {"commands": ["echo prepared"]}})
    with Session(spec, base_dir=base_dir) as s:
        runtime = s.spawn(setup="echo extra >&2", env={"FROM_SPAWN": "yes"})
        [(first, result), (second, extra)] = runtime.setup_output
        assert (first, result.stdout_text) == ("echo prepared", "prepared\n")
        assert (second, extra.stderr_text) == ("echo extra >&2", "extra\n")
        assert runtime.execute("echo $FROM_SPAWN").stdout_text == "yes\n"
        assert s.spawn(disable_setup=True).setup_output == []
        with pytest.raises(berth.SpawnError) as caught:
            s.spawn(setup="echo broken >&2; exit 3")
        assert isinstance(caught.value, berth.BackendError)
        assert "exit 3" in str(caught.value)


def test_async_with_and_async_methods(base_dir: Path) -> None:
    async def main() -> str:
        async with Session(LOCAL, base_dir=base_dir) as s:
            runtime = await s.aspawn()
            result = await runtime.aexecute("cat data.txt")
            await runtime.acleanup()
            return result.stdout_text

    assert asyncio.run(main()) == "one\ntwo\n"


def test_backends_lists_the_built_ins() -> None:
    listed, problems = berth.backends()
    types = {b["type"] for b in listed}
    assert {"local", "docker", "api"} <= types
    assert problems == []
