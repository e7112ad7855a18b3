"""The command line in-process, through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inboxleads import __version__
from inboxleads.cli import app

from .conftest import SECRET, write_lines

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("INBOX_API_TOKEN", "INBOX_BASE_URL", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"inboxleads {__version__}"


def test_sandbox_run_prints_the_json_summary_last(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", ["@jack", "x.com/naval", "44196397", "gone_x", "??"])
    result = runner.invoke(app, ["add", "cli1", str(path), "--sandbox", "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["added"], summary["failed"], summary["rejected"]) == (3, 1, 1)
    assert summary["read"] == summary["rejected"] + summary["duplicates"] + summary["unique"]
    assert summary["unique"] == summary["delivered"] + summary["undelivered"] + summary["resumed"]


def test_piped_stdin_is_read_without_an_input_argument() -> None:
    result = runner.invoke(app, ["add", "cli2", "--sandbox", "--json", "-q"], input="jack\n")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["delivered"] == 1


def test_dry_run_needs_no_token_and_reports_batches(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(25)])
    result = runner.invoke(app, ["add", "cli3", str(path), "--dry-run", "--batch-size", "10"])
    assert result.exit_code == 0, result.output
    assert "dry run: nothing sent (25 unique identifiers in 3 batches)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "UPPER", "x.txt"], "campaign id"),
        (["add", "ok1", "x.txt", "--batch-size", "2001"], "batch-size"),
        (["add", "ok1", "x.txt", "--concurrency", "0"], "concurrency"),
        (["add", "ok1", "missing.txt", "--dry-run"], "no such file"),
        (["add", "ok1", "x.txt"], "no API token"),
        (["add", "ok1", "x.txt", "--token", SECRET, "--base-url", "http://10.0.0.1"], "loopback"),
        (["add", "ok1", "x.txt", "--journal", "j", "--resume"], "--resume"),
        (["add", "ok1", "-", "-"], "stdin"),
    ],
)
def test_usage_errors_exit_2_with_a_message(args: list[str], message: str, tmp_path: Path) -> None:
    write_lines(tmp_path / "x.txt", ["jack"])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert SECRET not in result.output


def test_token_on_the_command_line_is_used_but_never_printed(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    # Nothing listens on port 9 of loopback: the batch is undelivered after one attempt.
    result = runner.invoke(
        app,
        [
            "add",
            "cli4",
            str(path),
            "--token",
            SECRET,
            "--base-url",
            "http://127.0.0.1:9/api/v1",
            "--max-attempts",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 1
    assert SECRET not in result.output


def test_a_dotenv_that_is_not_utf8_is_a_usage_error_with_the_summary(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    (tmp_path / ".env").write_bytes(b"# notes\nINBOX_API_TOKEN=caf\xe9\n")
    result = runner.invoke(app, ["add", "cli5", str(path), "--json", "-q"])
    assert result.exit_code == 2, result.output
    assert ".env:2: not UTF-8" in result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["exit_code"], summary["read"], summary["requests"]) == (2, 0, 0)


def test_a_dotenv_or_token_file_with_a_bom_is_read(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    (tmp_path / ".env").write_bytes(b"\xef\xbb\xbfINBOX_BASE_URL=http://127.0.0.1:9/api/v1\n")
    (tmp_path / "token.txt").write_bytes(b"\xef\xbb\xbf" + SECRET.encode() + b"\n")
    # Port 9 of loopback refuses: the token and the URL were read, the batch is undelivered.
    args = ["add", "cli6", str(path), "--token-file", "token.txt", "--max-attempts", "1"]
    result = runner.invoke(app, [*args, "--json", "-q"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["undelivered"] == 1


@pytest.mark.posix  # a fifo, /dev/null and /dev/stdout
@pytest.mark.parametrize(
    "option", ["--undelivered", "--rejects", "--explain-failures", "--journal"]
)
@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/dev/null", "/dev/null: is a device"),
        ("/dev/stdout", "/dev/stdout: is a device"),
        (".", "is a folder"),
        ("", "is a folder"),
        ("fifo", "fifo: is a pipe"),
        ("nowhere/x.txt", "the folder nowhere does not exist"),
    ],
)
def test_an_output_that_is_not_a_file_is_refused_before_sending(
    tmp_path: Path, option: str, target: str, message: str
) -> None:
    import os

    if target.startswith("/dev/") and not Path(target).exists():
        pytest.skip(f"no {target} here")
    os.mkfifo(tmp_path / "fifo")  # opening it to write would wait for a reader for good
    path = write_lines(tmp_path / "a.txt", ["jack", "naval"])
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["add", "cli7", str(path), "--sandbox", option, target, "--json"])
    assert result.exit_code == 2, result.output
    assert option in result.output and message in result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["exit_code"], summary["requests"], summary["delivered"]) == (2, 0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no lock, no .part


@pytest.mark.parametrize(
    ("token", "said"),
    [
        ("abc\u2019", "position 4 (of 4) is U+2019 RIGHT SINGLE QUOTATION MARK"),
        ("a\tb", "position 2 (of 3) is U+0009 a control character"),
        ("ab\udcff", "position 3 (of 3) is U+DCFF a stray byte that is not UTF-8"),
        ("a b", "position 2 (of 3) is U+0020 SPACE"),
    ],
)
def test_a_token_that_cannot_be_a_header_is_described_never_shown(token: str, said: str) -> None:
    from inboxleads.errors import UsageError
    from inboxleads.runner import check_token

    with pytest.raises(UsageError) as caught:
        check_token(token)
    assert said in caught.value.message
    assert token not in caught.value.message


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--timeout", "nan", "--timeout must be a positive number of seconds"),
        ("--flush-after", "0", "--flush-after must be a positive number of seconds"),
        ("--flush-after", "nan", "--flush-after must be a positive number of seconds"),
        ("--log-interval", "nan", "--log-interval must be a positive number of seconds"),
        ("--max-time", "inf", "--max-time must be a positive number of seconds"),
        ("--explain-budget", "-1", "--explain-budget must be at least 1"),
        ("--base-url", "http://127.0.0.1:99999/api/v1", "the port must be 1-65535"),
        ("--base-url", "http://127.0.0.1:0/api/v1", "the port must be 1-65535"),
    ],
)
def test_option_values_that_cannot_work_are_usage_errors(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    result = runner.invoke(app, ["add", "cli8", str(path), "--token", SECRET, option, value])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.posix  # a fifo
def test_a_pipe_as_a_report_is_refused_and_a_users_part_file_is_left_alone(
    tmp_path: Path,
) -> None:
    import os

    path = write_lines(tmp_path / "a.txt", ["jack", "naval"])
    os.mkfifo(tmp_path / "fifo")
    result = runner.invoke(app, ["add", "cli9", str(path), "--sandbox", "--undelivered", "fifo"])
    assert result.exit_code == 2 and "fifo: is a pipe, not a file" in result.output
    (tmp_path / "left.txt.part").write_text("my notes\n", encoding="utf-8")
    result = runner.invoke(
        app, ["add", "cli9", str(path), "--sandbox", "--undelivered", "left.txt"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "left.txt.part").read_text(encoding="utf-8") == "my notes\n"
    assert (tmp_path / "left.txt").read_text(encoding="utf-8") == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.txt",
        "fifo",
        "left.txt",
        "left.txt.part",
    ]


# --- what a first user found after the options were declared once ---------------------


def test_an_empty_base_url_falls_back_to_the_variable_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--base-url "$URL"` with URL unset: as if it were not given."""
    path = write_lines(tmp_path / "a.txt", ["jack"])
    # Port 9 of loopback refuses: a batch undelivered (exit 1) means the URL was used.
    monkeypatch.setenv("INBOX_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("INBOX_API_TOKEN", SECRET)
    args = ["add", "cli7", str(path), "--base-url", "", "--max-attempts", "1", "--json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["undelivered"] == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--base-url", "http://127.0.0.1:9/\udcff"], "--base-url"),
        (["--encoding", "\udcff"], "--encoding"),
        (["--token", "s3cr3t\udcff"], "--token"),
    ],
)
def test_text_that_is_not_utf8_is_a_usage_error_naming_the_option(
    tmp_path: Path, args: list[str], named: str
) -> None:
    """Bytes of another encoding on the command line reach Python as lone surrogates."""
    path = write_lines(tmp_path / "a.txt", ["jack"])
    result = runner.invoke(app, ["add", "cli8", str(path), *args, "--json", "-q"])
    assert result.exit_code == 2, result.output
    assert f"{named} is not valid UTF-8" in result.output
    assert "s3cr3t" not in result.output  # a token is never shown
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["exit_code"], summary["requests"]) == (2, 0)


def test_a_base_url_variable_that_is_not_utf8_is_a_usage_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    monkeypatch.setenv("INBOX_BASE_URL", "http://127.0.0.1:9/\udcff")
    monkeypatch.setenv("INBOX_API_TOKEN", SECRET)
    result = runner.invoke(app, ["add", "cli9", str(path), "-q"])
    assert result.exit_code == 2, result.output
    assert "INBOX_BASE_URL is not valid UTF-8" in result.output


@pytest.mark.parametrize("where", ["token-file", ".env"])
def test_the_file_that_holds_the_token_is_never_read_as_leads(tmp_path: Path, where: str) -> None:
    """`add c *.txt --token-file token.txt` would send the token as a lead."""
    if where == ".env":
        secret = tmp_path / ".env"
        secret.write_text(f"INBOX_API_TOKEN={SECRET}\n", encoding="utf-8")
        extra = ["--sandbox"]
    else:
        secret = write_lines(tmp_path / "token.txt", ["sandboxtoken"])
        extra = ["--token-file", str(secret), "--sandbox"]
    leads = write_lines(tmp_path / "a.txt", ["jack"])
    result = runner.invoke(
        app, ["add", "cli10", str(leads), str(secret), *extra, "--rejects", "r.csv", "--json"]
    )
    assert result.exit_code == 2, result.output
    assert "which this run reads for its token or settings" in result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["requests"] == 0
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("progress", ["jsonl", "plain"])
def test_dotenv_lines_that_cannot_be_parsed_are_one_warning_of_the_run(
    tmp_path: Path, progress: str
) -> None:
    (tmp_path / ".env").write_text("garbage line\n=====\nX=1\n", encoding="utf-8")
    path = write_lines(tmp_path / "a.txt", ["jack"])
    result = runner.invoke(app, ["add", "cli11", str(path), "--sandbox", "--progress", progress])
    assert result.exit_code == 0, result.output
    assert "python-dotenv" not in result.output
    lines = [line for line in result.stderr.splitlines() if ".env:1" in line]
    assert len(lines) == 1 and "not a NAME=value line; ignored (and 1 more)" in lines[0]
    if progress == "jsonl":
        assert all(json.loads(line) for line in result.stderr.splitlines())
    quiet = runner.invoke(app, ["add", "cli11", str(path), "--sandbox", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_repeated_column_option_adds_to_the_list_as_a_comma_would(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("name,twitter,City,Note\nJack,jack,Paris,a\nBiz,,Rome,b\n", encoding="utf-8")
    args = ["add", "cli12", str(path), "--dry-run", "--json", "-q"]
    repeated = ["--column", "twitter", "--column", "name", "--data-columns", "City"]
    result = runner.invoke(app, [*args, *repeated, "--data-columns", "Note"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["columns"]["identifier"] == ["twitter", "name"]
    assert summary["columns"]["data"] == {"City": "City", "Note": "Note"}
    assert summary["unique"] == 2
