"""``python -m sandbox.native [--force]``: build the launcher (the install step runs it)."""

import sys

from sandbox.errors import UnsupportedError
from sandbox.native import build

try:
    print(build(force="--force" in sys.argv[1:]))
except UnsupportedError as exc:
    print(f"sandbox.native: {exc}", file=sys.stderr)
    sys.exit(1)
