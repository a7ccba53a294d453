"""Leases on the jobs a worker holds: a lost host's jobs run again in seconds.

kombu's Redis transport keeps every delivered, unacknowledged message in a
sorted set (``unacked_index``) scored by when it was delivered, and each
worker sweeps it periodically (``restore_visible``), putting back in its
queue every message older than the visibility timeout. With one fixed
timeout, it must exceed the longest job (or a live worker's long job runs
twice), so a lost host's jobs wait that long: an hour with judge limits.

Here the timeout is a short lease (``SANDBOX_LEASE``, 30 s) that live
workers keep renewing: :class:`LeaseRenewal`, a step of the worker's
consumer (the process that holds the messages, for its pool's running and
prefetched jobs alike), rescores the messages it holds to "now" every third
of a lease (``ZADD XX``: one that was acknowledged meanwhile is not added
back). When a host is lost, its renewals stop, and within a lease and a
sweep another worker puts its jobs back in the queue. docs/adr/0010-job-leases.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from celery import bootsteps
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from worker import metrics

__all__ = ["LeaseRenewal", "held_tags", "renew"]

log = logging.getLogger("sandbox.worker")


def held_tags(channel: Any) -> list[str]:
    """Delivery tags of the messages this consumer holds, unacknowledged.

    kombu's virtual QoS keeps them in ``_delivered``, less those acknowledged
    but not yet flushed (``_dirty``), as its own ``can_consume`` counts them
    (kombu 5.x; the test suite runs the real transport, so a change there
    fails a test).
    """
    qos = channel.qos
    acked: set[str] = getattr(qos, "_dirty", set())
    return [tag for tag in getattr(qos, "_delivered", {}) if tag not in acked]


def renew(
    channel: Any, tags: list[str], queues: tuple[str, ...] = (), now: float | None = None
) -> tuple[int, dict[str, int]]:
    """Rescore ``tags`` in the transport's unacked index to ``now``, in one round trip.

    Returns:
        How many were renewed (one already restored is not), and the length
        of each of ``queues``.
    """
    when = time.time() if now is None else now
    with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
        if tags:
            pipe.zadd(channel.unacked_index_key, dict.fromkeys(tags, when), xx=True, ch=True)
        for queue in queues:
            pipe.llen(queue)
        replies = pipe.execute()
    renewed = int(replies.pop(0)) if tags else 0
    return renewed, {queue: int(n) for queue, n in zip(queues, replies, strict=True)}


class LeaseRenewal(bootsteps.StartStopStep):  # type: ignore[misc]
    """Renews the leases of the consumer's messages every third of a lease.

    It also reports them, and its queues' lengths, as metrics
    (``sandbox_jobs_held``, ``sandbox_lease_renewals_total``,
    ``sandbox_leases_lost_total``, ``sandbox_queue_length``).
    """

    requires: ClassVar[set[str]] = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.tref: Any = None
        self.interval = consumer.app.conf.broker_transport_options["visibility_timeout"] / 3

    def start(self, consumer: Any) -> None:
        self.tref = consumer.timer.call_repeatedly(self.interval, self._renew, (consumer,))

    def stop(self, consumer: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def _renew(self, consumer: Any) -> None:
        task_consumer = getattr(consumer, "task_consumer", None)
        if task_consumer is None:  # between connections
            return
        channel = task_consumer.channel
        tags = held_tags(channel)
        queues = tuple(queue.name for queue in task_consumer.queues)
        try:
            renewed, lengths = renew(channel, tags, queues)
            metrics.observe_leases(len(tags), renewed, lengths)
        except (RedisError, OperationalError, OSError) as exc:
            # Redis is away: the leases run on; kombu reconnects, and a
            # message restored meanwhile runs twice (at least once: ADR 0010).
            log.warning("cannot renew job leases: %s", exc)
