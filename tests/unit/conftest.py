"""Unit tests: no root, no kernel features, the same result on any machine."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the host's ``SANDBOX_*`` variables, so ``Settings()`` means the defaults."""
    for name in list(os.environ):
        if name.startswith("SANDBOX_"):
            monkeypatch.delenv(name)
