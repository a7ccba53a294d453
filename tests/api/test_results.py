"""Waiting for results by their channel (sandbox/api/results.py), against a real Redis:
a result published later ends the wait, one stored before the subscription is read, a
timeout says None, and a lost subscription ends every wait with Unsubscribed (the API
then polls)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from sandbox.api.results import Results, Unsubscribed
from tests.service.conftest import Redis

pytestmark = [pytest.mark.redis]


async def _results(server: Redis) -> tuple[aioredis.Redis, Results]:
    client = aioredis.Redis.from_url(server.url)

    async def read(key: str) -> dict[str, Any] | None:
        raw = await client.get(key)
        return None if raw is None else dict(json.loads(raw))

    return client, Results(client, json.loads, read)


async def _store(client: aioredis.Redis, key: str, status: str) -> None:
    value = json.dumps({"status": status})
    await client.set(key, value)
    await client.publish(key, value)  # as Celery's Redis backend stores a state


async def test_a_wait_ends_when_its_result_is_published(redis_server: Redis):
    client, results = await _results(redis_server)
    try:
        waiting = asyncio.ensure_future(results.wait("meta-a", 30))
        await asyncio.sleep(0.2)
        await _store(client, "meta-a", "STARTED")  # not ready: the wait goes on
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await _store(client, "meta-a", "SUCCESS")
        assert await asyncio.wait_for(waiting, 5) == {"status": "SUCCESS"}
        await _store(client, "meta-b", "SUCCESS")  # stored before anyone waits
        assert await results.wait("meta-b", 5) == {"status": "SUCCESS"}
        assert await results.wait("meta-never", 0.3) is None
        assert results.waiting == {}
    finally:
        await results.close()
        await client.aclose()


async def test_a_lost_subscription_ends_every_wait_with_unsubscribed(redis_server: Redis):
    client, results = await _results(redis_server)
    try:
        waits = [asyncio.ensure_future(results.wait(f"meta-lost-{i}", 30)) for i in range(3)]
        await asyncio.sleep(0.3)
        killed = await client.client_kill_filter(_type="pubsub")
        assert killed >= 1
        for wait in waits:
            with pytest.raises(Unsubscribed):
                await asyncio.wait_for(wait, 10)
        await _store(client, "meta-after", "SUCCESS")  # a new wait subscribes again
        assert await results.wait("meta-after", 5) == {"status": "SUCCESS"}
    finally:
        await results.close()
        await client.aclose()
