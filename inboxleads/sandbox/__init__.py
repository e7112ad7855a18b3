"""A faithful stand-in of Inbox's "Add leads" and "Get campaign" endpoints, for tests,
benchmarks and ``--sandbox``.

``POST {API_PREFIX}/campaigns/v2/{campaignId}/leads`` (Add leads) and ``GET
{API_PREFIX}/campaigns/{campaignId}`` (Get campaign) behave as the API reference says,
plus these documented sandbox rules:

Checks, in order
    1. Auth: ``Authorization: Bearer <token>``. Missing, malformed or wrong: 401
       ``UNAUTHORIZED``. Any token starting with ``ro_`` is a read-only token: it may
       get a campaign, and adding leads with it is 403 ``FORBIDDEN``.
    2. Path: ``campaignId`` must match ``^[0-9a-z]+$`` (400 ``VALIDATION_ERROR``); ids
       starting with ``missing`` do not exist (404 ``CAMPAIGN_NOT_FOUND``); any other
       campaign exists.
    3. Rate limit (when configured): a sliding window over arrival times, one for the
       team: both endpoints use its slots. Every answer after the auth check carries
       ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix seconds at which the
       oldest request leaves the window). Over the limit: 429 ``RATE_LIMITED`` with
       ``Retry-After``; a 429 does not use a slot, and answers to path errors only report
       the window without using a slot.
    4. Add leads only, the body: over ``max_body_bytes`` (when set), 413
       ``PAYLOAD_TOO_LARGE``, judged by its ``Content-Length`` before it is read when it
       has one; a ``Content-Type`` other than ``application/json`` (parameters such as
       ``charset`` allowed), or none, 415 ``UNSUPPORTED_MEDIA_TYPE``. Then as in the
       reference (see `inboxleads.sandbox.state.validate_body`), with at most
       ``max_total`` identifiers across all arrays: 400 ``VALIDATION_ERROR`` naming the
       field and why, for JSON nested too deeply to read as well. A body that is not
       UTF-8 (or UTF-16/32) text, or holds ``NaN`` or ``Infinity`` (not JSON), is
       "body: not valid JSON"; a string or key holding half of a character (a lone
       surrogate escape such as ``\\ud800``, which no answer could carry; a pair is one
       character) is refused naming where it is, and never stored.
    5. Add leads only, faults, for a request that passed all of the above, drawn from
       the rng in this order: hang (sleeps 3600 s or until the client leaves, then drops
       the connection), drop (connection broken, batch not applied), error (500
       ``INTERNAL_ERROR`` / 502 ``BAD_GATEWAY`` / 503 ``SERVICE_UNAVAILABLE``, not
       applied); otherwise the batch is applied, then lost (connection broken after
       applying). A fault whose rate is 0 draws nothing, so a seed replays the same
       faults; getting a campaign draws nothing, so it leaves them as they were.
    6. Latency: the answer goes out ``latency_s`` (plus, adding leads,
       ``username_latency_s`` per username) after the request arrived; reading, checking
       and applying the body are part of that time. A client giving up meanwhile does
       not stop it, so its batch may be applied all the same. Answers refused by the
       checks above go out at once.

Resolution rule
    A username fails when it does not match ``^[A-Za-z0-9_]{1,15}$`` or, lower-cased,
    starts with ``gone``. A platform ID fails when it does not match ``^[0-9]{1,19}$``
    (so it is below 2**64) or ends with ``404``. An external ID fails when it does not
    match ``^[0-9a-z]+$`` or starts with ``gone``. A transient upstream failure: a
    username starting (case-insensitively) with ``flaky``, a platform ID ending with
    ``503`` and an external ID starting with ``flaky`` fail the first time the campaign
    receives them (in a request that was applied), and resolve every later time (the
    campaign remembers them; usernames compared lower-case; a repeat in the same
    request is a later time). Any other identifier resolves: it counts ``skipped``
    when the campaign already has it (usernames compared lower-case; an earlier
    duplicate in the same request counts), else ``added``. A lead object's ``data`` is
    kept with the lead when it is added; a skipped re-send keeps the first.

The campaign
    Every campaign that exists is the `SandboxCampaign` of the configuration: its
    ``name``, ``status``, ``description`` and custom variables (by key, each
    ``{"displayName": ..., "description": null}``), with its own ``id``, a
    ``targetsCount`` of the leads it holds now, ``contactedCount`` 0, ``isHydrating``
    false and ``createdAt`` the time the sandbox started (ISO 8601, UTC). `create_app`
    refuses a campaign it could not answer (a status the API does not have, a text
    holding half of a character) with `ValueError`.

A broken connection is an answer started with a ``Content-Length`` it never completes:
uvicorn closes the socket, so a real client fails with a transport error, and
`sandbox_transport` raises `httpx.RemoteProtocolError` in-process. On shutdown, pending
sleeps end at once and their requests are dropped. Unknown routes (a trailing slash
too: there are no redirects) answer 404 ``NOT_FOUND`` and wrong methods 405
``METHOD_NOT_ALLOWED``, in the same error shape; an exception of the sandbox's own is a
500 ``INTERNAL_ERROR`` in that shape, never a traceback.

``GET {API_PREFIX}/_sandbox/state`` (no auth) returns what was received, as
`SandboxState.snapshot` does: answers of Add leads by status (``requests``,
``by_status``, ``faults``), answers of Get campaign by status apart (``lookups``), and
for each campaign its size, the bodies applied and the data of each lead, by
``"kind:key"`` (``{"username:jack": {"company-name": "Block"}}``; usernames
lower-cased, leads added without data left out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import API_PREFIX, DEFAULT_TOKEN, HANG_S, Faults, SandboxCampaign, SandboxConfig
from .state import SandboxState

if TYPE_CHECKING:
    from .app import create_app, sandbox_transport
    from .server import serve

__all__ = [
    "API_PREFIX",
    "DEFAULT_TOKEN",
    "HANG_S",
    "Faults",
    "SandboxCampaign",
    "SandboxConfig",
    "SandboxState",
    "create_app",
    "sandbox_transport",
    "serve",
]

# Starlette and uvicorn are imported when first needed: the CLI reads this package's
# constants and configuration on every start, and only `sandbox` and `--sandbox` run it.
_LAZY = {"create_app": "app", "sandbox_transport": "app", "serve": "server"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
