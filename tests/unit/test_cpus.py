"""CPU lists and host-wide slots (real flock files under tmp_path)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.kernel.cpus import parse_cpu_list
from sandbox.kernel.slots import Slots
from sandbox.settings import Settings


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("", ()), ("3", (3,)), ("0-2,5", (0, 1, 2, 5)), ("1,1,0-1", (1, 0)), (" 2-3 ", (2, 3))],
)
def test_cpu_lists(text: str, cpus: tuple[int, ...]):
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["a", "1-", "-1", "1,,2", "1 2", "0x1"])
def test_bad_cpu_lists_are_named(text: str):
    with pytest.raises(ValueError, match="not a CPU list"):
        parse_cpu_list(text)


def test_backwards_ranges_are_refused():
    with pytest.raises(ValueError, match="3-1 runs backwards"):
        parse_cpu_list("3-1")


def test_settings_check_the_list():
    with pytest.raises(ValidationError, match="not a CPU list"):
        Settings(pin_cpus="all")
    assert Settings(pin_cpus="0-1").pin_cpus == "0-1"


def test_slots_are_exclusive_across_holders(tmp_path: Path):
    """Two runtimes (two Slots on one directory) never hold the same CPU."""
    one, two = Slots(tmp_path, (0, 1)), Slots(tmp_path, (0, 1))
    a = one.try_acquire()
    b = two.try_acquire()
    assert a is not None
    assert b is not None
    assert {a.id, b.id} == {0, 1}
    assert one.try_acquire() is None
    assert two.try_acquire() is None
    a.release()
    c = two.try_acquire()
    assert c is not None
    assert c.id == a.id
    a.release()  # twice: harmless
    b.release()
    c.release()


async def test_acquire_waits_for_a_release(tmp_path: Path):
    slots = Slots(tmp_path, (7,), poll=0.001)
    held = await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.02)
    assert not waiter.done()
    held.release()
    got = await asyncio.wait_for(waiter, 1)
    assert got.id == 7
    got.release()


async def test_a_cancelled_wait_holds_nothing(tmp_path: Path):
    slots = Slots(tmp_path, (0,), poll=0.001)
    held = await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.release()
    again = slots.try_acquire()
    assert again is not None
    again.release()
