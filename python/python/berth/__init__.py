"""berth in-process: sessions that run untrusted code, from Python.

A session is a private workspace made from a base directory, with static
assets, and runtimes spawned in it on a backend: ``local`` (host
processes), ``docker``, ``api`` (a remote ``berth serve``) or a plugin's
(``namespace``...). The whole API of the ``berth`` binary's sessions is
here, blocking and ``async``::

    from pathlib import Path
    from berth import EnvironmentSpec, Session

    spec = EnvironmentSpec.local()
    session = Session.from_environment_spec(spec, base_dir=Path("/problem"), static_assets=None)
    with session as active:
        runtime = active.spawn()
        result = runtime.execute("python main.py", env={}, stdin=None, timeout=30)
    print(result.exit_code, result.stdout_text)

Blocking calls release the GIL, so threads run commands in parallel; Ctrl-C
during ``execute`` or while iterating ``stream`` kills the command's whole
process tree and leaves the session usable. ``async with``, ``aexecute``,
``aspawn`` and ``async for event in runtime.stream(...)`` do the same for
asyncio, where cancelling the task kills the command. A session
garbage-collected without ``close()`` still cleans up; a session inherited
by a forked child is not usable there (its calls raise ``BerthError``) and
never touches the parent's workspace or commands.

Errors are ``BerthError`` and its subclasses ``SpecError``,
``BackendError`` (``SpawnError``) and ``WorkspaceError``, with the messages
of the ``berth`` binary. A command that fails or times out is not an
error: its ``ExecResult`` says so (``timed_out=True``).
"""

from ._berth import (
    BackendError,
    BerthError,
    Change,
    Checkpoint,
    Diff,
    EnvironmentSpec,
    Event,
    ExecResult,
    Runtime,
    Session,
    Snapshot,
    SpawnError,
    SpecError,
    Stream,
    Usage,
    WorkspaceError,
    __version__,
    backends,
    diff,
)

__all__ = [
    "BackendError",
    "BerthError",
    "Change",
    "Checkpoint",
    "Diff",
    "EnvironmentSpec",
    "Event",
    "ExecResult",
    "Runtime",
    "Session",
    "Snapshot",
    "SpawnError",
    "SpecError",
    "Stream",
    "Usage",
    "WorkspaceError",
    "__version__",
    "backends",
    "diff",
]
