"""The resume journal: an append-only record of delivered batches.

One JSON object a line. The first line names the run it belongs to (campaign,
inputs, batch size, how values are read); each later line records one
delivered batch by its content digest and the server's counts. Every record is
flushed and fsynced before the batch counts as delivered, so after a crash at
most the batches in flight are sent again (harmless: re-sent identifiers count
as skipped). A torn last line, from a crash mid-write, is ignored.

The token is never written here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .answers import Answer
from .errors import JournalError
from .files import make_folder, open_private, sync, sync_folder

VERSION = 2
# Journals of version 1 also named the resolved input paths and the read options:
# they are still read, and those fields are not compared any more.
READABLE_VERSIONS = (1, 2)
# A header line is short; a file whose first line is longer is not a journal.
HEADER_MAX = 64 * 1024


def input_names(paths: list[str]) -> tuple[str, ...]:
    """The inputs of a run as the user named them (absolute, links not followed), `-`
    for stdin: what the journal's header shows, and what names a --resume journal."""
    return tuple(os.path.abspath(p) if p != "-" else "-" for p in paths)


@dataclass(frozen=True)
class RunKey:
    """What makes two runs the same run, for resuming: the campaign and how the leads
    are cut into batches. Not the input file names: a rotated symlink or a renamed
    export resumes normally, and batches are recognised by their content digest."""

    campaign: str
    batch_size: int
    max_request_bytes: int
    # Shown in the header for whoever reads the file; never compared.
    inputs: tuple[str, ...] = ()

    def header(self) -> dict[str, Any]:
        return {
            "journal": VERSION,
            "campaign": self.campaign,
            "batch_size": self.batch_size,
            "max_request_bytes": self.max_request_bytes,
            "inputs": list(self.inputs),
        }

    def check(self, path: Path, header: Any) -> None:
        """Raise `JournalError` unless `header` is the first line of this run's journal."""
        if not isinstance(header, dict) or header.get("journal") not in READABLE_VERSIONS:
            raise JournalError(
                f"journal {path}: not an inboxleads journal (left unchanged); "
                "name a new file for --journal"
            )
        expected = self.header()
        fields = ["campaign", "batch_size"]
        if header.get("journal") == VERSION:
            fields.append("max_request_bytes")
        for name in fields:
            if header.get(name) != expected[name]:
                raise JournalError(
                    f"journal {path} belongs to another run ({name}: "
                    f"{header.get(name)!r}, this run: {expected[name]!r}); "
                    "use another --journal file, or delete this one to start over"
                )


def check_journal(path: Path, key: RunKey) -> None:
    """Before anything is written anywhere: refuse a file that is not a journal, or the
    journal of another run, leaving it unchanged. An absent or empty file is new."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline(HEADER_MAX)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise JournalError(f"journal {path}: {exc.strerror or exc}") from exc
    if head and not _torn_header(head):
        key.check(path, _header_of(head))


def _torn_header(head: bytes) -> bool:
    """The start of a header a crash (or a run writing it now) has not finished: a
    journal that recorded nothing yet."""
    return b"\n" not in head and head.startswith(b'{"journal"')


def _header_of(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None


class Journal:
    """Which batches an earlier run of the same job delivered; appends new ones."""

    def __init__(self, path: Path, key: RunKey) -> None:
        self.path = path
        self.key = key
        # digest -> the failed count the server gave for it
        self._done: dict[str, int] = {}
        self._out: IO[str] | None = None

    @classmethod
    def open(cls, path: Path, key: RunKey) -> Journal:
        """Read an existing journal (refusing one of another run) and open it for appending."""
        journal = cls(path, key)
        try:
            existing = path.exists() and path.stat().st_size > 0 and journal._load()
            make_folder(path.parent)
            journal._out = open_private(path, "a" if existing else "w")
            if not existing:
                journal._write(key.header())
                sync_folder(path.parent)  # the new file's name survives a power cut too
        except OSError as exc:
            raise JournalError(f"journal {path}: {exc.strerror or exc}") from exc
        return journal

    def _load(self) -> bool:
        """Read the journal's records; False when it holds no header yet."""
        raw = self.path.read_bytes()
        if _torn_header(raw[:HEADER_MAX]):
            return False  # nothing was recorded: it starts again
        first = raw[: raw.find(b"\n") + 1] if b"\n" in raw else raw
        # The header is checked before anything is changed: a file that is not this
        # run's journal is refused as it is.
        self.key.check(self.path, _header_of(first[:HEADER_MAX]))
        if not raw.endswith(b"\n"):
            # A crash tore the last record: cut it off, or the next record
            # would be glued to it and lost on the following run.
            keep = raw.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
            raw = raw[:keep]
        lines = raw.decode("utf-8", "replace").split("\n")
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line from a crash
            if isinstance(record, dict) and isinstance(record.get("batch"), str):
                failed = record.get("failed")
                self._done[record["batch"]] = failed if isinstance(failed, int) else 0
        return True

    def _write(self, record: dict[str, Any]) -> None:
        assert self._out is not None
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._out.flush()
        sync(self._out.fileno())

    def has(self, digest: str) -> bool:
        """True when an earlier run delivered this batch."""
        return digest in self._done

    def failed_of(self, digest: str) -> int | None:
        """The failed count recorded for a delivered batch (None: not recorded)."""
        return self._done.get(digest)

    def record(
        self, digest: str, seq: int, size: int, answer: Answer, phase: str = "upload"
    ) -> None:
        """Append a delivered batch (or an explanation request), durably."""
        self._done[digest] = answer.failed
        record: dict[str, Any] = {
            "batch": digest,
            "seq": seq,
            "size": size,
            "added": answer.added,
            "skipped": answer.skipped,
            "failed": answer.failed,
            "ts": round(time.time(), 3),
        }
        if phase != "upload":
            record["phase"] = phase
        if self._out is None:
            raise JournalError(f"journal {self.path}: no longer written after an error")
        try:
            self._write(record)
        except OSError as exc:
            # Nothing more goes in (what the failed write left buffered included): a
            # torn last record is cut off by the next run that reads the journal.
            out, self._out = self._out, None
            with contextlib.suppress(OSError, ValueError):
                out.close()
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from exc

    @property
    def delivered_batches(self) -> int:
        return len(self._done)

    def close(self) -> None:
        """Close the journal; every record was already flushed and synced, or failed."""
        if self._out is not None:
            out, self._out = self._out, None
            with contextlib.suppress(OSError, ValueError):
                out.close()
