"""Reading inputs: files and stdin as plain lines, CSV/TSV, JSONL or a JSON array.

Everything here streams: `read_records` yields one `Lead` or `Rejection` per
input record and holds no more than one chunk of the file. A bad record is a
`Rejection` with its source, line and reason; only an input that cannot be
read at all raises `InputError`.

`on_wait` is called just before a read that may block (a slow pipe), so the
caller can pass on what has been parsed so far instead of holding it back.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import stat
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast

from .errors import InputError
from .identifiers import FAST_HANDLE_RE, HandleRun, Kind, Lead, ReadAs, parse_value

CHUNK_SIZE = 256 * 1024
MAX_LINE_BYTES = 1024 * 1024
# A cell may be as long as a line; past that the csv module raises, and the row is rejected.
csv.field_size_limit(MAX_LINE_BYTES)
SNIFF_BYTES = 8192
STDIN_NAME = "<stdin>"


class Format(StrEnum):
    """Input formats (`--format`)."""

    AUTO = "auto"
    LINES = "lines"
    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    JSON = "json"


_BY_EXTENSION = {
    ".csv": Format.CSV,
    ".tsv": Format.TSV,
    ".tab": Format.TSV,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".json": Format.JSON,
}

# Normalised header names that hold the identifier, best first, with how to read them.
IDENTIFIER_COLUMNS: tuple[tuple[str, ReadAs], ...] = (
    ("username", ReadAs.USERNAME),
    ("handle", ReadAs.USERNAME),
    ("screenname", ReadAs.USERNAME),
    ("twitter", ReadAs.AUTO),
    ("twitterhandle", ReadAs.AUTO),
    ("x", ReadAs.AUTO),
    ("xhandle", ReadAs.AUTO),
    ("profile", ReadAs.AUTO),
    ("profileurl", ReadAs.AUTO),
    ("url", ReadAs.AUTO),
    ("platformid", ReadAs.PLATFORM_ID),
    ("userid", ReadAs.PLATFORM_ID),
    ("twitterid", ReadAs.PLATFORM_ID),
    ("id", ReadAs.PLATFORM_ID),
    ("externalid", ReadAs.EXTERNAL_ID),
)
_COLUMN_READ_AS = dict(IDENTIFIER_COLUMNS)


@dataclass(slots=True)
class Rejection:
    """An input record that will not be sent, and why."""

    source: str
    line: int
    text: str
    reason: str


@dataclass(slots=True)
class Notice:
    """Something the user should know about an input that is not a record (a hint
    about its encoding): shown once as a warning line, never counted as read."""

    source: str
    line: int
    text: str


Record = Lead | Rejection
USERNAME = Kind.USERNAME


@dataclass(frozen=True)
class ReadOptions:
    """How to read every input of a run."""

    fmt: Format = Format.AUTO
    read_as: ReadAs = ReadAs.AUTO
    column: str | None = None
    data_columns: tuple[str, ...] | None = None
    no_data: bool = False
    # A Python codec name (`--encoding`); None: UTF-8. A BOM decides by itself.
    encoding: str | None = None


@dataclass
class OpenInput:
    """An input that was opened and checked before anything is sent."""

    name: str
    stream: IO[bytes]
    fmt: Format
    is_regular: bool
    owned: bool
    # Checked for binary content when its first bytes are read, not when opened:
    # a silent pipe must not hold up the start of a run.
    check_head: bool = False

    def close(self) -> None:
        if self.owned:
            self.stream.close()


def open_inputs(
    paths: list[str],
    fmt: Format,
    stdin: IO[bytes] | None = None,
    options: ReadOptions | None = None,
) -> list[OpenInput]:
    """Open every input up front, so that a missing or binary file stops the run
    before the first request. With `options`, regular files are also read up to
    their first record, so that a CSV without an identifier column or a broken
    .json file stops it too (later inputs are read only after earlier ones were
    sent)."""
    opened: list[OpenInput] = []
    try:
        for path in paths:
            opened.append(_open_one(path, fmt, stdin))
            if options is not None and opened[-1].is_regular and path != "-":
                _probe(path, opened[-1].fmt, options)
    except BaseException:
        for item in opened:
            item.close()
        raise
    return opened


def _open_one(path: str, fmt: Format, stdin: IO[bytes] | None) -> OpenInput:
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        try:
            fd = stream.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            fd = -1
        regular = fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode)
        if fd >= 0:
            # Read through a descriptor of our own: a reader thread still blocked
            # on a silent pipe at exit must not hold the lock of sys.stdin's
            # buffer, which the interpreter takes while shutting down.
            stream = cast(IO[bytes], _PeekableRaw(io.FileIO(os.dup(fd), "rb")))
            owned = True
        elif not hasattr(stream, "peek"):
            stream = io.BufferedReader(stream)
            owned = False
        else:
            owned = False
        # A pipe or a terminal may be silent for long: its first bytes are checked
        # by the reader thread as they arrive, while the run already goes on.
        later = fd >= 0 and not regular
        if not later:
            _check_not_binary(STDIN_NAME, stream)
        return OpenInput(STDIN_NAME, stream, fmt, regular, owned=owned, check_head=later)
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(path, "is a directory, not a file")
        handle = open(p, "rb")  # noqa: SIM115 - closed by OpenInput.close
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from exc
    try:
        regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
        _check_not_binary(path, handle)
    except BaseException:
        handle.close()
        raise
    if fmt is Format.AUTO:
        fmt = _BY_EXTENSION.get(p.suffix.lower(), Format.AUTO)
    return OpenInput(path, handle, fmt, regular, owned=True)


def _probe(path: str, fmt: Format, options: ReadOptions) -> None:
    """Read a regular file up to its first record: raises what reading it would."""
    try:
        with open(path, "rb") as handle:
            probe = OpenInput(path, handle, fmt, is_regular=True, owned=False)
            next(read_records(probe, options), None)
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from exc


class _PeekableRaw(io.RawIOBase):
    """An unbuffered stream that can show its first bytes without losing them."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self._raw = raw
        self._head = b""

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def buffered(self) -> int:
        """Bytes peeked from the stream and not read yet."""
        return len(self._head)

    def peek(self, size: int = 0) -> bytes:
        if not self._head:
            self._head = self._raw.read(max(size, 1)) or b""
        return self._head

    def read1(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._raw.read(size) or b""

    def readinto(self, buffer: Any) -> int:
        data = self.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _check_not_binary(name: str, stream: IO[bytes]) -> None:
    try:
        head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]  # type: ignore[attr-defined]
    except OSError as exc:
        raise InputError(name, f"cannot read: {exc.strerror or exc}") from exc
    check_head(name, head)


def check_head(name: str, head: bytes) -> None:
    """Refuse an input whose first bytes are UTF-16 or binary."""
    head = head[:SNIFF_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(name, "is UTF-16 text; save it as UTF-8")
    if b"\x00" in head:
        if _looks_like_utf16(head):
            raise InputError(name, "is UTF-16 text; save it as UTF-8")
        raise InputError(name, "looks like a binary file (it contains NUL bytes)")


def _looks_like_utf16(head: bytes) -> bool:
    """UTF-16 without a BOM: NULs on one byte parity only, printable text on the other."""
    even, odd = head[0::2], head[1::2]
    for zeros, text in ((odd, even), (even, odd)):
        if zeros and zeros.count(0) >= 0.9 * len(zeros):
            printable = sum(1 for b in text if 32 <= b < 127 or b in (9, 10, 13))
            if printable >= 0.9 * len(text):
                return True
    return False


class _Lines:
    """Splits a byte stream into numbered text lines, reading whatever is available.

    Work is done a block (one read) at a time: a block of clean UTF-8 is
    decoded and split in one call each, and only a block with a bad line falls
    back to line by line. `number` is the number of the last line handed out.
    """

    def __init__(self, source: OpenInput, on_wait: Callable[[], None]) -> None:
        self.source = source
        self.on_wait = on_wait
        self.bad: dict[int, str] = {}
        self.number = 0

    def blocks(self) -> Iterator[tuple[int, list[str]]]:
        """(number of the first line, lines without their newline) per read."""
        stream = self.source.stream
        read = stream.read1 if hasattr(stream, "read1") else stream.read
        pending = b""
        too_long = False  # the line being read is already over the limit: drop it
        while True:
            self.on_wait()
            try:
                chunk = read(CHUNK_SIZE)
            except OSError as exc:
                raise InputError(
                    self.source.name, f"read failed: {exc.strerror or exc}", self.number + 1
                ) from exc
            if not chunk:
                break
            if self.number == 0 and not pending and self.source.check_head:
                check_head(self.source.name, chunk)
            data = pending + chunk if pending else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                too_long = too_long or len(data) > MAX_LINE_BYTES
                pending = b"" if too_long else data
                continue
            yield self._block(data[:cut], too_long)
            pending = data[cut + 1 :]
            too_long = len(pending) > MAX_LINE_BYTES
            if too_long:
                pending = b""
        if too_long or pending:
            yield self._block(pending, too_long)

    def _block(self, raw: bytes, first_too_long: bool) -> tuple[int, list[str]]:
        first = self.number + 1
        if first == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        lines: list[str] | None = None
        if b"\x00" not in raw:
            with contextlib.suppress(UnicodeDecodeError):
                lines = raw.decode("utf-8").split("\n")
        if lines is None:
            lines = [self._decode(first + i, part) for i, part in enumerate(raw.split(b"\n"))]
        if first_too_long:
            self.bad[first] = "line longer than 1 MiB"
            lines[0] = ""
        if len(raw) > MAX_LINE_BYTES:
            for i, text in enumerate(lines):
                if len(text) > MAX_LINE_BYTES // 4 and len(text.encode()) > MAX_LINE_BYTES:
                    self.bad[first + i] = "line longer than 1 MiB"
                    lines[i] = ""
        self.number = first + len(lines) - 1
        return first, lines

    def _decode(self, number: int, raw: bytes) -> str:
        if b"\x00" in raw:
            self.bad[number] = "contains NUL bytes"
            return ""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad[number] = "not valid UTF-8"
            return raw.decode("utf-8", "replace")

    def lines_of(self, blocks: Iterable[tuple[int, list[str]]]) -> Iterator[str]:
        """Line by line, each with its newline (a CR before it stays: the CSV
        reader needs it to keep a CRLF inside a quoted cell)."""
        for first, block in blocks:
            for i, text in enumerate(block):
                self.number = first + i
                yield text + "\n"


# A run of plain handles stays one object until it is reported (see HandleRun).
Chunk = list[Lead | Rejection | HandleRun | Notice]

# A whole block of bare handles, one a line: @name, or a name with a non-digit.
_BLOCK_OF_HANDLES = re.compile(
    r"(?:(?:@[A-Za-z0-9_]{1,15}|(?=[0-9]*[A-Za-z_])[A-Za-z0-9_]{1,15})\r?\n)*"
)


def read_records(
    source: OpenInput, options: ReadOptions, on_wait: Callable[[], None] = lambda: None
) -> Iterator[Record]:
    """Yield a `Lead` or `Rejection` for every record of one input, in order
    (notices are not records: they are left out)."""
    for chunk in read_chunks(source, options, on_wait):
        for record in chunk:
            if isinstance(record, HandleRun):
                yield from record.leads()
            elif not isinstance(record, Notice):
                yield record


def read_chunks(
    source: OpenInput, options: ReadOptions, on_wait: Callable[[], None] = lambda: None
) -> Iterator[Chunk]:
    """The records of one input in order, in lists (a block of lines at a time
    where the format allows, which is what makes large files fast)."""
    lines = _Lines(source, on_wait)
    blocks: Iterator[tuple[int, list[str]]] = lines.blocks()
    fmt = source.fmt if options.fmt is Format.AUTO else options.fmt
    if fmt is Format.AUTO:
        held: list[tuple[int, list[str]]] = []
        first = ""
        for number, block in blocks:
            held.append((number, block))
            first = next(
                (
                    t
                    for i, t in enumerate(block)
                    if number + i not in lines.bad and t.strip() and not t.startswith("#")
                ),
                "",
            )
            if first:
                break
        fmt = sniff(first, options)
        blocks = itertools.chain(held, blocks)
    if fmt is Format.LINES:
        return _read_lines(blocks, lines, options)
    if fmt is Format.JSONL:
        return _read_jsonl(blocks, lines, options)
    if fmt in (Format.CSV, Format.TSV):
        records = _read_table(
            lines.lines_of(blocks), lines, options, "\t" if fmt is Format.TSV else None
        )
    else:
        records = _read_json_array(lines.lines_of(blocks), lines, options)
    return ([record] for record in records)


def sniff(first: str, options: ReadOptions) -> Format:
    """Guess the format of an input from its first meaningful line."""
    text = first.strip()
    if text.startswith("{"):
        return Format.JSONL
    if text.startswith("["):
        return Format.JSON
    wanted = _normalise_header(options.column) if options.column else None
    if "@" not in text and "/" not in text:
        # A one-column export: its first line is just the column's name. (To
        # send the account of that name first, write it as @name.)
        name = _normalise_header(text)
        if name == wanted or (wanted is None and name in _COLUMN_READ_AS):
            return Format.CSV
    for delimiter, fmt in (("\t", Format.TSV), (",", Format.CSV), (";", Format.CSV)):
        if delimiter in text:
            cells = [_normalise_header(c) for c in text.split(delimiter)]
            if (wanted and wanted in cells) or any(c in _COLUMN_READ_AS for c in cells):
                return fmt
    return Format.LINES


def _values(
    name: str, first: int, block: list[str], bad: dict[int, str], out: Chunk
) -> Iterator[tuple[int, str]]:
    """Numbered, stripped values of a block of a line-per-record input; an
    unreadable line goes to `out` as a rejection, blank and comment lines nowhere."""
    for number, text in enumerate(block, first):
        value = text.strip()
        if bad and number in bad:
            out.append(Rejection(name, number, value, bad.pop(number)))
        elif value and value[0] != "#":
            yield number, value


def _read_lines(
    blocks: Iterator[tuple[int, list[str]]], lines: _Lines, options: ReadOptions
) -> Iterator[Chunk]:
    name = lines.source.name
    read_as = options.read_as
    fast = FAST_HANDLE_RE.fullmatch if read_as is ReadAs.AUTO else None
    bad = lines.bad
    for first, block in blocks:
        if fast is not None and not bad:
            # The common case of a large file, a block of nothing but bare
            # handles, checked by one regular expression and kept as strings.
            text = "\n".join(block) + "\n"
            if _BLOCK_OF_HANDLES.fullmatch(text):
                if "@" in text or "\r" in text:
                    block = [v.rstrip("\r").removeprefix("@") for v in block]
                yield [HandleRun(name, first, block)]
                continue
        out: Chunk = []
        append = out.append
        for number, value in _values(name, first, block, bad, out):
            # The common case, a bare handle, without the general parser.
            match = fast(value) if fast is not None else None
            if match is not None and (value[0] == "@" or not value.isdigit()):
                append(Lead(USERNAME, match.group(1), name, number))
                continue
            parsed = parse_value(value, read_as)
            if isinstance(parsed, str):
                append(Rejection(name, number, value, parsed))
            else:
                append(Lead(parsed[0], parsed[1], name, number))
        yield out


def _read_jsonl(
    blocks: Iterator[tuple[int, list[str]]], lines: _Lines, options: ReadOptions
) -> Iterator[Chunk]:
    name = lines.source.name
    bad = lines.bad
    for first, block in blocks:
        out: Chunk = []
        for number, value in _values(name, first, block, bad, out):
            try:
                obj = json.loads(value)
            except ValueError:
                out.append(Rejection(name, number, value, "not a JSON object"))
                continue
            out.append(lead_from_object(obj, name, number, value, options))
        yield out


def _normalise_header(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _pick_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _read_table(
    it: Iterator[str], lines: _Lines, options: ReadOptions, delimiter: str | None
) -> Iterator[Record]:
    name = lines.source.name
    # Blank and comment lines are skipped before the header only: after it, a
    # blank line may be part of a quoted multi-line field.
    header_text = None
    for text in it:
        if lines.number in lines.bad:
            yield Rejection(name, lines.number, "", lines.bad.pop(lines.number))
        elif text.strip() and not text.startswith("#"):
            header_text = text
            break
    if header_text is None:
        return
    delimiter = delimiter or _pick_delimiter(header_text)
    try:
        header = [h.strip() for h in next(csv.reader([header_text], delimiter=delimiter))]
    except csv.Error as exc:
        raise InputError(name, f"malformed CSV header: {exc}", lines.number) from None
    index, column_read_as = _find_column(name, header, options.column)
    read_as = options.read_as if options.read_as is not ReadAs.AUTO else column_read_as
    keep = _data_columns(header, index, options)
    for number, raw, row in _csv_records(it, lines, delimiter):
        bad = [lines.bad.pop(n) for n in list(lines.bad) if n <= number]
        if bad:
            yield Rejection(name, number, raw, bad[0])
            continue
        if row is None:
            continue
        if isinstance(row, str):
            yield Rejection(name, number, raw, row)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            yield Rejection(name, number, raw, f"{len(row)} fields, header has {len(header)}")
            continue
        value = row[index].strip() if index < len(row) else ""
        if not value:
            yield Rejection(name, number, raw, f"empty {header[index]!r} cell")
            continue
        parsed = parse_value(value, read_as)
        if isinstance(parsed, str):
            yield Rejection(name, number, raw, parsed)
            continue
        data = {header[i]: row[i] for i in keep if i < len(row) and row[i].strip()}
        yield Lead(parsed[0], parsed[1], name, number, data or None)


class _Feed:
    """Lines for the csv module, remembering those of the current record, and
    able to hand lines out again after the end (a class, not a generator: a
    generator cannot yield again once it has finished)."""

    def __init__(self, it: Iterator[str], lines: _Lines) -> None:
        self.it = it
        self.lines = lines
        self.record: list[tuple[int, str]] = []
        self.replay: deque[tuple[int, str]] = deque()

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self.replay:
            number, text = self.replay.popleft()
        else:
            text = next(self.it)
            number = self.lines.number
        self.record.append((number, text))
        return text


def _csv_records(
    it: Iterator[str], lines: _Lines, delimiter: str
) -> Iterator[tuple[int, str, list[str] | str | None]]:
    """(first line number, raw text, cells) per CSV record; cells is an error
    message for a malformed record, None at the end of a blank record.

    A malformed record (a quote never closed swallows the rest of the file) is
    rejected at the line where it starts, and the lines after that are read
    again as records of their own, so one bad quote costs one row.
    """
    feed = _Feed(it, lines)
    record = feed.record
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    while True:
        record.clear()
        try:
            row: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row = f"malformed CSV row: {exc}"
            feed.replay.extendleft(reversed(record[1:]))
            del record[1:]
        if not record:
            return
        raw = "".join(text for _, text in record).rstrip("\r\n")
        yield record[0][0], raw, row


def _find_column(source: str, header: list[str], wanted: str | None) -> tuple[int, ReadAs]:
    normalised = [_normalise_header(h) for h in header]
    if wanted is not None:
        key = _normalise_header(wanted)
        if key in normalised:
            return normalised.index(key), _COLUMN_READ_AS.get(key, ReadAs.AUTO)
        raise InputError(source, f"no column {wanted!r} in the header ({', '.join(header)})", 1)
    for key, read_as in IDENTIFIER_COLUMNS:
        if key in normalised:
            return normalised.index(key), read_as
    raise InputError(
        source,
        "no identifier column found in the header; name it with --column "
        f"(columns: {', '.join(header)})",
        1,
    )


def _data_columns(header: list[str], index: int, options: ReadOptions) -> list[int]:
    if options.no_data:
        return []
    if options.data_columns is None:
        return [i for i, h in enumerate(header) if i != index and h]
    wanted = {_normalise_header(c) for c in options.data_columns}
    return [i for i, h in enumerate(header) if i != index and _normalise_header(h) in wanted]


def _read_json_array(it: Iterator[str], lines: _Lines, options: ReadOptions) -> Iterator[Record]:
    name = lines.source.name
    text = "".join(it)
    if not text.strip():
        return  # an empty file is an empty run, as for every other format
    if lines.bad:
        number, reason = next(iter(lines.bad.items()))
        raise InputError(name, reason, number)
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise InputError(name, f"not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise InputError(name, "a .json input must hold an array of lead objects")
    for position, obj in enumerate(items, start=1):
        # A JSON array has no useful line numbers: report the item's position.
        yield lead_from_object(obj, name, position, json.dumps(obj)[:200], options)


def lead_from_object(obj: Any, source: str, number: int, text: str, options: ReadOptions) -> Record:
    """Read one lead object with the API's fields (platformId, username, externalId, data)."""
    if not isinstance(obj, dict):
        return Rejection(source, number, text, "not a JSON object")
    found = [(k, obj[k]) for k in ("platformId", "username", "externalId") if k in obj]
    if len(found) != 1:
        return Rejection(
            source, number, text, "needs exactly one of platformId, username, externalId"
        )
    field, raw = found[0]
    if isinstance(raw, int) and not isinstance(raw, bool) and field == "platformId":
        raw = str(raw)
    if not isinstance(raw, str):
        return Rejection(source, number, text, f"{field} must be a string")
    read_as = {
        "platformId": ReadAs.PLATFORM_ID,
        "username": ReadAs.USERNAME,
        "externalId": ReadAs.EXTERNAL_ID,
    }[field]
    parsed = parse_value(raw, read_as)
    if isinstance(parsed, str):
        return Rejection(source, number, text, parsed)
    if obj.get("platform", "twitter") != "twitter":
        return Rejection(source, number, text, "platform must be 'twitter'")
    data = obj.get("data")
    if data is not None and not options.no_data:
        if not isinstance(data, dict):
            return Rejection(source, number, text, "data must be an object")
        clean: dict[str, str] = {}
        for key, value in data.items():
            if isinstance(value, dict | list):
                return Rejection(source, number, text, f"data.{key} must be a plain value")
            if value is None:
                continue
            clean[str(key)] = value if isinstance(value, str) else json.dumps(value)
        if options.data_columns is not None:
            wanted = {_normalise_header(c) for c in options.data_columns}
            clean = {k: v for k, v in clean.items() if _normalise_header(k) in wanted}
        return Lead(parsed[0], parsed[1], source, number, clean or None)
    return Lead(parsed[0], parsed[1], source, number)
