"""The declared list of limits (sandbox/resources.py): everything it is said to make, per entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import resources
from sandbox.cli.commands import _parser
from sandbox.errors import SpecError
from sandbox.image.store import Image
from sandbox.plan import build_plan
from sandbox.resources import LIMITS, Limit
from sandbox.settings import Settings
from sandbox.spec import JobSpec, Limits

IMAGE = Image(name="host", root=Path("/images/host/rootfs"), binds=("/usr",), id="host:1")
NAMES = [limit.name for limit in LIMITS]


def _asked(limit: Limit, value: float) -> object:
    return int(value) if limit.kind in ("bytes", "count") else value


@pytest.mark.parametrize("name", NAMES)
def test_each_limit_is_a_field_of_the_spec(name: str):
    limit = resources.by_name(name)
    field = Limits.model_fields[name]
    assert field.description == limit.help
    assert getattr(Limits(), name) == limit.default


@pytest.mark.parametrize("name", NAMES)
def test_each_limit_has_an_operator_maximum_from_the_environment(name, monkeypatch):
    limit = resources.by_name(name)
    assert getattr(Settings(), f"max_{name}") == limit.maximum
    monkeypatch.setenv(f"SANDBOX_MAX_{name.upper()}", "7")
    assert Settings().maximum(name) == 7


@pytest.mark.parametrize("name", NAMES)
def test_a_job_beyond_the_maximum_is_refused_naming_the_limit(name: str):
    limit = resources.by_name(name)
    maxima: dict[str, Any] = {f"max_{name}": max(limit.minimum, 1) * 2}
    beyond = _asked(limit, max(limit.minimum, 1) * 3)
    if limit.default_from:  # keep the other one within its own maximum
        maxima = {f"max_{name}": 2**21, f"max_{limit.default_from}": 2**30}
        beyond = 2**22
    settings = Settings(**maxima)
    spec = JobSpec(code="x", limits={name: beyond})
    with pytest.raises(SpecError, match=f"SANDBOX_MAX_{name.upper()}") as info:
        build_plan(spec, settings, IMAGE)
    assert info.value.field == f"limits.{name}"


def test_a_limit_without_a_maximum_takes_the_one_it_defaults_to():
    assert Settings(max_memory=2**30).maximum("stack") == 2**30
    assert Settings(max_memory=2**30, max_stack=2**20).maximum("stack") == 2**20


@pytest.mark.parametrize("name", [limit.name for limit in LIMITS if limit.rlimit is not None])
def test_each_rlimit_is_set_for_every_job(name: str):
    limit = resources.by_name(name)
    assert limit.rlimit is not None
    rlimits = {
        res: (soft, hard)
        for res, soft, hard in build_plan(JobSpec(code="x"), Settings(), IMAGE).job.rlimits
    }
    expected = (
        limit.default if limit.default is not None else getattr(Limits(), str(limit.default_from))
    )
    assert rlimits[limit.rlimit] == (expected, expected)


def _valid(limit: Limit) -> str:
    """A value within the limit's bounds, as typed on the command line."""
    if limit.kind == "bytes":
        return f"{int(max(limit.minimum, 2**20)) * 2 // 2**10}K"
    return str(int(limit.minimum) + 1)


@pytest.mark.parametrize("command", ["run", "judge"])
def test_each_limit_is_a_flag(command: str):
    argv = [command]
    for limit in LIMITS:
        argv += [limit.flag, _valid(limit)]
    argv += ["--tests", "dir", "code.py"] if command == "judge" else ["code.py"]
    given = resources.flag_values(_parser().parse_args(argv))
    assert sorted(given) == sorted(NAMES)
    limits = Limits(**given)
    for limit in LIMITS:
        expected = Limits(**{limit.name: _valid(limit)})
        assert getattr(limits, limit.name) == getattr(expected, limit.name)


def test_names_and_flags_are_unique():
    assert len(set(NAMES)) == len(NAMES)
    assert len({limit.flag for limit in LIMITS}) == len(LIMITS)
