"""What the sandbox is told: its token, its faults, its campaign; no HTTP here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..options import option

DEFAULT_TOKEN = "sandbox-token"
API_PREFIX = "/api/v1"
HANG_S = 3600.0
CAMPAIGN_STATUSES = ("draft", "active", "paused", "completed")
"""The statuses a campaign may have, as the API documents them."""

_SURROGATE = re.compile("[\ud800-\udfff]").search


def half_character(text: str) -> str | None:
    """Why `text` cannot be sent as UTF-8, or None when it can.

    A Python string holds half of a character (a lone surrogate) when JSON wrote it as
    one ``\\u`` escape of a pair, or when the command line held bytes that were not
    UTF-8. No answer can carry it.
    """
    found = _SURROGATE(text)
    if found is None:
        return None
    return f"holds half of a character (a lone surrogate, \\u{ord(found.group()):04x})"


@dataclass
class Faults:
    """Misbehaviour to inject; rates are fractions of valid requests, drawn independently."""

    latency_s: float = option(0.0, "--latency", help="Seconds of delay per request.")
    username_latency_s: float = option(
        0.0, "--username-latency", help="Extra seconds per username."
    )
    error_rate: float = option(
        0.0, "--error-rate", help="Fraction of requests answered 500/502/503."
    )
    drop_rate: float = option(
        0.0, "--drop-rate", help="Fraction of connections dropped before applying."
    )
    lost_rate: float = option(
        0.0, "--lost-rate", help="Fraction of answers lost after the batch was applied."
    )
    hang_rate: float = option(0.0, "--hang-rate", help="Fraction of requests that never answer.")
    rate_limit: int = option(0, "--rate-limit", help="Requests per --rate-window (0: unlimited).")
    rate_window_s: float = option(
        60.0, "--rate-window", help="Sliding window of the rate limit, seconds."
    )
    seed: int | None = option(None, "--seed", help="Seed for the fault draws.", show_default=False)


@dataclass
class SandboxCampaign:
    """What ``GET /campaigns/{campaignId}`` tells of every campaign that exists."""

    name: str = "Sandbox campaign"
    status: str = "active"
    description: str | None = None
    # Custom variables: key -> display name, in the order the campaign lists them.
    variables: dict[str, str] = field(default_factory=dict)

    def problem(self) -> str | None:
        """What keeps the API from answering this campaign (a text UTF-8 cannot carry,
        a status it does not have), naming the field; None when nothing does."""
        if self.status not in CAMPAIGN_STATUSES:
            expected = ", ".join(CAMPAIGN_STATUSES)
            return f"status: must be one of {expected}, not {json.dumps(self.status)}"
        texts = [("name", self.name), ("description", self.description or "")]
        for key, display in self.variables.items():
            half = half_character(key)
            if half is not None:
                return f"customVariables: a key {half}"
            texts.append((f"customVariables.{key}", display))
        for where, text in texts:
            half = half_character(text)
            if half is not None:
                return f"{where}: {half}"
        return None


@dataclass
class SandboxConfig:
    """What the sandbox accepts, the campaign it shows and how it misbehaves."""

    token: str = option(DEFAULT_TOKEN, "--token", help="The token it accepts.", show_default=False)
    faults: Faults = field(default_factory=Faults)
    max_total: int = 2000
    # As a server or a proxy in front of it may do; the API documents no limit of its own.
    max_body_bytes: int = option(
        0,
        "--max-body-bytes",
        help="Answer 413 Payload Too Large to bodies over this size (0: no limit).",
    )
    campaign: SandboxCampaign = field(default_factory=SandboxCampaign)


@dataclass
class SandboxCommand:
    """Every option of `inboxleads sandbox`: where it listens, its configuration, and
    the campaign it shows, as the command line gives it."""

    port: int = option(8765, "--port", help="Port to listen on (0: any free).")
    host: str = option("127.0.0.1", "--host", help="Loopback address to bind.")
    config: SandboxConfig = field(default_factory=SandboxConfig)
    campaign_file: Path | None = option(
        None,
        "--campaign-file",
        metavar="PATH",
        help="JSON campaign, as the API answers it: name, status, customVariables "
        "(see samples/campaign.json). The options below override its name and status "
        "and add to its variables.",
        show_default=False,
    )
    campaign_name: str | None = option(
        None,
        "--campaign-name",
        help=f"Every campaign's name (default: {SandboxCampaign.name}).",
        show_default=False,
    )
    campaign_status: str | None = option(
        None,
        "--campaign-status",
        metavar="STATUS",
        help="Every campaign's status: draft, active (the default), paused or completed.",
        show_default=False,
    )
    campaign_variables: list[str] | None = option(
        None,
        "--campaign-variable",
        metavar="KEY=DISPLAY",
        help="A custom variable of every campaign, by key and display name (the key "
        "when empty); repeat for more.",
        show_default=False,
    )


def campaign_from_json(data: object) -> SandboxCampaign:
    """The campaign a JSON object describes, in the shape the API answers it.

    ``name``, ``status``, ``description`` and ``customVariables`` are read, each
    optional; a variable is ``{"displayName": ..., "description": ...}`` or, for
    short, its display name alone, and an empty display name is the key. Other
    fields (a variable's description too: the sandbox answers null) are ignored, so
    a campaign object copied from the API will do. Raises `ValueError` naming the
    field and what is wrong with it, a text holding half of a character (a lone
    ``\\ud800`` escape, which no answer could carry) too.
    """
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    campaign = SandboxCampaign()
    if "name" in data:
        campaign.name = _string(data["name"], "name")
    if "status" in data:
        status = data["status"]
        if status not in CAMPAIGN_STATUSES:
            expected = ", ".join(CAMPAIGN_STATUSES)
            raise ValueError(f"status: must be one of {expected}, not {json.dumps(status)}")
        campaign.status = status
    if data.get("description") is not None:
        campaign.description = _string(data["description"], "description")
    variables = data.get("customVariables", {})
    if not isinstance(variables, dict):
        raise ValueError("customVariables: must be an object")
    for key, value in variables.items():
        if not key:
            raise ValueError("customVariables: a variable's key must not be empty")
        half = half_character(key)
        if half is not None:
            raise ValueError(f"customVariables: a key {half}")
        where = f"customVariables.{key}"
        if isinstance(value, dict):
            display = _string(value.get("displayName"), where + ".displayName")
        elif isinstance(value, str):
            display = _string(value, where)
        else:
            raise ValueError(f'{where}: must be {{"displayName": "..."}} or a display name')
        campaign.variables[key] = display or key
    return campaign


def load_campaign(path: str | Path) -> SandboxCampaign:
    """The campaign a JSON file describes (see `campaign_from_json`).

    Raises `ValueError` saying what is wrong, without the file's name.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    return campaign_from_json(data)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string")
    half = half_character(value)
    if half is not None:
        raise ValueError(f"{where}: {half}")
    return value
