"""The Celery service: workers pull jobs from Redis and run them in the sandbox.

Thin by design (``settings`` -> ``app`` -> ``tasks``): everything about
running a job lives in :mod:`sandbox`; this package only moves jobs and
results between Redis and the runtime. Start a worker with ``sandbox worker``
(or ``celery -A worker.app:app worker``).
"""
