"""Leases on the jobs a worker holds, and the drain of a stopping worker.

kombu's Redis transport keeps every delivered, unacknowledged message in a
sorted set (``unacked_index``) scored by when it was delivered, and each
worker sweeps it periodically (``restore_visible``), putting back in its
queue every message older than the visibility timeout. With one fixed
timeout, it must exceed the longest job (or a live worker's long job runs
twice), so a lost host's jobs wait that long: an hour with judge limits.

Here the timeout is a short lease (``SANDBOX_LEASE``, 30 s) that live
workers keep renewing: :class:`Leases`, a thread of the worker's main
process (the one that holds the messages of its pool's running and
prefetched jobs), rescores every message the worker holds to "now" every
third of a lease (``ZADD XX``: one acknowledged meanwhile is not added
back). The messages are the worker's requests (``celery.worker.state``),
which outlive a reconnection of the consumer after a Redis restart, and the
thread has a connection of its own, so renewals go on through a reconnection
and through a warm shutdown's wait for running jobs. When a host is lost,
its renewals stop, and within a lease and a sweep another worker puts its
jobs back in the queue. docs/adr/0010-job-leases.md.

:func:`drain`: a worker told to stop (SIGTERM: Celery's warm shutdown, which
takes no new job) lets its running jobs finish for ``SANDBOX_DRAIN_TIMEOUT``
seconds, then ends the rest and puts them back in the queue at once, so that
another worker runs them before the platform's grace period runs out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery.worker import state
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from worker import metrics

__all__ = ["Leases", "drain", "held_tags", "renew"]

log = logging.getLogger("sandbox.worker")
_ERRORS = (RedisError, OperationalError, OSError)
RETRY = 0.25  # seconds between renewals while Redis is unreachable


def _requests() -> list[Any]:
    """The worker's requests (running or waiting for a pool process), from Celery's state."""
    while True:
        try:  # weak sets the consumer changes as jobs come and go
            return list({*state.reserved_requests, *state.active_requests})
        except RuntimeError:  # changed size during the copy: copy again
            continue


def held_tags(requests: Iterable[Any]) -> list[str]:
    """Delivery tags of the requests' messages not acknowledged yet."""
    tags = []
    for request in requests:
        message = getattr(request, "message", None)
        if message is not None and not message.acknowledged:
            tags.append(str(message.delivery_tag))
    return tags


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


class Leases:
    """Renews the leases of the worker's messages every third of a lease, until stopped.

    It also reports them, and its queues' lengths, as metrics
    (``sandbox_jobs_held``, ``sandbox_lease_renewals_total``,
    ``sandbox_leases_lost_total``, ``sandbox_queue_length``).
    """

    def __init__(self, app: Any, queues: tuple[str, ...]) -> None:
        self.app = app
        self.queues = queues
        self.interval = app.conf.broker_transport_options["visibility_timeout"] / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-leases", daemon=True)
        self._connection: Any = None
        self._failing = False  # the last renewal failed

    def start(self) -> None:
        """Renew once now, then every third of a lease: the thread's connection is
        made as the worker starts, not a third of a lease into its first jobs."""
        self.renew_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._close()

    def _run(self) -> None:
        # After a failed renewal it tries again soon: the first renewal once
        # Redis is back must come before any other worker's sweep finds the
        # lease run out (an outage up to two thirds of a lease is harmless).
        wait = self.interval
        while not self._stop.wait(wait):
            wait = self.interval if self.renew_once() else min(self.interval, RETRY)

    def renew_once(self) -> bool:
        """Renew every lease of this worker now; False if Redis could not be reached."""
        tags = held_tags(_requests())
        try:
            if self._connection is None:
                self._connection = self.app.connection_for_write()
            renewed, lengths = renew(self._connection.default_channel, tags, self.queues)
            metrics.observe_leases(len(tags), renewed, lengths)
        except _ERRORS as exc:
            # Redis is away: the leases run on, and are renewed once it is back
            # (a restored one is not: that job runs twice, at least once: ADR 0010).
            if not self._failing:
                log.warning("cannot renew job leases, trying again every %g s: %s", RETRY, exc)
            self._failing = True
            self._close()
            return False
        if self._failing:
            log.info("job leases renewed again (%d of %d held)", renewed, len(tags))
            self._failing = False
        return True

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*_ERRORS):  # already broken
                connection.release()


def drain(
    consumer: Any, timeout: float, forget: Callable[[str], None], poll: float = 0.2
) -> threading.Thread:
    """After ``timeout`` seconds, end the jobs still running and put them back in the queue.

    Runs in a thread of the main process while Celery's warm shutdown waits
    for the pool. Jobs that end in time are answered as usual; the others
    are cancelled as Celery's cold shutdown cancels them (their pool
    processes are ended, and with ``task_reject_on_worker_lost`` each
    message is rejected back to the queue). ``forget(task_id)`` is called
    for each first: a drained delivery is not one that killed its worker.
    """

    def wait_then_requeue() -> None:
        deadline = time.monotonic() + timeout
        while state.active_requests and time.monotonic() < deadline:
            time.sleep(poll)
        late = [request for request in _requests() if not request.acknowledged]
        if not late or not state.active_requests:
            return
        log.warning(
            "drain: %d job(s) still running after %g s go back to the queue: %s",
            len(late),
            timeout,
            ", ".join(str(request.id) for request in late),
        )
        for request in late:
            forget(str(request.id))
        consumer.cancel_active_requests()

    thread = threading.Thread(target=wait_then_requeue, name="sandbox-drain", daemon=True)
    thread.start()
    return thread
