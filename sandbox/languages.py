"""Languages as data: the shipped ``languages.toml``, extended by the deployer's.

Each language names its image, its source file, how to compile it (if it is
compiled) and how to run it, and how its limits are adjusted. A deployer adds
or replaces languages by name in the file named by ``SANDBOX_LANGUAGES_FILE``,
with the same shape. Read once per process (tomllib, in the standard library).
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sandbox.limits import Limits, parse_size

__all__ = ["ENV", "SHIPPED", "LanguageInfo", "get", "known", "load"]

SHIPPED = Path(__file__).with_name("languages.toml")
ENV = "SANDBOX_LANGUAGES_FILE"
_FILE_NAME = r"^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$"  # not "." nor ".."


class LanguageInfo(BaseModel):
    """How a language's source file is named, compiled and run inside the container."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = "host"
    source: str = Field(pattern=_FILE_NAME)
    extensions: tuple[str, ...] = ()
    compile: tuple[str, ...] | None = Field(None, min_length=1)
    artifacts: tuple[Annotated[str, Field(pattern=_FILE_NAME)], ...] = ()
    run: tuple[str, ...] = Field(min_length=1)
    time_factor: float = Field(1.0, gt=0, le=100)
    extra_memory: Annotated[int, BeforeValidator(parse_size)] = Field(0, ge=0)
    extra_pids: int = Field(0, ge=0, le=1024)  # the runtime's own threads (the JVM's, Node's)
    compile_limits: dict[str, Any] = Field(default_factory=dict)
    version: tuple[str, ...] | None = Field(None, min_length=1)
    packages: tuple[str, ...] = ()  # Debian's, which scripts/install installs

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    @property
    def takes_compile_options(self) -> bool:
        """Its compile command names $COMPILE_OPTIONS (a submission's compiler options)."""
        return "$COMPILE_OPTIONS" in " ".join(self.compile or ())

    def programs(self) -> list[str]:
        """The absolute paths the language needs in its image: its commands' programs."""
        argvs = [self.run, self.compile or (), self.version or ()]
        return sorted({argv[0] for argv in argvs if argv and argv[0].startswith("/")})

    def missing(self, root: Path) -> list[str]:
        """Its programs that ``root`` (an image's root, with its host binds) lacks."""
        return [p for p in self.programs() if not os.access(root / p.lstrip("/"), os.X_OK)]


def load(*paths: Path) -> dict[str, LanguageInfo]:
    """Read language tables from ``paths`` in order; later files replace earlier names.

    Raises:
        ValueError: a file cannot be read or a table is invalid (file and
            language named).
    """
    found: dict[str, LanguageInfo] = {}
    for path in paths:
        try:
            with path.open("rb") as f:
                tables = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read languages from {path}: {exc}") from exc
        for name, table in tables.items():
            try:
                info = LanguageInfo.model_validate(table)
                Limits.model_validate(info.compile_limits)
            except ValidationError as exc:
                raise ValueError(f"{path}: language {name!r}: {exc}") from exc
            found[name] = info
    return found


@functools.cache
def _registry(extra: str) -> dict[str, LanguageInfo]:
    return load(SHIPPED, *([Path(extra)] if extra else []))


def known() -> dict[str, LanguageInfo]:
    """Every language of this process: the shipped ones and ``$SANDBOX_LANGUAGES_FILE``'s."""
    return _registry(os.environ.get(ENV, ""))


def get(name: str) -> LanguageInfo:
    """The language called ``name``.

    Raises:
        ValueError: no such language (the known ones are listed).
    """
    languages = known()
    if name not in languages:
        raise ValueError(f"unknown language {name!r}; known: {', '.join(sorted(languages))}")
    return languages[name]
