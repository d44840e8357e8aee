"""Fixtures of berth's Python tests: specs for each backend, a namespace
plugin directory, and helpers that wait for a process to be gone.

``cargo xtask test`` runs this suite after building the docker tests' image
(``BERTH_TEST_DOCKER_IMAGE``) and the namespace plugin
(``BERTH_TEST_NAMESPACE_PLUGIN``). Run alone, a test whose backend is not
at hand is skipped, unless ``CI`` is set or a Docker Engine is installed,
where the docker tests fail instead.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import berth

DOCKER_IMAGE = os.environ.get("BERTH_TEST_DOCKER_IMAGE", "berth-test-busybox:latest")


def docker_required() -> bool:
    """Whether the docker tests must run here (as runtime-docker decides)."""
    ci = os.environ.get("CI", "").lower()
    return (
        ci in ("true", "1")
        or "DOCKER_HOST" in os.environ
        or Path("/var/run/docker.sock").exists()
        or shutil.which("dockerd") is not None
    )


def docker_image_present() -> bool:
    try:
        done = subprocess.run(
            ["docker", "image", "inspect", DOCKER_IMAGE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def docker_spec() -> berth.EnvironmentSpec:
    """A docker spec on the tests' busybox image."""
    if not docker_image_present():
        message = f"the docker tests' image {DOCKER_IMAGE} is not there (cargo xtask test builds it)"
        if docker_required():
            pytest.fail(message)
        pytest.skip(message)
    return berth.EnvironmentSpec.from_dict(
        {"type": "docker", "name": "pytest", "docker": {"image": DOCKER_IMAGE}}
    )


@pytest.fixture(scope="session")
def namespace_plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin directory holding the namespace plugin, owned by us and
    writable by no one else, as the loader's trust checks want."""
    library = os.environ.get("BERTH_TEST_NAMESPACE_PLUGIN")
    if not library or not Path(library).is_file():
        message = "BERTH_TEST_NAMESPACE_PLUGIN names no built libruntime_namespace.so"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("plugins-base")
    base.chmod(0o755)
    plugins = base / "plugins"
    plugins.mkdir(mode=0o755)
    plugins.chmod(0o755)
    shutil.copy(library, plugins / "libruntime_namespace.so")
    (plugins / "libruntime_namespace.so").chmod(0o755)
    return plugins


@pytest.fixture(scope="session")
def api_spec(tmp_path_factory: pytest.TempPathFactory):
    """An api spec whose sessions live on a `berth serve` this fixture runs
    on a free loopback port, serving the local backend."""
    binary = os.environ.get("BERTH_BIN")
    if not binary or not Path(binary).is_file():
        message = "BERTH_BIN names no berth binary to serve the api backend"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "pytest-token-" + os.urandom(8).hex()
    os.environ["BERTH_PYTEST_TOKEN"] = token
    root = tmp_path_factory.mktemp("serve")
    server = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--backend", "local"],
        env={**os.environ, "BERTH_TOKEN": token, "TMPDIR": str(root)},
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as client:
            return client.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, "berth serve listening")
    yield berth.EnvironmentSpec.from_dict(
        {
            "type": "api",
            "name": "pytest",
            "api": {
                "url": f"http://127.0.0.1:{port}",
                "token_env": "BERTH_PYTEST_TOKEN",
                "remote": {"type": "local", "name": "remote"},
            },
        }
    )
    server.terminate()
    server.wait(timeout=60)


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """A problem directory: main.py and a data file."""
    base = tmp_path / "problem"
    base.mkdir()
    (base / "main.py").write_text("print('hello from main')\n")
    (base / "data.txt").write_text("one\ntwo\n")
    return base


def process_gone(pid: int) -> bool:
    """Whether `pid` no longer runs (or is a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(check, what: str, seconds: float = 20.0) -> None:
    """Polls `check` until it holds; fails naming `what` after `seconds`
    (a bound for a broken build, not a measure of speed)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.02)


def read_pid(path: Path) -> int:
    """The pid a command wrote into `path`, once it is there."""
    wait_until(lambda: path.exists() and path.read_text().strip() != "", f"{path} written")
    return int(path.read_text().strip())
