"""The files a run leaves behind: rejects, undelivered, the resume journal and its lock."""

from __future__ import annotations

import asyncio
import csv
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from inboxleads.answers import Answer, Outcome
from inboxleads.errors import Interrupted, JournalError, LockHeld
from inboxleads.events import Rejection
from inboxleads.identifiers import Kind, Lead
from inboxleads.inputs import Format, ReadOptions, open_inputs, read_records
from inboxleads.journal import Journal, RunKey, check_journal
from inboxleads.lock import RunLock
from inboxleads.reports import Reports

from .conftest import assert_private

U, P, E = Kind.USERNAME, Kind.PLATFORM_ID, Kind.EXTERNAL_ID


def lead(kind: Kind, value: str, data: dict[str, str] | None = None) -> Lead:
    return Lead(kind, value, "leads.csv", 7, data)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_undelivered(path: Path, leads: list[Lead], reason: str = "gave up") -> None:
    reports = Reports(undelivered=path)
    reports.undelivered(leads, reason)
    reports.close()


def read_back(path: Path) -> list[tuple[Kind, str, dict[str, str] | None]]:
    """What `inboxleads add PATH` (auto mode) would read from a file."""
    [source] = open_inputs([str(path)], Format.AUTO)
    try:
        records = list(read_records(source, ReadOptions()))
    finally:
        source.close()
    assert not [r for r in records if isinstance(r, Rejection)], records
    return [(r.kind, r.value, r.data) for r in records if isinstance(r, Lead)]


def expected(leads: list[Lead]) -> list[tuple[Kind, str, dict[str, str] | None]]:
    return [(x.kind, x.value, x.data or None) for x in leads]


# --- rejects -------------------------------------------------------------------------------


def test_rejects_file_lists_source_line_reason_and_text(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    reports = Reports(rejects=path)
    reports.rejected(
        [
            Rejection("leads.txt", 3, "jack!", "character '!' is not allowed in a username"),
            Rejection("<stdin>", 9, 'say "hi", ok', "not a username"),
        ]
    )
    reports.close()
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["source", "line", "reason", "text"],
        ["leads.txt", "3", "character '!' is not allowed in a username", "jack!"],
        ["<stdin>", "9", "not a username", 'say "hi", ok'],
    ]


def test_rejects_file_cuts_very_long_text(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    reports = Reports(rejects=path)
    reports.rejected([Rejection("a.txt", 1, "x" * 5000, "too long")])
    reports.close()
    with open(path, encoding="utf-8", newline="") as fh:
        [_, row] = list(csv.reader(fh))
    assert row[3] == "x" * 1000


def test_rejects_file_with_nothing_rejected_has_only_its_header(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    Reports(rejects=path).close()
    assert path.read_text(encoding="utf-8") == "source,line,reason,text\n"


@pytest.mark.posix  # file modes
def test_report_files_are_private_to_the_user(tmp_path: Path) -> None:
    rejects, undelivered = tmp_path / "rejects.csv", tmp_path / "undelivered.txt"
    reports = Reports(rejects=rejects, undelivered=undelivered)
    reports.undelivered([lead(U, "jack")], "gave up")
    reports.close()
    assert mode(rejects) == 0o600
    assert mode(undelivered) == 0o600


@pytest.mark.posix  # file modes
def test_an_existing_world_readable_report_file_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    path.write_text("old contents\n")
    path.chmod(0o644)
    Reports(rejects=path).close()
    assert mode(path) == 0o600
    assert "old contents" not in path.read_text()


def test_a_table_is_written_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "failed.csv"
    path.write_text("an earlier run's\n")
    reports = Reports()
    rows = [[f"gone{i}", "username", "failed", "a\rb" if i == 1 else "x"] for i in range(200)]
    reports.write_table("--explain-failures", path, ["identifier", "kind", "status", "d"], rows)
    assert reports.problems() == []
    assert_private(path)
    with open(path, encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh)) == [["identifier", "kind", "status", "d"], *rows]
    assert [p.name for p in tmp_path.iterdir()] == ["failed.csv"]


def test_a_table_that_cannot_be_written_is_said_with_its_rows(tmp_path: Path) -> None:
    # Its folder went away during the run: nothing raised, the rows said to be missing.
    reports = Reports()
    gone = tmp_path / "gone" / "failed.csv"
    reports.write_table("--explain-failures", gone, ["identifier"], [["a"], ["b"]])
    [line] = reports.problems()
    assert line.startswith(f"--explain-failures {gone}: cannot write: ")
    assert line.endswith("; up to 2 rows are missing from it")


# --- undelivered -------------------------------------------------------------------------


def test_undelivered_usernames_and_ids_are_plain_lines_that_read_back(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    leads = [lead(U, "jack"), lead(P, "44196397"), lead(U, "12345"), lead(U, "Biz")]
    write_undelivered(path, leads)
    assert path.read_text(encoding="utf-8") == "jack\n44196397\n@12345\nBiz\n"
    assert read_back(path) == expected(leads)


def test_undelivered_with_data_is_csv_that_reads_back_with_the_data(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    leads = [
        lead(U, "jack", {"first": "Jack", "note": 'says "hi", often\nand more'}),
        lead(P, "44196397"),
        lead(U, "777", {"company": "X"}),
    ]
    write_undelivered(path, leads)
    assert path.read_text(encoding="utf-8").startswith("username,first,note,company\n")
    assert read_back(path) == expected(leads)


def test_undelivered_external_ids_are_jsonl_that_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.out"
    leads = [lead(E, "hy4k7m2x9p1n6v3w8j5q0r"), lead(U, "jack", {"first": "Jack"})]
    write_undelivered(path, leads)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"externalId": "hy4k7m2x9p1n6v3w8j5q0r"}
    assert read_back(path) == expected(leads)


def test_undelivered_to_a_jsonl_path_is_jsonl_that_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.jsonl"
    leads = [lead(U, "jack"), lead(P, "12")]
    write_undelivered(path, leads)
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"username": "jack"},
        {"platformId": "12"},
    ]
    assert read_back(path) == expected(leads)


def test_data_with_a_profile_column_keeps_the_identifier_column_first(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    leads = [lead(U, "jack", {"profile": "https://example.com/jack"})]
    write_undelivered(path, leads)
    assert path.read_text().splitlines()[0] == "username,profile"
    assert read_back(path) == expected(leads)


def test_undelivered_file_keeps_non_ascii_data(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    leads = [lead(U, "jack", {"city": "Zürich 東京"})]
    write_undelivered(path, leads)
    assert read_back(path) == expected(leads)


def test_nothing_undelivered_leaves_an_empty_file_and_no_spool(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    Reports(undelivered=path).close()
    assert path.read_text() == ""
    assert list(tmp_path.iterdir()) == [path]


def test_undelivered_from_several_calls_keeps_their_order(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    reports = Reports(undelivered=path)
    reports.undelivered([lead(U, "a"), lead(U, "b")], "gave up after 6 attempts")
    reports.undelivered([lead(U, "c")], "not sent: the run was stopped")
    reports.close()
    assert path.read_text() == "a\nb\nc\n"


def test_plain_lines_that_turn_into_csv_leave_only_the_csv(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    first = [lead(U, f"plain{i}") for i in range(100)]
    then = [lead(U, "jack", {"first": "Jack"}), lead(P, "12")]
    reports = Reports(undelivered=path)
    reports.undelivered(first, "gave up after 6 attempts")
    reports.undelivered(then, "not sent: the run was stopped")
    reports.close()
    assert reports.problems() == []
    assert read_back(path) == expected(first + then)
    assert list(tmp_path.iterdir()) == [path]  # neither the plain list nor the spool


@pytest.mark.parametrize("name", ["undelivered.csv", "undelivered.json"])
def test_undelivered_named_like_csv_or_json_reads_back(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    leads = [lead(U, "jack"), lead(P, "12")]
    write_undelivered(path, leads)
    assert read_back(path) == expected(leads)


@pytest.mark.parametrize("column", ["handle", "Username", "Twitter", "x"])
def test_data_column_named_like_an_identifier_column_reads_back_unchanged(
    tmp_path: Path, column: str
) -> None:
    path = tmp_path / "undelivered.txt"
    leads = [lead(U, "jack", {column: "someoneelse"})]
    write_undelivered(path, leads)
    assert read_back(path) == expected(leads)


def test_undelivered_19_digit_user_id_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "undelivered.txt"
    leads = [lead(P, "1234567890123456789")]
    write_undelivered(path, leads)
    assert read_back(path) == expected(leads)


# --- journal -----------------------------------------------------------------------------

KEY = RunKey(campaign="camp1", batch_size=2000, max_request_bytes=4_000_000, inputs=("leads.txt",))
OK = Answer(Outcome.OK, 200, added=3, skipped=1, failed=0)


def test_a_new_journal_remembers_the_batches_it_recorded(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    journal = Journal.open(path, KEY)
    assert not journal.has("d1")
    journal.record("d1", 1, 4, OK)
    assert journal.has("d1")
    journal.close()
    again = Journal.open(path, KEY)
    assert again.has("d1")
    assert not again.has("d2")
    assert again.delivered_batches == 1
    again.close()


def test_journal_lines_record_the_servers_counts(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    journal = Journal.open(path, KEY)
    journal.record("d1", 1, 4, OK)
    journal.close()
    header, record = (json.loads(x) for x in path.read_text().splitlines())
    assert header["campaign"] == "camp1"
    assert {k: record[k] for k in ("batch", "seq", "size", "added", "skipped", "failed")} == {
        "batch": "d1",
        "seq": 1,
        "size": 4,
        "added": 3,
        "skipped": 1,
        "failed": 0,
    }


@pytest.mark.posix  # file modes
def test_journal_file_is_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    Journal.open(path, KEY).close()
    assert mode(path) == 0o600


def test_journal_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "run.journal"
    Journal.open(path, KEY).close()
    assert path.exists()


@pytest.mark.parametrize(
    ("other", "field"),
    [
        (RunKey("camp2", 2000, 4_000_000, ("leads.txt",)), "campaign"),
        (RunKey("camp1", 500, 4_000_000, ("leads.txt",)), "batch_size"),
        (RunKey("camp1", 2000, 1_000_000, ("leads.txt",)), "max_request_bytes"),
    ],
)
def test_journal_of_another_run_is_refused(tmp_path: Path, other: RunKey, field: str) -> None:
    path = tmp_path / "run.journal"
    Journal.open(path, KEY).close()
    before = path.read_bytes()
    with pytest.raises(JournalError, match=f"belongs to another run \\({field}"):
        check_journal(path, other)
    with pytest.raises(JournalError, match=f"belongs to another run \\({field}"):
        Journal.open(path, other)
    assert path.read_bytes() == before


def test_a_journal_of_the_same_run_over_other_input_names_is_the_same_journal(
    tmp_path: Path,
) -> None:
    """Input names are shown, never compared: a rotated symlink or a renamed export
    resumes (its batches are recognised by content)."""
    path = tmp_path / "run.journal"
    journal = Journal.open(path, KEY)
    journal.record("d1", 1, 4, OK)
    journal.close()
    renamed = RunKey("camp1", 2000, 4_000_000, ("export-day2.txt",))
    check_journal(path, renamed)
    again = Journal.open(path, renamed)
    assert again.has("d1")
    again.close()


def test_a_version_1_journal_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    header = {"journal": 1, "campaign": "camp1", "inputs": ["/x"], "batch_size": 2000}
    line = {"batch": "d1", "seq": 1, "size": 4, "added": 4, "skipped": 0, "failed": 0}
    path.write_text(json.dumps({**header, "read": "auto"}) + "\n" + json.dumps(line) + "\n")
    journal = Journal.open(path, KEY)
    assert journal.has("d1")
    journal.close()


@pytest.mark.parametrize(
    "text",
    ["jack\nbiz\nlast line without a newline", "", "\n", '{"journal": 9}\n', "\xff\xfe\n"],
)
def test_a_file_that_is_not_a_journal_is_refused_unchanged(tmp_path: Path, text: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(text.encode("latin-1"))
    if not text:
        check_journal(path, KEY)  # empty: a new journal
        return
    for attempt in (lambda: check_journal(path, KEY), lambda: Journal.open(path, KEY)):
        with pytest.raises(JournalError, match="not an inboxleads journal"):
            attempt()
        assert path.read_bytes() == text.encode("latin-1")


def test_a_journal_path_that_is_a_directory_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError):
        Journal.open(tmp_path, KEY)


def test_a_torn_last_line_from_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    journal = Journal.open(path, KEY)
    journal.record("d1", 1, 4, OK)
    journal.close()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"batch":"d2","seq":2,"si')
    again = Journal.open(path, KEY)
    assert again.has("d1")
    assert not again.has("d2")
    again.close()


def test_a_batch_recorded_after_a_torn_line_is_remembered_next_time(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    Journal.open(path, KEY).close()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"batch":"d1","se')
    second = Journal.open(path, KEY)
    second.record("d2", 2, 4, OK)
    second.close()
    third = Journal.open(path, KEY)
    remembered = third.has("d2")
    third.close()
    assert remembered


# --- run lock ------------------------------------------------------------------------------


def test_a_second_run_cannot_take_a_held_lock(tmp_path: Path) -> None:
    path = tmp_path / "camp1.lock"
    first = RunLock(path)
    first.acquire()
    try:
        with pytest.raises(LockHeld, match="another inboxleads run"):
            RunLock(path).acquire()
    finally:
        first.release()


def test_a_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    path = tmp_path / "camp1.lock"
    first = RunLock(path)
    first.acquire()
    first.release()
    second = RunLock(path)
    second.acquire()
    second.release()


@pytest.mark.posix
def test_the_lock_file_is_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "camp1.lock"
    lock = RunLock(path)
    lock.acquire()
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    finally:
        lock.release()


def test_the_lock_of_a_killed_run_is_free_at_once(tmp_path: Path) -> None:
    """The lock is the system's, held by the process: a run killed while holding it
    (kill -9, a power cut) leaves no stale lock for the next cron run to trip on."""
    path = tmp_path / "camp1.lock"
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from inboxleads.lock import RunLock; "
            "lock = RunLock(Path(sys.argv[1])); lock.acquire(); "
            "print('held', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
            with pytest.raises(LockHeld):
                RunLock(path).acquire()
        finally:
            holder.kill()
            holder.wait(10)
    again = RunLock(path)
    again.acquire()
    again.release()


def test_waiting_for_a_lock_takes_it_once_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "camp1.lock"
    first = RunLock(path)
    first.acquire()
    polls = 0

    def given_up() -> bool:
        nonlocal polls
        polls += 1
        if polls == 3:
            first.release()
        return False

    second = RunLock(path)
    asyncio.run(asyncio.wait_for(second.acquire_async(True, given_up), 10))
    second.release()
    assert polls == 3


def test_a_stop_ends_the_wait_for_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "camp1.lock"
    first = RunLock(path)
    first.acquire()
    try:
        with pytest.raises(Interrupted, match="waiting for another run's lock"):
            asyncio.run(asyncio.wait_for(RunLock(path).acquire_async(True, lambda: True), 10))
    finally:
        first.release()


def test_a_header_torn_by_a_crash_starts_the_journal_again(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    path.write_bytes(b'{"journal": 2, "campa')
    check_journal(path, KEY)
    journal = Journal.open(path, KEY)
    journal.record("d1", 1, 4, OK)
    journal.close()
    header = json.loads(path.read_text().splitlines()[0])
    again = Journal.open(path, KEY)
    assert header["campaign"] == "camp1" and again.has("d1")
    again.close()
