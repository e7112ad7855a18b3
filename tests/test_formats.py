"""Input formats end to end: CSV, TSV, JSONL, JSON, several inputs, slow pipes, hostile files.

Runs go through the real CLI (a subprocess) to the sandbox server over loopback
and check what the server received: the `leads` objects with their `data`, the
compact arrays, the `--json` summary and the `--rejects` file. The slow-pipe
test runs in process, with the flush driven by an injected fake clock.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

import pytest

from inboxleads.errors import ExitStatus
from inboxleads.job import AddJob
from inboxleads.runner import AddResult, run_add

from .conftest import SECRET, FakeTime, Run, api_env, quiet_env, write_lines
from .sandbox_server import RunningSandbox

KINDS = ("username", "platformId", "externalId")
ARRAYS = ("usernames", "platformIds", "externalIds")
LeadKey = tuple[str, str]


def _objects(server: RunningSandbox, campaign: str) -> dict[LeadKey, dict[str, str] | None]:
    """Every `leads` object the server applied, as (kind, value) -> its `data`."""
    out: dict[LeadKey, dict[str, str] | None] = {}
    for body in server.state.bodies(campaign):
        for lead in body.get("leads", ()):
            kind = next(k for k in KINDS if k in lead)
            assert lead["platform"] == "twitter"
            assert (kind, lead[kind]) not in out, f"{lead} sent twice"
            out[(kind, lead[kind])] = lead.get("data")
    return out


def _arrays(server: RunningSandbox, campaign: str) -> dict[str, list[str]]:
    """The compact arrays of every applied body, concatenated in order."""
    out: dict[str, list[str]] = {}
    for body in server.state.bodies(campaign):
        for name in ARRAYS:
            if name in body:
                out.setdefault(name, []).extend(body[name])
    return out


def _rejects(path: Path) -> list[tuple[str, int, str]]:
    """The --rejects file as (source, line, reason) rows."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [(r["source"], int(r["line"]), r["reason"]) for r in csv.DictReader(fh)]


def _reject_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [r["text"] for r in csv.DictReader(fh)]


def _nothing_sent(server: RunningSandbox) -> bool:
    return server.state.total_requests() == 0 and server.state.requests_by_status() == {}


# -- CSV ------------------------------------------------------------------------------

# (header of the identifier column, its cell, what the server must receive)
WELL_KNOWN_COLUMNS: list[tuple[str, str, LeadKey]] = [
    ("username", "12345", ("username", "12345")),  # a username column reads digits as a handle
    ("Handle", "@jack", ("username", "jack")),
    ("screen_name", "naval", ("username", "naval")),
    ("Screen Name", "sama", ("username", "sama")),
    ("twitter", "https://twitter.com/pmarca?lang=en", ("username", "pmarca")),
    ("Twitter", "2244994945", ("platformId", "2244994945")),  # auto: digits are an ID
    ("Twitter Handle", "@paulg", ("username", "paulg")),
    ("X", "x.com/levelsio", ("username", "levelsio")),
    ("x_handle", "@dhh", ("username", "dhh")),
    ("profile", "https://x.com/i/user/783214", ("platformId", "783214")),
    ("Profile URL", "https://mobile.twitter.com/balajis/", ("username", "balajis")),
    ("URL", "www.x.com/patio11", ("username", "patio11")),
    ("platform_id", "44196397", ("platformId", "44196397")),
    ("twitter-id", "813286", ("platformId", "813286")),
    ("X User ID", "1582853809", ("platformId", "1582853809")),
    ("Twitter Url", "https://twitter.com/chamath", ("username", "chamath")),  # Apollo
    ("Twitter Username", "@hubspot", ("username", "hubspot")),  # HubSpot
    ("X URL", "https://x.com/elonmusk", ("username", "elonmusk")),
    ("X (Twitter)", "@vitalik", ("username", "vitalik")),
    ("Twitter Profile", "twitter.com/jason", ("username", "jason")),
    ("X Handle", "pg", ("username", "pg")),
    ("twitterProfileUrl", "https://x.com/tobi", ("username", "tobi")),
    ("external_id", "cm3abc123", ("externalId", "cm3abc123")),
    ("External-ID", "zz9", ("externalId", "zz9")),
]


def test_identifier_column_is_found_by_its_well_known_name_in_any_case_and_spelling(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    names = []
    for i, (header, cell, _) in enumerate(WELL_KNOWN_COLUMNS):
        # The identifier is not the first column: it is found by its name.
        quoted = f'"{cell}"' if "," in cell else cell
        (tmp_path / f"f{i:02d}.csv").write_text(f"note,{header}\nrow{i},{quoted}\n")
        names.append(f"f{i:02d}.csv")
    # A username column outranks an ID column, which then becomes data.
    (tmp_path / "both.csv").write_text("user_id,Name,username\n99,Both,bothcols\n")
    result = run_cli("add", "cols1", *names, "both.csv", "--json", env=api_env(sandbox_server))

    assert result.code == 0, result.stderr
    expected = {key: {"note": f"row{i}"} for i, (_, _, key) in enumerate(WELL_KNOWN_COLUMNS)}
    expected[("username", "bothcols")] = {"user_id": "99", "Name": "Both"}
    assert _objects(sandbox_server, "cols1") == expected
    assert _arrays(sandbox_server, "cols1") == {}
    assert result.summary["unique"] == result.summary["delivered"] == len(expected)


def test_column_option_names_any_identifier_column_case_insensitively(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(
        tmp_path / "crm.csv", ["Name,Contact Handle,Owner", "Jack,@jack,ann", "Naval,x.com/naval,"]
    )
    result = run_cli(
        "add",
        "colopt",
        "crm.csv",
        "--column",
        "CONTACT HANDLE",
        "--json",
        env=api_env(sandbox_server),
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "colopt") == {
        ("username", "jack"): {"Name": "Jack", "Owner": "ann"},
        ("username", "naval"): {"Name": "Naval"},
    }


def test_csv_without_a_known_identifier_column_exits_2_pointing_at_the_column_option(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    # "Contact" is not one of the well-known names.
    write_lines(tmp_path / "crm.csv", ["Name,Contact", "Jack,@jack"])
    result = run_cli("add", "nocol", "crm.csv", env=api_env(sandbox_server))
    assert result.code == 2
    assert "crm.csv" in result.stderr and "--column" in result.stderr
    assert "'Contact'" in result.stderr
    assert _nothing_sent(sandbox_server)


def test_data_columns_option_keeps_only_the_named_columns(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(
        tmp_path / "a.csv",
        [
            "username,Name,Email,Company,Notes",
            "jack,Jack,j@x.com,Square,",
            "naval,Naval,,AngelList,likes books",
            "sama,,s@x.com,,",
        ],
    )
    result = run_cli(
        "add", "datacols", "a.csv", "--data-columns", "name, COMPANY", env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "datacols") == {
        ("username", "jack"): {"Name": "Jack", "Company": "Square"},
        ("username", "naval"): {"Name": "Naval", "Company": "AngelList"},
    }
    # A row with none of the kept columns filled goes in the compact array.
    assert _arrays(sandbox_server, "datacols") == {"usernames": ["sama"]}


def test_no_data_option_sends_compact_arrays_only(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(
        tmp_path / "a.csv",
        ["twitter,Name,Email", "@jack,Jack,j@x.com", "44196397,Someone,", "x.com/naval,Naval,n@x"],
    )
    result = run_cli("add", "nodata", "a.csv", "--no-data", "--json", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert sandbox_server.state.bodies("nodata") == [
        {"platform": "twitter", "usernames": ["jack", "naval"], "platformIds": ["44196397"]}
    ]
    assert result.summary["added"] == 3


def test_quoted_fields_with_commas_quotes_and_newlines_and_a_bom_arrive_intact(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    content = (
        "\ufeffbio,username,location\r\n"  # a BOM, and a data column first
        '"founder, CEO",jack,"San Francisco, CA"\r\n'  # line 2
        '"says ""hi""",naval,\r\n'  # line 3
        '"line one\r\nline two\nline three",sama,Earth\r\n'  # lines 4-6
        'plain,paulg,"a ""quoted"", comma, and\nnewline"\r\n'  # lines 7-8
        "no identifier,,here\r\n"  # line 9
        "last,dhh,\r\n"  # line 10
    )
    (tmp_path / "people.csv").write_bytes(content.encode())
    result = run_cli(
        "add",
        "quoted1",
        "people.csv",
        "--rejects",
        "rej.csv",
        "--json",
        env=api_env(sandbox_server),
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "quoted1") == {
        ("username", "jack"): {"bio": "founder, CEO", "location": "San Francisco, CA"},
        ("username", "naval"): {"bio": 'says "hi"'},
        ("username", "sama"): {"bio": "line one\r\nline two\nline three", "location": "Earth"},
        ("username", "paulg"): {"bio": "plain", "location": 'a "quoted", comma, and\nnewline'},
        ("username", "dhh"): {"bio": "last"},
    }
    # Line numbers count physical lines, multi-line cells included.
    assert _rejects(tmp_path / "rej.csv") == [("people.csv", 9, "empty 'username' cell")]


def test_semicolon_separated_excel_export_with_bom_and_crlf(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    content = (
        "\ufeffName;Twitter;Company\r\n"
        "Jack;@jack;Square, Inc.\r\n"
        'Naval;https://twitter.com/naval;"AngelList; Inc"\r\n'
    )
    (tmp_path / "export.csv").write_bytes(content.encode())
    result = run_cli("add", "semi1", "export.csv", "--json", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "semi1") == {
        ("username", "jack"): {"Name": "Jack", "Company": "Square, Inc."},
        ("username", "naval"): {"Name": "Naval", "Company": "AngelList; Inc"},
    }


def test_ragged_rows_and_empty_identifiers_are_rejected_by_line_and_the_rest_delivered(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(
        tmp_path / "a.csv",
        [
            "username,Name,Email",
            "jack,Jack,j@x.com",  # 2
            "naval,Naval,n@x.com,extra",  # 3: too many fields
            "sama",  # 4: too few is fine
            ",Nobody,no@x.com",  # 5: empty identifier
            "   ,Blank,",  # 6: blank identifier
            "bad name!,Bad,",  # 7: not a username
            ",,",  # 8: an empty row is skipped, not rejected
            "paulg,Paul",  # 9
        ],
    )
    result = run_cli(
        "add", "ragged1", "a.csv", "--rejects", "rej.csv", "--json", env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "ragged1") == {
        ("username", "jack"): {"Name": "Jack", "Email": "j@x.com"},
        ("username", "paulg"): {"Name": "Paul"},
    }
    assert _arrays(sandbox_server, "ragged1") == {"usernames": ["sama"]}
    assert _rejects(tmp_path / "rej.csv") == [
        ("a.csv", 3, "4 fields, header has 3"),
        ("a.csv", 5, "empty 'username' cell"),
        ("a.csv", 6, "empty 'username' cell"),
        ("a.csv", 7, "character ' ' is not allowed in a username"),
    ]
    summary = result.summary
    assert (summary["read"], summary["rejected"], summary["unique"]) == (7, 4, 3)
    assert summary["delivered"] == 3 and summary["exit_code"] == 0


def test_runaway_quote_does_not_swallow_the_rows_after_it(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(
        tmp_path / "a.csv",
        ["username,note", 'jack,"never closed', "naval,fine", "sama,fine too"],
    )
    result = run_cli(
        "add", "runaway1", "a.csv", "--rejects", "rej.csv", "--json", env=api_env(sandbox_server)
    )
    sent = _objects(sandbox_server, "runaway1")
    assert all("naval" not in str(data) for data in sent.values()), sent
    assert {("username", "naval"), ("username", "sama")} <= sent.keys()
    assert result.summary["read"] == 3


def test_rejected_semicolon_row_is_written_with_its_own_separator(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(tmp_path / "a.csv", ["username;Name", "jack;Jack;extra", "naval;Naval"])
    result = run_cli("add", "semirej", "a.csv", "--rejects", "rej.csv", env=api_env(sandbox_server))
    assert result.code == 0
    assert _reject_texts(tmp_path / "rej.csv") == ["jack;Jack;extra"]


def test_tsv_is_read_by_its_tsv_and_tab_extensions(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(
        tmp_path / "a.tsv",
        ["handle\tName\tNote", "jack\tJack\tcomma, inside", "naval\tNaval\t", "\tNobody\tx"],
    )
    write_lines(tmp_path / "b.tab", ["Note\tplatform_id", "semi; colon\t12"])
    result = run_cli(
        "add", "tsv1", "a.tsv", "b.tab", "--rejects", "rej.csv", env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "tsv1") == {
        ("username", "jack"): {"Name": "Jack", "Note": "comma, inside"},
        ("username", "naval"): {"Name": "Naval"},
        ("platformId", "12"): {"Note": "semi; colon"},
    }
    assert _rejects(tmp_path / "rej.csv") == [("a.tsv", 4, "empty 'handle' cell")]


def test_format_tsv_option_overrides_a_csv_extension(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    # Tab-separated, saved as .csv, with commas in a header cell and in values.
    write_lines(
        tmp_path / "export.csv",
        ["handle\tTitle, Role\tCity", "jack\tCEO, founder\tSF", "naval\t\tSF, CA"],
    )
    result = run_cli("add", "tsv2", "export.csv", "--format", "tsv", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "tsv2") == {
        ("username", "jack"): {"Title, Role": "CEO, founder", "City": "SF"},
        ("username", "naval"): {"City": "SF, CA"},
    }


def test_csv_on_stdin_is_sniffed_from_its_header(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    stdin = (
        "# exported 2026-01-01\n"
        "\n"
        "Name,Profile URL\n"  # 3
        "Jack,https://x.com/jack\n"
        "Naval,@naval\n"
        "Nobody,\n"  # 6
        "Id,x.com/i/user/12\n"
    )
    result = run_cli(
        "add", "sniff1", "--rejects", "rej.csv", "--json", stdin=stdin, env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "sniff1") == {
        ("username", "jack"): {"Name": "Jack"},
        ("username", "naval"): {"Name": "Naval"},
        ("platformId", "12"): {"Name": "Id"},
    }
    assert _rejects(tmp_path / "rej.csv") == [("<stdin>", 6, "empty 'Profile URL' cell")]


def test_one_column_csv_on_stdin_does_not_send_its_header_as_a_lead(
    run_cli: Run, sandbox_server: RunningSandbox
) -> None:
    result = run_cli("add", "onecol", stdin="username\njack\nnaval\n", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert {v for _, v in sandbox_server.state.received("onecol")} == {"jack", "naval"}


# -- JSONL and JSON -------------------------------------------------------------------

JSONL_LINES = [
    '{"username": "jack", "data": {"name": "Jack", "score": 7, "vip": true, "gone": null}}',
    '{"platformId": 44196397}',
    '{"platformId": "12", "data": {"tier": "gold"}}',
    '{"externalId": "cm3abc"}',
    "not json",  # 5
    "",
    '{"username": "jack2", "platformId": "1"}',  # 7
    '{"username": "bad name"}',  # 8
    '["naval"]',  # 9
    '{"username": "naval", "data": {"nested": {"a": 1}}}',  # 10
    '{"username": "@sama"}',
    '{"username": "paulg", "platform": "linkedin"}',  # 12
]


def test_jsonl_objects_arrive_with_their_fields_and_bad_lines_are_rejected_by_line(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    name = "leads.jsonl"
    write_lines(tmp_path / name, JSONL_LINES)
    write_lines(tmp_path / "more.ndjson", ['{"username": "nd1", "data": {"via": "ndjson"}}', "{"])
    result = run_cli(
        "add",
        "jsonl1",
        name,
        "more.ndjson",
        "--rejects",
        "rej.csv",
        "--json",
        env=api_env(sandbox_server),
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "jsonl1") == {
        ("username", "jack"): {"name": "Jack", "score": "7", "vip": "true"},
        ("platformId", "12"): {"tier": "gold"},
        ("username", "nd1"): {"via": "ndjson"},
    }
    assert _arrays(sandbox_server, "jsonl1") == {
        "usernames": ["sama"],
        "platformIds": ["44196397"],
        "externalIds": ["cm3abc"],
    }
    assert _rejects(tmp_path / "rej.csv") == [
        (name, 5, "not a JSON object"),
        (name, 7, "needs exactly one of platformId, username, externalId"),
        (name, 8, "character ' ' is not allowed in a username"),
        (name, 9, "not a JSON object"),
        (name, 10, "data.nested must be a plain value"),
        (name, 12, "platform must be 'twitter'"),
        ("more.ndjson", 2, "not a JSON object"),
    ]
    assert (result.summary["read"], result.summary["rejected"]) == (13, 7)


def test_jsonl_on_stdin_is_sniffed_from_its_first_object(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    stdin = '\n{"username": "jack", "data": {"k": "v"}}\n{oops\n{"platformId": "12"}\n'
    result = run_cli(
        "add", "jsonl2", "--rejects", "rej.csv", stdin=stdin, env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "jsonl2") == {("username", "jack"): {"k": "v"}}
    assert _arrays(sandbox_server, "jsonl2") == {"platformIds": ["12"]}
    assert _rejects(tmp_path / "rej.csv") == [("<stdin>", 3, "not a JSON object")]


def test_json_array_file_sends_its_objects_and_rejects_items_by_position(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "leads.json").write_text(
        '[\n  {"username": "jack", "data": {"name": "Jack"}},\n  {"platformId": "12"},\n'
        '  "naval",\n  {"externalId": "Bad-ID"},\n  {"externalId": "abc9"}\n]\n'
    )
    result = run_cli(
        "add", "json1", "leads.json", "--rejects", "rej.csv", env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "json1") == {("username", "jack"): {"name": "Jack"}}
    assert _arrays(sandbox_server, "json1") == {"platformIds": ["12"], "externalIds": ["abc9"]}
    assert [(s, n) for s, n, _ in _rejects(tmp_path / "rej.csv")] == [
        ("leads.json", 3),
        ("leads.json", 4),
    ]


# -- several inputs -------------------------------------------------------------------


def test_several_inputs_are_deduplicated_across_all_first_wins_and_rejects_name_sources(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(tmp_path / "a.csv", ["username,Name", "jack,Jack", "naval,Naval", ",Empty"])
    write_lines(tmp_path / "b.txt", ["@JACK", "sama", "not a handle!", "12"])
    stdin = "x.com/naval\npaulg\nhttps://x.com/i/user/12\nbad value here\n"
    result = run_cli(
        "add",
        "multi1",
        "a.csv",
        "b.txt",
        "-",
        "--rejects",
        "rej.csv",
        "--json",
        stdin=stdin,
        env=api_env(sandbox_server),
    )
    assert result.code == 0, result.stderr
    # The first occurrence wins: jack and naval keep the data of a.csv.
    assert _objects(sandbox_server, "multi1") == {
        ("username", "jack"): {"Name": "Jack"},
        ("username", "naval"): {"Name": "Naval"},
    }
    assert _arrays(sandbox_server, "multi1") == {
        "usernames": ["sama", "paulg"],
        "platformIds": ["12"],
    }
    assert [(s, n) for s, n, _ in _rejects(tmp_path / "rej.csv")] == [
        ("a.csv", 4),
        ("b.txt", 3),
        ("<stdin>", 4),
    ]
    summary = result.summary
    assert (summary["read"], summary["rejected"], summary["duplicates"]) == (11, 3, 3)
    assert summary["unique"] == summary["delivered"] == 5


def test_csv_without_identifier_column_after_another_input_sends_nothing(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(25)])
    write_lines(tmp_path / "b.csv", ["Name,Email", "Jack,j@x.com"])
    result = run_cli(
        "add", "late1", "a.txt", "b.csv", "--batch-size", "10", env=api_env(sandbox_server)
    )
    assert result.code == 2 and "b.csv" in result.stderr
    assert _nothing_sent(sandbox_server)


# -- a slow pipe ----------------------------------------------------------------------


def test_slow_pipe_sends_a_partial_batch_once_quiet_for_flush_after_on_the_injected_clock(
    sandbox_server: RunningSandbox,
) -> None:
    started = time.monotonic()
    fake = FakeTime()
    # 30 s of quiet: only the fake clock can let that pass within this test's few seconds.
    job = AddJob(
        campaign="slowpipe",
        inputs=["-"],
        token=SECRET,
        base_url=sandbox_server.base_url,
        batch_size=10,
        flush_after_s=30.0,
        progress="none",
        quiet=True,
    )
    read_fd, write_fd = os.pipe()
    results: list[AddResult] = []
    with os.fdopen(read_fd, "rb") as stdin, os.fdopen(write_fd, "wb", buffering=0) as writer:
        env = quiet_env(fake, stdin=stdin)
        thread = threading.Thread(target=lambda: results.append(run_add(job, env)), daemon=True)
        try:
            writer.write(b"early1\nearly2\nearly3\n")
            thread.start()
            deadline = time.monotonic() + 3.0
            while not sandbox_server.state.bodies("slowpipe"):
                assert time.monotonic() < deadline, "no partial batch while the pipe was quiet"
                assert thread.is_alive(), results
                time.sleep(0.01)
            assert not writer.closed and thread.is_alive()
            writer.write(b"".join(f"late{i:02d}\n".encode() for i in range(12)))
        finally:
            writer.close()
            thread.join(timeout=5.0)
    assert not thread.is_alive()

    [result] = results
    assert result.status == ExitStatus.OK
    bodies = sandbox_server.state.bodies("slowpipe")
    assert bodies[0]["usernames"] == ["early1", "early2", "early3"]
    # The full batch and the final partial one may overlap on the wire.
    assert len(bodies) == 3 and sorted(len(b["usernames"]) for b in bodies[1:]) == [2, 10]
    assert sorted(v for _, v in sandbox_server.state.received("slowpipe")) == sorted(
        ["early1", "early2", "early3", *(f"late{i:02d}" for i in range(12))]
    )
    assert result.summary is not None and result.summary.to_json()["delivered"] == 15
    assert any(s >= 29.9 for s in fake.slept), "the flush did not wait on the injected sleep"
    assert time.monotonic() - started < 5.0


# -- hostile files --------------------------------------------------------------------


def test_invalid_utf8_and_nul_byte_lines_are_rejected_and_the_others_delivered(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "latin1.txt").write_bytes(b"jack\ncaf\xe9\nnaval\n")
    handles = [f"h{i:05d}" for i in range(1500)]  # 10.5 KB: past the 8 KiB looked at up front
    (tmp_path / "nul.txt").write_bytes(
        "".join(h + "\n" for h in handles).encode() + b"bad\x00line\nsama\n"
    )
    result = run_cli(
        "add",
        "badbytes",
        "latin1.txt",
        "nul.txt",
        "--rejects",
        "rej.csv",
        "--json",
        env=api_env(sandbox_server),
    )
    assert result.code == 0, result.stderr
    received = [v for _, v in sandbox_server.state.received("badbytes")]
    assert sorted(received) == sorted(["jack", "naval", *handles, "sama"])
    assert _rejects(tmp_path / "rej.csv") == [
        ("latin1.txt", 2, "not valid UTF-8"),
        ("nul.txt", 1501, "contains NUL bytes"),
    ]
    assert result.summary["delivered"] == 1503 and result.summary["rejected"] == 2


def test_binary_file_exits_2_naming_it_and_nothing_is_sent(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(tmp_path / "good.txt", ["jack"])
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    result = run_cli("add", "bin1", "good.txt", "logo.png", env=api_env(sandbox_server))
    assert result.code == 2
    assert "logo.png" in result.stderr and "binary" in result.stderr
    assert _nothing_sent(sandbox_server)


def test_10mb_line_is_rejected_and_the_rest_of_the_file_delivered(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    huge = "a" * (10 * 1024 * 1024)
    write_lines(tmp_path / "a.txt", ["jack", huge, "naval"])
    write_lines(tmp_path / "b.csv", ["username,note", "sama,x", huge, "paulg,y"])
    result = run_cli(
        "add",
        "huge1",
        "a.txt",
        "b.csv",
        "--rejects",
        "rej.csv",
        "--json",
        env=api_env(sandbox_server),
    )
    assert result.code == 0, result.stderr
    assert _arrays(sandbox_server, "huge1") == {"usernames": ["jack", "naval"]}
    assert _objects(sandbox_server, "huge1") == {
        ("username", "sama"): {"note": "x"},
        ("username", "paulg"): {"note": "y"},
    }
    assert _rejects(tmp_path / "rej.csv") == [
        ("a.txt", 2, "line longer than 1 MiB"),
        ("b.csv", 3, "line longer than 1 MiB"),
    ]
    assert (tmp_path / "rej.csv").stat().st_size < 10_000
    assert result.summary["rejected"] == 2 and result.summary["delivered"] == 4


@pytest.mark.parametrize(
    ("make", "words"), [("directory", "is a directory"), ("missing", "no such file")]
)
def test_a_directory_or_missing_file_exits_2_naming_it_and_nothing_is_sent(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path, make: str, words: str
) -> None:
    write_lines(tmp_path / "good.txt", [f"h{i}" for i in range(30)])
    if make == "directory":
        (tmp_path / "leads").mkdir()
    result = run_cli(
        "add", "notfile", "good.txt", "leads", "--batch-size", "10", env=api_env(sandbox_server)
    )
    assert result.code == 2
    assert "leads" in result.stderr and words in result.stderr
    assert _nothing_sent(sandbox_server)


def test_empty_files_exit_0_and_send_nothing(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    names = ["empty.txt", "empty.csv", "empty.tsv", "empty.jsonl", "blank.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"\n# nothing here\n\n")
    result = run_cli("add", "empty1", *names, "--json", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert result.summary["read"] == 0 and result.summary["upload_requests"] == 0
    assert _nothing_sent(sandbox_server)


def test_empty_json_file_exits_0_and_sends_nothing(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    result = run_cli("add", "empty2", "empty.json", "--json", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert result.summary["read"] == 0
    assert _nothing_sent(sandbox_server)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_file_with_a_bom_is_delivered_with_its_data_intact(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path, encoding: str
) -> None:
    text = "username,Name\r\njack,Jérôme\r\nnaval,Zoë\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # "utf-16" writes a little-endian BOM; this one a big-endian
    (tmp_path / "export.csv").write_bytes(data)
    result = run_cli("add", "utf16", "export.csv", "--json", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "utf16") == {
        ("username", "jack"): {"Name": "Jérôme"},
        ("username", "naval"): {"Name": "Zoë"},
    }
    assert result.summary["delivered"] == 2


def test_utf16_without_bom_is_recognised_and_delivered(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "export.txt").write_bytes("jack\r\nnaval\r\n".encode("utf-16-le"))
    result = run_cli("add", "utf16le", "export.txt", "--json", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert _arrays(sandbox_server, "utf16le") == {"usernames": ["jack", "naval"]}


def test_cp1252_export_warns_once_and_only_its_accented_rows_are_rejected(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    content = "Twitter,Name\r\njack,Jack\r\n@biz,José Müller\r\nnaval,Naval\r\nsama,Zoë\r\n"
    (tmp_path / "export.csv").write_bytes(content.encode("cp1252"))
    result = run_cli(
        "add", "cp1252", "export.csv", "--rejects", "rej.csv", "--json", env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    hint = "not UTF-8; it reads as Windows-1252 (an Excel export?): try --encoding cp1252"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: export.csv:3: {hint}"]
    assert _objects(sandbox_server, "cp1252") == {
        ("username", "jack"): {"Name": "Jack"},
        ("username", "naval"): {"Name": "Naval"},
    }
    assert _rejects(tmp_path / "rej.csv") == [
        ("export.csv", 3, "not valid UTF-8"),
        ("export.csv", 5, "not valid UTF-8"),
    ]
    assert (result.summary["read"], result.summary["rejected"]) == (4, 2)


def test_classic_mac_excel_export_with_a_sep_line_is_delivered(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    # CR line breaks, a sep= first line, and a name that says nothing of the format.
    content = 'sep=;\rName;Twitter;Note\rJack;@jack;"one\rtwo"\rNaval;x.com/naval;\r'
    (tmp_path / "export.txt").write_bytes(content.encode())
    result = run_cli("add", "macsep", "export.txt", "--json", env=api_env(sandbox_server))
    assert result.code == 0, result.stderr
    assert _objects(sandbox_server, "macsep") == {
        ("username", "jack"): {"Name": "Jack", "Note": "one\ntwo"},
        ("username", "naval"): {"Name": "Naval"},
    }
    assert (result.summary["read"], result.summary["rejected"]) == (2, 0)


def test_a_nul_byte_near_the_start_of_a_small_list_rejects_only_its_line(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "leads.txt").write_bytes(b"jack\nnaval\nbad\x00line\nsama\n")
    result = run_cli(
        "add", "nul1", "leads.txt", "--rejects", "rej.csv", "--json", env=api_env(sandbox_server)
    )
    assert result.code == 0, result.stderr
    assert _arrays(sandbox_server, "nul1") == {"usernames": ["jack", "naval", "sama"]}
    assert _rejects(tmp_path / "rej.csv") == [("leads.txt", 3, "contains NUL bytes")]


def test_a_spreadsheet_exits_2_with_a_hint_to_export_it_as_csv(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    zip_head = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00"
    (tmp_path / "leads.xlsx").write_bytes(zip_head + bytes(range(256)) * 2)
    result = run_cli("add", "xlsx1", "leads.xlsx", env=api_env(sandbox_server))
    assert result.code == 2
    assert "leads.xlsx: looks like a binary file (a spreadsheet: export it as CSV)" in (
        result.stderr
    )
    assert _nothing_sent(sandbox_server)


# -- the dry-run report ---------------------------------------------------------------


def test_dry_run_json_reports_sources_kinds_and_rejections_and_sends_nothing(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    write_lines(
        tmp_path / "mixed.csv",
        [
            "twitter,Name",
            "@jack,Jack",  # 2
            "44196397,Id",  # 3
            "x.com/naval,Naval",  # 4
            "https://x.com/i/user/12,Twelve",  # 5
            "@JACK,Again",  # 6: duplicate
            "not valid!,Bad",  # 7
            ",Empty",  # 8
            "x.com/home,Page",  # 9
            "bad one!,Bad too",  # 10
            "a,b,c",  # 11
        ],
    )
    write_lines(tmp_path / "extra.txt", ["naval", "sama", "bad!"])
    result = run_cli(
        "add",
        "dryrep",
        "mixed.csv",
        "extra.txt",
        "--dry-run",
        "--json",
        env=api_env(sandbox_server),
    )
    assert result.code == 0, result.stderr
    summary = result.summary
    assert summary["dry_run"] is True and summary["upload_requests"] == 0
    assert (summary["read"], summary["rejected"], summary["duplicates"], summary["unique"]) == (
        13,
        6,
        2,
        5,
    )
    assert summary["report"] == {
        "sources": {
            "mixed.csv": {"read": 10, "rejected": 5, "duplicates": 1, "unique": 4},
            "extra.txt": {"read": 3, "rejected": 1, "duplicates": 1, "unique": 1},
        },
        "kinds": {"username": 3, "platformId": 2},
        "rejections": {
            "character ' ' is not allowed in a username": {
                "count": 2,
                "examples": ["mixed.csv:7: not valid!,Bad", "mixed.csv:10: bad one!,Bad too"],
            },
            "empty 'twitter' cell": {"count": 1, "examples": ["mixed.csv:8: ,Empty"]},
            "not a profile link (x.com/home is a page)": {
                "count": 1,
                "examples": ["mixed.csv:9: x.com/home,Page"],
            },
            "3 fields, header has 2": {"count": 1, "examples": ["mixed.csv:11: a,b,c"]},
            "character '!' is not allowed in a username": {
                "count": 1,
                "examples": ["extra.txt:3: bad!"],
            },
        },
    }
    assert _nothing_sent(sandbox_server)
