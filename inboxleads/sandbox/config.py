"""What the sandbox is told: its token, its faults, its campaign; no HTTP here."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TOKEN = "sandbox-token"
API_PREFIX = "/api/v1"
HANG_S = 3600.0


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
class SandboxConfig:
    """What the sandbox accepts and how it misbehaves."""

    token: str = DEFAULT_TOKEN
    faults: Faults = field(default_factory=Faults)
    max_total: int = 2000
    # Bodies larger than this are answered 413 (0: no limit), as a server or a proxy
    # in front of it may do; the API documents no limit of its own.
    max_body_bytes: int = 0
