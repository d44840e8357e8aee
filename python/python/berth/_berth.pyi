"""Typing stubs of berth's native module (see the ``berth`` package's docs)."""

import os
from pathlib import Path
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any, Literal, Optional, Union

StrPath = Union[str, "os.PathLike[str]"]
ExecStatus = Literal["exited", "signaled", "timed_out", "idle_timed_out", "spawn_failed", "lost"]

__version__: str

class BerthError(Exception):
    """Every error berth raises. A command that fails or times out is not an error."""

class SpecError(BerthError):
    """The environment spec, the asset map, a glob or a placeholder is invalid."""

class BackendError(BerthError):
    """A backend failed: an unknown type, a runtime closed or broken, a failed cleanup."""

class SpawnError(BackendError):
    """A runtime could not be spawned: its setup failed or its sandbox could not be made."""

class WorkspaceError(BerthError):
    """Files, directories and archives: missing, unreadable, unsafe, or over a bound."""

class EnvironmentSpec:
    """An environment spec: the backend type, the shared settings and the backend block."""

    @classmethod
    def from_path(cls, path: StrPath) -> "EnvironmentSpec":
        """Reads a spec file (JSON for ``.json``, YAML otherwise); errors name the file."""
    @classmethod
    def from_yaml(cls, text: str, origin: str = "<yaml>") -> "EnvironmentSpec":
        """Parses YAML text; ``origin`` names it in errors."""
    @classmethod
    def from_json(cls, text: str, origin: str = "<json>") -> "EnvironmentSpec":
        """Parses JSON text; ``origin`` names it in errors."""
    @classmethod
    def from_dict(cls, value: Mapping[str, Any], origin: str = "<dict>") -> "EnvironmentSpec":
        """Validates a mapping as a spec file would be."""
    @classmethod
    def local(cls, name: str = "local") -> "EnvironmentSpec":
        """The default spec of the ``local`` backend."""
    @property
    def type(self) -> str:
        """The backend type."""
    @property
    def name(self) -> str:
        """The spec's name."""
    @property
    def origin(self) -> str:
        """Where the spec came from."""
    def to_dict(self) -> dict[str, Any]:
        """The spec in its file format."""

class Session:
    """A workspace, its static assets and the runtimes spawned in it."""

    def __init__(
        self,
        spec: Union[EnvironmentSpec, Mapping[str, Any]],
        *,
        base_dir: Optional[StrPath] = None,
        static_assets: Union[Mapping[str, Any], StrPath, None] = None,
        assets_dir: Optional[StrPath] = None,
        mode: Literal["evaluation", "eval", "agent"] = "evaluation",
        plugin_dir: Optional[StrPath] = None,
        temp_root: Optional[StrPath] = None,
        session_id: Optional[str] = None,
    ) -> None:
        """Makes a session; its workspace is prepared on ``with`` or first use."""
    @classmethod
    def from_environment_spec(
        cls,
        spec: Union[EnvironmentSpec, Mapping[str, Any]],
        *,
        base_dir: Optional[StrPath] = None,
        static_assets: Union[Mapping[str, Any], StrPath, None] = None,
        assets_dir: Optional[StrPath] = None,
        mode: Literal["evaluation", "eval", "agent"] = "evaluation",
        plugin_dir: Optional[StrPath] = None,
        temp_root: Optional[StrPath] = None,
        session_id: Optional[str] = None,
    ) -> "Session":
        """The same as ``Session(spec, ...)``."""
    @property
    def id(self) -> str:
        """The session's id."""
    @property
    def backend_type(self) -> str:
        """The spec's backend type."""
    @property
    def mode(self) -> Literal["evaluation", "agent"]:
        """``evaluation`` or ``agent``."""
    @property
    def asset_names(self) -> list[str]:
        """The names of the static assets."""
    @property
    def closed(self) -> bool:
        """Whether the session was closed."""
    @property
    def workspace(self) -> Path:
        """The workspace directory (the session is prepared first)."""
    def prepare(self) -> None:
        """Prepares the workspace. Idempotent."""
    def aprepare(self) -> Awaitable[None]:
        """``prepare()`` for async code."""
    def __enter__(self) -> "Session": ...
    def __exit__(self, *exc: object) -> bool: ...
    def __aenter__(self) -> Awaitable["Session"]: ...
    def __aexit__(self, *exc: object) -> Awaitable[bool]: ...
    def spawn(
        self,
        *,
        env: Optional[Mapping[str, str]] = None,
        setup: Optional[str] = None,
        disable_setup: bool = False,
        mounts: Optional[Sequence[Mapping[str, Any]]] = None,
        ports: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> "Runtime":
        """Spawns a runtime and runs its setup; raises ``SpawnError`` when that fails."""
    def aspawn(
        self,
        *,
        env: Optional[Mapping[str, str]] = None,
        setup: Optional[str] = None,
        disable_setup: bool = False,
        mounts: Optional[Sequence[Mapping[str, Any]]] = None,
        ports: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> Awaitable["Runtime"]:
        """``spawn()`` for async code."""
    def materialize_input_files(self, files: Mapping[StrPath, Any]) -> list[Path]:
        """Writes input files into the workspace; returns the paths written."""
    def get_file_contents(self, patterns: Sequence[str]) -> dict[str, Union[str, bytes]]:
        """Reads workspace files matching the globs: text as ``str``, else ``bytes``."""
    def finish_checkpoint(self, out: StrPath) -> "Checkpoint":
        """Agent mode: snapshot, files written to ``out``, diff against the previous snapshot."""
    def snapshot(self) -> "Snapshot":
        """A snapshot of the workspace now."""
    def resolve_static_placeholders(self, value: Any, runtime: "Runtime") -> Any:
        """Replaces ``{{static:NAME}}`` with where the asset appears in ``runtime``."""
    def reset(self) -> None:
        """Restores the initial snapshot."""
    def close(self) -> None:
        """Cleans up every runtime, checks the assets, removes the workspace. Idempotent."""
    def aclose(self) -> Awaitable[None]:
        """``close()`` for async code."""

class Usage:
    """Resources a command used."""

    user_cpu: float
    system_cpu: float
    max_rss_bytes: int

class ExecResult:
    """The outcome of one command."""

    @property
    def exit_code(self) -> int: ...
    @property
    def status(self) -> ExecStatus: ...
    @property
    def signal(self) -> Optional[int]: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def ok(self) -> bool: ...
    @property
    def stdout(self) -> bytes: ...
    @property
    def stderr(self) -> bytes: ...
    @property
    def stdout_text(self) -> str: ...
    @property
    def stderr_text(self) -> str: ...
    @property
    def stdout_truncated(self) -> bool: ...
    @property
    def stderr_truncated(self) -> bool: ...
    @property
    def stdout_total_bytes(self) -> int: ...
    @property
    def stderr_total_bytes(self) -> int: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def usage(self) -> Optional[Usage]: ...
    def __bool__(self) -> bool: ...

class Event:
    """One event of a running command."""

    kind: Literal["stdout", "stderr", "finished"]
    data: bytes
    result: Optional[ExecResult]

class Stream:
    """The live events of one command: an iterator and an async iterator."""

    def __iter__(self) -> Iterator[Event]: ...
    def __next__(self) -> Event: ...
    def __aiter__(self) -> "Stream": ...
    def __anext__(self) -> Awaitable[Event]: ...
    @property
    def result(self) -> Optional[ExecResult]:
        """The result, once the ``finished`` event was read."""
    def finish(self) -> ExecResult:
        """Reads to the end and returns the result."""
    def close(self) -> None:
        """Stops reading; a command still running is killed."""
    def __enter__(self) -> "Stream": ...
    def __exit__(self, *exc: object) -> bool: ...

class Runtime:
    """A sandbox that runs commands in the session's workspace."""

    def execute(
        self,
        command: str,
        *,
        env: Optional[Mapping[str, str]] = None,
        stdin: Union[bytes, str, None] = None,
        timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        output_limit: Optional[int] = None,
    ) -> ExecResult:
        """Runs ``command`` to its end; Ctrl-C kills its tree."""
    def aexecute(
        self,
        command: str,
        *,
        env: Optional[Mapping[str, str]] = None,
        stdin: Union[bytes, str, None] = None,
        timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        output_limit: Optional[int] = None,
    ) -> Awaitable[ExecResult]:
        """``execute()`` for async code; cancelling kills the command's tree."""
    def stream(
        self,
        command: str,
        *,
        env: Optional[Mapping[str, str]] = None,
        stdin: Union[bytes, str, None] = None,
        timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        output_limit: Optional[int] = None,
    ) -> Stream:
        """The command's live events; it starts on the first iteration."""
    def kill(self) -> None:
        """Kills every running command's tree."""
    def akill(self) -> Awaitable[None]: ...
    def cleanup(self) -> None:
        """Kills what runs and releases everything the runtime made."""
    def acleanup(self) -> Awaitable[None]: ...
    @property
    def status(self) -> Literal["idle", "running", "closed"]: ...
    @property
    def running(self) -> int: ...
    @property
    def backend_type(self) -> str: ...
    @property
    def capabilities(self) -> dict[str, bool]: ...
    @property
    def setup_output(self) -> list[tuple[str, ExecResult]]: ...
    @property
    def session(self) -> Session: ...

class Snapshot:
    """A captured state of a directory: a manifest and a tar archive."""

    @classmethod
    def capture(
        cls,
        root: StrPath,
        archive_dir: StrPath,
        *,
        compression: Literal["none", "gz", "bz2", "xz", "zstd"] = "gz",
        keep: Optional[Sequence[str]] = None,
        ignore: Optional[Sequence[str]] = None,
    ) -> "Snapshot": ...
    @classmethod
    def open(
        cls, archive: StrPath, *, compression: Literal["none", "gz", "bz2", "xz", "zstd"] = "gz"
    ) -> "Snapshot": ...
    def extract(self, dest: StrPath, *, mirror: bool = False) -> None: ...
    def read_entries(self, paths: Sequence[str], *, limit: int = ...) -> dict[str, bytes]: ...
    @property
    def paths(self) -> list[str]: ...
    @property
    def entries(self) -> list[dict[str, Any]]: ...
    @property
    def checksum(self) -> str: ...
    @property
    def archive_path(self) -> Optional[Path]: ...
    @property
    def compression(self) -> str: ...
    @property
    def total_size(self) -> int: ...
    def __len__(self) -> int: ...

class Change:
    """One changed path of a diff."""

    path: str
    kind: str
    old_path: Optional[str]
    is_binary: bool
    unified_diff: Optional[str]
    lines_added: int
    lines_removed: int
    truncated: bool

class Diff:
    """What changed between two snapshots."""

    @property
    def changes(self) -> list[Change]: ...
    @property
    def unified(self) -> str: ...
    @property
    def stat(self) -> str: ...
    @property
    def summary(self) -> dict[str, int]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __bool__(self) -> bool: ...
    def __len__(self) -> int: ...

class Checkpoint:
    """The snapshot taken at a checkpoint and the diff since the previous one."""

    @property
    def snapshot(self) -> Snapshot: ...
    @property
    def diff(self) -> Diff: ...
    def __iter__(self) -> Iterator[Union[Snapshot, Diff]]: ...

def diff(old: Snapshot, new: Snapshot) -> Diff:
    """The diff from ``old`` to ``new``."""

def backends(
    plugin_dir: Optional[StrPath] = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The backends a session can use, and the plugin libraries that did not load."""
