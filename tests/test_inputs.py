"""Reading input files and stdin: plain lines, CSV/TSV, JSONL and JSON arrays."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inboxleads.errors import InputError
from inboxleads.identifiers import Kind, Lead, ReadAs
from inboxleads.inputs import (
    MAX_LINE_BYTES,
    Format,
    ReadOptions,
    Record,
    Rejection,
    open_inputs,
    read_records,
)

DEFAULT = ReadOptions()


def read_path(path: Path, options: ReadOptions = DEFAULT) -> list[Record]:
    """Every record of one file, opened as `add PATH` opens it."""
    [source] = open_inputs([str(path)], Format.AUTO)
    try:
        return list(read_records(source, options))
    finally:
        source.close()


def read_stdin(data: bytes, options: ReadOptions = DEFAULT) -> list[Record]:
    """Every record of `data` piped to `add -`."""
    [source] = open_inputs(["-"], Format.AUTO, stdin=io.BytesIO(data))
    try:
        return list(read_records(source, options))
    finally:
        source.close()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    return path


def leads(records: list[Record]) -> list[tuple[Kind, str]]:
    return [(r.kind, r.value) for r in records if isinstance(r, Lead)]


def rejections(records: list[Record]) -> list[Rejection]:
    return [r for r in records if isinstance(r, Rejection)]


def numbered(records: list[Record]) -> list[tuple[str, int]]:
    """(value, line) of every record, which must all be leads."""
    assert not rejections(records)
    return [(r.value, r.line) for r in records if isinstance(r, Lead)]


U = Kind.USERNAME
P = Kind.PLATFORM_ID


class SlowPipe(io.RawIOBase):
    """A pipe that hands over `step` bytes per read, as a slow producer does."""

    def __init__(self, data: bytes, step: int = 1) -> None:
        self._data = data
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk, self._data = self._data[: self._step], self._data[self._step :]
        buffer[: len(chunk)] = chunk
        return len(chunk)


# --- plain lines -----------------------------------------------------------------------


def test_plain_lines_read_handles_ids_and_links_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", "@jack\nhttps://x.com/Biz\n44196397\nx.com/i/user/12\n")
    assert leads(read_path(path)) == [(U, "jack"), (U, "Biz"), (P, "44196397"), (P, "12")]


def test_leads_carry_their_file_and_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", "# my list\n\njack\n\n# more\nbiz\n")
    records = read_path(path)
    assert [(r.source, r.line) for r in records] == [(str(path), 3), (str(path), 6)]


def test_invalid_value_is_rejected_with_its_line_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", "jack\nnot a handle!\nbiz\n")
    records = read_path(path)
    assert leads(records) == [(U, "jack"), (U, "biz")]
    [bad] = rejections(records)
    assert (bad.source, bad.line, bad.text) == (str(path), 2, "not a handle!")
    assert bad.reason


def test_utf8_bom_at_the_start_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"\xef\xbb\xbfjack\nbiz\n")
    assert leads(read_path(path)) == [(U, "jack"), (U, "biz")]


def test_crlf_line_endings_read_like_lf(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\r\n\r\nbiz\r\n")
    records = read_path(path)
    assert leads(records) == [(U, "jack"), (U, "biz")]
    assert not rejections(records)


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\nbiz")
    assert leads(read_path(path)) == [(U, "jack"), (U, "biz")]


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert read_path(write(tmp_path, "leads.txt", b"")) == []


def test_invalid_utf8_line_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\nbi\xffz\nbiz\n")
    records = read_path(path)
    assert leads(records) == [(U, "jack"), (U, "biz")]
    [bad] = rejections(records)
    assert (bad.line, bad.reason) == (2, "not valid UTF-8")


def test_nul_after_the_first_8_kib_rejects_only_that_line(tmp_path: Path) -> None:
    filler = b"jack\n" * 2000  # 10 000 bytes, past the binary sniff
    path = write(tmp_path, "leads.txt", filler + b"bi\x00z\nbiz\n")
    records = read_path(path)
    [bad] = rejections(records)
    assert (bad.line, bad.reason) == (2001, "contains NUL bytes")
    assert leads(records)[-1] == (U, "biz")


def test_nul_near_the_start_refuses_the_input_as_binary(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\n\x00\x01\x02\n")
    with pytest.raises(InputError, match="binary"):
        open_inputs([str(path)], Format.AUTO)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_input_with_a_bom_is_read(tmp_path: Path, codec: str) -> None:
    path = write(tmp_path, "leads.txt", "\ufeffjack\r\nbiz\r\n".encode(codec))
    assert numbered(read_path(path)) == [("jack", 1), ("biz", 2)]


def test_line_longer_than_1_mib_is_rejected_and_next_lines_read(tmp_path: Path) -> None:
    huge = b"a" * (MAX_LINE_BYTES + 10)
    path = write(tmp_path, "leads.txt", b"jack\n" + huge + b"\nbiz\n")
    records = read_path(path)
    assert leads(records) == [(U, "jack"), (U, "biz")]
    [bad] = rejections(records)
    assert (bad.line, bad.reason) == (2, "line longer than 1 MiB")
    assert records[-1].line == 3


def test_unterminated_last_line_longer_than_1_mib_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\n" + b"a" * (MAX_LINE_BYTES + 1))
    records = read_path(path)
    assert [(r.line, r.reason) for r in rejections(records)] == [(2, "line longer than 1 MiB")]


def test_line_of_exactly_1_mib_is_not_rejected_for_its_length(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\n" + b"a" * MAX_LINE_BYTES + b"\n")
    [bad] = rejections(read_path(path))
    assert bad.reason != "line longer than 1 MiB"


def test_too_long_line_before_the_first_value_is_rejected() -> None:
    records = read_stdin(b"a" * (MAX_LINE_BYTES + 10) + b"\njack\n")
    assert [(r.line, r.reason) for r in rejections(records)] == [(1, "line longer than 1 MiB")]
    assert leads(records) == [(U, "jack")]


def test_too_long_line_before_a_csv_header_does_not_reject_the_first_row() -> None:
    data = b"a" * (MAX_LINE_BYTES + 10) + b"\nusername,name\njack,Jack\nbiz,Biz\n"
    assert leads(read_stdin(data)) == [(U, "jack"), (U, "biz")]


def test_utf8_bom_is_ignored_when_a_slow_pipe_delivers_it_in_pieces() -> None:
    [source] = open_inputs(
        ["-"], Format.AUTO, stdin=io.BufferedReader(SlowPipe(b"\xef\xbb\xbfjack\nbiz\n"))
    )
    records = list(read_records(source, DEFAULT))
    assert leads(records) == [(U, "jack"), (U, "biz")]


def test_slow_pipe_delivering_one_byte_at_a_time_reads_every_line() -> None:
    [source] = open_inputs(
        ["-"], Format.AUTO, stdin=io.BufferedReader(SlowPipe(b"jack\r\n@biz\n44196397"))
    )
    records = list(read_records(source, DEFAULT))
    assert leads(records) == [(U, "jack"), (U, "biz"), (P, "44196397")]


def test_stdin_records_are_named_stdin() -> None:
    [record] = read_stdin(b"jack\n")
    assert record.source == "<stdin>"


def test_read_as_username_reads_bare_numbers_as_usernames() -> None:
    records = read_stdin(b"12345\n@jack\n", ReadOptions(read_as=ReadAs.USERNAME))
    assert leads(records) == [(U, "12345"), (U, "jack")]


def test_read_as_external_id_reads_inbox_ids() -> None:
    records = read_stdin(b"hy4k7m2x9p1n6v3w8j5q0r\n", ReadOptions(read_as=ReadAs.EXTERNAL_ID))
    assert leads(records) == [(Kind.EXTERNAL_ID, "hy4k7m2x9p1n6v3w8j5q0r")]


# --- opening inputs --------------------------------------------------------------------


def test_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError, match="no such file") as info:
        open_inputs([str(missing)], Format.AUTO)
    assert str(missing) in info.value.message


def test_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        open_inputs([str(tmp_path)], Format.AUTO)


def test_a_missing_second_input_stops_before_anything_is_read(tmp_path: Path) -> None:
    first = write(tmp_path, "a.txt", "jack\n")
    with pytest.raises(InputError, match="no such file"):
        open_inputs([str(first), str(tmp_path / "b.txt")], Format.AUTO)


def test_several_inputs_open_in_the_order_given(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "jack\n")
    b = write(tmp_path, "b.csv", "username\nbiz\n")
    opened = open_inputs([str(a), str(b)], Format.AUTO)
    try:
        assert [o.name for o in opened] == [str(a), str(b)]
        assert [leads(list(read_records(o, DEFAULT))) for o in opened] == [
            [(U, "jack")],
            [(U, "biz")],
        ]
    finally:
        for o in opened:
            o.close()


# --- format by extension and by sniffing ------------------------------------------------


def test_csv_header_on_stdin_is_sniffed_as_csv() -> None:
    records = read_stdin(b"username,name\njack,Jack D\n")
    assert records == [Lead(U, "jack", "<stdin>", 2, {"name": "Jack D"})]


def test_semicolon_separated_header_is_sniffed_as_csv() -> None:
    records = read_stdin(b"Name;Twitter\nJack;@jack\nBiz;x.com/biz\n")
    assert leads(records) == [(U, "jack"), (U, "biz")]
    assert records[0].data == {"Name": "Jack"}  # type: ignore[union-attr]


def test_tab_separated_header_is_sniffed_as_tsv() -> None:
    records = read_stdin(b"twitter_id\tnote\n44196397\tfounder, ceo\n")
    assert records == [Lead(P, "44196397", "<stdin>", 2, {"note": "founder, ceo"})]


def test_comment_lines_before_a_csv_header_are_skipped() -> None:
    records = read_stdin(b"# export of 2024-05-01\n\nhandle,company\njack,X\n")
    assert records == [Lead(U, "jack", "<stdin>", 4, {"company": "X"})]


def test_json_objects_on_stdin_are_sniffed_as_jsonl() -> None:
    records = read_stdin(b'{"username": "jack"}\n{"platformId": "12"}\n')
    assert leads(records) == [(U, "jack"), (P, "12")]


def test_json_array_on_stdin_is_sniffed() -> None:
    assert leads(read_stdin(b'[{"username": "jack"}]')) == [(U, "jack")]


def test_plain_values_with_commas_are_not_taken_for_a_csv_header() -> None:
    records = read_stdin(b"jack\nbiz, ev\n")
    assert leads(records) == [(U, "jack")]
    assert [r.text for r in rejections(records)] == ["biz, ev"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("leads.csv", "Twitter Handle,Name\njack,J\n", [(U, "jack")]),
        ("leads.tsv", "username\tname\njack\tJ\n", [(U, "jack")]),
        ("leads.tab", "username\tname\njack\tJ\n", [(U, "jack")]),
        ("leads.jsonl", '{"username":"jack"}\n', [(U, "jack")]),
        ("leads.ndjson", '{"username":"jack"}\n', [(U, "jack")]),
        ("leads.json", '[{"platformId":"12"}]', [(P, "12")]),
        ("leads.CSV", "username\njack\n", [(U, "jack")]),
    ],
)
def test_file_extension_decides_the_format(
    tmp_path: Path, name: str, content: str, expected: list[tuple[Kind, str]]
) -> None:
    assert leads(read_path(write(tmp_path, name, content))) == expected


def test_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "jack\nbiz\n")
    assert leads(read_path(path, ReadOptions(fmt=Format.LINES))) == [(U, "jack"), (U, "biz")]


# --- CSV and TSV ----------------------------------------------------------------------


def test_csv_without_an_identifier_column_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "name,company\nJack,X\n")
    with pytest.raises(InputError, match="no identifier column"):
        read_path(path)


def test_column_option_picks_the_identifier_column(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "Name,Lead\nJack,@jack\n")
    records = read_path(path, ReadOptions(columns=("lead",)))
    assert records == [Lead(U, "jack", str(path), 2, {"Name": "Jack"})]


def test_column_option_sniffs_stdin_as_csv_with_that_column() -> None:
    records = read_stdin(b"Name,Lead\nJack,@jack\n", ReadOptions(columns=("Lead",)))
    assert leads(records) == [(U, "jack")]


def test_column_option_naming_a_missing_column_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,name\njack,J\n")
    with pytest.raises(InputError, match="no column 'handle'"):
        read_path(path, ReadOptions(columns=("handle",)))


def test_username_column_wins_over_id_column_and_id_becomes_data(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "id,username\n7,jack\n")
    assert read_path(path) == [Lead(U, "jack", str(path), 2, {"id": "7"})]


def test_username_column_reads_all_digit_values_as_usernames(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username\n12345\n")
    assert leads(read_path(path)) == [(U, "12345")]


def test_twitter_id_column_reads_values_as_platform_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "Twitter ID\n1234567890123456789\n")
    assert leads(read_path(path)) == [(P, "1234567890123456789")]


def test_generic_id_column_is_read_as_user_ids_only_when_named(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "User ID\n1234567890123456789\n")
    with pytest.raises(InputError, match="not read as X user IDs unless you name it"):
        read_path(path)
    named = read_path(path, ReadOptions(columns=("user id",)))
    assert leads(named) == [(P, "1234567890123456789")]


def test_profile_url_column_reads_links(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "Profile URL\nhttps://x.com/jack\nx.com/i/user/12\n")
    assert leads(read_path(path)) == [(U, "jack"), (P, "12")]


def test_other_columns_become_data_and_empty_cells_are_left_out(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,first,company,\njack,Jack,,extra\n")
    # A column with no name is kept, under its position.
    data = {"first": "Jack", "column_4": "extra"}
    assert read_path(path) == [Lead(U, "jack", str(path), 2, data)]


def test_data_columns_option_keeps_only_those_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,first,company\njack,Jack,X\n")
    [lead] = read_path(path, ReadOptions(data_columns=("Company",)))
    assert isinstance(lead, Lead)
    assert lead.data == {"company": "X"}


def test_no_data_option_sends_no_data(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,first\njack,Jack\n")
    [lead] = read_path(path, ReadOptions(no_data=True))
    assert isinstance(lead, Lead)
    assert lead.data is None


def test_row_with_more_fields_than_the_header_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,name\njack,J,extra\nbiz,B\n")
    records = read_path(path)
    assert leads(records) == [(U, "biz")]
    [bad] = rejections(records)
    assert (bad.line, bad.reason) == (2, "3 fields, header has 2")


def test_row_with_fewer_fields_than_the_header_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,name\njack\n")
    assert read_path(path) == [Lead(U, "jack", str(path), 2, None)]


def test_row_with_an_empty_identifier_cell_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "name,username\nJack,\n")
    [bad] = read_path(path)
    assert isinstance(bad, Rejection)
    assert bad.reason == "empty 'username' cell"


def test_invalid_identifier_in_a_row_is_rejected_with_the_row_text(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,name\njack!,J\n")
    [bad] = read_path(path)
    assert isinstance(bad, Rejection)
    assert (bad.line, bad.text) == (2, "jack!,J")


def test_blank_rows_after_the_header_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,name\n\njack,J\n,\n")
    records = read_path(path)
    assert leads(records) == [(U, "jack")]
    assert not rejections(records)


def test_quoted_cell_spanning_lines_is_kept_whole(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", 'username,note\njack,"line one\n\nline three"\nbiz,x\n')
    records = read_path(path)
    assert [r.data for r in records if isinstance(r, Lead)] == [
        {"note": "line one\n\nline three"},
        {"note": "x"},
    ]


def test_invalid_utf8_row_is_rejected_and_other_rows_read(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", b"username,name\njack,J\xff\nbiz,B\n")
    records = read_path(path)
    assert leads(records) == [(U, "biz")]
    assert [(r.line, r.reason) for r in rejections(records)] == [(2, "not valid UTF-8")]


def test_invalid_utf8_header_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", b"user\xffname\njack\n")
    with pytest.raises(InputError, match="header"):
        read_path(path)


def test_csv_header_with_bom_and_crlf_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", b"\xef\xbb\xbfusername,name\r\njack,J\r\n")
    assert read_path(path) == [Lead(U, "jack", str(path), 2, {"name": "J"})]


def test_csv_cell_larger_than_128_kib_does_not_crash_the_read(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,note\njack," + "n" * 200_000 + "\nbiz,B\n")
    records = read_path(path)
    assert (U, "biz") in leads(records)


def test_crlf_inside_a_quoted_cell_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", b'username,note\r\njack,"a\r\nb"\r\n')
    assert [r.data for r in read_path(path) if isinstance(r, Lead)] == [{"note": "a\r\nb"}]


# --- Excel's sep= line ------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", ",", "|", "\t"])
def test_sep_line_sets_the_delimiter_and_the_header_is_the_next_line(
    tmp_path: Path, delimiter: str
) -> None:
    rows = ["username", "name", "note"], ["jack", "Jack", "a,b;c|d"], ["biz", "Biz", ""]
    body = "".join(delimiter.join(cells) + "\r\n" for cells in rows)
    path = write(
        tmp_path, "leads.csv", f"sep={delimiter}\r\n" + body.replace("a,b;c|d", '"a,b;c|d"')
    )
    assert read_path(path) == [
        Lead(U, "jack", str(path), 3, {"name": "Jack", "note": "a,b;c|d"}),
        Lead(U, "biz", str(path), 4, {"name": "Biz"}),
    ]


def test_sep_line_makes_a_txt_input_a_csv_when_the_format_is_auto(tmp_path: Path) -> None:
    # The header alone would be read as a list of values: no known column, and a "|".
    path = write(tmp_path, "export.txt", "# from Excel\nsep=|\nName|Lead\nJack|@jack\n")
    records = read_path(path, ReadOptions(columns=("lead",)))
    assert records == [Lead(U, "jack", str(path), 4, {"Name": "Jack"})]


def test_sep_line_on_stdin_is_sniffed_as_csv() -> None:
    records = read_stdin(b"sep=;\nName;Twitter\nJack;@jack\n")
    assert records == [Lead(U, "jack", "<stdin>", 3, {"Name": "Jack"})]


def test_sep_line_written_quoted_is_read_too() -> None:
    records = read_stdin(b'"sep=;"\r\nusername;name\r\njack;J\r\n')
    assert records == [Lead(U, "jack", "<stdin>", 3, {"name": "J"})]


@pytest.mark.parametrize("fmt", [Format.CSV, Format.TSV])
def test_sep_line_wins_over_an_explicit_csv_or_tsv_format(tmp_path: Path, fmt: Format) -> None:
    path = write(tmp_path, "leads.txt", "sep=;\nusername;name\njack;J\n")
    records = read_path(path, ReadOptions(fmt=fmt))
    assert records == [Lead(U, "jack", str(path), 3, {"name": "J"})]


def test_only_a_first_line_declares_a_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "username,name\nsep=;,x\njack,J\n")
    records = read_path(path)
    assert leads(records) == [(U, "jack")]
    assert [(r.line, r.text) for r in rejections(records)] == [(2, "sep=;,x")]


def test_sep_line_is_a_value_like_any_other_in_a_plain_list(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", "sep=;\njack\n")
    records = read_path(path, ReadOptions(fmt=Format.LINES))
    assert leads(records) == [(U, "jack")]
    assert [r.line for r in rejections(records)] == [1]


# --- CR line breaks (classic Mac) -------------------------------------------------------


def test_cr_only_plain_list_reads_as_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"# list\r@jack\r\rx.com/biz\r44196397")
    assert numbered(read_path(path)) == [("jack", 2), ("biz", 4), ("44196397", 5)]


def test_cr_only_csv_reads_rows_and_a_quoted_multi_line_cell(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", b'username,note\rjack,"one\rtwo"\rbiz,B\r')
    assert read_path(path) == [
        Lead(U, "jack", str(path), 2, {"note": "one\ntwo"}),
        Lead(U, "biz", str(path), 4, {"note": "B"}),
    ]


def test_cr_only_tsv_on_stdin_is_sniffed_and_read() -> None:
    records = read_stdin(b"twitter_id\tnote\r44196397\tfounder\r12\t\r")
    assert records == [
        Lead(P, "44196397", "<stdin>", 2, {"note": "founder"}),
        Lead(P, "12", "<stdin>", 3, None),
    ]


def test_cr_only_file_larger_than_a_read_keeps_its_line_numbers(tmp_path: Path) -> None:
    from inboxleads.inputs import CHUNK_SIZE

    names = [f"user{i:06d}" for i in range(CHUNK_SIZE // 8)]  # 11 bytes each: several reads
    path = write(tmp_path, "leads.txt", "\r".join(names).encode() + b"\r")
    assert numbered(read_path(path)) == [(n, i) for i, n in enumerate(names, 1)]


def test_cr_only_input_on_a_slow_pipe_reads_every_line() -> None:
    [source] = open_inputs(
        ["-"], Format.AUTO, stdin=io.BufferedReader(SlowPipe(b"jack\r\r@biz\r44196397"))
    )
    records = list(read_records(source, DEFAULT))
    assert numbered(records) == [("jack", 1), ("biz", 3), ("44196397", 4)]


@pytest.mark.parametrize("step", [1, 2, 7, 14])
def test_crlf_split_between_two_reads_is_still_one_line_break(step: int) -> None:
    # Every step splits the header's CRLF (bytes 13 and 14) between two reads.
    data = b'username,note\r\njack,"a\r\nb"\r\nbiz,B\r\n'
    [source] = open_inputs(["-"], Format.CSV, stdin=io.BufferedReader(SlowPipe(data, step)))
    assert list(read_records(source, DEFAULT)) == [
        Lead(U, "jack", "<stdin>", 2, {"note": "a\r\nb"}),
        Lead(U, "biz", "<stdin>", 4, {"note": "B"}),
    ]


def test_a_stray_cr_in_a_crlf_file_is_a_line_break_too(tmp_path: Path) -> None:
    """As an editor shows it: the lines are counted with it."""
    path = write(tmp_path, "leads.txt", b"jack\rnot\r\nbiz\r\nsama\r\n")
    records = read_path(path)
    assert [(r.value, r.line) for r in records if isinstance(r, Lead)] == [
        ("jack", 1),
        ("not", 2),
        ("biz", 3),
        ("sama", 4),
    ]
    assert rejections(records) == []


def test_a_lone_cr_in_an_lf_csv_ends_its_row(tmp_path: Path) -> None:
    """A CSV that switches to CR line breaks halfway: every row is read."""
    path = write(tmp_path, "leads.csv", b"username,note\njack,a\rb\nbiz,B\n")
    records = read_path(path)
    assert leads(records) == [(U, "jack"), (U, "b"), (U, "biz")]
    assert rejections(records) == []


def test_a_lone_cr_in_a_header_ends_it_and_the_error_is_in_plain_words(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", b"user\rname,note\njack,J\nbiz,B\n")
    with pytest.raises(InputError) as info:
        read_path(path)
    assert "no identifier column in the header" in info.value.message
    assert "universal" not in info.value.message


cell_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=25,
)
rows = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,14}", fullmatch=True),
        cell_text,
        cell_text,
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(rows=rows)
def test_csv_written_by_python_reads_back_with_the_same_data(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, str]]
) -> None:
    path = tmp_path_factory.mktemp("csv") / "leads.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["username", "note", "company"])
        writer.writerows(rows)
    records = read_path(path)
    assert not rejections(records)
    # A lone CR is a line break, in a quoted cell too: it reads back as LF.
    lone_cr = re.compile(r"\r(?!\n)")
    expected = [
        (
            handle,
            {k: lone_cr.sub("\n", v) for k, v in (("note", note), ("company", co)) if v.strip()}
            or None,
        )
        for handle, note, co in rows
    ]
    assert [(r.value, r.data) for r in records if isinstance(r, Lead)] == expected


# --- JSONL and JSON arrays ---------------------------------------------------------------


def test_jsonl_objects_read_with_their_identifiers_and_data(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "leads.jsonl",
        '{"username": "@jack", "data": {"first": "Jack"}}\n'
        '{"platformId": "12", "platform": "twitter"}\n'
        '{"externalId": "hy4k7m2x9p1n6v3w8j5q0r"}\n',
    )
    assert read_path(path) == [
        Lead(U, "jack", str(path), 1, {"first": "Jack"}),
        Lead(P, "12", str(path), 2),
        Lead(Kind.EXTERNAL_ID, "hy4k7m2x9p1n6v3w8j5q0r", str(path), 3),
    ]


def test_jsonl_platform_id_as_a_big_json_number_keeps_every_digit(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.jsonl", '{"platformId": 1234567890123456789}\n')
    assert leads(read_path(path)) == [(P, "1234567890123456789")]


def test_jsonl_data_numbers_and_booleans_become_strings_and_nulls_are_dropped(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path, "leads.jsonl", '{"username":"jack","data":{"n":5,"vip":true,"x":null}}\n'
    )
    [lead] = read_path(path)
    assert isinstance(lead, Lead)
    assert lead.data == {"n": "5", "vip": "true"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"username": "jack", "platformId": "12"}', "needs exactly one of"),
        ("{}", "needs exactly one of"),
        ('{"username": 5}', "username must be a string"),
        ('{"username": "jack", "platform": "instagram"}', "platform must be 'twitter'"),
        ('{"username": "jack", "data": [1]}', "data must be an object"),
        ('{"username": "jack", "data": {"a": {"b": 1}}}', "data.a must be a plain value"),
        ('{"username": "jack!"}', "not allowed"),
        ('"jack"', "not a JSON object"),
        ("{not json", "not a JSON object"),
    ],
)
def test_bad_jsonl_line_is_rejected_and_reading_goes_on(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = write(tmp_path, "leads.jsonl", line + '\n{"username": "biz"}\n')
    records = read_path(path)
    assert leads(records) == [(U, "biz")]
    [bad] = rejections(records)
    assert bad.line == 1
    assert reason in bad.reason


def test_jsonl_skips_blank_and_comment_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.jsonl", '# leads\n\n{"username": "jack"}\n')
    assert [r.line for r in read_path(path)] == [3]


def test_json_array_reports_rejected_items_by_position(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.json", '[{"username": "jack"}, 7, {"platformId": "12"}]')
    records = read_path(path)
    assert leads(records) == [(U, "jack"), (P, "12")]
    [bad] = rejections(records)
    assert (bad.line, bad.reason) == (2, "not a JSON object")


def test_json_file_that_is_not_an_array_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.json", json.dumps({"username": "jack"}))
    with pytest.raises(InputError, match="array"):
        read_path(path)


def test_json_file_that_does_not_parse_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.json", "[{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_path(path)


def test_a_block_of_plain_handles_is_read_as_one_run_with_line_numbers(tmp_path: Path) -> None:
    from inboxleads.identifiers import HandleRun
    from inboxleads.inputs import read_chunks

    path = write(tmp_path, "leads.txt", b"@Jack\r\nnaval\r\npaul_g\r\n")
    [source] = open_inputs([str(path)], Format.AUTO)
    try:
        [[run]] = list(read_chunks(source, ReadOptions()))
    finally:
        source.close()
    assert isinstance(run, HandleRun) and run.values == ["Jack", "naval", "paul_g"]
    assert numbered(read_path(path)) == [
        ("Jack", 1),
        ("naval", 2),
        ("paul_g", 3),
    ]


def test_a_bare_number_keeps_its_block_off_the_fast_path(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\n12345\nnaval\n")
    kinds = [r.kind for r in read_path(path) if isinstance(r, Lead)]
    assert kinds == [U, Kind.PLATFORM_ID, U]


def test_a_line_that_shows_as_blank_or_as_a_comment_is_one() -> None:
    data = "jack\n\u200b\n\u200e# note\n\ufeff \u2060\n\uff20naval\n".encode()
    records = read_stdin(data)
    assert [(r.value, r.line) for r in records if isinstance(r, Lead)] == [
        ("jack", 1),
        ("naval", 5),
    ]
    assert not [r for r in records if isinstance(r, Rejection)]
