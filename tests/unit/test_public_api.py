"""The curated public surface of ``broadcaster`` (its ``__all__``), in the spirit of httpx's
exported-members test: every listed name resolves, belongs to us, and nothing private leaks."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import broadcaster
from broadcaster import errors

EXPECTED = {
    "Settings", "read_settings", "load_settings", "Secret", "DeliveryState", "Announcement", "Update", "Post",
    "Receipt", "Channel", "__version__", "ConfigError", "BroadcasterError", "DeliveryError", "TransientError",
    "PermanentError", "RateLimited", "AmbiguousDelivery", "InvalidRequest", "IdempotencyConflict", "Forbidden",
}


def test_all_is_sorted_unique_and_contains_the_promised_names():
    assert list(broadcaster.__all__) == sorted(set(broadcaster.__all__))
    missing = EXPECTED - set(broadcaster.__all__)
    assert not missing, f"missing from broadcaster.__all__: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(set(broadcaster.__all__) - {"__version__"}))
def test_every_exported_name_resolves_to_a_broadcaster_object(name):
    value = getattr(broadcaster, name)
    assert value is not None
    module = getattr(value, "__module__", "")
    assert module.startswith("broadcaster."), f"{name} comes from {module!r}, not from broadcaster"
    # the exported object is the very one its module defines (no copies, no wrappers)
    assert getattr(sys.modules[module], name) is value
    assert not name.startswith("_")


def test_every_public_exception_class_is_exported():
    """The error tree is part of the contract: each class in errors.py is reachable from the top."""
    classes = {n for n, v in vars(errors).items()
               if inspect.isclass(v) and issubclass(v, BaseException) and v.__module__ == errors.__name__}
    assert classes <= set(broadcaster.__all__), sorted(classes - set(broadcaster.__all__))


def test_exported_errors_share_one_base():
    for name in broadcaster.__all__:
        value = getattr(broadcaster, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, broadcaster.BroadcasterError), name


def test_version_is_a_string_that_matches_the_installed_distribution():
    from importlib.metadata import version

    assert isinstance(broadcaster.__version__, str) and broadcaster.__version__
    assert broadcaster.__version__ == version(broadcaster.DISTRIBUTION) == version("broadcaster-relay")


def test_the_distribution_is_not_named_like_the_unrelated_project_on_the_public_index():
    """``pip install broadcaster`` fetches somebody else's package: ours is ``broadcaster-relay``
    (the import package and the command stay ``broadcaster``)."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert project["name"] == broadcaster.DISTRIBUTION == "broadcaster-relay"
    assert project["scripts"]["broadcaster"] == "broadcaster.cli:main"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        broadcaster.definitely_not_exported  # noqa: B018
    with pytest.raises(ImportError):
        exec("from broadcaster import definitely_not_exported", {})


def test_submodules_still_import_as_attributes():
    """``from broadcaster import service`` (used by the API, CLI and tests) must keep working."""
    from broadcaster import delivery, service

    assert service.submit and delivery.decide


def test_dir_lists_the_public_names():
    assert set(broadcaster.__all__) <= set(dir(broadcaster))


def test_importing_the_package_is_light_and_cycle_free():
    """``import broadcaster`` must not pull in the broker, web framework or database layers, and
    importing any single exported name in a fresh interpreter must work (no import cycles)."""
    code = (
        "import sys, broadcaster\n"
        "heavy = [m for m in ('celery', 'fastapi', 'sqlalchemy', 'redis', 'uvicorn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "for name in broadcaster.__all__:\n"
        "    getattr(broadcaster, name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("first", ["broadcaster.errors", "broadcaster.channels.base"])
def test_each_submodule_imports_first_in_a_fresh_interpreter(first):
    code = f"import {first}\nfrom broadcaster import Settings, Channel, ConfigError, DeliveryState\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
