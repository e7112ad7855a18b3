"""Reading inputs: files and stdin as plain lines, CSV/TSV, JSONL or a JSON array.

Everything here streams: `read_records` yields one `Lead` or `Rejection` per
input record and holds no more than one chunk of the file. A bad record is a
`Rejection` with its source, line and reason; only an input that cannot be
read at all raises `InputError`.

`on_wait` is called just before a read that may block (a slow pipe), so the
caller can pass on what has been parsed so far instead of holding it back.

Inputs are UTF-8 unless told otherwise (`ReadOptions.encoding`) or a BOM says
so (UTF-16 without a BOM is recognised too). Anything else is decoded read by
read and re-encoded as UTF-8, so that splitting lines and everything after it
work on UTF-8 bytes whatever the input was; plain UTF-8, the common case, goes
through as it is read. Classic Mac files (lone CR line breaks) are read as lines.
"""

from __future__ import annotations

import codecs
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
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast

from . import columns as cols
from .errors import InputError, UsageError
from .events import Rejection
from .identifiers import (
    FAST_HANDLE_RE,
    HandleRun,
    Kind,
    Lead,
    ParseResult,
    ReadAs,
    parse_value,
    visible,
)
from .options import option

CHUNK_SIZE = 256 * 1024
MAX_LINE_BYTES = 1024 * 1024
# A CSV record may span lines (a quoted cell with line breaks); one over 1 MiB in all
# is rejected, but the csv module must read it whole to know where it ends.
MAX_RECORD_BYTES = 64 * MAX_LINE_BYTES
# A .json array is parsed whole, and is often written on one line (json.dump,
# JSON.stringify, jq -c): its lines are not held to MAX_LINE_BYTES, only to this.
MAX_JSON_BYTES = 256 * MAX_LINE_BYTES
# A cell may be as long as a line; past that the csv module raises, and the row is rejected.
csv.field_size_limit(MAX_RECORD_BYTES)
SNIFF_BYTES = 8192
# Meaningful lines the format is guessed from, at most (a lone name above numbers).
SNIFF_LINES = 50
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


@dataclass(slots=True)
class Notice:
    """Something the user should know about an input that is not a record (a hint
    about its encoding): shown once as a warning line, never counted as read."""

    source: str
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class ColumnsUsed:
    """The columns a table input is read by: its identifier columns in order of
    preference, and each data column with the key it is sent as. Not a record."""

    source: str
    identifiers: tuple[str, ...]
    data: tuple[tuple[str, str], ...]
    # The `--map` names its header has.
    mapped: tuple[str, ...] = ()


Record = Lead | Rejection
# What an input says besides its records.
Info = Notice | ColumnsUsed
USERNAME = Kind.USERNAME


def column_names(given: list[str]) -> tuple[str, ...]:
    """The column names of a comma-separated option, repeated or not, blanks left out."""
    return tuple(name.strip() for option in given for name in option.split(",") if name.strip())


def _identifier_columns(given: list[str]) -> tuple[str, ...]:
    names = column_names(given)
    if not names:
        raise UsageError("--column names no column")
    return names


def column_renames(given: list[str]) -> tuple[tuple[str, str], ...]:
    """`--map HEADER=KEY` options as (header, key) pairs, in order (split at the
    last `=`: a header may hold one, a variable's key does not)."""
    renames: dict[str, str] = {}
    for item in given:
        header, equals, key = item.rpartition("=")
        header, key = header.strip(), key.strip()
        if not equals or not header or not key:
            raise UsageError(
                f"--map {item!r}: expected HEADER=KEY, e.g. --map 'Company=company-name'"
            )
        if header in renames and renames[header] != key:
            raise UsageError(f"--map names the column {header!r} twice")
        renames[header] = key
    return tuple(renames.items())


@dataclass(frozen=True)
class ReadOptions:
    """How to read every input of a run: the options of `add` that say so."""

    read_as: ReadAs = option(
        ReadAs.AUTO,
        "--as",
        help="How to read bare values. auto: @name, names and profile links are "
        "usernames; digits and x.com/i/user/ID links are user IDs (an all-digit "
        "handle needs --as username).",
    )
    fmt: Format = option(
        Format.AUTO,
        "--format",
        help="Input format; auto: by extension, else sniffed from the first lines.",
    )
    # In order of preference.
    columns: tuple[str, ...] = option(
        (),
        "--column",
        help="The identifier column(s) of a CSV/TSV input, comma-separated (or the "
        "option repeated), in order of preference per row (default: found by name; "
        "see README).",
        given_as=list[str] | None,
        parse=_identifier_columns,
    )
    data_columns: tuple[str, ...] | None = option(
        None,
        "--data-columns",
        help="Comma-separated CSV/TSV columns to send as lead data (or the option "
        "repeated; default: all others).",
        given_as=list[str] | None,
        parse=column_names,
    )
    no_data: bool = option(False, "--no-data", help="Send no column data, identifiers only.")
    renames: tuple[tuple[str, str], ...] = option(
        (),
        "--map",
        metavar="HEADER=KEY",
        help="Send the CSV/TSV column HEADER as data key KEY (repeatable). Beats the "
        "automatic mapping: a column named like one of the campaign's variables "
        "(its key or display name) is sent under the variable's key.",
        show_default=False,
        given_as=list[str] | None,
        parse=column_renames,
    )
    # A Python codec name; None: UTF-8.
    encoding: str | None = option(
        None,
        "--encoding",
        help="Text encoding of the inputs (any Python codec: cp1252 for a Windows "
        "Excel export, latin-1, utf-16); default UTF-8. A BOM decides by itself.",
        show_default=False,
    )
    # The campaign's variables as (key, display name), once the look-up found them.
    variables: tuple[tuple[str, str], ...] = ()


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
    # Opened by the reader when it gets to it (`open_now`): a fifo named by its path.
    open_later: bool = False

    def open_now(self) -> None:
        """Open an input that is opened late; this may wait (for a fifo's writer)."""
        if self.open_later:
            try:
                cast(_PeekableRaw, self.stream).open_now()
            except OSError as exc:
                raise InputError(self.name, exc.strerror or str(exc)) from None

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
    encoding = options.encoding if options is not None else None
    opened: list[OpenInput] = []
    mapped: set[str] = set()
    try:
        for path in paths:
            opened.append(_open_one(path, fmt, stdin, encoding))
            if options is not None and opened[-1].is_regular and path != "-":
                mapped.update(_probe(path, opened[-1].fmt, options))
        if options is not None and options.renames and all(i.is_regular for i in opened):
            # Every input is known now: a --map name none of them has is a mistake.
            # (With a pipe, its header is known only as it comes: a warning then.)
            missing = [name for name, _ in options.renames if name not in mapped]
            if missing:
                raise UsageError(
                    f"--map {missing[0]!r}: no input has a column of that name"
                    + ("" if len(paths) > 1 else f" ({paths[0]})")
                )
    except BaseException:
        for item in opened:
            item.close()
        raise
    return opened


def _open_one(path: str, fmt: Format, stdin: IO[bytes] | None, encoding: str | None) -> OpenInput:
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
            _check_not_binary(STDIN_NAME, stream, encoding)
        return OpenInput(STDIN_NAME, stream, fmt, regular, owned=owned, check_head=later)
    p = Path(path)
    if fmt is Format.AUTO:
        fmt = _BY_EXTENSION.get(p.suffix.lower(), Format.AUTO)
    try:
        mode = os.stat(p).st_mode
    except OSError:
        mode = 0  # the open below says what is wrong
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):
        # A pipe named by its path (a fifo, /dev/stdin, <(...)): read as stdin is, by
        # the reader thread, which opens it when it gets to it (a fifo waits for its
        # writer) and checks its first bytes as they arrive.
        stream = cast(IO[bytes], _PeekableRaw.later(path))
        return OpenInput(path, stream, fmt, False, owned=True, check_head=True, open_later=True)
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
        _check_not_binary(path, handle, encoding)
    except BaseException:
        handle.close()
        raise
    return OpenInput(path, handle, fmt, regular, owned=True)


def _probe(path: str, fmt: Format, options: ReadOptions) -> tuple[str, ...]:
    """Read a regular file up to its first record: raises what reading it would;
    returns the `--map` names its header has."""
    try:
        with open(path, "rb") as handle:
            probe = OpenInput(path, handle, fmt, is_regular=True, owned=False)
            for chunk in read_chunks(probe, options):
                for item in chunk:
                    if isinstance(item, ColumnsUsed):
                        return item.mapped
                    if not isinstance(item, Notice):
                        return ()
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from exc
    return ()


class _PeekableRaw(io.RawIOBase):
    """An unbuffered stream that can show its first bytes without losing them.

    One made with `later(path)` is opened by `open_now`, called by the reader thread
    when it gets to it: opening a fifo waits until something opens it to write."""

    def __init__(self, raw: io.FileIO | None, path: str = "") -> None:
        super().__init__()
        self._opened = raw
        self._path = path
        self._head = b""

    @classmethod
    def later(cls, path: str) -> _PeekableRaw:
        return cls(None, path)

    def open_now(self) -> None:
        """Open the stream if it is not open yet (this may wait: see the class)."""
        if self._opened is None:
            self._opened = io.FileIO(self._path, "rb")

    @property
    def _raw(self) -> io.FileIO:
        if self._opened is None:
            raise ValueError("not opened yet")
        return self._opened

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
        if self._opened is not None:
            self._opened.close()
        super().close()


def _check_not_binary(name: str, stream: IO[bytes], encoding: str | None) -> None:
    try:
        head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]  # type: ignore[attr-defined]
    except OSError as exc:
        raise InputError(name, f"cannot read: {exc.strerror or exc}") from exc
    check_head(name, head, encoding)


# NULs, and more than this share of control characters in the first bytes: not text.
BINARY_SHARE = 0.10
# Control bytes that text does not hold. Not \t \n \v \f \r, and not ESC: a
# pipe may carry terminal colours, and ISO-2022 encodings are full of it.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b")
_CONTROL_CHARS: dict[int, None] = dict.fromkeys(_CONTROL_BYTES)
# Formats that begin with bytes no text begins with: refused whatever their share
# of control bytes (compressed data alone has about 10%, too close to call).
_BINARY_SIGNATURES = (
    b"\x89PNG",
    b"PK\x03\x04",  # zip, and so .xlsx, .ods, .numbers, .docx
    b"PK\x05\x06",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # OLE2: .xls, .doc
    b"\x1f\x8b",  # gzip
    b"\xff\xd8\xff",  # JPEG
    b"%PDF-",
    b"7z\xbc\xaf\x27\x1c",
    b"\xfd7zXZ\x00",
    b"SQLite format 3\x00",
    b"\x7fELF",
)
_SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".numbers")


def check_head(name: str, head: bytes, encoding: str | None = None) -> None:
    """Refuse an input whose first bytes are not text in its encoding: a known
    binary format, or NULs among more than `BINARY_SHARE` control characters
    (see `_looks_binary`). A NUL or two is a corrupted line, not a binary file:
    that line alone is rejected later."""
    head = head[:SNIFF_BYTES]
    if not head:
        return
    decoding = _choose_decoding(name, head, encoding)
    sample: bytes | str = head
    if decoding.codec is not None:
        sample = head[decoding.skip :].decode(decoding.codec, "replace")
    if head.startswith(_BINARY_SIGNATURES) or _looks_binary(sample):
        raise InputError(name, _binary_problem(name, head))


def _looks_binary(sample: bytes | str) -> bool:
    """Whether the first bytes (or characters) of an input are binary data: NULs,
    which text never holds, and more than `BINARY_SHARE` control characters.
    Other control characters alone may be data (a unit separator, a backspace)."""
    if isinstance(sample, bytes):
        nul = b"\x00" in sample
        kept = len(sample.translate(None, _CONTROL_BYTES))
    else:
        nul = "\x00" in sample
        kept = len(sample.translate(_CONTROL_CHARS))
    return nul and 1 - kept / len(sample) > BINARY_SHARE


def _binary_problem(name: str, head: bytes) -> str:
    """Why a binary input is refused, with what to do when it is a spreadsheet
    (the usual binary file given by mistake)."""
    spreadsheet = name.lower().endswith(_SPREADSHEET_SUFFIXES) or (
        head.startswith(b"PK\x03\x04") and (b"xl/" in head or b"opendocument.spreadsheet" in head)
    )
    if spreadsheet:
        return "looks like a binary file (a spreadsheet: export it as CSV)"
    return "looks like a binary file"


@dataclass(frozen=True, slots=True)
class _Decoding:
    """How the bytes of one input become text."""

    codec: str | None  # None: UTF-8, read as it is (the fast path)
    label: str  # names the encoding in "not valid ..."
    skip: int = 0  # bytes of a BOM to drop
    hint: bool = False  # a line that is not UTF-8 may be cp1252: say so once


# BOM, its codec (None: UTF-8), its name; UTF-32 first: its LE BOM starts like UTF-16's.
_BOMS: tuple[tuple[bytes, str | None, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32"),
    (b"\xef\xbb\xbf", None, "UTF-8"),
    (b"\xff\xfe", "utf-16-le", "UTF-16"),
    (b"\xfe\xff", "utf-16-be", "UTF-16"),
)
# Heads that may still grow into a BOM (b"\xff\xfe" may be UTF-32's).
_BOM_PREFIXES = frozenset(bom[:i] for bom, _, _ in _BOMS for i in range(1, len(bom)))


def _choose_decoding(name: str, head: bytes, encoding: str | None) -> _Decoding:
    """A BOM decides by itself, then `encoding`; with none (or UTF-8), UTF-16
    without a BOM is recognised from its NULs, and anything else is UTF-8."""
    for bom, bom_codec, label in _BOMS:
        if head.startswith(bom):
            return _Decoding(bom_codec, label, len(bom))
    codec = _given_codec(encoding)
    utf16 = _utf16_codec(head) if b"\x00" in head else None
    if codec is None:
        return _Decoding(utf16, "UTF-16") if utf16 else _Decoding(None, "UTF-8", hint=True)
    if utf16 is not None and not codec.startswith(("utf-16", "utf-32")):
        raise InputError(name, f"is UTF-16 text, not {encoding}: leave out --encoding")
    return _Decoding(_with_byte_order(codec, head), str(encoding))


def _with_byte_order(codec: str, head: bytes) -> str:
    """`codec`, and for utf-16 or utf-32 without a BOM (Python's decoders insist
    on one) the byte order its first bytes show, little-endian if they do not."""
    if codec == "utf-16":
        return _utf16_codec(head) or "utf-16-le"
    if codec == "utf-32":
        return "utf-32-be" if head.startswith(b"\x00\x00") else "utf-32-le"
    return codec


def _given_codec(encoding: str | None) -> str | None:
    """The normalised codec name of `encoding`; None for UTF-8, which has the fast path."""
    if encoding is None:
        return None
    codec = codecs.lookup(encoding).name
    return None if codec in ("utf-8", "utf-8-sig") else codec


def _utf16_codec(head: bytes) -> str | None:
    """The codec of UTF-16 without a BOM: NULs on one byte parity only,
    printable text on the other (little-endian when the NULs come second)."""
    even, odd = head[0::2], head[1::2]
    for zeros, text, codec in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros and zeros.count(0) >= 0.9 * len(zeros):
            printable = sum(1 for b in text if 32 <= b < 127 or b in (9, 10, 13))
            if printable >= 0.9 * len(text):
                return codec
    return None


# Stands for bytes the input's codec cannot decode: a lone surrogate, which makes
# its line invalid UTF-8 once re-encoded, so that this line alone is rejected.
_UNREADABLE = "\udcff"
UNREADABLE_ERRORS = "inboxleads.unreadable"


def _mark_unreadable(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _UNREADABLE, exc.end


codecs.register_error(UNREADABLE_ERRORS, _mark_unreadable)


def _transcoder(codec: str) -> Callable[[bytes, bool], bytes]:
    """Bytes in `codec` to UTF-8, a read at a time (a character split between two
    reads is kept for the next); undecodable bytes become `_UNREADABLE`."""
    decode = codecs.getincrementaldecoder(codec)(UNREADABLE_ERRORS).decode

    def transcode(data: bytes, final: bool) -> bytes:
        return decode(data, final).encode("utf-8", "surrogatepass")

    return transcode


_SURROGATES = re.compile("[\ud800-\udfff]")


def _not_text(value: str) -> str | None:
    """What keeps a JSON string from being sent and written back as text, if anything:
    a NUL, or half of a character (a lone surrogate, as a cut emoji leaves)."""
    if "\x00" in value:
        return "holds a NUL character"
    if _SURROGATES.search(value):
        return "holds half of a character (an unpaired surrogate)"
    return None


def _unreadable_text(raw: bytes) -> str:
    """A line that is not valid in its encoding, as text for its rejection."""
    try:
        text = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")
    # Surrogates encoded as UTF-8 (CESU-8) decode too: none may reach a report.
    return _SURROGATES.sub("\ufffd", text)


def _stub(quotes: int) -> str:
    """What stands for a line dropped for its length: nothing, or one quote when it
    held an odd number of them, so that a CSV reader keeps track of quoted cells
    (the record it is part of is rejected)."""
    return '"' if quotes % 2 else ""


_LONE_CR = re.compile(rb"\r(?!\n)")


class _LineBreaks:
    """Turns the lone CRs of a classic Mac file into LFs.

    Decided once per input, by the first read with a line break in it: lone CRs
    outnumbering LFs mean CR line breaks, and every CR of the input is an LF from
    then on; otherwise nothing is touched, so LF and CRLF files cost nothing. Until
    then a CR that ends a read waits for the next one: it may begin a CRLF.
    """

    def __init__(self) -> None:
        self.cr_only: bool | None = None
        self._held = b""

    def __call__(self, data: bytes) -> bytes:
        if self._held:
            data, self._held = self._held + data, b""
        if self.cr_only is None:
            if data.endswith(b"\r"):
                data, self._held = data[:-1], b"\r"
            self.cr_only = _cr_only(data)
        if self.cr_only:
            return data.replace(b"\r", b"\n")
        if b"\r" in data and _LONE_CR.search(data):
            # A lone CR in an LF or CRLF file (pasted lists, exports that switch
            # style) breaks the line too, as editors show it; a CR ending this read
            # waits for the next one, which may begin with the LF of a CRLF.
            if data.endswith(b"\r"):
                data, self._held = data[:-1], b"\r"
            data = _LONE_CR.sub(b"\n", data)
        return data

    def rest(self) -> bytes:
        """What is still held at the end of the input (a CR: a line break)."""
        held, self._held = self._held, b""
        return held.replace(b"\r", b"\n")


def _cr_only(data: bytes) -> bool | None:
    """Whether the line breaks of `data` are lone CRs; None if it has none."""
    lfs = data.count(b"\n")
    lone_crs = data.count(b"\r") - data.count(b"\r\n")
    if not (lfs or lone_crs):
        return None
    return lone_crs > lfs


def _read_head(reads: Iterator[bytes]) -> bytes:
    """The first reads of an input, enough to tell its BOM and UTF-16: two bytes,
    more while they may begin a BOM, and no more, so that a slow pipe's first line
    is not held up."""
    head = b""
    for chunk in reads:
        head = head + chunk if head else chunk
        if len(head) >= 4 or (len(head) >= 2 and head not in _BOM_PREFIXES):
            break
    return head


# In UTF-8 mode, a first line that is not UTF-8 but reads as cp1252 says so once.
_CP1252_HINT = "not UTF-8; it reads as Windows-1252 (an Excel export?): try --encoding cp1252"
# Cyrillic or Greek in their own code pages read as cp1252 too, as runs of accented
# letters that Western text does not have: no hint for those.
_NOT_WESTERN = re.compile(rb"[\x80-\xff]{3}")


def _reads_as_cp1252(raw: bytes) -> bool:
    """Whether a line that is not UTF-8 looks like Western text in Windows-1252."""
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return _NOT_WESTERN.search(raw) is None


class _Lines:
    """Splits a byte stream into numbered text lines, reading whatever is available.

    Work is done a block (one read) at a time: a block of clean UTF-8 is
    decoded and split in one call each, and only a block with a bad line falls
    back to line by line. `number` is the number of the last line handed out.
    An input in another encoding arrives here re-encoded as UTF-8 (`_chunks`).
    """

    def __init__(
        self, source: OpenInput, on_wait: Callable[[], None], encoding: str | None = None
    ) -> None:
        self.source = source
        self.on_wait = on_wait
        self.encoding = encoding
        self.bad: dict[int, str] = {}
        # Notices by the line they are about, handed out with that line's rejection.
        self.notices: dict[int, Notice] = {}
        # The first notice, kept to explain an error that stops the input.
        self.hint: Notice | None = None
        self.number = 0
        self.max_line = MAX_LINE_BYTES
        self.too_long = "line longer than 1 MiB"
        self._invalid = "not valid UTF-8"
        self._may_hint = False

    def blocks(self) -> Iterator[tuple[int, list[str]]]:
        """(number of the first line, lines without their newline) per read."""
        pending = b""
        too_long = False  # the line being read is already over the limit: drop it
        dropped = 0  # quotes in the dropped part of that line (see `_stub`)
        for chunk in self._chunks():
            data = pending + chunk if pending else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                too_long = too_long or len(data) > self.max_line
                if too_long:
                    dropped += data.count(b'"')
                pending = b"" if too_long else data
                continue
            yield self._block(data[:cut], too_long, dropped)
            pending = data[cut + 1 :]
            too_long = len(pending) > self.max_line
            dropped = pending.count(b'"') if too_long else 0
            if too_long:
                pending = b""
        if too_long or pending:
            yield self._block(pending, too_long, dropped)

    def _reads(self) -> Iterator[bytes]:
        """The bytes of the input, a read at a time, as they arrive."""
        stream = self.source.stream
        read = stream.read1 if hasattr(stream, "read1") else stream.read
        while True:
            self.on_wait()
            try:
                chunk = read(CHUNK_SIZE)
            except OSError as exc:
                raise InputError(
                    self.source.name, f"read failed: {exc.strerror or exc}", self.number + 1
                ) from exc
            if not chunk:
                return
            yield chunk

    def _chunks(self) -> Iterator[bytes]:
        """The input as UTF-8 with LF line breaks, a read at a time, without its BOM.
        UTF-8 passes through as it is read; only another encoding is transcoded."""
        reads = self._reads()
        head = _read_head(reads)
        if not head:
            return
        decoding = self._start(head)
        breaks = _LineBreaks()
        if decoding.codec is None:
            for chunk in itertools.chain((head[decoding.skip :],), reads):
                yield breaks(chunk)
        else:
            transcode = _transcoder(decoding.codec)
            for chunk in itertools.chain((head[decoding.skip :],), reads):
                yield breaks(transcode(chunk, False))
            yield breaks(transcode(b"", True))
        yield breaks.rest()

    def _start(self, head: bytes) -> _Decoding:
        """Check the first bytes and choose how to decode the input."""
        if self.source.check_head:
            check_head(self.source.name, head, self.encoding)
        decoding = _choose_decoding(self.source.name, head, self.encoding)
        self._invalid = f"not valid {decoding.label}"
        self._may_hint = decoding.hint
        return decoding

    def _block(self, raw: bytes, first_too_long: bool, dropped: int = 0) -> tuple[int, list[str]]:
        first = self.number + 1
        lines: list[str] | None = None
        if b"\x00" not in raw:
            with contextlib.suppress(UnicodeDecodeError):
                lines = raw.decode("utf-8").split("\n")
        if lines is None:
            lines = [self._decode(first + i, part) for i, part in enumerate(raw.split(b"\n"))]
        if first_too_long:
            self.bad[first] = self.too_long
            lines[0] = _stub(dropped + lines[0].count('"'))
        limit = self.max_line
        if len(raw) > limit:
            for i, text in enumerate(lines):
                if len(text) > limit // 4 and len(text.encode()) > limit:
                    self.bad[first + i] = self.too_long
                    lines[i] = _stub(text.count('"'))
        self.number = first + len(lines) - 1
        return first, lines

    def _decode(self, number: int, raw: bytes) -> str:
        if b"\x00" in raw:
            # Kept as text (quotes and all): in a CSV the line may be inside a quoted
            # cell, and the record it belongs to is rejected whole.
            self.bad[number] = "contains NUL bytes"
            return raw.replace(b"\x00", b"\xef\xbf\xbd").decode("utf-8", "replace")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad[number] = self._invalid
            if self._may_hint and _reads_as_cp1252(raw):
                self._may_hint = False
                self.hint = self.notices[number] = Notice(self.source.name, number, _CP1252_HINT)
            return _unreadable_text(raw)

    def unreadable(self, number: int, text: str) -> list[Notice | Rejection]:
        """The rejection of an unreadable line, after the notice it gave, if any."""
        rejection = Rejection(self.source.name, number, text, self.bad.pop(number))
        notice = self.notices.pop(number, None)
        return [rejection] if notice is None else [notice, rejection]

    def explained(self, problem: str) -> str:
        """`problem`, with the encoding hint if this input gave one: an error that
        stops the input may be all the user sees of it."""
        hint = self.hint
        return problem if hint is None else f"{problem} (line {hint.line}: {hint.text})"

    def lines_of(self, blocks: Iterable[tuple[int, list[str]]]) -> Iterator[str]:
        """Line by line, each with its newline (a CR before it stays: the CSV
        reader needs it to keep a CRLF inside a quoted cell)."""
        for first, block in blocks:
            for i, text in enumerate(block):
                self.number = first + i
                yield text + "\n"


# A run of plain handles stays one object until it is reported (see HandleRun).
Chunk = list[Lead | Rejection | HandleRun | Notice | ColumnsUsed]

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
            elif not isinstance(record, Notice | ColumnsUsed):
                yield record


def read_chunks(
    source: OpenInput, options: ReadOptions, on_wait: Callable[[], None] = lambda: None
) -> Iterator[Chunk]:
    """The records of one input in order, in lists (a block of lines at a time
    where the format allows, which is what makes large files fast)."""
    lines = _Lines(source, on_wait, options.encoding)
    fmt = source.fmt if options.fmt is Format.AUTO else options.fmt
    if fmt is Format.JSON:
        lines.max_line = MAX_JSON_BYTES
        lines.too_long = f"a .json input over {MAX_JSON_BYTES // MAX_LINE_BYTES} MiB (use JSONL)"
    blocks: Iterator[tuple[int, list[str]]] = lines.blocks()
    if fmt is Format.AUTO:
        held: list[tuple[int, list[str]]] = []
        meaningful: list[str] = []
        # A pipe is judged by what came in the read that brought its first line:
        # waiting for more would hold that line back on a quiet pipe.
        complete = not source.is_regular
        for number, block in blocks:
            held.append((number, block))
            wanted = SNIFF_LINES - len(meaningful)
            meaningful.extend(itertools.islice(_meaningful(block), wanted))
            if meaningful and sniff(meaningful[0], options, meaningful[1:], complete=complete):
                break
        first = meaningful[0] if meaningful else ""
        fmt = sniff(first, options, meaningful[1:]) or Format.LINES
        blocks = itertools.chain(held, blocks)
    if options.columns and fmt not in (Format.CSV, Format.TSV):
        raise InputError(lines.source.name, _not_a_table(fmt, options.columns), 1)
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


def reads_as_header(value: str) -> bool:
    """Whether a line holding just `value` would be taken for the header of a
    one-column export (see `sniff`): a username such as `x` or `id` is then
    written `@x` in a list meant to be read back."""
    return cols.is_known(value)


def _meaningful(block: list[str]) -> Iterator[str]:
    """The lines of a block that are neither blank nor comments (an unreadable one
    included: a header that is not UTF-8 is still a header)."""
    return (text for text in block if text.strip() and not _is_comment(text))


def _is_comment(text: str) -> bool:
    """A line starting with `#`, unless it is a header whose first column is `#`
    (a row-number column: `#,Name,Twitter`)."""
    if not text.startswith("#"):
        return False
    return not any(cols.is_known(c) for c in _row_cells(text)[1:])


def sniff(
    first: str,
    options: ReadOptions,
    following: Sequence[str] = (),
    complete: bool = True,
) -> Format | None:
    """Guess the format of an input from its first meaningful line, and the lines
    after it where the first may be the header of a table that names no
    identifier column. `following`: the next meaningful lines read so far (up to
    `SNIFF_LINES` in all); None when they are needed to decide and more may
    come (`complete` False).
    """
    if _declared_delimiter(first) is not None:
        return Format.CSV
    text = first.strip()
    if text.startswith("{"):
        return Format.JSONL
    if text.startswith("["):
        return Format.JSON
    wanted = {cols.normalise(c) for c in options.columns}
    delimiter = _pick_delimiter(text)
    if "@" not in text and "/" not in text and delimiter not in text:
        # A one-column export: its first line is just the column's name. (To
        # send the account of that name first, write it as @name.)
        if cols.normalise(text) in wanted or (not wanted and cols.is_known(text)):
            return Format.CSV
        # A lone name above a number (`Record ID - Contact`, `phone`, `zip`) is the
        # header of a column of row numbers, another system's ids or figures.
        if not wanted and not text.isdigit():
            if not following:
                return None if not complete else Format.LINES
            if _names_an_identifier_column(following[0], None):
                return Format.CSV  # a title above the header
            # Every line after it a number (a mixed list has a handle among them).
            if all(line.strip().isdigit() for line in following):
                return Format.CSV
    fmt = Format.TSV if delimiter == "\t" else Format.CSV
    cells = _cells(text, delimiter)
    if delimiter in text:
        names = {cols.normalise(c) for c in cells}
        if names & wanted or (not wanted and any(cols.is_known(c) for c in cells)):
            return fmt
        # A header naming no identifier column (`ID,Name,Company`): known by
        # a next line of as many fields, and refused with the list of columns.
        if cols.looks_like_header(cells):
            if not following:
                return None if not complete else Format.LINES
            if len(_cells(following[0].strip(), delimiter)) == len(cells):
                return fmt
    return Format.LINES


def _cells(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return line.split(delimiter)


def _row_cells(line: str, delimiter: str | None = None) -> list[str]:
    """The cells of a line that holds its delimiter (by default the one it uses
    most); none for a line of one cell."""
    delimiter = delimiter or _pick_delimiter(line)
    return _cells(line.strip(), delimiter) if delimiter in line else []


def _not_a_table(fmt: Format, columns: tuple[str, ...]) -> str:
    named = ", ".join(repr(c) for c in columns)
    if fmt is Format.LINES:
        return f"--column {named}: this input has no header line naming it (read as a list)"
    return f"--column {named}: names a CSV/TSV column, and this input is {fmt.value.upper()}"


def _values(lines: _Lines, first: int, block: list[str], out: Chunk) -> Iterator[tuple[int, str]]:
    """Numbered, stripped values of a block of a line-per-record input; an
    unreadable line goes to `out` as a rejection (after its notice, if it gave
    one), blank and comment lines nowhere."""
    bad = lines.bad
    for number, text in enumerate(block, first):
        value = text.strip()
        if bad and number in bad:
            out.extend(lines.unreadable(number, value))
        elif value and value[0] != "#":
            if not value.isascii():
                # A line that shows as blank or as a comment is one.
                shown = visible(value)
                if not shown or shown[0] == "#":
                    continue
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
        for number, value in _values(lines, first, block, out):
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
    for first, block in blocks:
        out: Chunk = []
        for number, value in _values(lines, first, block, out):
            try:
                obj = json.loads(value)
            except ValueError:
                out.append(Rejection(name, number, value, "not a JSON object"))
                continue
            except RecursionError:
                out.append(Rejection(name, number, value[:1000], "JSON nested too deeply"))
                continue
            out.append(lead_from_object(obj, name, number, value, options))
        yield out


def _pick_delimiter(header_line: str) -> str:
    """The delimiter a header line uses most, outside quoted names."""
    header_line = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


# Excel's `sep=;` first line (written quoted by some tools): the delimiter, a real tab included.
_SEP_LINE = re.compile(r'"?sep=([^\w\s"]|\t)"? *', re.IGNORECASE)


def _declared_delimiter(line: str) -> str | None:
    """The delimiter an Excel `sep=X` line declares, or None for another line."""
    match = _SEP_LINE.fullmatch(line.rstrip("\r\n"))
    return match.group(1) if match else None


def _csv_problem(exc: csv.Error) -> str:
    """What the csv module found wrong, in the user's terms: for a CR inside an
    unquoted cell it suggests a file mode ("universal-newline mode") instead."""
    text = str(exc)
    if "new-line character" in text:
        return "a line break (CR) inside an unquoted cell"
    return text


def _table_header(
    it: Iterator[str], lines: _Lines, delimiter: str | None, named: tuple[str, ...] = ()
) -> Generator[Notice, None, tuple[str, str, list[tuple[int, str]]] | None]:
    """Read up to the header line: (header line, delimiter, the numbered line read
    after it to look, if any), or None if there is none.

    Blank and comment lines are skipped (before the header only: after it, a
    blank line may be part of a quoted multi-line cell). An unreadable header
    stops the input: read without it, the first row would name the columns. A
    first `sep=X` line (Excel) declares the delimiter, which wins over the one
    given, and the header is the line after it. A title above the header (one
    name, `Contacts`, above a line naming an identifier column) is skipped.
    """
    declared = None
    for text in it:
        number = lines.number
        if not text.strip() or _is_comment(text):
            if number in lines.bad:
                # Unreadable, but a comment all the same: its encoding hint stays.
                del lines.bad[number]
                notice = lines.notices.pop(number, None)
                if notice is not None:
                    yield notice
        elif number in lines.bad:
            problem = lines.explained(f"unreadable header line ({lines.bad[number]})")
            raise InputError(lines.source.name, problem, number)
        else:
            if declared is None:
                declared = _declared_delimiter(text)
                if declared is not None:
                    continue
            if declared is None and _may_be_a_title(text, delimiter, named):
                following = next(it, None)
                if following is None:
                    return text, delimiter or _pick_delimiter(text), []
                if not _names_an_identifier_column(following, delimiter):
                    return text, delimiter or _pick_delimiter(text), [(lines.number, following)]
                shown = text.strip()[:100]
                yield Notice(
                    lines.source.name, number, f"{shown!r} is a title, not a header: skipped"
                )
                text = following
            while text.count('"') % 2:
                # A quoted name with a line break in it: the header goes on.
                more = next(it, None)
                if more is None:
                    break
                text += more
            return text, declared or delimiter or _pick_delimiter(text), []
    return None


def _may_be_a_title(text: str, delimiter: str | None, named: tuple[str, ...]) -> bool:
    """A first line of one cell that names no identifier column."""
    if '"' in text or (delimiter or _pick_delimiter(text)) in text:
        return False
    name = cols.normalise(text)
    return not cols.is_known(text) and name not in {cols.normalise(n) for n in named}


def _names_an_identifier_column(line: str, delimiter: str | None) -> bool:
    """Whether a line is a header with an identifier column of a recognised name."""
    return any(cols.normalise(c) in cols.RULES for c in _row_cells(line, delimiter))


def _read_table(
    it: Iterator[str], lines: _Lines, options: ReadOptions, delimiter: str | None
) -> Iterator[Record | Info]:
    name = lines.source.name
    found = yield from _table_header(it, lines, delimiter, options.columns)
    if found is None:
        return
    header_text, delimiter, looked_at = found
    try:
        header = [h.strip() for h in next(csv.reader([header_text], delimiter=delimiter))]
    except csv.Error as exc:
        problem = lines.explained(f"malformed CSV header: {_csv_problem(exc)}")
        raise InputError(name, problem, lines.number) from None

    def layout_of(header: list[str]) -> tuple[cols.Layout, dict[int, str]]:
        """The header's layout, and its columns with no name (said once a value
        turns up in one: Excel's trailing `,`)."""
        try:
            layout = cols.layout(
                header,
                options.columns,
                options.data_columns,
                options.no_data,
                options.read_as,
                options.renames,
                options.variables,
            )
        except cols.HeaderError as exc:
            raise InputError(name, lines.explained(str(exc)), lines.number) from None
        return layout, {i: k for i, k in layout.data if not header[i]}

    layout, unnamed = layout_of(header)
    for warning in layout.warnings:
        yield Notice(name, lines.number, warning)
    identifiers = layout.identifiers
    # A column is named by its key: the header, or what a repeated or empty one became.
    # (An identifier column goes in a row's data only when the row did not use it.)
    used_for_ids = {c.index for c in identifiers}
    data_said = tuple((layout.keys[i], k) for i, k in layout.data if i not in used_for_ids)
    yield ColumnsUsed(name, tuple(c.name for c in identifiers), data_said, layout.mapped)
    width = len(header)
    names = frozenset(header)
    for number, last, raw, row in _csv_records(it, lines, delimiter, looked_at):
        # Unreadable lines of this record (a NUL inside a quoted cell), and of blank
        # records before it, reject it whole.
        bad = [n for n in lines.bad if n <= last]
        if bad:
            yield from (lines.notices.pop(n) for n in bad if n in lines.notices)
            reasons = [lines.bad.pop(n) for n in bad]
            yield Rejection(name, number, raw, reasons[0])
            continue
        if row is None:
            continue
        if isinstance(row, str):
            yield Rejection(name, number, raw, row)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(raw) > MAX_LINE_BYTES // 4 and len(raw.encode()) > MAX_LINE_BYTES:
            yield Rejection(name, number, raw[:1000], "record longer than 1 MiB")
            continue
        if len(row) > width:
            if any(cell.strip() for cell in row[width:]):
                yield Rejection(name, number, raw, f"{len(row)} fields, header has {width}")
                continue
            del row[width:]  # empty cells after the last column, as spreadsheets write them
        if row[0].strip() in names and sorted(c.strip() for c in row) == sorted(header):
            # The header again: exports joined one after another. In another order,
            # the rows after it are read by it.
            again = [c.strip() for c in row]
            if again == header:
                yield Notice(name, number, "the header again (inputs joined?): skipped")
                continue
            header = again
            layout, unnamed = layout_of(header)
            identifiers = layout.identifiers
            yield Notice(
                name, number, "the header again, in another order: the rows after it are read by it"
            )
            continue
        used, parsed = _identifier_of(row, identifiers)
        if isinstance(parsed, str):
            yield Rejection(name, number, raw, parsed)
            continue
        data = {
            key: row[i] for i, key in layout.data if i < len(row) and i != used and row[i].strip()
        }
        if unnamed and data:
            for i in [i for i, key in unnamed.items() if key in data]:
                yield Notice(name, number, cols.unnamed_warning(i, unnamed.pop(i)))
        yield Lead(parsed[0], parsed[1], name, number, data or None)


def _identifier_of(
    row: list[str], identifiers: tuple[cols.IdColumn, ...]
) -> tuple[int, ParseResult]:
    """The identifier of a row and the column it is in: from the first of its
    identifier columns that holds one, read as that column says; else why there
    is none. (The other identifier columns are data, as every other column.)"""
    reasons: list[str] = []
    for column in identifiers:
        value = row[column.index].strip() if column.index < len(row) else ""
        if not value:
            continue
        parsed = parse_value(value, column.read_as)
        if not isinstance(parsed, str) and not column.bare_ids and _bare_number(parsed, value):
            parsed = cols.number_reason(column.name)
        if not isinstance(parsed, str):
            return column.index, parsed
        reasons.append(parsed if len(identifiers) == 1 else f"{column.name!r}: {parsed}")
    return -1, "; ".join(reasons) or cols.empty_reason([c.name for c in identifiers])


def _bare_number(parsed: tuple[Kind, str], value: str) -> bool:
    """Whether a value read as a user ID without saying so (not in a link)."""
    return parsed[0] is Kind.PLATFORM_ID and "/" not in value


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
    it: Iterator[str], lines: _Lines, delimiter: str, first: list[tuple[int, str]]
) -> Iterator[tuple[int, int, str, list[str] | str | None]]:
    """(first and last line number, raw text, cells) per CSV record; cells is an
    error message for a malformed record, None at the end of a blank record.

    A malformed record (a quote never closed swallows the rest of the file) is
    rejected at the line where it starts, and the lines after that are read
    again as records of their own, so one bad quote costs one row.
    """
    feed = _Feed(it, lines)
    feed.replay.extend(first)  # a line read to look at, before the rest
    record = feed.record
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    while True:
        record.clear()
        try:
            row: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row = f"malformed CSV row: {_csv_problem(exc)}"
            feed.replay.extendleft(reversed(record[1:]))
            del record[1:]
        if not record:
            return
        raw = "".join(text for _, text in record).rstrip("\r\n")
        yield record[0][0], record[-1][0], raw, row


def _read_json_array(it: Iterator[str], lines: _Lines, options: ReadOptions) -> Iterator[Record]:
    name = lines.source.name
    text = "".join(it)
    if lines.bad:
        number, reason = next(iter(lines.bad.items()))
        raise InputError(name, lines.explained(reason), number)
    if not text.strip():
        return  # an empty file is an empty run, as for every other format
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise InputError(name, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(name, "not valid JSON: nested too deeply") from None
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
            key, value = str(key), value if isinstance(value, str) else json.dumps(value)
            problem = _not_text(key) or _not_text(value)
            if problem:
                return Rejection(
                    source, number, text, f"data.{_SURROGATES.sub('?', key)} {problem}"
                )
            clean[key] = value
        if options.data_columns is not None:
            wanted = {cols.normalise(c) for c in options.data_columns}
            clean = {k: v for k, v in clean.items() if cols.normalise(k) in wanted}
        return Lead(parsed[0], parsed[1], source, number, clean or None)
    return Lead(parsed[0], parsed[1], source, number)
