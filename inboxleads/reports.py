"""The files a run leaves for the user to act on: rejects and undelivered.

Both stream to disk as the run goes, so a list of a million rejections costs
no memory. Files are created with mode 0600: they hold lead data.

The undelivered file must read back with `inboxleads add` in auto mode: plain
lines when every entry is a username or platform ID without data, else CSV
(a `profile` column plus the data columns) when no external IDs are among
them, else JSONL with the API's lead fields. Plain lines are written as they
come; once an entry needs more, entries are spooled and the final file is
written on `close` (see `Reports`).
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

from .batching import Batch
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


_PLAIN_KINDS = frozenset({Kind.USERNAME, Kind.PLATFORM_ID})
# Extensions that choose the undelivered file's form (see `write_undelivered`).
_FORM_SUFFIXES = frozenset({".csv", ".tsv", ".json", ".jsonl", ".ndjson"})


class Reports:
    """Writers for `--rejects` and `--undelivered` (each optional).

    Undelivered identifiers are written as they come, straight in their final
    form while that form is plain lines (the common case, and the one a stop
    of a large import produces by the million: a run of handles is one
    write). The first entry plain lines cannot hold (data, an external ID)
    moves everything to a spool, and `close` writes the final CSV or JSONL.
    """

    def __init__(self, rejects: Path | None = None, undelivered: Path | None = None) -> None:
        self.rejects_path = rejects
        self.undelivered_path = undelivered
        self._rejects: IO[str] | None = None
        self._rejects_csv: Any = None
        self._plain: IO[str] | None = None
        self._plain_path: Path | None = None
        self._spool: IO[str] | None = None
        self._spool_path: Path | None = None
        self._undelivered_count = 0
        if rejects is not None:
            self._rejects = open_private(rejects)
            self._rejects_csv = csv.writer(self._rejects, lineterminator="\n")
            self._rejects_csv.writerow(["source", "line", "reason", "text"])
        if undelivered is not None:
            self._spool_path = undelivered.with_name(undelivered.name + ".part")
            if undelivered.suffix.lower() in _FORM_SUFFIXES:
                self._spool = open_private(self._spool_path)
            else:
                self._plain_path = self._spool_path
                self._plain = open_private(self._plain_path)

    def rejected(self, rejections: Iterable[Rejection]) -> None:
        """Record rejected input records."""
        if self._rejects_csv is not None:
            for r in rejections:
                self._rejects_csv.writerow([r.source, r.line, r.reason, r.text[:1000]])

    def undelivered_batch(self, batch: Batch, reason: str) -> None:
        """Record a batch that was read but not delivered."""
        if self._plain is not None and batch.run is not None and batch.compact:
            values = batch.run.values
            self._undelivered_count += len(values)
            lines = (readable(Kind.USERNAME, v) for v in values)
            self._plain.write("\n".join(lines) + "\n")
            return
        self.undelivered(batch.leads, reason)

    def undelivered(self, leads: Iterable[Lead], reason: str) -> None:
        """Record leads that were read but not delivered."""
        if self._plain is None and self._spool is None:
            return
        for lead in leads:
            self._undelivered_count += 1
            if self._plain is not None:
                if lead.kind in _PLAIN_KINDS and not lead.data:
                    self._plain.write(readable(lead.kind, lead.value) + "\n")
                    continue
                self._to_spool()
            assert self._spool is not None
            entry: dict[str, Any] = {"kind": lead.kind.value, "value": lead.value}
            if lead.data:
                entry["data"] = lead.data
            self._spool.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def _to_spool(self) -> None:
        """Plain lines no longer do: move what was written to a spool of entries."""
        assert self._plain is not None and self._plain_path is not None
        self._plain.close()
        self._plain = None
        lines = self._plain_path.with_name(self._plain_path.name + "-lines")
        os.replace(self._plain_path, lines)
        assert self._spool_path is not None
        self._spool = open_private(self._spool_path)
        with open(lines, encoding="utf-8") as fh:
            for line in fh:
                kind, value = _from_line(line.rstrip("\n"))
                self._spool.write(json.dumps({"kind": kind, "value": value}) + "\n")
        lines.unlink()

    def close(self) -> None:
        """Flush everything and put the undelivered file in place, in its final form."""
        if self._rejects is not None:
            self._rejects.close()
            self._rejects = None
        target = self.undelivered_path
        if self._plain is not None and self._plain_path is not None and target is not None:
            self._plain.close()
            self._plain = None
            os.replace(self._plain_path, target)
        if self._spool is not None and self._spool_path and target is not None:
            self._spool.close()
            self._spool = None
            write_undelivered(self._spool_path, target)
            self._spool_path.unlink()


def _from_line(line: str) -> tuple[str, str]:
    """The kind and value of a plain undelivered line (the inverse of `readable`)."""
    if line.startswith("@"):
        return Kind.USERNAME.value, line[1:]
    if line.isdigit():
        return Kind.PLATFORM_ID.value, line
    return Kind.USERNAME.value, line


def _entries(spool: Path) -> Iterable[dict[str, Any]]:
    with open(spool, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def write_undelivered(spool: Path, target: Path) -> str:
    """Write the final undelivered file from the spool; return the form chosen.

    The form follows the target's extension where it names one (.csv, .tsv,
    .json, .jsonl), since `add` reads files by extension; otherwise plain lines
    when they lose nothing, else CSV, else JSONL.
    """
    plain = True
    external = False
    all_external = True
    columns: dict[str, None] = {}
    for entry in _entries(spool):
        if entry["kind"] == Kind.EXTERNAL_ID.value:
            external = True
            plain = False
        else:
            all_external = False
        if "data" in entry:
            plain = False
            columns.update(dict.fromkeys(entry["data"]))
    suffix = target.suffix.lower()
    if suffix == ".json":
        return _write_objects(spool, target, array=True)
    if suffix in (".jsonl", ".ndjson") or (external and suffix not in (".csv", ".tsv")):
        return _write_objects(spool, target, array=False)
    if suffix in (".csv", ".tsv") or not plain:
        delimiter = "\t" if suffix == ".tsv" else ","
        return _write_table(spool, target, columns, delimiter, all_external)
    with open_private(target) as out:
        for entry in _entries(spool):
            out.write(_as_line(entry) + "\n")
    return "lines"


def _write_table(
    spool: Path, target: Path, columns: dict[str, None], delimiter: str, all_external: bool
) -> str:
    """CSV/TSV whose first column, `username`, outranks any data column when read back.

    User IDs go in it as x.com/i/user/ID links, which read back as IDs; external
    IDs can only be written this way when every entry is one (`external_id`).
    """
    first = "external_id" if all_external else "username"
    with open_private(target) as out:
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        writer.writerow([first, *columns])
        for entry in _entries(spool):
            kind, value = entry["kind"], str(entry["value"])
            if kind == Kind.PLATFORM_ID.value:
                value = f"https://x.com/i/user/{value}"
            elif kind == Kind.EXTERNAL_ID.value and not all_external:
                # Cannot be told apart from a username in a table: keep the row
                # readable for a person, and say so in the docs.
                value = f"external:{value}"
            data = entry.get("data", {})
            writer.writerow([value, *(data.get(c, "") for c in columns)])
    return "tsv" if delimiter == "\t" else "csv"


def _write_objects(spool: Path, target: Path, array: bool) -> str:
    """JSONL (or a JSON array) of lead objects with the API's field names."""
    with open_private(target) as out:
        out.write("[\n" if array else "")
        for i, entry in enumerate(_entries(spool)):
            obj: dict[str, Any] = {entry["kind"]: entry["value"]}
            if "data" in entry:
                obj["data"] = entry["data"]
            line = json.dumps(obj, ensure_ascii=False)
            out.write((",\n" if array and i else "") + line + ("" if array else "\n"))
        out.write("\n]\n" if array else "")
    return "json" if array else "jsonl"


def _as_line(entry: dict[str, Any]) -> str:
    """A username or platform ID as a value that reads back as the same kind."""
    return readable(Kind(entry["kind"]), str(entry["value"]))
