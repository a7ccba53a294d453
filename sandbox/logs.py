"""Structured logs: one JSON object per line when ``SANDBOX_LOG_FORMAT=json``.

Every finished job is logged by the runtime on ``sandbox.runtime.jobs`` with its id,
task id, status, times, memory and limits as fields; its code, input and
output only with ``SANDBOX_LOG_DEBUG=true``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["JsonFormatter", "use_json"]


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, and its ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def use_json(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (the root logger by default) the JSON formatter."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        handler.setFormatter(JsonFormatter())
