from __future__ import annotations

import pytest

from sandbox import JobSpec, Status

pytestmark = [pytest.mark.root, pytest.mark.overlay]


async def test_hello(runtime):
    result = await runtime.execute(JobSpec(code="print('hello')"))
    assert result.status is Status.OK
    assert result.stdout == "hello\n"
