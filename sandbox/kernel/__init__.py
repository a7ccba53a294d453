"""The kernel mechanism: one module per kernel feature, taking plain values.

``syscalls`` (the only libc caller), ``namespaces``, ``caps``, ``limits``
(rlimits), ``seccomp``, ``cgroups/`` (v1 and v2 behind one protocol),
``egress`` (a job's network stack and firewall), ``files`` (files into a
job and back), ``slots`` and ``cpus`` (host-wide numbered resources),
``enter`` (`sandbox exec`), and ``native/``: the child side in C, the
launcher that builds each container. Nothing here imports pydantic, Celery
or the layers above (docs/adr/0012-layers.md).
"""
