"""The `add` job: every option of `inboxleads add`, each declared once.

Each field made with `option()` is the whole declaration of an option: its
default, flag and help. `cli` builds the command from these fields, `runner`
checks and runs the job, and the engine reads it; a new option is one field
here plus its behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .batching import DEFAULT_MAX_REQUEST_BYTES, MAX_BATCH
from .inputs import ReadOptions
from .options import argument, option

DEFAULT_BASE_URL = "https://inboxapp.com/api/v1"
TOKEN_ENV = "INBOX_API_TOKEN"
BASE_URL_ENV = "INBOX_BASE_URL"
STATE_DIR_ENV = "INBOXLEADS_STATE_DIR"


class Progress(StrEnum):
    """Progress display modes (`--progress`)."""

    AUTO = "auto"
    RICH = "rich"
    PLAIN = "plain"
    JSONL = "jsonl"
    NONE = "none"


@dataclass
class AddJob:
    """Every option of `inboxleads add`, parsed; tests and scripts make one directly."""

    campaign: str = argument(
        metavar="CAMPAIGN_ID", help="The campaign id (lowercase letters and digits)."
    )
    inputs: list[str] = argument(
        metavar="[INPUT]...",
        help="Files to read, or - for stdin. Without any, stdin is read when it is a pipe.",
        factory=list,
        given_as=list[str] | None,
    )
    token: str | None = option(
        None,
        "--token",
        help=f"API token (default: ${TOKEN_ENV}, then .env). Visible in `ps`: prefer "
        "the variable or --token-file. `-` reads it from stdin.",
        show_default=False,
    )
    token_file: Path | None = option(
        None, "--token-file", help="Read the token from this file's first line."
    )
    base_url: str = option(
        DEFAULT_BASE_URL,
        "--base-url",
        help=f"API base URL (env {BASE_URL_ENV}, then .env; default {DEFAULT_BASE_URL}). "
        "Plain http only to loopback hosts.",
        show_default=False,
        env=BASE_URL_ENV,
    )
    read: ReadOptions = field(default_factory=ReadOptions)
    no_check: bool = option(
        False,
        "--no-check",
        help="Skip the campaign look-up before sending (its name, status and "
        "variables are then not known).",
    )
    batch_size: int = option(MAX_BATCH, "--batch-size", help="Identifiers per request, 1-2000.")
    max_request_bytes: int = option(
        DEFAULT_MAX_REQUEST_BYTES,
        "--max-request-bytes",
        help="Cut batches by JSON body size too (rows with long data); a request the "
        "server finds too large (413) is sent again in halves.",
    )
    concurrency: int = option(4, "--concurrency", help="Requests in flight at most.")
    timeout_s: float = option(
        300.0,
        "--timeout",
        help="Seconds per request attempt (new usernames are slow to resolve).",
    )
    max_attempts: int = option(
        6,
        "--max-attempts",
        help="Attempts per batch on transient failures before it counts as undelivered.",
    )
    flush_after_s: float = option(
        5.0,
        "--flush-after",
        help="Send a partial batch when a pipe has been quiet this many seconds.",
    )
    progress: Progress = option(
        Progress.AUTO,
        "--progress",
        help="Display on stderr: rich (live table), plain (a line every "
        "--log-interval), jsonl (one JSON event a line), none; auto = rich on a "
        "terminal, plain otherwise.",
    )
    log_interval_s: float = option(
        5.0, "--log-interval", help="Seconds between plain progress lines."
    )
    dry_run: bool = option(
        False,
        "--dry-run",
        help="Read, validate, batch and report; send nothing, no token needed.",
    )
    json_summary: bool = option(
        False, "--json", help="Print the final summary as one JSON object on stdout."
    )
    sandbox: bool = option(
        False,
        "--sandbox",
        help="Send to the built-in stand-in server, in-process; no token needed.",
    )
    journal: Path | None = option(
        None,
        "--journal",
        help="Append-only record of delivered batches; re-running the same command "
        "with it skips them.",
    )
    # The journal is --resume's own (in the state directory, whose folder is made).
    resume: bool = option(
        False,
        "--resume",
        help="Use a journal in the state directory, one per campaign and inputs "
        f"(${STATE_DIR_ENV}, else ~/.local/state/inboxleads on Linux, "
        "~/Library/Application Support/inboxleads on macOS, "
        "%LOCALAPPDATA%\\inboxleads on Windows).",
    )
    wait_lock: bool = option(
        False,
        "--wait-lock",
        help="Wait for another run on the same journal instead of exiting 4.",
    )
    rejects: Path | None = option(
        None, "--rejects", help="Write every rejected input (CSV: source, line, reason)."
    )
    undelivered: Path | None = option(
        None,
        "--undelivered",
        help="Write every identifier not delivered, in a form `add` reads back.",
    )
    explain_failures: Path | None = option(
        None,
        "--explain-failures",
        help="After the upload, re-send parts of batches whose answer counted "
        "failures until a set's own answer confirms each failure; write the failed "
        "identifiers, and those that could not be confirmed, to this CSV.",
    )
    explain_budget: int | None = option(
        None,
        "--explain-budget",
        help="At most this many extra requests for --explain-failures (default: no "
        "cap), spent one batch after another; what is left is listed as unconfirmed.",
        show_default=False,
    )
    ca_bundle: Path | None = option(
        None, "--ca-bundle", help="CA certificates to trust (a corporate proxy's)."
    )
    max_time_s: float | None = option(
        None,
        "--max-time",
        help="Whole-run deadline in seconds (for cron): when it passes, the run stops "
        "as for SIGTERM (in-flight requests get 10 s) and exits 1.",
        show_default=False,
    )
    quiet: bool = option(False, "--quiet", "-q", help="No progress display; errors only.")
    # Settings the command line does not offer.
    stop_grace_s: float = 10.0
    # Other files the run reads (the token file, .env): never an output either.
    also_read: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        self.progress = Progress.NONE if self.quiet else Progress(self.progress)

    @property
    def looks_up(self) -> bool:
        """Whether the campaign is looked up: unless --no-check, and in a dry run
        only with a token to ask with."""
        return not self.no_check and (self.sandbox or not self.dry_run or bool(self.token))
