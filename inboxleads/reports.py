"""The files a run leaves for the user to act on: rejects, undelivered, and the
failed leads named by `--explain-failures`.

Rejects and undelivered stream to disk as the run goes, so a list of a million
rejections costs no memory; the failed leads are written once the run has named
them (`Reports.write_table`). Files are created with mode 0600: they hold lead data.

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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from .batching import Batch
from .columns import normalise
from .errors import UsageError
from .events import Rejection
from .files import open_private, put_in_place, replacing, temporary
from .identifiers import Kind, Lead, readable
from .inputs import reads_as_header


class CsvOut:
    """A CSV writer whose rows read back as written: a cell holding a CR is quoted
    too (the csv module's minimal quoting only quotes the line terminator, LF)."""

    def __init__(self, out: IO[str], delimiter: str = ",") -> None:
        self._minimal = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        self._quoted = csv.writer(
            out, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL
        )

    def writerow(self, row: list[Any]) -> None:
        if any(isinstance(cell, str) and "\r" in cell for cell in row):
            self._quoted.writerow(row)
        else:
            self._minimal.writerow(row)


# Report rows written between two flushes: what a failed write can cost at most.
FLUSH_EVERY = 64
_PLAIN_KINDS = frozenset({Kind.USERNAME, Kind.PLATFORM_ID})
# Extensions that choose the undelivered file's form (see `write_undelivered`).
_FORM_SUFFIXES = frozenset({".csv", ".tsv", ".json", ".jsonl", ".ndjson"})


class Reports:
    """Writers for `--rejects` and `--undelivered` (each optional), and for a table
    written whole at the end of the run (`write_table`, for `--explain-failures`).

    Undelivered identifiers are written as they come, straight in their final
    form while that form is plain lines (the common case, and the one a stop
    of a large import produces by the million: a run of handles is one
    write). The first entry plain lines cannot hold (data, an external ID)
    moves everything to a spool, and `close` writes the final CSV or JSONL.

    A write that fails (a full disk, a file size limit) never stops the run
    nor its counts: the report stops being written, what it could not list
    is counted (`unlisted`), and `failures` says which file failed and why,
    for the runner to report once the run is over.
    """

    def __init__(self, rejects: Path | None = None, undelivered: Path | None = None) -> None:
        self.rejects_path = rejects
        self.undelivered_path = undelivered
        self._target = undelivered  # where the final list goes (a symlink's file)
        self._rejects_target: Path | None = None
        self._rejects_path: Path | None = None  # the file being built
        self._rejects: IO[str] | None = None
        self._rejects_csv: Any = None
        self._plain: IO[str] | None = None
        self._plain_path: Path | None = None
        self._spool: IO[str] | None = None
        self._spool_path: Path | None = None
        self._undelivered_count = 0
        # Bytes of each file known to be written whole (after its last good flush):
        # a write that fails is cut back to it, so no torn line reads as another lead.
        self._good: dict[str, int] = {"--rejects": 0, "--undelivered": 0}
        # Each report's path as the user named it, and what one of its entries is.
        self._paths: dict[str, Path | None] = {"--rejects": rejects, "--undelivered": undelivered}
        self._what = {"--rejects": "entries", "--undelivered": "undelivered identifiers"}
        # A table being written (`write_table`): its file and where it is built.
        self._tables: dict[str, tuple[IO[str] | None, Path]] = {}
        # Per report ("--rejects", "--undelivered", a table's): the error that stopped it.
        self.failures: dict[str, OSError] = {}
        # Warnings about a report that was written (see `write_undelivered`).
        self.notes: list[str] = []
        self.unlisted: dict[str, int] = {}
        # The paths were checked with `check_output` before the run began.
        try:
            self._open(rejects, undelivered)
        except BaseException:
            self.discard()
            raise

    def _open(self, rejects: Path | None, undelivered: Path | None) -> None:
        name, path = "--rejects", rejects
        try:
            if rejects is not None:
                # Built beside its target and moved into place by `close`, like every
                # report: the file named is replaced whole or not at all.
                self._rejects_target = Path(os.path.realpath(rejects))
                self._rejects_path = temporary(self._rejects_target)
                self._rejects = open_private(self._rejects_path)
                self._rejects_csv = CsvOut(self._rejects)
                self._rejects_csv.writerow(["source", "line", "reason", "text"])
            name, path = "--undelivered", undelivered
            self._open_undelivered(undelivered)
        except OSError as exc:
            raise UsageError(f"{name} {path}: {exc.strerror or exc}") from None

    def _open_undelivered(self, undelivered: Path | None) -> None:
        if undelivered is not None:
            # Built beside the target under a name of its own (never a file of the
            # user's), then moved into place by `close`.
            place = Path(os.path.realpath(undelivered))
            self._target = place
            self._spool_path = temporary(place)
            if place.suffix.lower() in _FORM_SUFFIXES:
                self._spool = open_private(self._spool_path)
            else:
                self._plain_path = self._spool_path
                self._plain = open_private(self._plain_path)

    def rejected(self, rejections: list[Rejection]) -> None:
        """Record rejected input records."""
        if self._rejects_csv is not None or "--rejects" in self.failures:
            self._in_groups("--rejects", rejections, self._write_rejections)

    def _write_rejections(self, rejections: list[Rejection]) -> None:
        for r in rejections:
            self._rejects_csv.writerow([r.source, r.line, r.reason, r.text[:1000]])
        self._flushed("--rejects", self._rejects)

    def undelivered_batch(self, batch: Batch, reason: str) -> None:
        """Record a batch that was read but not delivered."""
        if "--undelivered" in self.failures:
            self.unlisted["--undelivered"] += len(batch)
            return
        if self._plain is not None and batch.run is not None and batch.compact:
            values = batch.run.values
            self._undelivered_count += len(values)
            lines = (_plain(Kind.USERNAME, v) for v in values)
            try:
                self._plain.write("\n".join(lines) + "\n")
                self._flushed("--undelivered", self._plain)
            except OSError as exc:
                self._broke("--undelivered", exc, len(batch))
            return
        self.undelivered(batch.leads, reason)

    def undelivered(self, leads: list[Lead], reason: str) -> None:
        """Record leads that were read but not delivered."""
        if self._plain is not None or self._spool is not None or "--undelivered" in self.failures:
            self._in_groups("--undelivered", leads, self._undelivered)

    def _in_groups(self, name: str, items: list[Any], write: Callable[[list[Any]], None]) -> None:
        """`write` the entries of report `name` a few dozen at a time, each group flushed:
        a failure then costs at most one group. Once the report has failed, only count."""
        if name in self.failures:
            self.unlisted[name] += len(items)
            return
        done = 0
        try:
            for start in range(0, len(items), FLUSH_EVERY):
                write(items[start : start + FLUSH_EVERY])
                done = min(start + FLUSH_EVERY, len(items))
        except OSError as exc:
            self._broke(name, exc, len(items) - done)

    def _flushed(self, name: str, fh: IO[str] | None) -> None:
        """Flush `fh` (raising what the write raises) and remember its size as good."""
        if fh is not None:
            fh.flush()
            self._good[name] = os.fstat(fh.fileno()).st_size

    def _broke(self, name: str, exc: OSError, count: int) -> None:
        """Report `name` failed with `exc`: close it (nothing more goes in), cut its file
        back to its last whole line, and count the `count` entries it lacks."""
        self.failures[name] = exc
        self.unlisted[name] = count
        files: list[IO[str] | None] = []
        path: Path | None = None
        if name == "--rejects":
            files, path = [self._rejects], self._rejects_path
            self._rejects = self._rejects_csv = None
        elif name == "--undelivered":
            files, path = [self._plain, self._spool], self._plain_path
            self._plain = self._spool = None
        elif name in self._tables:
            table, path = self._tables[name]
            files = [table]
            self._tables[name] = (None, path)
        for fh in files:
            if fh is not None:
                with contextlib.suppress(OSError, ValueError):
                    fh.close()  # its last flush may put part of a line out again
        with contextlib.suppress(OSError):
            if path is not None and stat.S_ISREG(os.stat(path).st_mode):
                os.truncate(path, self._good[name])

    def _undelivered(self, leads: Iterable[Lead]) -> None:
        if self._plain is None and self._spool is None:
            return
        for lead in leads:
            self._undelivered_count += 1
            if self._plain is not None:
                if lead.kind in _PLAIN_KINDS and not lead.data:
                    self._plain.write(_plain(lead.kind, lead.value) + "\n")
                    continue
                self._to_spool()
            assert self._spool is not None
            entry: dict[str, Any] = {"kind": lead.kind.value, "value": lead.value}
            if lead.data:
                entry["data"] = lead.data
            self._spool.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._flushed("--undelivered", self._plain or self._spool)

    def _to_spool(self) -> None:
        """Plain lines no longer do: move what was written to a spool of entries."""
        assert self._plain is not None and self._plain_path is not None
        self._plain.close()
        self._plain = None
        lines = temporary(self._plain_path)
        os.replace(self._plain_path, lines)
        self._plain_path = None  # the spool takes its place (and its name)
        assert self._spool_path is not None
        self._spool = open_private(self._spool_path)
        with open(lines, encoding="utf-8") as fh:
            for line in fh:
                kind, value = _from_line(line.rstrip("\n"))
                self._spool.write(json.dumps({"kind": kind, "value": value}) + "\n")
        lines.unlink()

    def close(self) -> None:
        """Flush everything and put the undelivered file in place, in its final form.

        Nothing is raised: a report that cannot be completed is in `failures`
        (a partial list of plain lines is still put in place)."""
        if self._rejects is not None:
            try:
                self._rejects.close()
            except OSError as exc:
                self._broke("--rejects", exc, 0)
            self._rejects = self._rejects_csv = None
        if self._rejects_path is not None and self._rejects_target is not None:
            try:
                put_in_place(self._rejects_path, self._rejects_target)
            except OSError as exc:
                self.failures.setdefault("--rejects", exc)
            self._rejects_path = None
        target = self._target
        try:
            if self._plain is not None:
                self._plain.close()
                self._plain = None
            if self._spool is not None:
                self._spool.close()
                self._spool = None
                if target is not None and self._spool_path is not None:
                    write_undelivered(self._spool_path, target, self.notes)
        except OSError as exc:
            self._broke("--undelivered", exc, 0)
        if self._spool_path is not None and self._plain_path is None:
            with contextlib.suppress(OSError):
                self._spool_path.unlink(missing_ok=True)  # the entries, not a list to use
        if self._plain_path is not None and target is not None:
            try:
                if self._plain_path.exists():
                    put_in_place(self._plain_path, target)
            except OSError as exc:
                self.failures.setdefault("--undelivered", exc)

    def discard(self) -> None:
        """Close and remove the files being built, leaving the targets as they were
        (a run that never began leaves the user's earlier reports alone)."""
        for fh in (self._rejects, self._plain, self._spool):
            if fh is not None:
                with contextlib.suppress(OSError, ValueError):
                    fh.close()
        self._rejects = self._rejects_csv = self._plain = self._spool = None
        for built in (self._rejects_path, self._plain_path, self._spool_path):
            if built is not None:
                with contextlib.suppress(OSError):
                    built.unlink(missing_ok=True)
        self._rejects_path = self._plain_path = self._spool_path = None

    def write_table(
        self, name: str, path: Path, header: list[str], rows: list[list[Any]], what: str = "rows"
    ) -> None:
        """Write the CSV report `name` (an option, `--explain-failures`) whole, now.

        As every report: built beside `path`, in groups each flushed, and moved into
        place. A write that fails does not raise: the file keeps the whole rows written
        before it and is put in place, and `problems` says how many `what` may be
        missing from it."""
        self._paths[name] = path
        self._what[name] = what
        self._good[name] = 0
        target = Path(os.path.realpath(path))
        try:
            built = temporary(target)
        except OSError as exc:
            self._broke(name, exc, len(rows))
            return
        placed = False
        self._tables[name] = (None, built)
        try:
            try:
                out = open_private(built)
                self._tables[name] = (out, built)
                writer = CsvOut(out)
                writer.writerow(header)
                self._flushed(name, out)
            except OSError as exc:
                self._broke(name, exc, 0)  # then every row is counted as missing

            def write(group: list[list[Any]]) -> None:
                for row in group:
                    writer.writerow(row)
                self._flushed(name, out)

            self._in_groups(name, rows, write)
            table, _ = self._tables[name]
            if table is not None:
                try:
                    table.close()
                except OSError as exc:
                    self._broke(name, exc, 0)
            try:
                put_in_place(built, target)
                placed = True
            except OSError as exc:
                self.failures.setdefault(name, exc)
        finally:
            table, _ = self._tables.pop(name)
            if table is not None:
                with contextlib.suppress(OSError, ValueError):
                    table.close()
            if not placed:
                with contextlib.suppress(OSError):
                    built.unlink(missing_ok=True)

    def problems(self) -> list[str]:
        """One line per report that could not be written in full."""
        lines = []
        for name, exc in self.failures.items():
            missing = self.unlisted.get(name, 0)
            tail = f"; up to {missing:,} {self._what[name]} are missing from it" if missing else ""
            reason = exc.strerror or exc
            lines.append(f"{name} {self._paths[name]}: cannot write: {reason}{tail}")
        return lines


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


def write_undelivered(spool: Path, target: Path, notes: list[str] | None = None) -> str:
    """Write the final undelivered file from the spool; return the form chosen.

    The form follows the target's extension where it names one (.csv, .tsv,
    .json, .jsonl), since `add` reads files by extension; otherwise plain lines
    when they lose nothing, else CSV, else JSONL.
    """
    plain = True
    external = False
    all_external = True
    entries = 0
    columns: dict[str, None] = {}
    for entry in _entries(spool):
        entries += 1
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
        all_external = all_external and entries > 0
        named = [c for c in columns if reads_as_header(c)]
        if all_external and named and notes is not None:
            # Its `external_id` column would lose to that one when read back.
            notes.append(
                f"{target.name}: external IDs beside a data column named {named[0]!r}: "
                "read it back with --column external_id (or name it .jsonl)"
            )
        return _write_table(spool, target, columns, delimiter, all_external)
    with replacing(target) as out:
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
    names = _EXTERNAL_FIRST if all_external else _USERNAME_FIRST
    taken = {normalise(c) for c in columns}
    # A name no data column has: a repeated one would be read back as `username_2`.
    first = next((n for n in names if normalise(n) not in taken), names[0])
    with replacing(target) as out:
        writer = CsvOut(out, delimiter)
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


# Names for the identifier column of a table, best first (all rank first when read back).
_USERNAME_FIRST = ("username", "handle", "screen_name", "twitter_username", "x_username")
_EXTERNAL_FIRST = ("external_id", "inbox_external_id", "lead_external_id")


def _write_objects(spool: Path, target: Path, array: bool) -> str:
    """JSONL (or a JSON array) of lead objects with the API's field names."""
    with replacing(target) as out:
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
    return _plain(Kind(entry["kind"]), str(entry["value"]))


def _plain(kind: Kind, value: str) -> str:
    """A line of a plain list that reads back as this identifier: `@` before a
    username that looks like a number or like a column name (`@x`, `@id`)."""
    text = readable(kind, value)
    if kind is Kind.USERNAME and text is value and reads_as_header(value):
        return "@" + value
    return text
