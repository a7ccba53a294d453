"""A job's resource limits as a pydantic model, made from the declared list, and sizes.

:class:`Limits` has one field per entry of :data:`sandbox.resources.LIMITS`
(its default, bounds and description); ``JobSpec.limits`` is one, and so
is a language's ``compile_limits`` (sandbox/languages.py). Sizes accept a
number of bytes or a string with a binary suffix, as Docker does: ``"64M"``,
``"64m"``, ``"64MiB"`` and ``"64MB"`` all mean 64 * 2**20.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, create_model

from sandbox.resources import LIMITS, Limit

__all__ = ["Limits", "Size", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value: object) -> object:
    """Turn ``"64M"``-style strings into bytes; leave other values to pydantic.

    Raises:
        ValueError: the string is not a size.
    """
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"not a size: {value!r} (use bytes or a suffix K, M, G, e.g. '64M')")
        number, unit, _ = match.groups()
        scale = _UNITS[unit.lower()]
        # Whole numbers stay exact (float would round above 2**53).
        return int(number) * scale if "." not in number else int(float(number) * scale)
    return value


Size = Annotated[int, BeforeValidator(parse_size)]


def _limit_field(limit: Limit) -> tuple[Any, Any]:
    kinds: dict[str, Any] = {"seconds": float, "cpus": float, "count": int, "bytes": Size}
    annotation = kinds[limit.kind] if limit.default is not None else kinds[limit.kind] | None
    bounds: dict[str, Any] = {"gt" if limit.kind == "seconds" else "ge": limit.minimum}
    if limit.bound is not None:
        bounds["le"] = limit.bound
    return annotation, Field(limit.default, description=limit.help, **bounds)


# The fields come from the declared list, sandbox/resources.py: mypy sees them as Any.
_FIELDS: dict[str, Any] = {limit.name: _limit_field(limit) for limit in LIMITS}
_LimitFields: Any = create_model(
    "_LimitFields", __config__=ConfigDict(frozen=True, extra="forbid"), **_FIELDS
)


class Limits(_LimitFields):
    """Resource limits of one job, one field per limit of sandbox/resources.py ``LIMITS``.

    Every field has a default and an operator maximum.
    """

    if TYPE_CHECKING:  # the fields are made from the list: to mypy, each is Any

        def __getattr__(self, name: str) -> Any: ...
