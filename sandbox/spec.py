"""Policy: what a submitter asks for, as frozen pydantic models. No I/O here.

``JobSpec`` is the public contract of a job. Each limit (declared once, in
:mod:`sandbox.resources`) has a sane default here and a maximum set by the
operator in :class:`sandbox.settings.Settings`; :func:`sandbox.plan.build_plan`
refuses a spec beyond the maximum.

``Limits`` and sizes are :mod:`sandbox.limits`'s, named here too.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from sandbox.limits import Limits, Size, parse_size

__all__ = ["File", "JobSpec", "Limits", "Size", "normalise_capabilities", "parse_size"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Names of sandbox.kernel.seccomp.PROFILES: a job picks a named profile, never syscalls.
SeccompProfile = Literal["default", "strict", "ptrace"]


# A file of the job's working directory: a plain name, no path.
def _not_dots(name: str) -> str:
    if name in (".", ".."):
        raise ValueError(f"{name!r} is not a file name")
    return name


FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$"), AfterValidator(_not_dots)]
MAX_FILES = 64


class File(BaseModel):
    """A file's content, JSON-safe: UTF-8 text as is, anything else base64.

    In a JobSpec a plain string (text) or bytes stand for a File.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"
    executable: bool = False

    @classmethod
    def of(cls, data: bytes, *, executable: bool = False) -> File:
        """The File holding ``data``: text if it is valid UTF-8, else base64."""
        try:
            return cls(content=data.decode(), executable=executable)
        except UnicodeDecodeError:
            return cls(
                content=base64.b64encode(data).decode(), encoding="base64", executable=executable
            )

    def data(self) -> bytes:
        """The file's bytes."""
        if self.encoding == "base64":
            return base64.b64decode(self.content, validate=True)
        return self.content.encode()


def _file(value: object) -> object:
    if isinstance(value, str):
        return File(content=value)
    if isinstance(value, bytes):
        return File.of(value)
    return value


InputFile = Annotated[File, BeforeValidator(_file)]


def _known_language(name: str) -> str:
    from sandbox import languages  # it parses sizes with this module: resolve at call time

    languages.get(name)  # raises ValueError listing the known ones
    return name


# A language of sandbox/languages.toml (or the deployer's file).
LanguageName = Annotated[str, AfterValidator(_known_language)]


class JobSpec(BaseModel):
    """One job: a program, its input and its limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(description="the program's source text")
    language: LanguageName = Field(
        "python", description="a language of sandbox/languages.toml (or the deployer's file)"
    )
    image: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="image to run in (`sandbox image ls`); default: the language's",
    )
    stdin: str = Field("", description="the program's standard input")
    argv: tuple[str, ...] = Field((), description="extra arguments after the source file")
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment; nothing of the worker's leaks in"
    )
    limits: Limits = Field(default_factory=Limits)
    capabilities: frozenset[str] = Field(
        frozenset(), description="capability names to grant; non-empty runs the job as root"
    )
    network: bool = Field(
        False, description="network egress: public addresses only (the operator must allow it)"
    )
    seccomp_profile: SeccompProfile = Field(
        "default",
        description="named syscall filter (docs/security.md); the operator allows which",
    )
    files: dict[FileName, InputFile] = Field(
        default_factory=dict,
        max_length=MAX_FILES,
        description="extra files for the working directory: name -> text, bytes or File",
    )
    collect: tuple[FileName, ...] = Field(
        (),
        max_length=MAX_FILES,
        description="files of the working directory to return in the result (each up to "
        "limits.output bytes)",
    )
    step: Literal["all", "compile", "run"] = Field(
        "all",
        description="for compiled languages: compile and run (all), only compile (its "
        "artifacts come back in files), or only run (the artifacts given in files)",
    )

    @field_validator("files")
    @classmethod
    def _files_decode(cls, value: dict[str, File]) -> dict[str, File]:
        for name, file in value.items():
            try:
                file.data()
            except ValueError as exc:
                raise ValueError(f"file {name}: not valid base64") from exc
        return value

    @field_validator("argv")
    @classmethod
    def _argv_without_nul(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arg in value:
            if "\0" in arg:
                raise ValueError(f"argument contains a NUL byte: {arg!r}")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name: {name!r}")
            if "\0" in val:
                raise ValueError(f"environment variable {name} contains a NUL byte")
        return value

    @field_validator("capabilities", mode="before")
    @classmethod
    def _cap_names(cls, value: object) -> object:
        return normalise_capabilities(value)


def normalise_capabilities(value: object) -> object:
    """``["net_bind_service", "CAP_KILL"]`` -> ``{"CAP_NET_BIND_SERVICE", "CAP_KILL"}``.

    Other values are left to pydantic's own validation.

    Raises:
        ValueError: an item is not a string.
    """
    if isinstance(value, (list, tuple, set, frozenset)):
        names = set()
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"capability names are strings, not {item!r}")
            name = item.strip().upper()
            names.add(name if name.startswith("CAP_") else f"CAP_{name}")
        return frozenset(names)
    return value
