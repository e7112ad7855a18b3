"""What the API answered, as plain values: no HTTP here.

`client` makes these from responses; the pacing reads their rate-limit
headers, the engine acts on their outcome, and the ledger and the journal
record them. They live below all of those, so none of the bookkeeping needs
the HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    """What the engine does with an answer."""

    OK = "ok"
    RETRY = "retry"
    REJECTED = "rejected"
    REFUSED = "refused"
    # The body was too large for the server (413, or a connection it closed while a
    # large body was being sent): the engine sends the batch in halves.
    TOO_LARGE = "too large"


@dataclass(frozen=True)
class RateInfo:
    """The rate-limit headers of an answer."""

    limit: int | None
    remaining: int | None
    reset: float | None


@dataclass(frozen=True)
class Answer:
    """The meaning of one attempt's result."""

    outcome: Outcome
    status: int | None
    message: str = ""
    added: int = 0
    skipped: int = 0
    failed: int = 0
    retry_after: float | None = None
    rate: RateInfo | None = None
    # The size of the body that was refused as too large (0: not known, or not refused).
    sent_bytes: int = 0
    # What a campaign look-up found (its answer was 200 and the documented JSON).
    campaign: CampaignInfo | None = None


@dataclass(frozen=True)
class CampaignInfo:
    """What the campaign look-up tells: the API's `name`, `status` and each of its
    `customVariables` as (key, display name)."""

    id: str
    name: str | None
    status: str | None
    variables: tuple[tuple[str, str], ...] = ()
