"""The runtime: containers for jobs, on an asyncio loop of the supervisor.

``runner`` (``Runtime``: one job from spec to result), ``shared`` (the
process-wide runtime of ``execute`` and ``execute_sync``), ``pool`` (the
warm pool of ready containers), ``container`` (one container as the
supervisor sees it), ``output`` (its streams and files), ``watch`` (a job's
CPU-time and OOM watches), ``reclaim`` (owner locks, and gc of
what dead runtimes left), ``jobs`` (records of running jobs for `sandbox
ps`), ``host`` (`sandbox doctor`'s checks). It builds on the policy modules
(``sandbox.spec``, ``settings``, ``plan``...) and the kernel mechanism
(docs/adr/0012-layers.md).
"""
