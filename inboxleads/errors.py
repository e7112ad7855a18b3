"""Exit statuses and the one exception hierarchy of inboxleads.

    InboxLeadsError            anything the CLI turns into a message and an exit code
    ├── UsageError             bad option or argument; nothing was sent        (exit 2)
    ├── InputError             unreadable, binary or vanished input            (exit 2)
    ├── ApiRefused             401/403/404: the run cannot go on               (exit 3)
    ├── JournalError           a journal for other inputs, or unreadable       (exit 2)
    ├── ReportError            --rejects/--undelivered not written in full     (exit 2)
    ├── LockHeld               another run holds the campaign's lock           (exit 4)
    ├── Interrupted            a signal came before the run had begun     (exit 130/143)
    └── Bug                    a bug of the tool: the run still ends in order  (exit 70)

Everything below the CLI raises these (or lets them pass); `cli.main` is the
only place that prints them and picks the exit status.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes, as the command-line contract defines them."""

    OK = 0
    PARTIAL = 1
    USAGE = 2
    REFUSED = 3
    LOCKED = 4
    BUG = 70
    SIGHUP = 129
    SIGINT = 130
    SIGTERM = 143


class InboxLeadsError(Exception):
    """Base of every error the CLI reports as a one-line message."""

    exit_status: ExitStatus = ExitStatus.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(InboxLeadsError):
    """A bad option, argument or combination of them."""

    exit_status = ExitStatus.USAGE


class InputError(InboxLeadsError):
    """An input that cannot be read at all (missing, a directory, binary, vanished)."""

    exit_status = ExitStatus.USAGE

    def __init__(self, source: str, problem: str, line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line


class ApiRefused(InboxLeadsError):
    """The API refused the run itself (bad token, no such campaign)."""

    exit_status = ExitStatus.REFUSED

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class JournalError(InboxLeadsError):
    """A journal that belongs to another run, or that cannot be read or written."""

    exit_status = ExitStatus.USAGE


class ReportError(InboxLeadsError):
    """A report file that could not be written in full (a full disk, a size limit)."""

    exit_status = ExitStatus.USAGE


class LockHeld(InboxLeadsError):
    """Another run for the same campaign and journal is still going."""

    exit_status = ExitStatus.LOCKED


def http_status_to_refusal(status: int, campaign: str) -> str | None:
    """Return what the user must fix for a status that stops the run, else None."""
    if status == 401:
        return (
            "the API rejected the token (401 Unauthorized): check INBOX_API_TOKEN, "
            "--token or --token-file"
        )
    if status == 403:
        return (
            "the token may not add leads (403 Forbidden): use a token of the team "
            "that owns the campaign, with write access"
        )
    if 300 <= status < 400:
        return "the API redirected the request: check --base-url (redirects are never followed)"
    if status == 404:
        return (
            f"campaign {campaign!r} was not found (404): check the campaign id "
            "and that the token belongs to its team"
        )
    return None


class Interrupted(InboxLeadsError):
    """A signal (or --max-time) stopped the run before it had begun."""

    exit_status = ExitStatus.SIGINT

    def __init__(
        self, message: str, status: ExitStatus | None = None, stop_reason: str | None = None
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.exit_status = status
        self.stop_reason = stop_reason


class Bug(InboxLeadsError):
    """An exception the tool did not expect, or counts that do not add up.

    The message names it in one line; `trace` keeps the traceback for
    INBOXLEADS_DEBUG=1, never shown otherwise.
    """

    exit_status = ExitStatus.BUG

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(f"internal error: {message}")
        self.trace = trace

    @classmethod
    def of(cls, exc: BaseException) -> Bug:
        """The bug an unexpected exception is, with its traceback."""
        import traceback

        return cls(f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)))


def cut(text: str, most: int = 100) -> str:
    """`text`, cut to `most` characters at most (an ellipsis says so)."""
    return text if len(text) <= most else text[: most - 1] + "…"


def printable(text: str) -> str:
    """A word from the server as it may be shown: as it is when it is one printable
    word, else quoted (and cut to a reasonable length), so that no control
    character reaches a terminal or a log."""
    if text.isprintable() and " " not in text and len(text) <= 100:
        return text
    return repr(cut(text))
