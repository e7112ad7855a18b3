"""The files module: private, binary, replaced whole, durable; path keys by case."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from inboxleads import cli, files
from inboxleads.answers import Answer, Outcome
from inboxleads.errors import UsageError
from inboxleads.job import AddJob
from inboxleads.journal import Journal, RunKey
from inboxleads.runner import check_files


def test_text_is_written_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    with files.open_private(path) as out:
        out.write("a,b\nc\r\nd\n")
    assert path.read_bytes() == b"a,b\nc\r\nd\n"


def test_appending_keeps_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_bytes(b"one\n")
    with files.open_private(path, "a") as out:
        out.write("two\n")
    assert path.read_bytes() == b"one\ntwo\n"


@pytest.mark.posix
def test_a_file_written_is_private_even_when_it_existed_open(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    path.chmod(0o644)
    with files.open_private(path) as out:
        out.write("new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replacing_writes_the_whole_file_or_leaves_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "report.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), files.replacing(path) as out:
        out.write("half")
        raise RuntimeError("the run broke while writing")
    assert path.read_text() == "old\n"
    with files.replacing(path) as out:
        out.write("new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]  # no part left


def test_a_replace_refused_for_a_moment_is_tried_again_where_that_happens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows refuses to replace a file another process holds open for a moment (a
    virus scanner): the move is tried again, for a bounded time."""
    monkeypatch.setattr(files, "_RETRY_REPLACE", True)
    built, target = tmp_path / "built", tmp_path / "target"
    built.write_text("new")
    refusals = [PermissionError(13, "in use"), PermissionError(13, "in use")]
    now = [0.0]

    def replace(src: Path, dst: Path) -> None:
        if refusals:
            raise refusals.pop()
        os.replace(src, dst)

    def pause(seconds: float) -> None:
        now[0] += seconds

    files.put_in_place(built, target, replace=replace, clock=lambda: now[0], pause=pause)
    assert target.read_text() == "new" and now[0] == pytest.approx(0.2)

    built.write_text("newer")
    refusals[:] = [PermissionError(13, "in use")] * 100
    with pytest.raises(PermissionError):
        files.put_in_place(built, target, replace=replace, clock=lambda: now[0], pause=pause)
    assert now[0] <= 0.2 + files.REPLACE_RETRY_S + 0.1


def test_a_replace_refused_on_posix_is_not_tried_again(tmp_path: Path) -> None:
    calls: list[Path] = []

    def replace(src: Path, dst: Path) -> None:
        calls.append(dst)
        raise PermissionError(13, "denied")

    if files._RETRY_REPLACE:
        pytest.skip("Windows tries again")
    with pytest.raises(PermissionError):
        files.put_in_place(tmp_path / "a", tmp_path / "b", replace=replace)
    assert len(calls) == 1


def test_sync_asks_for_a_full_sync_and_falls_back_to_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On macOS fsync leaves data in the drive's cache: F_FULLFSYNC is asked for first,
    and a filesystem that refuses it still gets an fsync."""
    asked: list[int] = []
    fsynced: list[int] = []

    def full_sync(fd: int) -> None:
        asked.append(fd)
        raise OSError(45, "not supported by this filesystem")

    monkeypatch.setattr(files, "full_sync", full_sync)
    monkeypatch.setattr(os, "fsync", fsynced.append)
    with open(tmp_path / "x", "wb") as fh:
        files.sync(fh.fileno())
        assert asked == [fh.fileno()] and fsynced == [fh.fileno()]


def test_every_journal_record_is_synced_to_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(files, "full_sync", synced.append)
    journal = Journal.open(tmp_path / "run.journal", RunKey("c1", 2000, 1_000_000))
    synced_at_open = len(synced)
    for n in range(3):
        journal.record(f"digest{n}", n, 10, Answer(Outcome.OK, 200, added=10))
        assert len(synced) == synced_at_open + n + 1
    journal.close()
    assert synced_at_open >= 1  # the header, before any batch counts as delivered


def test_this_machines_temporary_folder_minds_case() -> None:
    # The suite runs on Linux in CI: its filesystems tell `a` from `A`.
    if os.name != "posix" or os.uname().sysname != "Linux":
        pytest.skip("case sensitivity differs by platform")
    assert files.case_insensitive(Path.cwd()) is False


def test_case_is_told_by_looking_the_name_up_in_the_other_case(tmp_path: Path) -> None:
    folder = tmp_path / "Exports"
    folder.mkdir()
    other = tmp_path / "eXPORTS"
    if other.exists():  # a filesystem that ignores case
        assert files.case_insensitive(folder)
    else:
        assert not files.case_insensitive(folder)
        other.mkdir()  # a second folder with the other spelling is another folder
        assert not files.case_insensitive(folder)


def test_a_folder_not_made_yet_is_judged_by_its_parent(tmp_path: Path) -> None:
    assert files.case_insensitive(tmp_path / "not" / "yet") == files.case_insensitive(tmp_path)


def test_two_spellings_of_an_input_get_one_journal_where_case_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INBOXLEADS_STATE_DIR", str(tmp_path / "state"))
    upper, lower = str(tmp_path / "Leads.CSV"), str(tmp_path / "leads.csv")
    assert cli.default_journal("c1", [upper]) != cli.default_journal("c1", [lower])
    monkeypatch.setattr(files, "case_insensitive", lambda folder: True)
    assert cli.default_journal("c1", [upper]) == cli.default_journal("c1", [lower])
    assert cli.default_journal("c1", [upper]) != cli.default_journal("c2", [lower])


def test_a_path_key_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert files.path_key("leads.csv") == os.path.normcase(str(tmp_path / "leads.csv"))
    assert files.path_key("-") == "-"


def test_the_state_directory_is_the_platforms_unless_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    monkeypatch.delenv("INBOXLEADS_STATE_DIR", raising=False)
    expected = Path(platformdirs.user_state_dir("inboxleads", appauthor=False))
    assert cli.state_dir() == expected
    monkeypatch.setenv("INBOXLEADS_STATE_DIR", str(tmp_path))
    assert cli.state_dir() == tmp_path
    assert cli.default_journal("c1", ["a.txt"]).parent == tmp_path / "journals"


def test_two_reports_named_in_two_cases_are_one_file_where_case_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On macOS `--rejects Out.csv --undelivered out.csv` names one file twice: the
    second report would replace the first."""
    (tmp_path / "in.txt").write_text("jack\n")
    job = AddJob(
        campaign="c1",
        inputs=[str(tmp_path / "in.txt")],
        rejects=tmp_path / "Out.csv",
        undelivered=tmp_path / "out.csv",
    )
    check_files(job, None)  # two files where case counts
    monkeypatch.setattr(files, "case_insensitive", lambda folder: True)
    with pytest.raises(UsageError, match="--undelivered and --rejects name the same file"):
        check_files(job, None)
