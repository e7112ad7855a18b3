"""Input encodings: BOMs, UTF-16 and UTF-32, any Python codec, the cp1252 hint, binary files."""

from __future__ import annotations

import contextlib
import io
import os
import random
import threading
from pathlib import Path

import pytest

from inboxleads.errors import InputError
from inboxleads.identifiers import HandleRun, Kind, Lead
from inboxleads.inputs import (
    CHUNK_SIZE,
    SNIFF_BYTES,
    Chunk,
    ColumnsUsed,
    Format,
    Notice,
    ReadOptions,
    Rejection,
    check_head,
    open_inputs,
    read_chunks,
    read_records,
)

from .test_inputs import SlowPipe

U = Kind.USERNAME
P = Kind.PLATFORM_ID
HINT = "not UTF-8; it reads as Windows-1252 (an Excel export?): try --encoding cp1252"
Item = Lead | Rejection | Notice


def items(chunks: list[Chunk]) -> list[Item]:
    """Every lead, rejection and notice of the chunks, in order (which columns a
    table is read by is left out)."""
    out: list[Item] = []
    for chunk in chunks:
        for item in chunk:
            if not isinstance(item, ColumnsUsed):
                out.extend(item.leads() if isinstance(item, HandleRun) else [item])
    return out


def read_file(path: Path, options: ReadOptions | None = None) -> list[Item]:
    """Everything read from one file, opened as a run opens it (with its options)."""
    options = options or ReadOptions()
    [source] = open_inputs([str(path)], Format.AUTO, options=options)
    try:
        return items(list(read_chunks(source, options)))
    finally:
        source.close()


def read_stream(data: bytes, options: ReadOptions | None = None, step: int = 0) -> list[Item]:
    """Everything read from `data` on stdin; `step` > 0 delivers it that many bytes a read."""
    options = options or ReadOptions()
    stream = io.BufferedReader(SlowPipe(data, step)) if step else io.BytesIO(data)
    [source] = open_inputs(["-"], Format.AUTO, stdin=stream, options=options)
    return items(list(read_chunks(source, options)))


def read_pipe(data: bytes, options: ReadOptions | None = None) -> list[Item]:
    """Everything read from `data` written to a real pipe: its head is checked as it arrives."""
    options = options or ReadOptions()
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=_write_all, args=(write_fd, data))
    writer.start()
    try:
        with os.fdopen(read_fd, "rb") as stdin:
            [source] = open_inputs(["-"], Format.AUTO, stdin=stdin, options=options)
            try:
                return items(list(read_chunks(source, options)))
            finally:
                source.close()
    finally:
        writer.join()


def _write_all(fd: int, data: bytes) -> None:
    # The reader may refuse the input before its end.
    with os.fdopen(fd, "wb") as out, contextlib.suppress(BrokenPipeError):
        out.write(data)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def values(records: list[Item]) -> list[tuple[str, int]]:
    """(value, line) of every lead."""
    return [(r.value, r.line) for r in records if isinstance(r, Lead)]


def rejected(records: list[Item]) -> list[tuple[int, str]]:
    """(line, reason) of every rejection."""
    return [(r.line, r.reason) for r in records if isinstance(r, Rejection)]


def notices(records: list[Item]) -> list[Notice]:
    return [r for r in records if isinstance(r, Notice)]


CSV_TEXT = "username,name\r\njack,Jérôme Müller\r\nbiz,Ünal Çelik\r\n"
CSV_DATA = [{"name": "Jérôme Müller"}, {"name": "Ünal Çelik"}]


def data_of(records: list[Item]) -> list[dict[str, str] | None]:
    return [r.data for r in records if isinstance(r, Lead)]


# --- BOMs decide by themselves ----------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_with_a_bom_are_read_without_an_encoding(
    tmp_path: Path, codec: str
) -> None:
    path = write(tmp_path, "export.csv", ("\ufeff" + CSV_TEXT).encode(codec))
    records = read_file(path)
    assert values(records) == [("jack", 2), ("biz", 3)]
    assert data_of(records) == CSV_DATA
    assert not notices(records)


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-8"])
def test_a_utf16_bom_wins_over_the_encoding_given(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path, "export.csv", CSV_TEXT.encode("utf-16"))
    records = read_file(path, ReadOptions(encoding=encoding))
    assert data_of(records) == CSV_DATA


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_a_utf8_bom_wins_over_the_encoding_given(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path, "export.csv", b"\xef\xbb\xbf" + CSV_TEXT.encode())
    records = read_file(path, ReadOptions(encoding=encoding))
    assert data_of(records) == CSV_DATA


def test_utf16_bom_and_text_delivered_a_byte_at_a_time_are_read() -> None:
    data = "\ufeffjack\r\nbiz\r\n".encode("utf-16-le")
    assert values(read_stream(data, step=1)) == [("jack", 1), ("biz", 2)]


def test_utf16_on_a_real_pipe_is_read() -> None:
    records = read_pipe(("\ufeff" + CSV_TEXT).encode("utf-16-be"))
    assert values(records) == [("jack", 2), ("biz", 3)]


def test_utf16_plain_list_keeps_the_fast_path_and_line_numbers(tmp_path: Path) -> None:
    names = [f"user{i:05d}" for i in range(30_000)]  # 600 KB in UTF-16: several reads
    path = write(tmp_path, "leads.txt", "\n".join(names).encode("utf-16"))
    [source] = open_inputs([str(path)], Format.AUTO)
    try:
        chunks = list(read_chunks(source, ReadOptions()))
    finally:
        source.close()
    assert all(isinstance(item, HandleRun) for chunk in chunks for item in chunk)
    assert values(items(chunks)) == [(n, i) for i, n in enumerate(names, 1)]


# --- UTF-16 without a BOM -----------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_recognised_and_read(tmp_path: Path, codec: str) -> None:
    path = write(tmp_path, "export.txt", "jack\r\nnaval\r\n44196397\r\n".encode(codec))
    records = read_file(path)
    assert [(r.kind, r.value, r.line) for r in records if isinstance(r, Lead)] == [
        (U, "jack", 1),
        (U, "naval", 2),
        (P, "44196397", 3),
    ]
    assert not rejected(records)


def test_utf16_without_a_bom_on_a_slow_pipe_is_recognised() -> None:
    data = "jack\nnaval\n".encode("utf-16-le")
    assert values(read_stream(data, step=1)) == [("jack", 1), ("naval", 2)]


@pytest.mark.parametrize(
    ("encoding", "codec"),
    [
        ("utf-16", "utf-16-le"),
        ("utf-16", "utf-16-be"),
        ("utf-16-be", "utf-16-be"),
        ("utf-32", "utf-32-le"),
        ("utf-32", "utf-32-be"),
        ("UTF_32LE", "utf-32-le"),
    ],
)
def test_wide_encoding_given_for_an_input_without_a_bom_is_not_refused_as_binary(
    tmp_path: Path, encoding: str, codec: str
) -> None:
    path = write(tmp_path, "export.csv", CSV_TEXT.encode(codec))
    records = read_file(path, ReadOptions(encoding=encoding))
    assert values(records) == [("jack", 2), ("biz", 3)]
    assert data_of(records) == CSV_DATA


def test_utf32_without_a_bom_or_an_encoding_is_refused_as_binary(tmp_path: Path) -> None:
    path = write(tmp_path, "export.txt", "jack\nnaval\n".encode("utf-32-le"))
    with pytest.raises(InputError, match="looks like a binary file"):
        open_inputs([str(path)], Format.AUTO)


def test_utf16_without_a_bom_and_another_encoding_given_is_refused_with_a_hint(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "export.txt", "jack\nnaval\n".encode("utf-16-le"))
    with pytest.raises(InputError, match="is UTF-16 text, not cp1252: leave out --encoding"):
        open_inputs([str(path)], Format.AUTO, options=ReadOptions(encoding="cp1252"))


# --- any Python codec ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "mac_roman", "cp850", "utf-16"])
def test_csv_in_the_encoding_given_reads_its_data_as_unicode(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path, "export.csv", CSV_TEXT.encode(encoding))
    records = read_file(path, ReadOptions(encoding=encoding))
    assert values(records) == [("jack", 2), ("biz", 3)]
    assert data_of(records) == CSV_DATA
    assert not rejected(records) and not notices(records)


def test_encoding_utf8_given_is_the_default_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\ncaf\xe9\n")
    records = read_file(path, ReadOptions(encoding="UTF8"))
    assert rejected(records) == [(2, "not valid UTF-8")]
    assert [n.text for n in notices(records)] == [HINT]


def test_line_that_the_codec_cannot_decode_is_one_rejection_naming_the_codec(
    tmp_path: Path,
) -> None:
    # 0x81 is undefined in cp1252.
    path = write(tmp_path, "export.csv", b"username,name\njack,Jos\xe9\nbiz,B\x81\nev,\xfc\n")
    records = read_file(path, ReadOptions(encoding="cp1252"))
    assert [(r.value, r.line, r.data) for r in records if isinstance(r, Lead)] == [
        ("jack", 2, {"name": "José"}),
        ("ev", 4, {"name": "ü"}),
    ]
    [bad] = [r for r in records if isinstance(r, Rejection)]
    assert (bad.line, bad.text, bad.reason) == (3, "biz,B\ufffd", "not valid cp1252")


def test_undecodable_line_in_a_plain_list_names_the_codec_as_given() -> None:
    records = read_stream(b"jack\nb\x81z\nnaval\n", ReadOptions(encoding="Windows-1252"))
    assert values(records) == [("jack", 1), ("naval", 3)]
    assert rejected(records) == [(2, "not valid Windows-1252")]


def test_lone_surrogate_in_utf16_rejects_only_its_line() -> None:
    data = b"\xff\xfe" + "jack\n".encode("utf-16-le") + b"\x00\xd8b\x00\n\x00"
    data += "naval\n".encode("utf-16-le")
    records = read_stream(data)
    assert values(records) == [("jack", 1), ("naval", 3)]
    assert rejected(records) == [(2, "not valid UTF-16")]


def test_utf16_cut_in_the_middle_of_its_last_character_rejects_the_last_line() -> None:
    data = "\ufeffjack\nnaval".encode("utf-16-le")[:-1]
    records = read_stream(data)
    assert values(records) == [("jack", 1)]
    assert rejected(records) == [(2, "not valid UTF-16")]


@pytest.mark.parametrize("step", [1, 3, 7])
def test_characters_split_between_reads_are_decoded_whole(step: int) -> None:
    text = "username,名前\nyamada,山田太郎\nsato,佐藤\n"
    records = read_stream(text.encode("shift_jis"), ReadOptions(encoding="shift_jis"), step)
    assert [(r.value, r.data) for r in records if isinstance(r, Lead)] == [
        ("yamada", {"名前": "山田太郎"}),
        ("sato", {"名前": "佐藤"}),
    ]


def test_large_cp1252_file_keeps_its_line_numbers_across_reads(tmp_path: Path) -> None:
    rows = [f"user{i:06d},Jérôme {i}" for i in range(CHUNK_SIZE // 10)]
    path = write(tmp_path, "big.csv", ("username,name\n" + "\n".join(rows)).encode("cp1252"))
    records = read_file(path, ReadOptions(encoding="cp1252"))
    assert not rejected(records)
    assert len(records) == len(rows)
    last = records[-1]
    assert isinstance(last, Lead)
    assert (last.line, last.data) == (len(rows) + 1, {"name": f"Jérôme {len(rows) - 1}"})


def test_cr_only_file_in_cp1252_is_read_as_lines() -> None:
    data = "username;name\rjack;José\rbiz;Müller\r".encode("cp1252")
    records = read_stream(data, ReadOptions(encoding="cp1252"))
    assert data_of(records) == [{"name": "José"}, {"name": "Müller"}]


def test_sep_line_in_utf16_sets_the_delimiter() -> None:
    data = "sep=;\r\nusername;name\r\njack;Jérôme\r\n".encode("utf-16")
    records = read_stream(data)
    assert [(r.value, r.line, r.data) for r in records if isinstance(r, Lead)] == [
        ("jack", 3, {"name": "Jérôme"})
    ]


# --- the cp1252 hint ----------------------------------------------------------------------

EXCEL_ROWS = "Twitter,Name,Company\r\njack,Jack Dorsey,Block\r\n@biz,José Müller,Ünited\r\n"
EXCEL_ROWS += "naval,Naval,AngelList\r\nsama,Zoë Brontë,OpenAI\r\n"


def test_cp1252_csv_without_the_option_rejects_accented_rows_with_one_notice(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "export.csv", EXCEL_ROWS.encode("cp1252"))
    records = read_file(path)
    assert values(records) == [("jack", 2), ("naval", 4)]
    assert rejected(records) == [(3, "not valid UTF-8"), (5, "not valid UTF-8")]
    assert notices(records) == [Notice(str(path), 3, HINT)]


def test_cp1252_csv_with_the_option_reads_every_row_as_unicode(tmp_path: Path) -> None:
    path = write(tmp_path, "export.csv", EXCEL_ROWS.encode("cp1252"))
    records = read_file(path, ReadOptions(encoding="cp1252"))
    assert [(r.value, r.line, r.data) for r in records if isinstance(r, Lead)] == [
        ("jack", 2, {"Name": "Jack Dorsey", "Company": "Block"}),
        ("biz", 3, {"Name": "José Müller", "Company": "Ünited"}),
        ("naval", 4, {"Name": "Naval", "Company": "AngelList"}),
        ("sama", 5, {"Name": "Zoë Brontë", "Company": "OpenAI"}),
    ]
    assert not rejected(records) and not notices(records)


def test_the_notice_comes_just_before_the_rejection_of_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\nJos\xe9\nbiz\nM\xfcller\n")
    records = read_file(path)
    assert [(type(r).__name__, r.line) for r in records] == [
        ("Lead", 1),
        ("Notice", 2),
        ("Rejection", 2),
        ("Lead", 3),
        ("Rejection", 4),
    ]


def test_notices_are_not_records(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.jsonl", b'{"username": "jack"}\n{"username": "b\xe9"}\n')
    [source] = open_inputs([str(path)], Format.AUTO)
    try:
        records = list(read_records(source, ReadOptions()))
    finally:
        source.close()
    assert [type(r).__name__ for r in records] == ["Lead", "Rejection"]


def test_the_hint_is_given_at_the_first_line_that_reads_as_cp1252() -> None:
    # 0x81 is not cp1252, and a run of Cyrillic (cp1251) letters is not Western text.
    data = b"jack\nb\x81z\n\xc8\xe2\xe0\xed\nnaval\nJos\xe9\n"
    records = read_stream(data)
    assert [(n.line, n.text) for n in notices(records)] == [(5, HINT)]
    assert [line for line, _ in rejected(records)] == [2, 3, 5]


def test_no_hint_for_cyrillic_text_in_its_own_code_page() -> None:
    records = read_stream("username,name\nivan,Иван Петров\n".encode("cp1251"))
    assert rejected(records) == [(2, "not valid UTF-8")]
    assert not notices(records)


def test_no_hint_when_the_input_is_read_in_another_encoding() -> None:
    records = read_stream(b"jack\nb\x81z\n", ReadOptions(encoding="cp1252"))
    assert rejected(records) == [(2, "not valid cp1252")]
    assert not notices(records)


def test_a_header_that_is_not_utf8_stops_the_input_with_the_hint(tmp_path: Path) -> None:
    # Read without it, the first row would name the columns (and its values be
    # taken for identifier column names).
    path = write(tmp_path, "export.csv", "Prénom;Twitter\r\nJack;@jack\r\n".encode("cp1252"))
    with pytest.raises(InputError) as info:
        read_file(path)
    assert "unreadable header line (not valid UTF-8)" in info.value.message
    assert info.value.message.endswith(f"(line 1: {HINT})")


def test_a_json_array_that_is_not_utf8_says_try_cp1252(tmp_path: Path) -> None:
    path = write(
        tmp_path, "leads.json", '[{"username": "jack", "data": {"n": "Jé"}}]'.encode("cp1252")
    )
    with pytest.raises(InputError, match="try --encoding cp1252"):
        read_file(path)


# --- binary files ---------------------------------------------------------------------------


def _random(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x00\xc8\x08\x06\x00\x00\x00"
ZIP = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00b\xee\x9dh^\x01\x00\x00\x90\x04\x00\x00"
XLSX = ZIP + b"\x13\x00\x08\x02[Content_Types].xml" + _random(300) + b"PK\x03\x04xl/workbook.xml"
XLS = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16 + b">\x00\x03\x00\xfe\xff\t\x00"
GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("logo.png", PNG + _random(400)),
        ("leads.zip", ZIP + _random(400)),
        ("leads.csv.gz", GZIP + _random(400)),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + _random(300)),
        ("leads.txt", b"jack\n\x00\x01\x02\x03\x04\x05\x06\n" + b"\x00\x07" * 20),
        ("data.bin", bytes(range(256)) * 4),
    ],
)
def test_binary_files_are_refused(tmp_path: Path, name: str, data: bytes) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(InputError) as info:
        open_inputs([str(path)], Format.AUTO)
    assert info.value.message == f"{path}: looks like a binary file"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("leads.xlsx", XLSX),
        ("leads.xls", XLS + _random(400)),
        ("leads.ods", ZIP + b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet"),
        ("leads.numbers", ZIP + _random(400)),
        ("renamed.csv", XLSX),  # an .xlsx under another name: its entries give it away
    ],
)
def test_a_spreadsheet_is_refused_with_a_hint_to_export_it_as_csv(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(InputError) as info:
        open_inputs([str(path)], Format.AUTO)
    assert info.value.message == (
        f"{path}: looks like a binary file (a spreadsheet: export it as CSV)"
    )


def test_binary_data_on_a_real_pipe_is_refused_as_it_arrives() -> None:
    with pytest.raises(InputError, match="<stdin>: looks like a binary file"):
        read_pipe(PNG + _random(4000))


def test_binary_data_is_refused_even_with_a_wide_encoding_given(tmp_path: Path) -> None:
    path = write(tmp_path, "logo.png", PNG + _random(400))
    with pytest.raises(InputError, match="binary"):
        open_inputs([str(path)], Format.AUTO, options=ReadOptions(encoding="utf-16"))


def test_one_corrupted_line_with_a_nul_near_the_start_is_one_rejection(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.txt", b"jack\nnaval\nbi\x00\x00z\nsama\npaulg\n")
    records = read_file(path)
    assert values(records) == [("jack", 1), ("naval", 2), ("sama", 4), ("paulg", 5)]
    assert rejected(records) == [(3, "contains NUL bytes")]


def test_one_corrupted_line_with_a_nul_on_a_pipe_is_one_rejection() -> None:
    records = read_pipe(b"jack\nbi\x00z\nnaval\n")
    assert values(records) == [("jack", 1), ("naval", 3)]
    assert rejected(records) == [(2, "contains NUL bytes")]


def test_csv_with_a_nul_in_a_cell_rejects_that_row_only(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", b"username,name\njack,J\x00\nbiz,B\n")
    records = read_file(path)
    assert values(records) == [("biz", 3)]
    assert rejected(records) == [(2, "contains NUL bytes")]


@pytest.mark.parametrize(
    ("controls", "refused"),
    [
        (b"\x00" * 10, False),  # 10%: text with a bad run, not yet binary
        (b"\x00" * 11, True),  # more than 10%
        (b"\x00" + b"\x01" * 10, True),  # NUL and other control bytes count together
        (b"\x1f" * 30, False),  # no NUL: control characters may be data
        (b"\x1b[1m\x1b[0m" * 4 + b"\x00", False),  # ESC (terminal colours) is text
        (b"\t\n\r\x0b\x0c" * 6 + b"\x00", False),  # and so is white space
    ],
)
def test_a_head_is_binary_by_its_share_of_nul_and_control_bytes(
    controls: bytes, refused: bool
) -> None:
    head = controls + b"a" * (100 - len(controls))
    if refused:
        with pytest.raises(InputError, match="looks like a binary file"):
            check_head("x.txt", head)
    else:
        check_head("x.txt", head)


def test_only_the_first_sniff_bytes_decide() -> None:
    check_head("x.txt", b"a" * SNIFF_BYTES + b"\x00" * SNIFF_BYTES)


@pytest.mark.parametrize(
    ("codec", "encoding"),
    [("utf-16-le", "utf-16"), ("utf-32-le", "utf-32"), ("utf-32-be", "utf-32-be")],
)
def test_nuls_of_a_wide_encoding_given_are_not_binary(codec: str, encoding: str) -> None:
    check_head("x.txt", "jack\nnaval\n".encode(codec), encoding)
