"""Each option is declared once, as a field: the command line, the job and the engine
read that one declaration."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from inboxleads import cli
from inboxleads.errors import UsageError
from inboxleads.inputs import Format, ReadOptions
from inboxleads.job import DEFAULT_BASE_URL, AddJob, Progress
from inboxleads.options import argument, build, declared, option
from inboxleads.sandbox.config import Faults, SandboxCommand, SandboxConfig


def cli_defaults() -> dict[str, Any]:
    """What the add command passes when only the campaign is given."""
    parameters = inspect.signature(cli.add).parameters
    given = {name: p.default for name, p in parameters.items() if p.default is not p.empty}
    return {**given, "campaign": "c1"}


def test_add_takes_every_option_the_job_declares_and_no_other() -> None:
    names = [o.name for o in declared(AddJob)]
    assert list(inspect.signature(cli.add).parameters) == names
    assert len(names) == len(set(names))  # a group's field never shadows the job's
    flags = [n for o in declared(AddJob) for n in o.flag.names]
    assert len(flags) == len(set(flags))


def test_nothing_given_builds_the_job_s_own_defaults() -> None:
    job = build(AddJob, cli_defaults(), lambda name: None)
    assert job == AddJob(campaign="c1")
    assert job.base_url == DEFAULT_BASE_URL and job.batch_size == 2000
    assert job.read == ReadOptions()


def test_an_unset_option_reads_its_variable() -> None:
    settings = {"INBOX_BASE_URL": "http://127.0.0.1:9/api/v1"}
    job = build(AddJob, cli_defaults(), settings.get)
    assert job.base_url == "http://127.0.0.1:9/api/v1"
    given = {**cli_defaults(), "base_url": "https://example.invalid/api"}
    assert build(AddJob, given, settings.get).base_url == "https://example.invalid/api"


def test_the_command_line_form_is_parsed_into_the_field_s_type() -> None:
    given = {
        **cli_defaults(),
        "columns": [" twitter , ,handle", "x"],
        "data_columns": ["Company"],
        "renames": ["Company=company-name", "a=b=c"],
        "fmt": Format.CSV,
    }
    job = build(AddJob, given, lambda name: None)
    assert job.read.columns == ("twitter", "handle", "x")
    assert job.read.data_columns == ("Company",)
    assert job.read.renames == (("Company", "company-name"), ("a=b", "c"))
    with pytest.raises(UsageError, match="--column names no column"):
        build(AddJob, {**given, "columns": [" , "]}, lambda name: None)
    with pytest.raises(UsageError, match="expected HEADER=KEY"):
        build(AddJob, {**given, "renames": ["nokey"]}, lambda name: None)


def test_quiet_means_no_progress_display_and_modes_are_checked() -> None:
    assert AddJob(campaign="c1", quiet=True, progress=Progress.JSONL).progress == Progress.NONE
    assert AddJob(campaign="c1", progress="plain").progress == Progress.PLAIN  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AddJob(campaign="c1", progress="loud")  # type: ignore[arg-type]


# --- a new option is one field: the mechanism on a job of its own ---------------------


@dataclass
class Group:
    colour: str = option("red", "--colour", help="A colour.")


@dataclass
class Toy:
    name: str = argument(metavar="NAME", help="A name.")
    count: int = option(3, "--count", "-n", help="How many.")
    tags: tuple[str, ...] = option(
        (), "--tag", help="Tags.", given_as=list[str] | None, parse=tuple
    )
    where: str | None = option(None, "--where", help="A place.", env="TOY_WHERE")
    group: Group = field(default_factory=Group)
    internal: float = 1.5


def toy_app(seen: list[Toy], environ: dict[str, str]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @cli._declared_by(Toy)
    def toy(**given: Any) -> None:
        seen.append(build(Toy, given, environ.get))

    @app.command()
    def other() -> None:  # two commands: the toy's name is then needed, as for add
        pass

    return app


def test_a_field_declared_with_option_is_a_flag_with_its_default_and_help() -> None:
    seen: list[Toy] = []
    app = toy_app(seen, {})
    runner = CliRunner()
    result = runner.invoke(app, ["toy", "--help"])
    assert result.exit_code == 0
    for text in ("NAME", "A name.", "--count", "-n", "How many.", "--tag", "--where"):
        assert text in result.output
    assert "--colour" in result.output and "A colour." in result.output
    assert "internal" not in result.output
    assert runner.invoke(app, ["toy", "x"]).exit_code == 0
    assert seen[-1] == Toy("x")
    args = ["toy", "y", "-n", "7", "--tag", "a", "--tag", "b", "--colour", "blue"]
    assert runner.invoke(app, args).exit_code == 0
    assert seen[-1] == Toy("y", 7, ("a", "b"), None, Group("blue"))
    assert runner.invoke(app, ["toy"]).exit_code == 2  # the argument is required


def test_a_variable_fills_an_option_that_was_not_given() -> None:
    seen: list[Toy] = []
    app = toy_app(seen, {"TOY_WHERE": "/tmp/here"})
    assert CliRunner().invoke(app, ["toy", "x"]).exit_code == 0
    assert seen[-1].where == "/tmp/here"
    assert CliRunner().invoke(app, ["toy", "x", "--where", "p"]).exit_code == 0
    assert seen[-1].where == "p"


def test_every_declared_option_has_help_text() -> None:
    for cls in (AddJob, ReadOptions):
        for found in declared(cls):
            assert found.flag.help.strip(), found.name
    fields = {f.name for f in dataclasses.fields(AddJob)}
    assert {"stop_grace_s", "also_read"} <= fields  # settings without a flag
    assert "stop_grace_s" not in {o.name for o in declared(AddJob)}


def test_sandbox_takes_what_its_command_declares_and_defaults_to_its_config() -> None:
    parameters = inspect.signature(cli.sandbox).parameters
    assert list(parameters) == [o.name for o in declared(SandboxCommand)]
    given = {name: p.default for name, p in parameters.items()}
    command = build(SandboxCommand, given, lambda name: None)
    assert command == SandboxCommand()
    assert command.config == SandboxConfig() and command.config.faults == Faults()


def test_text_options_must_be_utf8_but_file_names_need_not_be() -> None:
    parameters = inspect.signature(cli.sandbox).parameters
    given: dict[str, Any] = {name: p.default for name, p in parameters.items()}
    named = build(SandboxCommand, {**given, "campaign_file": Path("caf\udce9.json")}, dict().get)
    assert named.campaign_file == Path("caf\udce9.json")  # a POSIX name in Latin-1
    for name, value, flag in [
        ("campaign_name", "caf\udce9", "--campaign-name"),
        ("campaign_variables", ["k=v", "k2=caf\udce9"], "--campaign-variable"),
    ]:
        with pytest.raises(UsageError, match=f"^{flag} is not valid UTF-8"):
            build(SandboxCommand, {**given, name: value}, dict().get)
    job = build(AddJob, {**cli_defaults(), "inputs": ["caf\udce9.txt"]}, dict().get)
    assert job.inputs == ["caf\udce9.txt"]  # an argument: a file's name
    with pytest.raises(UsageError, match=r"^--column is not valid UTF-8"):
        build(AddJob, {**cli_defaults(), "columns": ["caf\udce9"]}, dict().get)
