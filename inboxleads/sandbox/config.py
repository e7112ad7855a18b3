"""What the sandbox is told: its token, its faults, its campaign; no HTTP here."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TOKEN = "sandbox-token"
API_PREFIX = "/api/v1"
HANG_S = 3600.0
CAMPAIGN_STATUSES = ("draft", "active", "paused", "completed")
"""The statuses a campaign may have, as the API documents them."""


@dataclass
class Faults:
    """Misbehaviour to inject; rates are fractions of valid requests, drawn independently."""

    latency_s: float = 0.0
    username_latency_s: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    lost_rate: float = 0.0
    hang_rate: float = 0.0
    rate_limit: int = 0
    rate_window_s: float = 60.0
    seed: int | None = None


@dataclass
class SandboxCampaign:
    """What ``GET /campaigns/{campaignId}`` tells of every campaign that exists."""

    name: str = "Sandbox campaign"
    status: str = "active"
    description: str | None = None
    # Custom variables: key -> display name, in the order the campaign lists them.
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class SandboxConfig:
    """What the sandbox accepts, the campaign it shows and how it misbehaves."""

    token: str = DEFAULT_TOKEN
    faults: Faults = field(default_factory=Faults)
    max_total: int = 2000
    # Bodies larger than this are answered 413 (0: no limit), as a server or a proxy
    # in front of it may do; the API documents no limit of its own.
    max_body_bytes: int = 0
    campaign: SandboxCampaign = field(default_factory=SandboxCampaign)
