"""A Judge0 CE-compatible HTTP API in front of the workers (``sandbox api``; docs/api.md).

A front end, like :mod:`sandbox.cli`: it sends ``sandbox.judge`` tasks
through Redis (:mod:`worker.tasks`) and reads the policy models (languages,
settings); it never imports the runtime or the kernel mechanism, and needs
no root. :mod:`sandbox.api.app` holds the routes, :mod:`sandbox.api.judge0`
the statuses, language ids and the mapping of our results (pure),
:mod:`sandbox.api.models` the bodies (and so the OpenAPI document at
``/docs``), :mod:`sandbox.api.settings` the ``SANDBOX_API_*`` settings,
:mod:`sandbox.api.server` the uvicorn server.
"""
