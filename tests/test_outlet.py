"""stderr through `Outlet`: writes never wait for whoever reads it."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from inboxleads.outlet import Outlet


class Gate(io.StringIO):
    """A stream whose writes block until the gate opens (a reader that went quiet)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.calls = 0

    def fileno(self) -> int:
        raise io.UnsupportedOperation("in memory")

    def write(self, text: str) -> int:
        self.calls += 1
        self.open.wait()
        return super().write(text)


def test_writes_return_at_once_and_arrive_in_order_when_the_reader_comes_back() -> None:
    target = Gate()
    outlet = Outlet(target)
    started = time.monotonic()
    for i in range(1000):
        outlet.write(f"line {i}\n")
    assert time.monotonic() - started < 5  # none of them waited for the reader
    assert not outlet.drain(0.05)  # the reader is still away
    target.open.set()
    assert outlet.drain(5)
    assert target.getvalue() == "".join(f"line {i}\n" for i in range(1000))
    assert outlet.dropped == 0


def test_beyond_the_limit_writes_are_dropped_whole_and_counted() -> None:
    target = Gate()
    outlet = Outlet(target, limit=100)
    outlet.write("a" * 60)  # taken by the thread, which then blocks in the write
    end = time.monotonic() + 5
    while target.calls == 0 and time.monotonic() < end:
        time.sleep(0.001)
    outlet.write("b" * 60)
    outlet.write("c" * 60)  # would make 120 queued: dropped
    outlet.write("d" * 30)
    target.open.set()
    assert outlet.drain(5)
    assert target.getvalue() == "a" * 60 + "b" * 60 + "d" * 30
    assert outlet.dropped == 60


def test_a_broken_stderr_loses_the_text_and_nothing_else() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", closefd=True) as target:
        outlet = Outlet(target)  # writes to its own copy of the descriptor
        for _ in range(3):
            assert outlet.write("nobody reads this\n") == len("nobody reads this\n")
        assert outlet.drain(5)


def test_it_is_a_text_stream_for_those_who_check() -> None:
    outlet = Outlet(io.StringIO())
    with pytest.raises(TypeError):
        outlet.write(b"bytes")  # type: ignore[arg-type]
    assert outlet.writable() and not outlet.isatty()
    assert outlet.encoding
