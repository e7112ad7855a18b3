"""The command line: parse options, hand over to `runner`/`sandbox`, map errors to exit codes.

`main` is the one place where an exception becomes a message and an exit
status; nothing below it prints an error or calls `sys.exit`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import io
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import MISSING
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec

import typer

from . import __version__, stops
from .errors import Bug, ExitStatus, InboxLeadsError, Interrupted, UsageError
from .job import BASE_URL_ENV, STATE_DIR_ENV, TOKEN_ENV, AddJob, Progress
from .options import build, declared
from .sandbox.config import SandboxCommand

P = ParamSpec("P")
APP_NAME = "inboxleads"


app = typer.Typer(
    name="inboxleads",
    help="Bulk-load leads into Inbox (inboxapp.com) campaigns through the Add leads API.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: the rich formatter costs a tenth of a second at every start.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"inboxleads {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Bulk-load leads into Inbox (inboxapp.com) campaigns through the Add leads API.

    Start with `inboxleads add --help`; try it without an account with
    `inboxleads add abc123 samples/handles.txt --sandbox`.
    """


def _reports_errors(command: Callable[P, None]) -> Callable[P, None]:
    """The one place where our errors become a message on stderr and an exit status."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except InboxLeadsError as exc:
            # With --progress jsonl every line on stderr is an event, errors too.
            as_event = kwargs.get("progress") == Progress.JSONL and not kwargs.get("quiet")
            _print_error(exc.message, int(exc.exit_status) if as_event else None)
            _print_trace(exc)
            raise typer.Exit(int(exc.exit_status)) from None

    return wrapper


ADD_EPILOG = """\
Examples:

  inboxleads add c0ffee42 leads.txt

  cat ids.txt | inboxleads add c0ffee42 --as platform-id

  inboxleads add c0ffee42 export.csv --column twitter --dry-run

  inboxleads add c0ffee42 leads.csv --resume --undelivered left.csv --json

  inboxleads add c0ffee42 samples/handles.txt --sandbox

Exit codes: 0 all delivered, 1 some undelivered, 2 usage or input error,
3 refused by the API (token, campaign), 4 another run holds the lock,
130/143/129 stopped by Ctrl-C, SIGTERM or a hang-up.
"""


def _declared_by(cls: type[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the parameters that `cls` declares (see `options`): Typer reads
    them from the signature, so each option is written once, as a field of `cls`."""
    parameters = []
    for option in declared(cls):
        flag = option.flag
        make = typer.Argument if flag.argument else typer.Option
        info = make(
            *flag.names,
            help=flag.help,
            metavar=flag.metavar,
            show_default=flag.show_default,
        )
        default = None if flag.optional else option.default
        parameters.append(
            inspect.Parameter(
                option.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if default is MISSING else default,
                annotation=Annotated[option.given_type, info],
            )
        )

    def declare(command: Callable[..., None]) -> Callable[..., None]:
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        return command

    return declare


@app.command(epilog=ADD_EPILOG)
@_reports_errors
@_declared_by(AddJob)
def add(**given: Any) -> None:
    """Add leads from files or stdin to CAMPAIGN_ID.

    Values are read one a line (or from CSV/TSV/JSONL rows), normalised,
    validated and de-duplicated, then sent in batches of up to 2000 with a
    live table of added / skipped / failed. Rejected values are reported with
    their file and line and never stop the run.

    Stopping: the first Ctrl-C, SIGTERM or SIGHUP sends nothing new and gives
    requests in flight 10 s; a second one abandons them. Either way the summary
    is printed and --undelivered lists what was not delivered (exit 130/143/129).
    """
    from .runner import Environment, end_before_start, run_add

    env = Environment(no_color=bool(os.environ.get("NO_COLOR")), watchdog=True)
    try:
        paths = _input_paths(given["inputs"])
        dotenv, unread = _dotenv()
        job = build(AddJob, {**given, "inputs": paths}, lambda name: _setting(name, dotenv))
        job.token = _resolve_token(
            job.token, job.token_file, dotenv, stdin_used="-" in paths, max_time=job.max_time_s
        )
        if job.resume:
            if job.journal is not None:
                raise UsageError("--resume and --journal name the journal twice: use one")
            job.journal = default_journal(job.campaign, paths)
        job.also_read = tuple(
            p for p in (job.token_file, Path.cwd() / ".env") if p is not None and p.exists()
        )
    except Exception as exc:
        # `--json | jq` always gets its object, usage errors and stops included.
        error = exc if isinstance(exc, InboxLeadsError) else Bug.of(exc)
        stub = AddJob(
            campaign=given["campaign"],
            dry_run=given["dry_run"],
            progress=given["progress"],
            quiet=given["quiet"],
            json_summary=given["json_summary"],
        )
        end_before_start(stub, env, error)
        raise error from None
    if unread and not job.quiet:
        more = f" (and {len(unread) - 1} more)" if len(unread) > 1 else ""
        _warn(
            f"{unread[0]}: not a NAME=value line; ignored{more}",
            as_event=job.progress == Progress.JSONL,
        )
    token = given["token"]
    if token is not None and token != "-" and not job.quiet:
        # Whatever stderr is: a cron log is where a leaked token is found later.
        _warn(
            "a token on the command line shows in `ps` and shell history; prefer "
            f"${TOKEN_ENV}, .env or --token-file",
            as_event=job.progress == Progress.JSONL,
        )
    result = run_add(job, env)
    if result.error is not None:
        # The process ends with the status the summary reports (a stop while waiting
        # for the lock is 143 for SIGTERM, 1 for --max-time), whatever the error's own.
        result.error.exit_status = result.status
        raise result.error
    raise typer.Exit(int(result.status))


def _check_stdin_is_input() -> None:
    """With no INPUT, stdin is read when it is a pipe or a file; a terminal (nothing
    was piped) or a device such as /dev/null (cron) is a usage error, not an empty run."""
    why = "stdin is closed"
    if sys.stdin is not None:
        try:
            fd = sys.stdin.fileno()
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError, io.UnsupportedOperation):
            return  # not a real descriptor (embedded use): read what it gives
        if stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode):
            return
        why = "stdin is a terminal" if os.isatty(fd) else "stdin is not a pipe or a file"
    raise UsageError(
        f"no input: {why}; name a file (or - for stdin), or pipe values in (see --help)"
    )


def _input_paths(given: list[str] | None) -> list[str]:
    """The inputs named, or stdin when none is (and it can be read)."""
    paths = list(given or [])
    if not paths:
        _check_stdin_is_input()
        paths = ["-"]
    if sum(1 for p in paths if p == "-") > 1:
        raise UsageError("stdin (-) can be read only once")
    if "-" in paths and 0 in stops.closed_at_start:
        raise UsageError("stdin (-) is closed: name a file, or pipe values in")
    return paths


def _setting(name: str, dotenv: dict[str, str]) -> str | None:
    """A setting's environment variable, then its line in .env (empty: not set)."""
    return os.environ.get(name) or dotenv.get(name) or None


def _warn(text: str, as_event: bool) -> None:
    """A warning line on stderr (a JSON `note` event in jsonl mode)."""
    if as_event:
        line = json.dumps({"event": "note", "text": f"warning: {text}"})
    else:
        line = f"inboxleads: warning: {text}"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _dotenv() -> tuple[dict[str, str], list[str]]:
    """Values from ./.env, without touching the process environment, and the lines
    (as "path:line") that could not be parsed."""
    path = Path.cwd() / ".env"
    if not path.is_file():
        return {}, []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text; save .env as UTF-8") from None
    import logging

    from dotenv import dotenv_values

    # python-dotenv logs a line it cannot parse straight to stderr, outside --progress
    # jsonl and --quiet: the lines are kept, and warned about as the run's own warnings.
    unread: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            unread.append(f"{path}:{record.args[0]}")
        return False

    logger = logging.getLogger("dotenv.main")
    logger.addFilter(keep)
    try:
        values = dotenv_values(stream=io.StringIO(text))
    finally:
        logger.removeFilter(keep)
    return {k: v for k, v in values.items() if v is not None}, unread


def _resolve_token(
    token: str | None,
    token_file: Path | None,
    dotenv: dict[str, str],
    stdin_used: bool,
    max_time: float | None = None,
) -> str | None:
    """--token or --token-file (never both), then the environment, then .env."""
    if token is not None and token_file is not None:
        raise UsageError("--token and --token-file both give the token: use one")
    if token == "-":
        if stdin_used:
            raise UsageError("--token - reads stdin, which already carries the leads")
        token = _token_from_stdin(max_time)
    if token_file is not None:
        path = token_file
        try:
            raw = stops.wait_for(lambda: _first_line_of(path), "--token-file", max_time)
            token = raw.decode("utf-8-sig")
        except OSError as exc:
            raise UsageError(f"--token-file {token_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--token-file {token_file}: not a text file") from None
    if token is None:
        # Secrets copied from files often carry a newline or a space: never part of a token.
        token = (os.environ.get(TOKEN_ENV) or "").strip() or dotenv.get(TOKEN_ENV, "").strip()
        return token or None
    token = token.strip()
    if not token:
        raise UsageError("the token given is empty")
    return token


# How long a read that a terminal ended waits for the hang-up signal behind it.
HANG_UP_PATIENCE_S = 2.0


def _token_from_stdin(max_time: float | None) -> str:
    """The first line of stdin; typed at a terminal, it is asked for and not shown."""
    if sys.platform == "win32" and sys.stdin is not None and sys.stdin.isatty():
        import msvcrt

        with _prompting():
            return stops.wait_for(lambda: _typed_unseen(msvcrt.getwch), "--token -", max_time)
    with _no_echo() as terminal:
        try:
            line = stops.wait_for(_first_line_of_stdin, "--token -", max_time)
        except OSError as exc:
            if terminal:  # a terminal that hung up: its SIGHUP is on the way
                stops.stopped_meanwhile("--token -", HANG_UP_PATIENCE_S)
            why = exc.strerror or exc
            raise UsageError(f"--token -: stdin could not be read ({why})") from None
        if terminal and not line.endswith("\n"):  # the end of a terminal: hung up?
            stops.stopped_meanwhile("--token -", HANG_UP_PATIENCE_S)
        return line


@contextlib.contextmanager
def _prompting() -> Iterator[None]:
    """Ask for the token on stderr; end the prompt's line once it has been read."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.write("API token (not shown): ")
        sys.stderr.flush()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write("\n")
            sys.stderr.flush()


def _typed_unseen(getch: Callable[[], str]) -> str:
    """A line typed at a Windows console, read key by key so that it is never shown."""
    typed: list[str] = []
    while (char := getch()) not in ("\r", "\n", "\x1a"):  # Enter, or Ctrl-Z: the end
        if char == "\x03":  # Ctrl-C, where the console hands it over as a key
            import signal

            raise Interrupted(
                "stopped while waiting for --token -",
                ExitStatus.SIGINT,
                stops.describe(signal.SIGINT),
            )
        if char in ("\x00", "\xe0"):
            getch()  # an arrow or function key: its second code is not text
        elif char == "\b":
            if typed:
                typed.pop()
        else:
            typed.append(char)
    return "".join(typed)


@contextlib.contextmanager
def _no_echo() -> Iterator[bool]:
    """On a POSIX terminal, ask for the token and read it without showing it; the
    terminal is put back by this thread, whatever ends the read (a signal included).
    Gives whether stdin is a terminal."""
    if sys.platform == "win32":
        yield False
        return
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
        terminal = fd >= 0 and os.isatty(fd)
    except (OSError, ValueError, io.UnsupportedOperation):
        terminal = False
    if not terminal:
        yield False
        return
    try:
        import termios

        saved = termios.tcgetattr(fd)
    except ImportError:
        # A terminal whose echo cannot be turned off would show the token as typed.
        raise UsageError(
            "--token -: this terminal cannot hide what is typed; give the token with "
            f"--token-file or ${TOKEN_ENV}"
        ) from None
    except OSError:
        saved = None
    if saved is None:
        yield True
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    with _prompting():
        try:
            yield True
        finally:
            # A terminal that hung up refuses this too (termios.error, not an OSError).
            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _first_line_of(path: Path) -> bytes:
    with path.open("rb") as fh:  # a pipe (<(pass show ...)) may take its time to open
        return fh.readline()


def _first_line_of_stdin() -> str:
    """The first line of stdin, read through a descriptor of our own (a read abandoned
    by a stop then holds no lock of sys.stdin that the interpreter needs at exit)."""
    fd = os.dup(sys.stdin.fileno()) if sys.stdin is not None else -1
    if fd < 0:
        return ""
    line = bytearray()
    try:
        while not line.endswith(b"\n") and (byte := os.read(fd, 1)):
            line += byte
    finally:
        os.close(fd)
    return line.decode("utf-8", "replace")


def state_dir() -> Path:
    """Where per-campaign journals live: $INBOXLEADS_STATE_DIR, else the platform's
    place for such data (~/.local/state/inboxleads, or $XDG_STATE_HOME/inboxleads, on
    Linux; ~/Library/Application Support/inboxleads on macOS; %LOCALAPPDATA%\\inboxleads
    on Windows)."""
    chosen = os.environ.get(STATE_DIR_ENV)
    if chosen:
        return Path(chosen)
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def default_journal(campaign: str, paths: list[str]) -> Path:
    """The --resume journal: one per campaign and set of inputs, named by the paths as
    given (a symlink rotated to a new export keeps its journal), their case folded where
    the filesystem ignores case (two spellings of one file are one set of inputs)."""
    from .files import path_key

    names = "\n".join(path_key(p) for p in paths)
    digest = hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return state_dir() / "journals" / f"{campaign}-{digest}.journal"


@app.command(
    epilog="Examples:\n\n  inboxleads sandbox --port 8765 --rate-limit 1200 --error-rate 0.1"
    "\n\n  inboxleads sandbox --campaign-file samples/campaign.json"
    "\n\n  inboxleads sandbox --campaign-variable company-name='Company name'"
)
@_reports_errors
@_declared_by(SandboxCommand)
def sandbox(**given: Any) -> None:
    """Run the built-in stand-in of the Add leads and Get campaign endpoints on a loopback port.

    It validates requests as the API reference does, keeps campaign membership
    (a re-sent lead is skipped) and fails unresolvable identifiers: usernames
    starting with "gone", user IDs ending in 404, external IDs starting with
    "gone". Usernames and external IDs starting with "flaky" and user IDs ending
    in 503 fail only the first time a campaign receives them. Campaign ids
    starting with "missing" do not exist; GET /campaigns/ID answers every other
    one with the name, status and custom variables set here.
    """
    import math
    import re

    from .sandbox import serve
    from .sandbox.config import CAMPAIGN_STATUSES, load_campaign

    command = build(SandboxCommand, given, lambda name: None)
    config, faults, port = command.config, command.config.faults, command.port
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0 (any free port) to 65535, not {port}")
    # Visible ASCII, one or more: else no client could send it as it is in a header.
    if not re.fullmatch(r"[!-~]+", config.token):
        raise UsageError("--token must be printable ASCII without spaces, and not empty")
    for option, rate in [
        ("--error-rate", faults.error_rate),
        ("--drop-rate", faults.drop_rate),
        ("--lost-rate", faults.lost_rate),
        ("--hang-rate", faults.hang_rate),
    ]:
        if not 0 <= rate <= 1:  # nan too
            raise UsageError(f"{option} must be a fraction from 0 to 1, not {rate}")
    for option, seconds in [
        ("--latency", faults.latency_s),
        ("--username-latency", faults.username_latency_s),
    ]:
        if not 0 <= seconds < math.inf:
            raise UsageError(
                f"{option} must be a finite number of seconds, 0 or more, not {seconds}"
            )
    if not 0 < faults.rate_window_s < math.inf:
        raise UsageError(
            f"--rate-window must be a finite number of seconds above 0, not {faults.rate_window_s}"
        )
    if faults.rate_limit < 0:
        raise UsageError("--rate-limit must be 0 (unlimited) or more")
    if config.max_body_bytes < 0:
        raise UsageError("--max-body-bytes must be 0 (no limit) or more")

    campaign = config.campaign
    if command.campaign_file is not None:
        try:
            campaign = config.campaign = load_campaign(command.campaign_file)
        except ValueError as exc:
            raise UsageError(f"--campaign-file {command.campaign_file}: {exc}") from None
    if command.campaign_name is not None:
        campaign.name = command.campaign_name
    if command.campaign_status is not None:
        if command.campaign_status not in CAMPAIGN_STATUSES:
            expected = ", ".join(CAMPAIGN_STATUSES)
            raise UsageError(
                f"--campaign-status must be one of {expected}, not {command.campaign_status!r}"
            )
        campaign.status = command.campaign_status
    given_keys: set[str] = set()
    for text in command.campaign_variables or []:
        key, equals, display = text.partition("=")
        if not key or not equals:
            raise UsageError(f"--campaign-variable takes KEY=DISPLAY, not {text!r}")
        if key in given_keys:
            raise UsageError(f"--campaign-variable {key!r} is given twice")
        given_keys.add(key)
        campaign.variables[key] = display or key

    def ready(base_url: str) -> None:
        typer.echo(f"Sandbox listening on {base_url}  (Ctrl-C to stop)", err=True)
        typer.echo(f"export {BASE_URL_ENV}={base_url}")
        typer.echo(f"export {TOKEN_ENV}={config.token}")
        sys.stdout.flush()

    try:
        serve(config, host=command.host, port=port, ready=ready)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {command.host}:{port}: {exc.strerror or exc}") from None


def _print_error(message: str, event_exit_code: int | None = None) -> None:
    """An error line on stderr; a JSON `error` event when given its exit code.

    A closed or broken stderr loses the line, nothing else.
    """
    if event_exit_code is None:
        line = f"inboxleads: error: {message}"
    else:
        event = {"event": "error", "message": message, "exit_code": event_exit_code}
        line = json.dumps({**event, "ts": time.time()})
    try:
        if sys.stderr is not None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _print_trace(exc: InboxLeadsError) -> None:
    """A bug's traceback, only when asked for with INBOXLEADS_DEBUG=1."""
    trace = getattr(exc, "trace", "")
    if trace and os.environ.get("INBOXLEADS_DEBUG"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(trace)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and exit with the contract's status codes."""
    command = typer.main.get_command(app)
    try:
        code: object = command.main(args=argv, prog_name="inboxleads", standalone_mode=False)
    except KeyboardInterrupt:
        code = ExitStatus.SIGINT
    except InboxLeadsError as exc:
        _print_error(exc.message)
        code = exc.exit_status
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): nothing left to say.
        _silence_stdout()
        code = ExitStatus.PARTIAL
    except Exception as exc:
        code = _parser_exit(exc)
    sys.exit(int(code) if isinstance(code, int) else 0)


def _parser_exit(exc: Exception) -> int:
    """Exit status for what the option parser raised; never a traceback."""
    # Typer has shipped both click's exceptions and its own copies of them:
    # recognise them by what they do rather than by class.
    name = type(exc).__name__
    if name == "Abort":
        return ExitStatus.SIGINT
    show = getattr(exc, "show", None)
    exit_code = getattr(exc, "exit_code", None)
    if callable(show) and isinstance(exit_code, int):
        show()
        return exit_code
    if name == "Exit" and isinstance(exit_code, int):
        return exit_code
    _print_error(f"internal error: {name}: {exc}")
    return 70


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
