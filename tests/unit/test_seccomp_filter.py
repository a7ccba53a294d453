"""The compiled seccomp programs, run on a small classic-BPF interpreter.

The runtime loads a binary tree over the syscall numbers (cheaper for the
kernel to load, docs/performance.md); it must decide every syscall, of every
architecture, with every argument the rules look at, as the plain list of
rules does. tests/security/test_seccomp.py tries the refusals for real.
"""

from __future__ import annotations

import errno
import struct

import pytest

from sandbox.kernel import seccomp

AUDIT_ARCH_X86_64, AUDIT_ARCH_I386 = 0xC000003E, 0x40000003
X32_BIT = 0x40000000
ALLOW, KILL_PROCESS = 0x7FFF0000, 0x80000000
EPERM = 0x00050000 | errno.EPERM
# Values of argument 0 that the rules test (clone's namespace flags,
# personality's bits, socket's domain), and some that no rule names.
ARGUMENTS = [
    0, 1, 2, 10, 17, 0x80, 0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000,
    0x20000000, 0x40000000, 0x0040000, 0x0400000, 0x10000000 | 17, 0xFFFFFFFF,
    0xFFFFFFFF00000000, 0x100000000 | 0x10000000,
]  # fmt: skip


def run(program: bytes, nr: int, arch: int, arg0: int) -> int:
    """The action ``program`` returns for one call (struct seccomp_data, little-endian)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    code = [struct.unpack_from("<HBBI", program, at) for at in range(0, len(program), 8)]
    a = x = 0
    scratch = [0] * 16
    pc = 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        kind = op & 0x07
        if kind == 0x00 and op & 0xE0 == 0x20:  # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif kind == 0x00 and op & 0xE0 == 0x60:  # ld M[k]
            a = scratch[k]
        elif kind == 0x00 and op & 0xE0 == 0x00:  # ld #k
            a = k
        elif kind == 0x01 and op & 0xE0 == 0x60:  # ldx M[k]
            x = scratch[k]
        elif kind == 0x02:  # st M[k]
            scratch[k] = a
        elif kind == 0x03:  # stx M[k]
            scratch[k] = x
        elif kind == 0x04:  # alu
            src = x if op & 0x08 else k
            a = {0x40: a | src, 0x50: a & src, 0xA0: a ^ src}[op & 0xF0] & 0xFFFFFFFF
        elif kind == 0x05:  # jumps
            src = x if op & 0x08 else k
            if op & 0xF0 == 0x00:
                pc += k
                continue
            taken = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}
            pc += jt if taken[op & 0xF0] else jf
        elif kind == 0x06:  # ret
            return a if op & 0x18 == 0x10 else k
        elif kind == 0x07:  # tax, txa
            if op & 0xF8 == 0x80:
                a = x
            else:
                x = a
        else:
            raise AssertionError(f"opcode {op:#x} at {pc - 1} is not interpreted here")


def resolve(name: str) -> int:
    number: int = seccomp._lib().seccomp_syscall_resolve_name(name.encode())
    return number


@pytest.mark.parametrize("profile", sorted(seccomp.PROFILES))
def test_the_tree_decides_every_call_as_the_list_of_rules_does(profile):
    tree = seccomp.build_filter(profile).bpf()
    rules = seccomp.build_filter(profile, optimize=False).bpf()
    numbers = [*range(-1, 600), *range(X32_BIT, X32_BIT + 600), 0x7FFFFFFF]
    differ = [
        (hex(arch), nr, hex(arg))
        for arch in (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0)
        for nr in numbers
        for arg in ARGUMENTS
        if run(tree, nr, arch, arg) != run(rules, nr, arch, arg)
    ]
    assert not differ, differ[:20]


def test_the_interpreter_tells_the_actions_apart():
    """Else the comparison above would pass on any two programs."""
    tree = seccomp.build_filter("default").bpf()
    assert run(tree, resolve("read"), AUDIT_ARCH_X86_64, 0) == ALLOW
    assert run(tree, resolve("unshare"), AUDIT_ARCH_X86_64, 0) == EPERM
    assert run(tree, resolve("clone"), AUDIT_ARCH_X86_64, 0x10000000 | 17) == EPERM
    assert run(tree, resolve("clone"), AUDIT_ARCH_X86_64, 17) == ALLOW
    assert run(tree, resolve("personality"), AUDIT_ARCH_X86_64, 0x0040000) == EPERM
    assert run(tree, resolve("read"), AUDIT_ARCH_I386, 0) == KILL_PROCESS
    assert run(tree, X32_BIT | resolve("read"), AUDIT_ARCH_X86_64, 0) == KILL_PROCESS
    strict = seccomp.build_filter("strict").bpf()
    assert run(strict, resolve("socket"), AUDIT_ARCH_X86_64, 2) != ALLOW
    assert run(strict, resolve("socket"), AUDIT_ARCH_X86_64, 1) == ALLOW
