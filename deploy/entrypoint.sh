#!/bin/sh
# What the worker image runs (deploy/Dockerfile), and what CI runs to check it:
# prove this host (container) can sandbox, then become a Celery worker.
#   entrypoint.sh [CELERY WORKER ARGS...]
#   SANDBOX_ENTRYPOINT_DRY_RUN=1 entrypoint.sh ...   check, print the command, exit
set -eu
sandbox doctor >&2 || {
    echo "entrypoint: this container cannot run sandboxes; see deploy/README.md" >&2
    exit 1
}
if [ -n "${SANDBOX_ENTRYPOINT_DRY_RUN:-}" ]; then
    echo "sandbox worker $*"
    exit 0
fi
exec sandbox worker "$@"
