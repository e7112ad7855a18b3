"""Pasted text end to end: values as copied from browsers, chats and word processors,
in a plain list and in a CSV column, through the real CLI to the sandbox over loopback.

Each test checks the exact identifiers the server received, the --rejects file, the
exit code, and that the inputs were only read (the same bytes after the run).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .conftest import Run, api_env
from .sandbox_server import RunningSandbox


def _rejects(path: Path) -> list[tuple[int, str]]:
    """The --rejects file as (line, reason) rows."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [(int(row["line"]), row["reason"]) for row in csv.DictReader(fh)]


def _received(server: RunningSandbox, campaign: str) -> list[tuple[str, str]]:
    """Every identifier the server applied to `campaign`, sorted, each once."""
    received = server.state.received(campaign)
    assert len(received) == len(set(received)), f"an identifier was sent twice: {received}"
    return sorted(received)


# (a line as pasted, what the server must receive; None: rejected, or a duplicate)
PASTED_LINES: list[tuple[str, tuple[str, str] | None]] = [
    ("# pasted from a browser, a chat and a word processor", None),
    ("\u200bjack", ("username", "jack")),  # 2
    ("https://x.com/Jack31\u200b", ("username", "Jack31")),
    ("\uff20naval", ("username", "naval")),
    ("\uff53\uff41\uff4d\uff41", ("username", "sama")),  # full-width
    ('"pmarca",', ("username", "pmarca")),
    ("\u201cpaulg\u201d", ("username", "paulg")),
    ("'@dhh';", ("username", "dhh")),
    ("\u00ablevelsio\u00bb ,", ("username", "levelsio")),
    ("twitter.com/#!/balajis", ("username", "balajis")),  # 10
    ("m.twitter.com/patio11", ("username", "patio11")),
    ("https://x.com/elonmusk/status/20/photo/1", ("username", "elonmusk")),
    ("x.com/%40NASA/with_replies", ("username", "NASA")),
    ("<https://x.com/SpaceX>,", ("username", "SpaceX")),
    ('"\uff14\uff14\uff11\uff19\uff16\uff13\uff19\uff17",', ("platformId", "44196397")),
    ("\u200e12\u200f", ("platformId", "12")),
    ("x.com/home", None),  # 17: a page
    ("https://t.co/abc123", None),  # 18: a short link
    ("ja\u2028ck", None),  # 19: a line separator inside
    ('"\uff20JACK",', None),  # 20: jack again
]


def test_pasted_forms_in_a_plain_list_arrive_as_the_handles_meant(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "pasted.txt"
    path.write_bytes("\r\n".join(line for line, _ in PASTED_LINES).encode() + b"\r\n")
    before = path.read_bytes()

    result = run_cli(
        "add", "paste1", str(path), "--rejects", "rej.csv", "--json", env=api_env(sandbox_server)
    )

    assert result.code == 0, result.stderr
    expected = sorted(sent for _, sent in PASTED_LINES if sent is not None)
    assert _received(sandbox_server, "paste1") == expected
    assert _rejects(tmp_path / "rej.csv") == [
        (17, "not a profile link (x.com/home is a page)"),
        (18, "a t.co short link: open it and paste the profile link it leads to"),
        (19, "character '\\u2028' (LINE SEPARATOR) is not allowed in a username"),
    ]
    summary = result.summary
    assert (summary["read"], summary["rejected"], summary["duplicates"]) == (19, 3, 1)
    assert summary["unique"] == summary["delivered"] == len(expected)
    assert summary["exit_code"] == 0
    assert path.read_bytes() == before


# (the `username` cell as pasted into a spreadsheet, what the server must receive)
PASTED_CELLS: list[tuple[str, tuple[str, str] | None]] = [
    ('"@jack",', ("username", "jack")),  # line 2
    ("\uff20naval", ("username", "naval")),
    ("\uff53\uff41\uff4d\uff41\u200b", ("username", "sama")),
    ("https://x.com/pmarca\u200b", ("username", "pmarca")),
    ("\u201cpaulg\u201d;", ("username", "paulg")),
    ("twitter.com/#!/dhh", ("username", "dhh")),
    ("m.x.com/levelsio/status/20", ("username", "levelsio")),
    ("'12345'", ("username", "12345")),  # a username column reads digits as a handle
    ("\u2018\uff11\uff12\uff13\u2019,", ("username", "123")),  # line 10
    ("x.com/settings/profile", None),  # 11: a page
    ("t.co/abc", None),  # 12: a short link
    ("\u200eJACK", None),  # 13: jack again
]


def test_pasted_forms_in_a_username_column_arrive_with_their_rows(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["username", "name"])
    for n, (cell, _) in enumerate(PASTED_CELLS, 2):
        writer.writerow([cell, f"row {n}"])
    path = tmp_path / "pasted.csv"
    path.write_bytes(text.getvalue().encode())
    before = path.read_bytes()

    result = run_cli(
        "add", "paste2", "pasted.csv", "--rejects", "rej.csv", "--json", env=api_env(sandbox_server)
    )

    assert result.code == 0, result.stderr
    expected = {sent: n for n, (_, sent) in enumerate(PASTED_CELLS, 2) if sent is not None}
    assert _received(sandbox_server, "paste2") == sorted(expected)
    for body in sandbox_server.state.bodies("paste2"):
        for lead in body["leads"]:
            kind = "username" if "username" in lead else "platformId"
            assert lead["data"] == {"name": f"row {expected[(kind, lead[kind])]}"}, lead
    assert _rejects(tmp_path / "rej.csv") == [
        (11, "not a profile link (x.com/settings/... is a page)"),
        (12, "a t.co short link: open it and paste the profile link it leads to"),
    ]
    summary = result.summary
    assert (summary["read"], summary["rejected"], summary["duplicates"]) == (12, 2, 1)
    assert summary["delivered"] == len(expected) and summary["exit_code"] == 0
    assert path.read_bytes() == before


def test_a_handle_and_its_pasted_form_are_one_lead_the_first_one_kept(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "twice.txt"
    path.write_bytes('jack\n"\uff20JACK",\n'.encode())
    before = path.read_bytes()

    result = run_cli("add", "paste3", str(path), "--json", env=api_env(sandbox_server))

    assert result.code == 0, result.stderr
    assert _received(sandbox_server, "paste3") == [("username", "jack")]
    summary = result.summary
    assert (summary["read"], summary["duplicates"], summary["unique"]) == (2, 1, 1)
    assert (summary["added"], summary["rejected"], summary["exit_code"]) == (1, 0, 0)
    assert path.read_bytes() == before
