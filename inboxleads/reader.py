"""The reader thread: parses the inputs off the event loop; the loop pulls the chunks.

Blocking reads (a silent pipe, a slow disk) stay in one daemon thread, which
parses records into chunks and leaves them in a small outbox. The loop takes
chunks from the outbox when it is ready for them (`take`), and waits for one
with `wait` (which has no side effect, so abandoning a wait loses nothing).
The thread never blocks on the loop for long: while the outbox is full it
waits in short steps and gives up as soon as the outbox is sealed.

Where an input can be polled (POSIX pipes, terminals, sockets), the thread
waits for input in short polls and only reads what has arrived, so it never
holds bytes it took from the pipe while it waits: "waiting for input" and
"reading" are told apart. The loop ends the hand-over in up to three steps:

- `close` (a first stop): wait for no more input. A regular file is read to
  its end; a pipe is read as long as input has already arrived, then ends;
  the user's lines already in the pipe are listed, not lost.
- `halt` (an abort): start no read at all. What the thread already read is
  parsed and handed over; that takes a moment, bounded (`drain`).
- `seal`: accept nothing more, and return every chunk still in the outbox.

`handed_over` counts the records of every chunk accepted into the outbox, so
the ledger can check that everything the reader produced was taken. Bytes
read after the seal were never handed over and are not counted on either
side; with polling, none are read once the thread is halted. Where an input
cannot be polled (a pipe on Windows), a read may block: the thread is then
abandoned in it, and input that arrives just as the run stops may be taken
and not counted.

The thread owns the inputs and closes each when it is done with it; an input
it is blocked on stays open until the read returns (closing a descriptor
under a blocked read could hand the number to another file).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, cast

from .errors import InputError
from .identifiers import HandleRun
from .inputs import Chunk, Info, OpenInput, ReadOptions, read_chunks

READ_CHUNK = 2048
# The bounds of a read of a regular file (see `_read_size`).
READ_MIN = 4 * 1024
READ_MAX = 256 * 1024
# A chunk is also handed over once this many bytes of input went into it: rows with
# long data make large records, and the outbox must stay small in bytes too.
CHUNK_BYTES = 1024 * 1024
OUTBOX = 4
_STEP_S = 0.05


class _Closed(Exception):
    """The loop wants nothing more from the thread."""


class End:
    """Every input was read to its end (or as far as a stop let it)."""


END = End()


def records_in(chunk: Chunk) -> int:
    """How many input records a chunk holds (a run of handles is one per handle)."""
    return sum(
        len(r) if isinstance(r, HandleRun) else 0 if isinstance(r, Info) else 1 for r in chunk
    )


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
        # Each chunk with the bytes of input read when it was handed over.
        self._outbox: deque[tuple[Chunk, int]] = deque()
        # The bytes read up to the last chunk taken, and the bytes of every input
        # when each is a regular file (None: not known, as for a pipe).
        self.position = 0
        self._sizes = [_size_of(source) for source in inputs]
        sizes = self._sizes
        self.total_bytes = None if None in sizes else sum(size or 0 for size in sizes)
        self._finished = False
        self._error: BaseException | None = None
        self._closed = False
        self._halted = False
        self._sealed = False
        # In a read that may block for good (an input that cannot be polled).
        self._stuck = False
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

    def use_variables(self, variables: tuple[tuple[str, str], ...]) -> None:
        """Read table headers with the campaign's variables (before `start`)."""
        self._options = dataclasses.replace(self._options, variables=variables)

    def take(self) -> Chunk | End | None:
        """The next chunk, END after the last one, or None when none is ready yet.

        Raises the `InputError` that ended the reading, after every chunk
        read before it was taken.
        """
        with self._cond:
            if self._outbox:
                chunk, self.position = self._outbox.popleft()
                self._cond.notify_all()
                return chunk
            if self._finished or self._sealed:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return END
            if self._stuck and self._closed:
                return END  # blocked in a read that nothing may ever end
            self._ready.clear()
            return None

    async def wait(self) -> None:
        """Wait until `take` has something to say (a chunk, the end, or an error)."""
        await self._ready.wait()

    def close(self) -> None:
        """Wait for no more input: read what has arrived (a file to its end), then end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._signal()

    def halt(self) -> None:
        """Start no read any more; hand over what was read, then end."""
        with self._cond:
            self._closed = self._halted = True
            self._cond.notify_all()
        self._signal()

    def drain(self, timeout_s: float) -> list[Chunk]:
        """After `halt`: wait (up to `timeout_s`, blocking) for the thread to hand
        over what it read, then seal; return every chunk not taken yet."""
        if self._thread is None:
            # Never started (the run ended in the campaign look-up): nothing was read.
            for source in self._inputs:
                with contextlib.suppress(Exception):
                    source.close()
        chunks: list[Chunk] = []
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not (self._finished or self._stuck or self._thread is None):
                chunks.extend(chunk for chunk, _ in self._outbox)
                self._outbox.clear()
                self._cond.notify_all()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.01))
        return chunks + self.seal()

    def seal(self) -> list[Chunk]:
        """Accept nothing more; return the chunks still in the outbox."""
        with self._cond:
            self._closed = self._halted = self._sealed = True
            left = [chunk for chunk, _ in self._outbox]
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

    def _put(self, chunk: Chunk, position: int) -> None:
        with self._cond:
            while len(self._outbox) >= OUTBOX and not self._sealed:
                self._cond.wait(_STEP_S)
            if self._sealed:
                raise _Closed
            self._outbox.append((chunk, position))
            self.handed_over += records_in(chunk)
            self._cond.notify_all()
        self._signal()

    def _open(self, source: OpenInput) -> None:
        """Open an input opened late (a fifo: this waits for its writer, maybe for
        good), as a read that may block: a stop ends the hand-over meanwhile."""
        if not source.open_later:
            return
        with self._cond:
            if self._closed:
                raise _Closed  # a stop came first: nothing of it has arrived
            self._stuck = True
        try:
            source.open_now()
        finally:
            with self._cond:
                self._stuck = False

    def _finish(self, error: BaseException | None) -> None:
        with self._cond:
            self._finished = True
            if not self._sealed:
                self._error = error
            self._cond.notify_all()
        self._signal()

    def _main(self) -> None:
        buffer: Chunk = []
        done = 0  # the bytes of the inputs read to their end
        stream: _Watched | None = None

        def hand_over() -> None:
            if buffer:
                at = 0 if stream is None else stream.position_of(_last_line(buffer))
                self._put(buffer.copy(), done + at)
                buffer.clear()

        error: BaseException | None = None
        try:
            for source, size in zip(self._inputs, self._sizes, strict=True):
                self._open(source)
                stream = _Watched(source.stream, self, _read_size(size))
                watched = dataclasses.replace(source, stream=cast(IO[bytes], stream))
                handed_at = 0
                try:
                    # Just before a read that may block, hand over what is parsed,
                    # so that a quiet pipe never holds records back.
                    for chunk in read_chunks(watched, self._options, hand_over):
                        buffer.extend(chunk)
                        if (
                            len(buffer) >= self._chunk_size
                            or stream.bytes_read - handed_at >= CHUNK_BYTES
                        ):
                            hand_over()
                            handed_at = stream.bytes_read
                    hand_over()  # a chunk never mixes two inputs
                finally:
                    source.close()
                done += stream.bytes_read
                stream = None
        except _Closed:
            with contextlib.suppress(_Closed):
                hand_over()
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


def _read_size(size: int | None) -> int | None:
    """The most a read of a regular file of `size` bytes takes: about a hundredth
    of it (between 4 KiB and 256 KiB), so that the bytes read, which progress is
    measured by, stay close to the lines parsed. None (no bound) for a pipe."""
    return None if size is None else min(max(size // 100, READ_MIN), READ_MAX)


def _size_of(source: OpenInput) -> int | None:
    """The size of a regular file's input; None for any other (a pipe)."""
    if not source.is_regular:
        return None
    try:
        return os.fstat(source.stream.fileno()).st_size
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


class _Watched:
    """An input stream that reads only what has arrived where it can tell (see the
    module docstring), and that stops reading as the reader is closed or halted."""

    def __init__(self, stream: IO[bytes], reader: Reader, most: int | None = None) -> None:
        self._read = stream.read1 if hasattr(stream, "read1") else stream.read
        self._most = most
        # The last reads: (lines before it, bytes before it, its lines, its bytes).
        self._reads: deque[tuple[int, int, int, int]] = deque(maxlen=16)
        self._lines = 0
        self._buffered: Callable[[], int] = getattr(stream, "buffered", lambda: 0)
        self._reader = reader
        self._fd, self._can_block = _how_to_wait(stream)
        self.bytes_read = 0

    def read1(self, size: int = -1) -> bytes:
        reader = self._reader
        while True:
            with reader._cond:
                if reader._halted:
                    raise _Closed
                # Bytes already taken from the pipe (peeked to sniff the format) are
                # lines the user already sent: always read them.
                if self._buffered():
                    break
                if self._fd is None:
                    if reader._closed and self._can_block:
                        raise _Closed
                    reader._stuck = self._can_block
                    break
                timeout = 0.0 if reader._closed else _STEP_S
            try:
                ready = bool(select.select([self._fd], [], [], timeout)[0])
            except (OSError, ValueError):
                ready = True  # let the read itself say what is wrong
            if ready:
                break
            with reader._cond:
                if reader._closed:
                    raise _Closed  # nothing more has arrived: a stop reads no further
        if self._most is not None and (size < 0 or size > self._most):
            size = self._most
        try:
            data = self._read(size)
            lines = data.count(b"\n")
            self._reads.append((self._lines, self.bytes_read, lines, len(data)))
            self._lines += lines
            self.bytes_read += len(data)
            return data
        finally:
            with reader._cond:
                reader._stuck = False

    def position_of(self, line: int | None) -> int:
        """About how many bytes of the input lie up to the end of `line` (all that
        was read, when not known): what was read before the read holding it, and
        the share of that read its lines take up to it."""
        if line is None:
            return self.bytes_read
        for before, at, lines, size in reversed(self._reads):
            if line > before:
                return at + min(size, size * (line - before) // max(lines, 1))
        return self._reads[0][1] if self._reads else 0


def _last_line(chunk: Chunk) -> int | None:
    """The number of the last input line a chunk's records come from."""
    for record in reversed(chunk):
        if isinstance(record, HandleRun):
            return record.first_line + len(record) - 1
        line = getattr(record, "line", None)
        if isinstance(line, int):
            return line
    return None


def _how_to_wait(stream: IO[bytes]) -> tuple[int | None, bool]:
    """(descriptor to poll before reading, or None; whether a read may block for good)."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None, False  # in-memory streams: never block
    if stat.S_ISREG(mode):
        return None, False
    try:
        select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return None, True  # select() takes sockets only on Windows
    return fd, False
