"""The files a run leaves for the user to act on: rejects and undelivered.

Both stream to disk as the run goes, so a list of a million rejections costs
no memory. Files are created with mode 0600: they hold lead data.

The undelivered file must read back with `inboxleads add` in auto mode: plain
lines when every entry is a username or platform ID without data, else CSV
(a `profile` column plus the data columns) when no external IDs are among
them, else JSONL with the API's lead fields. Which form fits is only known
at the end, so entries are spooled as JSONL and the final file written on
`close`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from .identifiers import Kind, Lead, readable
from .inputs import Rejection


def open_private(path: Path | str, mode: str = "w") -> IO[str]:
    """Open a text file for writing, created with mode 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    # An existing file keeps its mode otherwise; devices and pipes are left alone.
    if stat.S_ISREG(os.fstat(fd).st_mode):
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
    return open(fd, mode, encoding="utf-8", newline="")


class Reports:
    """Writers for `--rejects` and `--undelivered` (each optional)."""

    def __init__(self, rejects: Path | None = None, undelivered: Path | None = None) -> None:
        self.rejects_path = rejects
        self.undelivered_path = undelivered
        self._rejects: IO[str] | None = None
        self._rejects_csv: Any = None
        self._spool: IO[str] | None = None
        self._spool_path: Path | None = None
        self._undelivered_count = 0
        if rejects is not None:
            self._rejects = open_private(rejects)
            self._rejects_csv = csv.writer(self._rejects, lineterminator="\n")
            self._rejects_csv.writerow(["source", "line", "reason", "text"])
        if undelivered is not None:
            self._spool_path = undelivered.with_name(undelivered.name + ".part")
            self._spool = open_private(self._spool_path)

    def rejected(self, rejections: Iterable[Rejection]) -> None:
        """Record rejected input records."""
        if self._rejects_csv is not None:
            for r in rejections:
                self._rejects_csv.writerow([r.source, r.line, r.reason, r.text[:1000]])

    def undelivered(self, leads: Iterable[Lead], reason: str) -> None:
        """Record leads that were read but not delivered."""
        if self._spool is None:
            return
        for lead in leads:
            self._undelivered_count += 1
            entry: dict[str, Any] = {
                "kind": lead.kind.value,
                "value": lead.value,
                "source": lead.source,
                "line": lead.line,
                "reason": reason,
            }
            if lead.data:
                entry["data"] = lead.data
            self._spool.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Flush everything and write the undelivered file in its final form."""
        if self._rejects is not None:
            self._rejects.close()
            self._rejects = None
        if self._spool is not None and self._spool_path and self.undelivered_path:
            self._spool.close()
            self._spool = None
            write_undelivered(self._spool_path, self.undelivered_path)
            self._spool_path.unlink()


def _entries(spool: Path) -> Iterable[dict[str, Any]]:
    with open(spool, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def write_undelivered(spool: Path, target: Path) -> str:
    """Write the final undelivered file from the spool; return the form chosen."""
    plain = True
    external = False
    columns: dict[str, None] = {}
    for entry in _entries(spool):
        if entry["kind"] == Kind.EXTERNAL_ID.value:
            external = True
            plain = False
        if "data" in entry:
            plain = False
            columns.update(dict.fromkeys(entry["data"]))
    wants_jsonl = target.suffix.lower() in (".jsonl", ".ndjson")
    if plain and not wants_jsonl:
        with open_private(target) as out:
            for entry in _entries(spool):
                out.write(_as_line(entry) + "\n")
        return "lines"
    if not external and not wants_jsonl and "profile" not in columns:
        with open_private(target) as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["profile", *columns])
            for entry in _entries(spool):
                data = entry.get("data", {})
                writer.writerow([_as_line(entry), *(data.get(c, "") for c in columns)])
        return "csv"
    with open_private(target) as out:
        for entry in _entries(spool):
            obj: dict[str, Any] = {entry["kind"]: entry["value"]}
            if "data" in entry:
                obj["data"] = entry["data"]
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return "jsonl"


def _as_line(entry: dict[str, Any]) -> str:
    """A username or platform ID as a value that reads back as the same kind."""
    return readable(Kind(entry["kind"]), str(entry["value"]))
