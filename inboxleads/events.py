"""What happens during a run, as plain data.

The upload engine emits these; `accounting.Tally` folds them into counts, the
display renders them, the journal and report files record them. Nothing here
does I/O, so a run can be replayed and checked from its events alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Rejection:
    """An input record that will not be sent, and why: made by `inputs`, carried by
    `RecordsRead`, written to --rejects by `reports`."""

    source: str
    line: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordsRead:
    """A chunk of input was read: how many records, rejections, duplicates and
    identifiers kept (as the de-duplicator counted them)."""

    read: int
    rejected: int
    duplicates: int
    rejections: tuple[Rejection, ...] = ()
    source: str = ""
    kinds: tuple[tuple[str, int], ...] = ()
    unique: int = 0
    # The bytes of input read up to the end of this chunk, over every input.
    position: int = 0


@dataclass(frozen=True, slots=True)
class BatchQueued:
    """A batch was formed and waits to be sent."""

    seq: int
    size: int


@dataclass(frozen=True, slots=True)
class InputFinished:
    """Every input was read: the number of batches is now known."""

    batches: int


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """One attempt of one batch went out."""

    seq: int
    size: int
    attempt: int
    phase: str = "upload"


@dataclass(frozen=True, slots=True)
class RequestEnded:
    """An attempt ended, however it ended (the in-flight count goes down)."""

    seq: int
    status: int | None
    phase: str = "upload"


@dataclass(frozen=True, slots=True)
class BatchDelivered:
    """The server answered 200 for a batch: its counts, as the server gave them."""

    seq: int
    size: int
    added: int
    skipped: int
    failed: int
    attempts: int


@dataclass(frozen=True, slots=True)
class BatchResumed:
    """A batch was found in the journal of an earlier run and not sent again."""

    seq: int
    size: int


@dataclass(frozen=True, slots=True)
class BatchUndelivered:
    """A batch could not be delivered: rejected by the server, out of attempts, or stopped."""

    seq: int
    size: int
    reason: str
    attempts: int


@dataclass(frozen=True, slots=True)
class BatchSplit:
    """The server found a batch too large (413, or it closed the connection while a
    large body was sent): it is sent as the batches `into`, each ending on its own."""

    seq: int
    size: int
    into: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A transient failure: the batch is sent again after `wait_s`."""

    seq: int
    attempt: int
    reason: str
    wait_s: float
    phase: str = "upload"


@dataclass(frozen=True, slots=True)
class RatePaused:
    """Sending is held back to respect the API's rate limit."""

    wait_s: float
    reason: str
    resume_at: float


@dataclass(frozen=True, slots=True)
class Stopping:
    """The run stops taking new batches (interrupt or a refusal); with `abandon`,
    requests in flight are given up rather than waited for."""

    reason: str
    abandon: bool = False


@dataclass(frozen=True, slots=True)
class ExplainProgress:
    """The failure explanation learned something: identifiers confirmed failed, and
    identifiers it cannot confirm (in sets not narrowed down; at its end, every one
    listed as unconfirmed)."""

    requests: int
    identified: int
    unconfirmed: int = 0


@dataclass(frozen=True, slots=True)
class PhaseStarted:
    """A new phase of the run (upload, explain) began."""

    name: str
    detail: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ColumnsRead:
    """A table input's header was read: the identifier columns in order of
    preference, and each data column with the key it is sent as."""

    source: str
    identifiers: tuple[str, ...]
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Campaign:
    """The campaign look-up found the campaign: its name, status and variables
    (key, display name), as the API gave them."""

    campaign: str
    name: str | None
    status: str | None
    variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Note:
    """A warning for the user that is not about one record (shown once, as a line)."""

    text: str


Event = (
    RecordsRead
    | BatchQueued
    | InputFinished
    | RequestStarted
    | RequestEnded
    | BatchDelivered
    | BatchResumed
    | BatchUndelivered
    | BatchSplit
    | RetryScheduled
    | RatePaused
    | Stopping
    | ExplainProgress
    | PhaseStarted
    | ColumnsRead
    | Campaign
    | Note
)
