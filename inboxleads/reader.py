"""The reader thread: parses the inputs off the event loop; the loop pulls the chunks.

Blocking reads (a silent pipe, a slow disk) stay in one daemon thread, which
parses records into chunks and leaves them in a small outbox. The loop takes
chunks from the outbox when it is ready for them (`take`), and waits for one
with `wait` (which has no side effect, so abandoning a wait loses nothing).

The thread never blocks on the loop for long: while the outbox is full it
waits in short steps and gives up as soon as the outbox is sealed. The loop
ends the hand-over in two steps:

- `close`: read nothing more. The thread hands over what it has already
  parsed and ends before its next read; a thread blocked in a read (a silent
  pipe) is abandoned there with nothing parsed in hand.
- `seal`: accept nothing more, and return every chunk still in the outbox.
  A chunk the thread finishes after the seal was never handed over and is
  not counted on either side.

`handed_over` counts the records of every chunk accepted into the outbox, so
the ledger can check that everything the reader produced was taken. The
thread owns the inputs and closes each when it is done with it; an input it
is blocked on stays open until the read returns (closing a descriptor under a
blocked read could hand the number to another file).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections import deque
from collections.abc import Callable
from typing import IO, cast

from .errors import InputError
from .identifiers import HandleRun
from .inputs import Chunk, OpenInput, ReadOptions, read_chunks

READ_CHUNK = 2048
OUTBOX = 4
_STEP_S = 0.05


class _Closed(Exception):
    """The loop wants nothing more from the thread."""


class End:
    """Every input was read to its end."""


END = End()


def records_in(chunk: Chunk) -> int:
    """How many input records a chunk holds (a run of handles is one per handle)."""
    return sum(len(r) if isinstance(r, HandleRun) else 1 for r in chunk)


class Reader:
    """Reads every input in a daemon thread and hands chunks to the loop on request."""

    def __init__(
        self,
        inputs: list[OpenInput],
        options: ReadOptions,
        *,
        batch_hint: int = READ_CHUNK,
    ) -> None:
        self._inputs = inputs
        self._options = options
        self._chunk_size = max(1, min(READ_CHUNK, batch_hint))
        self._cond = threading.Condition()
        self._outbox: deque[Chunk] = deque()
        self._finished = False
        self._error: BaseException | None = None
        self._closed = False
        self._sealed = False
        self._in_read = False
        self.handed_over = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._thread: threading.Thread | None = None

    # -- the loop's side ----------------------------------------------------------

    def start(self) -> None:
        """Start the thread (from the event loop that will take the chunks)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, name="inboxleads-reader", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def take(self) -> Chunk | End | None:
        """The next chunk, END after the last one, or None when none is ready yet.

        Raises the `InputError` that ended the reading, after every chunk
        read before it was taken.
        """
        with self._cond:
            if self._outbox:
                chunk = self._outbox.popleft()
                self._cond.notify_all()
                return chunk
            if self._finished:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return END
            self._ready.clear()
            return None

    async def wait(self) -> None:
        """Wait until `take` has something to say (a chunk, the end, or an error)."""
        await self._ready.wait()

    def close(self) -> None:
        """Read nothing more: the thread hands over what it holds, then ends."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def settled(self) -> bool:
        """True when the thread holds no parsed record: ended, or blocked in a read."""
        with self._cond:
            return self._finished or self._in_read or self._thread is None

    def seal(self) -> list[Chunk]:
        """Accept nothing more; return the chunks still in the outbox."""
        with self._cond:
            self._closed = self._sealed = True
            left = list(self._outbox)
            self._outbox.clear()
            self._cond.notify_all()
            return left

    # -- the thread's side --------------------------------------------------------

    def _signal(self) -> None:
        loop = self._loop
        if loop is not None:
            # The loop may be gone already (the run ended while this thread read).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._ready.set)

    def _put(self, chunk: Chunk) -> None:
        with self._cond:
            while len(self._outbox) >= OUTBOX and not self._sealed:
                self._cond.wait(_STEP_S)
            if self._sealed:
                raise _Closed
            self._outbox.append(chunk)
            self.handed_over += records_in(chunk)
        self._signal()

    def _finish(self, error: BaseException | None) -> None:
        with self._cond:
            self._finished = True
            if not self._sealed:
                self._error = error
        self._signal()

    def _main(self) -> None:
        buffer: Chunk = []

        def hand_over() -> None:
            if buffer:
                self._put(buffer.copy())
                buffer.clear()

        error: BaseException | None = None
        try:
            for source in self._inputs:
                stream = cast(IO[bytes], _Watched(source.stream, self))
                watched = dataclasses.replace(source, stream=stream)
                try:
                    # Just before a read that may block, hand over what is parsed,
                    # so that a quiet pipe never holds records back.
                    for chunk in read_chunks(watched, self._options, hand_over):
                        buffer.extend(chunk)
                        if len(buffer) >= self._chunk_size:
                            hand_over()
                    hand_over()  # a chunk never mixes two inputs
                finally:
                    source.close()
        except _Closed:
            pass
        except InputError as exc:
            with contextlib.suppress(_Closed):
                hand_over()
            error = exc
        except (OSError, ValueError) as exc:
            with contextlib.suppress(_Closed):
                hand_over()
            error = InputError("input", f"read failed: {exc}")
        except BaseException as exc:  # a bug: the loop reports it, the thread ends
            error = exc
        finally:
            for source in self._inputs:
                with contextlib.suppress(Exception):
                    source.close()
        self._finish(error)


class _Watched:
    """An input stream that tells the reader when it is inside a read, and refuses
    to start one once the reader is closed."""

    def __init__(self, stream: IO[bytes], reader: Reader) -> None:
        self._read = stream.read1 if hasattr(stream, "read1") else stream.read
        self._buffered: Callable[[], int] = getattr(stream, "buffered", lambda: 0)
        self._reader = reader

    def read1(self, size: int = -1) -> bytes:
        reader = self._reader
        with reader._cond:
            # Bytes already taken from the pipe (peeked to sniff the format) are
            # read even after a close: they are lines the user already sent.
            if reader._closed and not self._buffered():
                raise _Closed
            reader._in_read = True
        try:
            return self._read(size)
        finally:
            with reader._cond:
                reader._in_read = False
