"""JobSpec and Limits, field by field: what test_spec.py leaves out."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox import languages
from sandbox.spec import JobSpec, Limits


def _loc(info: pytest.ExceptionInfo[ValidationError]) -> tuple[int | str, ...]:
    return info.value.errors()[0]["loc"]


def test_limit_defaults():
    assert Limits() == Limits(
        wall_time=10.0,
        cpu_time=10.0,
        memory=256 * 2**20,
        pids=64,
        output=2**20,
        disk=64 * 2**20,
        open_files=256,
    )
    assert JobSpec(code="x").limits == Limits()


def test_sizes_are_parsed_inside_a_spec():
    spec = JobSpec(code="x", limits={"memory": "64m", "output": "1K", "disk": "1.5G"})
    assert spec.limits.memory == 64 * 2**20
    assert spec.limits.output == 1024
    assert spec.limits.disk == int(1.5 * 2**30)


def test_a_bad_size_in_a_spec_names_the_dotted_field():
    with pytest.raises(ValidationError) as info:
        JobSpec(code="x", limits={"memory": "lots"})
    assert _loc(info) == ("limits", "memory")
    assert "'64M'" in str(info.value)  # says what a size looks like


@pytest.mark.parametrize("text", ["64Mi", "1e6", "0x10", "64 M B", "1,5G", "--1"])
def test_size_lookalikes_are_refused(text: str):
    with pytest.raises(ValidationError) as info:
        Limits(disk=text)
    assert _loc(info) == ("disk",)


def test_a_fractional_byte_count_is_refused():
    with pytest.raises(ValidationError) as info:
        Limits(memory=64 * 2**20 + 0.5)
    assert _loc(info) == ("memory",)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("wall_time", 0),
        ("wall_time", -0.5),
        ("wall_time", float("inf")),
        ("wall_time", float("nan")),
        ("cpu_time", 0),
        ("cpu_time", -1),
        ("memory", -1),
        ("memory", 0),
        ("memory", "1M"),  # below the 4 MiB a Python needs to start
        ("pids", -1),
        ("pids", 2**22 + 1),
        ("output", -1),
        ("disk", 0),
        ("disk", "512K"),
        ("open_files", 0),
        ("open_files", 7),
    ],
)
def test_absurd_limits_name_their_field(field: str, value: object):
    with pytest.raises(ValidationError) as info:
        Limits(**{field: value})
    assert _loc(info) == (field,)


def test_no_output_at_all_is_a_valid_limit():
    assert Limits(output=0).output == 0


def test_limits_are_frozen():
    limits = Limits()
    with pytest.raises(ValidationError):
        limits.memory = 1  # type: ignore[attr-defined]


def test_env_and_argv_are_kept_as_given():
    spec = JobSpec(code="x", env={"_A1": "x=y", "b": ""}, argv=("-c", "", "ü"))
    assert spec.env == {"_A1": "x=y", "b": ""}
    assert spec.argv == ("-c", "", "ü")


def test_a_bad_env_name_is_quoted_in_the_message():
    with pytest.raises(ValidationError) as info:
        JobSpec(code="x", env={"OK": "1", "NOT OK": "1"})
    assert _loc(info) == ("env",)
    assert "'NOT OK'" in str(info.value)


def test_nul_in_argv_names_the_field():
    with pytest.raises(ValidationError) as info:
        JobSpec(code="x", argv=("fine", "bad\0"))
    assert _loc(info) == ("argv",)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["net_bind_service"], {"CAP_NET_BIND_SERVICE"}),
        (["cap_chown"], {"CAP_CHOWN"}),
        (("Sys_Admin",), {"CAP_SYS_ADMIN"}),
        ({"kill", "CAP_KILL"}, {"CAP_KILL"}),  # two spellings, one capability
        ([], set()),
    ],
)
def test_capability_spellings(given: object, expected: set[str]):
    assert JobSpec(code="x", capabilities=given).capabilities == expected


def test_capability_names_must_be_strings():
    with pytest.raises(ValidationError) as info:
        JobSpec(code="x", capabilities=[10])
    assert _loc(info) == ("capabilities",)


def test_a_bare_string_is_not_a_set_of_capabilities():
    with pytest.raises(ValidationError) as info:
        JobSpec(code="x", capabilities="net_admin")
    assert _loc(info) == ("capabilities",)


def test_specs_are_values():
    a = JobSpec(code="x", capabilities=["kill"], env={"A": "1"})
    b = JobSpec(code="x", capabilities=["CAP_KILL"], env={"A": "1"})
    assert a == b
    assert JobSpec.model_validate_json(a.model_dump_json()) == a


@pytest.mark.parametrize("language", ["Python", "python3", "", "zsh"])
def test_only_known_languages(language: str):
    with pytest.raises(ValidationError) as info:
        JobSpec(code="x", language=language)
    assert _loc(info) == ("language",)


def test_shipped_languages_each_name_a_source_file_and_a_command():
    shipped = languages.load(languages.SHIPPED)
    assert set(shipped) >= {"python", "sh", "c", "cpp"}
    for info in shipped.values():
        assert "/" not in info.source
        assert info.run[0].startswith(("/", "./"))
        if info.compile is not None:
            suffix = "*" + info.source[info.source.rfind(".") :]  # or all of its files
            assert any(info.source in arg or suffix in arg for arg in info.compile)
            Limits.model_validate(info.compile_limits)
        if not info.artifacts:  # interpreted: the run command reads the source
            assert info.run[-1] == info.source


def test_unknown_language_lists_the_known_ones():
    with pytest.raises(
        ValidationError, match=r"unknown language 'cobol'; known: bash, c, cpp, csharp"
    ):
        JobSpec(code="x", language="cobol")


def test_seccomp_profiles_named_in_the_spec_are_the_filters():
    """The spec's Literal and sandbox.kernel.seccomp.PROFILES name the same profiles."""
    from typing import get_args

    from sandbox.kernel.seccomp import DENIED, PROFILES
    from sandbox.spec import SeccompProfile

    assert set(get_args(SeccompProfile)) == set(PROFILES)
    assert PROFILES["ptrace"].allow <= set(DENIED)
    assert not PROFILES["default"].allow
    assert not PROFILES["strict"].allow


def test_a_profile_the_operator_did_not_allow_is_refused_by_the_plan(tmp_path):
    from sandbox.errors import SpecError
    from sandbox.image.store import Image
    from sandbox.plan import build_plan
    from sandbox.settings import Settings

    image = Image("host", root=tmp_path, binds=())
    spec = JobSpec(code="x", seccomp_profile="ptrace")
    with pytest.raises(SpecError, match="SANDBOX_ALLOWED_SECCOMP_PROFILES") as info:
        build_plan(spec, Settings(), image)
    assert info.value.field == "seccomp_profile"
    allowed = Settings(allowed_seccomp_profiles=frozenset({"default", "ptrace"}))
    assert build_plan(spec, allowed, image).job.seccomp_profile == "ptrace"
    off = Settings(seccomp=False, allowed_seccomp_profiles=frozenset({"default", "ptrace"}))
    with pytest.raises(SpecError, match="seccomp is off"):
        build_plan(spec, off, image)
    assert build_plan(JobSpec(code="x"), off, image).job.seccomp_profile == "default"
