"""``python -m sandbox.kernel.native [--force]``: build the launcher (the install step runs it)."""

import sys

from sandbox.errors import UnsupportedError
from sandbox.kernel.native import build

try:
    print(build(force="--force" in sys.argv[1:]))
except UnsupportedError as exc:
    print(f"sandbox.kernel.native: {exc}", file=sys.stderr)
    sys.exit(1)
