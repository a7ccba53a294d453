"""A recording fake of :class:`sandbox.kernel.syscalls.Syscalls`, as youki's ``TestHelperSyscall``.

It checks the order and arguments of kernel calls; it never proves isolation
(the integration tests on the real kernel do). Every call is appended to
``calls`` as a tuple whose first item is the syscall's name. The list may be
shared with other recorders (a monkeypatched ``os.setresuid``...) so that one
log holds the whole sequence.
"""

from __future__ import annotations

from typing import Any

from sandbox.kernel.syscalls import Syscalls

# Any, not object: tests compare and mask the recorded arguments.
Call = tuple[Any, ...]


class RecordingSyscalls:
    """Records each call instead of making it; every call succeeds."""

    def __init__(self, calls: list[Call] | None = None) -> None:
        self.calls: list[Call] = [] if calls is None else calls

    def unshare(self, flags: int) -> None:
        self.calls.append(("unshare", flags))

    def setns(self, fd: int, nstype: int) -> None:
        self.calls.append(("setns", fd, nstype))

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        self.calls.append(("mount", source, target, fstype, flags, data))

    def umount2(self, target: str, flags: int) -> None:
        self.calls.append(("umount2", target, flags))

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self.calls.append(("pivot_root", new_root, put_old))

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int:
        self.calls.append(("prctl", option, arg2, arg3))
        return 0

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self.calls.append(("capset", effective, permitted, inheritable))

    def sethostname(self, name: str) -> None:
        self.calls.append(("sethostname", name))

    def named(self, name: str) -> list[Call]:
        """The recorded calls of one syscall, in order."""
        return [call for call in self.calls if call[0] == name]


# mypy checks that the fake still matches the protocol.
_CONFORMS: Syscalls = RecordingSyscalls()
