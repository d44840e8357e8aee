"""The package's surface: everything public is documented and typed."""

import inspect
from pathlib import Path

import berth


def public_members():
    for name in berth.__all__:
        obj = getattr(berth, name)
        if name.startswith("__"):
            continue
        yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_"):
                    yield f"{name}.{attr}", member


def test_everything_public_has_a_docstring() -> None:
    missing = [name for name, obj in public_members() if not (obj.__doc__ or "").strip()]
    assert missing == []
    assert "Session.from_environment_spec(" in (berth.__doc__ or "") and "execute(" in (berth.__doc__ or "")


def test_the_stubs_and_py_typed_ship_with_the_package() -> None:
    package = Path(berth.__file__).parent
    assert (package / "py.typed").is_file()
    stubs = (package / "_berth.pyi").read_text()
    for name in berth.__all__:
        if not name.startswith("__"):
            assert f"{name}" in stubs, name
    assert berth.__version__


def test_the_exceptions_form_a_hierarchy() -> None:
    assert issubclass(berth.SpawnError, berth.BackendError)
    for cls in (berth.SpecError, berth.BackendError, berth.WorkspaceError):
        assert issubclass(cls, berth.BerthError)
    assert issubclass(berth.BerthError, Exception)
