"""Environment specs: loading, and errors as the binary words them."""

import json
import os
import subprocess
from pathlib import Path

import pytest

import berth
from berth import EnvironmentSpec, SpecError


def test_from_dict_yaml_json_and_path_agree(tmp_path: Path) -> None:
    doc = {"type": "local", "name": "py", "limits": {"wall_timeout": 5}}
    path = tmp_path / "env.yaml"
    path.write_text("type: local\nname: py\nlimits: {wall_timeout: 5}\n")
    specs = [
        EnvironmentSpec.from_dict(doc),
        EnvironmentSpec.from_yaml(path.read_text()),
        EnvironmentSpec.from_json(json.dumps(doc)),
        EnvironmentSpec.from_path(path),
    ]
    assert all(spec == specs[0] for spec in specs)
    assert specs[0].type == "local" and specs[0].name == "py"
    assert specs[3].origin == str(path)
    assert specs[0].to_dict()["limits"]["wall_timeout"] == 5


def test_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("type: local\nname: t\nlimits:\n  wall_timout: 5\n")
    with pytest.raises(SpecError) as caught:
        EnvironmentSpec.from_path(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: limits.wall_timout: unknown field"), message

    with pytest.raises(SpecError) as caught:
        EnvironmentSpec.from_dict({"type": "local", "name": "t", "limits": {"wall_timeout": -1}})
    assert str(caught.value).startswith("<dict>: limits.wall_timeout: "), str(caught.value)
    assert isinstance(caught.value, berth.BerthError)


def test_a_backend_block_is_checked_by_its_backend() -> None:
    with pytest.raises(SpecError) as caught:
        berth.Session({"type": "docker", "name": "t", "docker": {"image": "x", "imagee": "y"}})
    assert "docker.imagee" in str(caught.value), str(caught.value)


@pytest.mark.skipif("BERTH_BIN" not in os.environ, reason="BERTH_BIN names no berth binary")
def test_messages_match_the_binary(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("type: local\nname: t\nsetup:\n  commands: 3\n")
    done = subprocess.run(
        [os.environ["BERTH_BIN"], "run", "--json", "--env", str(path), "--", "true"],
        capture_output=True,
        text=True,
    )
    binary = json.loads(done.stdout)["error"]["message"]
    with pytest.raises(SpecError) as caught:
        EnvironmentSpec.from_path(path)
    assert str(caught.value) == binary


def test_an_unknown_type_is_a_backend_error() -> None:
    with pytest.raises(berth.BackendError) as caught:
        berth.Session({"type": "no-such-backend", "name": "t"})
    assert "unknown backend type `no-such-backend`" in str(caught.value)


@pytest.mark.skipif("BERTH_BIN" not in os.environ, reason="BERTH_BIN names no berth binary")
def test_an_unknown_type_reads_as_in_the_binary(tmp_path: Path, monkeypatch) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "libnot-a-plugin.so").write_text("no")
    path = tmp_path / "env.yaml"
    path.write_text("type: nowhere\nname: t\n")
    monkeypatch.setenv("BERTH_PLUGIN_DIR", str(plugins))
    done = subprocess.run(
        [os.environ["BERTH_BIN"], "run", "--json", "--env", str(path), "--", "true"],
        capture_output=True,
        text=True,
    )
    binary = json.loads(done.stdout)["error"]["message"]
    with pytest.raises(berth.BackendError) as caught:
        berth.Session(EnvironmentSpec.from_path(path))
    assert str(caught.value) == binary
    assert "skipped: libnot-a-plugin.so" in binary
