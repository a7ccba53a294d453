"""JobSpec and Limits: validation before anything touches the kernel."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox.result import JobResult, Status
from sandbox.spec import JobSpec, Limits, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64M", 64 * 2**20),
        ("64m", 64 * 2**20),
        ("64MiB", 64 * 2**20),
        ("64MB", 64 * 2**20),
        ("1.5G", int(1.5 * 2**30)),
        ("512k", 512 * 2**10),
        ("4096", 4096),
        (" 8 M ", 8 * 2**20),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_passes_numbers_through():
    assert parse_size(123) == 123


@pytest.mark.parametrize("bad", ["lots", "64X", "-1M", "M", ""])
def test_bad_size_names_the_field(bad):
    with pytest.raises(ValidationError) as info:
        Limits(memory=bad)
    assert info.value.errors()[0]["loc"] == ("memory",)
    assert "not a size" in str(info.value)


def test_defaults_are_sane():
    spec = JobSpec(code="print(1)")
    assert spec.language == "python"
    assert spec.image is None
    assert spec.stdin == ""
    assert spec.capabilities == frozenset()
    assert spec.network is False
    lim = spec.limits
    assert 0 < lim.wall_time <= 60
    assert 0 < lim.cpu_time <= 60
    assert 16 * 2**20 <= lim.memory <= 2**30
    assert 8 <= lim.pids <= 1024


def test_spec_is_frozen_and_closed():
    spec = JobSpec(code="x")
    with pytest.raises(ValidationError):
        spec.code = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        JobSpec(code="x", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="Extra inputs"):
        Limits(gpu=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("wall_time", 0), ("wall_time", -1), ("cpu_time", 10**6), ("pids", 0), ("memory", 1024)],
)
def test_absurd_limits_are_refused(field, value):
    with pytest.raises(ValidationError) as info:
        Limits(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_unknown_language_is_refused():
    with pytest.raises(ValidationError, match="language"):
        JobSpec(code="x", language="cobol")


@pytest.mark.parametrize("name", ["1BAD", "has space", "x=y", "", "A-B"])
def test_bad_env_names_are_refused(name):
    with pytest.raises(ValidationError, match="environment variable name"):
        JobSpec(code="x", env={name: "v"})


def test_nul_bytes_are_refused_in_argv_and_env():
    with pytest.raises(ValidationError, match="NUL"):
        JobSpec(code="x", argv=("a\0b",))
    with pytest.raises(ValidationError, match="NUL"):
        JobSpec(code="x", env={"A": "a\0b"})


def test_capability_names_are_normalised():
    spec = JobSpec(code="x", capabilities=["net_bind_service", "CAP_CHOWN", " kill "])
    assert spec.capabilities == {"CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_KILL"}


@pytest.mark.parametrize("image", ["../etc", "UPPER", "a/b", "-x"])
def test_bad_image_names_are_refused(image):
    with pytest.raises(ValidationError, match="image"):
        JobSpec(code="x", image=image)


def test_result_values_are_the_contract():
    assert {s.value for s in Status} >= {
        "ok",
        "runtime_error",
        "timeout",
        "memory_limit",
        "output_limit",
        "internal_error",
    }
    result = JobResult.internal_error("boom")
    assert result.status is Status.INTERNAL_ERROR
    assert result.error == "boom"
    fields = set(JobResult.model_fields)
    assert fields >= {
        "status",
        "stdout",
        "stderr",
        "exit_code",
        "signal",
        "oom_killed",
        "timed_out",
        "pids_limit_hit",
        "output_truncated",
        "wall_time",
        "cpu_time",
        "memory_peak",
    }
