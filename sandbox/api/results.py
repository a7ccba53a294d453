"""Waiting for a task's result without polling: Celery's Redis backend publishes each
state it stores on a channel named as the result's key, so the API subscribes to the
keys it waits for, on one connection of its own, and reads the key once after
subscribing (a result stored before that is read, not missed).

Any trouble with the subscription (Redis restarted, the connection lost) ends every
wait in progress with :class:`Unsubscribed`; the caller polls instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["Results", "Unsubscribed"]

log = logging.getLogger("sandbox.api")
READY = ("SUCCESS", "FAILURE", "REVOKED")


class Unsubscribed(Exception):
    """The subscription failed or ended: wait by polling."""


class Results:
    """Futures of results by key, fed by one subscription's reader task."""

    def __init__(
        self,
        client: aioredis.Redis,
        decode: Callable[[bytes], dict[str, Any]],
        read: Callable[[str], Awaitable[dict[str, Any] | None]],
    ) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.decode, self.read = decode, read
        self.waiting: dict[str, set[asyncio.Future[dict[str, Any]]]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set by a subscription, cleared when none is left

    async def wait(self, key: str, within: float | None) -> dict[str, Any] | None:
        """The ready meta stored at ``key``; None if not within ``within`` seconds.

        Raises:
            Unsubscribed: the subscription is not working; poll instead.
        """
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        futures = self.waiting.setdefault(key, set())
        futures.add(done)
        try:
            if len(futures) == 1:
                await self._subscribe(key)
            meta = await self.read(key)  # stored before the subscription took?
            if meta is not None and meta.get("status") in READY:
                return meta
            try:
                return await asyncio.wait_for(asyncio.shield(done), within)
            except TimeoutError:
                return None
        except (RedisError, OSError) as exc:
            raise Unsubscribed(str(exc)) from exc
        finally:
            futures.discard(done)
            if not futures and self.waiting.get(key) is futures:
                del self.waiting[key]
                with contextlib.suppress(RedisError, OSError):
                    await self.pubsub.unsubscribe(key)
                if not self.waiting:
                    self.subscribed.clear()

    async def _subscribe(self, key: str) -> None:
        await self.pubsub.subscribe(key)
        self.subscribed.set()
        if self.reader is None or self.reader.done():
            self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:  # until close(): a wait may subscribe at any moment
                await self.subscribed.wait()
                message = await self.pubsub.get_message(timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                key = channel.decode() if isinstance(channel, bytes) else str(channel)
                meta = self.decode(message["data"])
                if meta.get("status") not in READY:
                    continue  # STARTED: not yet
                for future in self.waiting.get(key, ()):
                    if not future.done():
                        future.set_result(meta)
        except (RedisError, OSError) as exc:
            log.warning("result subscription lost (%s): waits poll instead", exc)
            for futures in self.waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(Unsubscribed(str(exc)))
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.aclose()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self.reader
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()
