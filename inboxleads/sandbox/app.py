"""The sandbox's ASGI app and in-process transport; see `inboxleads.sandbox` for the rules."""

from __future__ import annotations

import asyncio
import datetime
import hmac
import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import API_PREFIX, HANG_S, SandboxConfig
from .state import (
    BodyError,
    SandboxState,
    check_whole_characters,
    count_usernames,
    validate_body,
)

_ERRORS = {500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE"}
_ERROR_STATUSES = tuple(_ERRORS)
_CAMPAIGN_ID = re.compile(r"[0-9a-z]+").fullmatch


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "status": status}}
    return JSONResponse(body, status, headers=headers)


class _Broken(Response):
    """Starts a 200 answer and stops partway: the client sees a dropped connection."""

    def __init__(self, fault: str, wait: Callable[[Receive], Awaitable[None]] | None = None):
        super().__init__(status_code=200)
        self.fault = fault
        self._wait = wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._wait is not None:
            await self._wait(receive)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # more_body without an end: uvicorn closes the socket when the app returns.
        await send({"type": "http.response.body", "body": b'{"added":', "more_body": True})


class _RateLimiter:
    """Sliding window over request arrival times."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._arrivals: deque[float] = deque()

    def _headers(self, now: float) -> dict[str, str]:
        # Reset is rounded up so that a client waiting until then is sure to find a slot.
        reset = self._arrivals[0] + self._window if self._arrivals else now
        return {
            "X-RateLimit-Limit": str(self._limit),
            "X-RateLimit-Remaining": str(max(0, self._limit - len(self._arrivals))),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }

    def _expire(self) -> float:
        now = self._clock()
        while self._arrivals and self._arrivals[0] <= now - self._window:
            self._arrivals.popleft()
        return now

    def peek(self) -> dict[str, str]:
        """Headers describing the window, without using a slot."""
        return self._headers(self._expire())

    def acquire(self) -> tuple[bool, dict[str, str]]:
        """Use a slot if one is free; return whether it was and the headers to send."""
        now = self._expire()
        if len(self._arrivals) >= self._limit:
            headers = self._headers(now)
            wait = self._arrivals[0] + self._window - now
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return False, headers
        self._arrivals.append(now)
        return True, self._headers(now)


class _Endpoint:
    def __init__(
        self,
        config: SandboxConfig,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
    ) -> None:
        self.config = config
        self._clock = clock
        self.state = SandboxState()
        self._pauses: set[anyio.CancelScope] = set()
        self._sleep = sleep
        self._rng = rng
        # Campaigns exist from the start: they were all made when the sandbox was.
        created = datetime.datetime.fromtimestamp(clock(), datetime.UTC)
        self._created_at = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        faults = config.faults
        self._limiter = (
            _RateLimiter(faults.rate_limit, faults.rate_window_s, clock)
            if faults.rate_limit > 0
            else None
        )

    async def leads(self, request: Request) -> Response:
        self.state.arrive(request.path_params["campaignId"])
        self.state.enter()
        try:
            response = await _or_internal_error(self._answer(request))
        finally:
            self.state.leave()
        if isinstance(response, _Broken):
            self.state.record_fault(response.fault)
        else:
            self.state.record_status(response.status_code)
        return response

    async def campaign(self, request: Request) -> Response:
        self.state.arrive(request.path_params["campaignId"])
        response = await _or_internal_error(self._look_up(request))
        if not isinstance(response, _Broken):  # only a shutdown breaks a look-up off
            self.state.record_lookup(response.status_code)
        return response

    async def state_view(self, request: Request) -> Response:
        return JSONResponse(self.state.snapshot())

    def _draw(self, rate: float) -> bool:
        # No draw for a fault that is off, so a seed's sequence depends only on active faults.
        return rate > 0 and self._rng.random() < rate

    def _auth_error(self, header: str | None, *, write: bool) -> Response | None:
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            message = "missing or malformed Authorization header, expected 'Bearer <token>'"
            return _error(401, "UNAUTHORIZED", message, {"WWW-Authenticate": "Bearer"})
        if token.startswith("ro_"):
            # A read-only token may read.
            if write:
                return _error(403, "FORBIDDEN", "this token is read-only and cannot add leads")
            return None
        if not hmac.compare_digest(token.encode(), self.config.token.encode()):
            return _error(401, "UNAUTHORIZED", "invalid token", {"WWW-Authenticate": "Bearer"})
        return None

    def _admit(
        self, request: Request, *, write: bool
    ) -> tuple[Response | None, dict[str, str] | None]:
        """The checks both endpoints make first (auth, path, rate limit): a refusal, or
        None and the rate-limit headers to send with the answer."""
        denied = self._auth_error(request.headers.get("authorization"), write=write)
        if denied is not None:
            return denied, None
        limiter = self._limiter
        rate_headers = limiter.peek() if limiter is not None else None
        campaign: str = request.path_params["campaignId"]
        if not _CAMPAIGN_ID(campaign):
            message = "campaignId: must match ^[0-9a-z]+$"
            return _error(400, "VALIDATION_ERROR", message, rate_headers), None
        if campaign.startswith("missing"):
            message = f"campaign {campaign!r} not found"
            return _error(404, "CAMPAIGN_NOT_FOUND", message, rate_headers), None
        if limiter is not None:
            allowed, rate_headers = limiter.acquire()
            if not allowed:
                return _error(429, "RATE_LIMITED", "too many requests", rate_headers), None
        return None, rate_headers

    async def _look_up(self, request: Request) -> Response:
        arrived = self._clock()
        refusal, rate_headers = self._admit(request, write=False)
        if refusal is not None:
            return refusal
        campaign: str = request.path_params["campaignId"]
        about = self.config.campaign
        variables = {
            key: {"displayName": name, "description": None} for key, name in about.variables.items()
        }
        answer = {
            "id": campaign,
            "name": about.name,
            "description": about.description,
            "status": about.status,
            "targetsCount": self.state.count(campaign),
            "contactedCount": 0,
            "isHydrating": False,
            "customVariables": variables,
            "createdAt": self._created_at,
        }
        response = JSONResponse(answer, headers=rate_headers)
        return await self._after(self.config.faults.latency_s, arrived, response)

    async def _answer(self, request: Request) -> Response:
        arrived = self._clock()
        refusal, rate_headers = self._admit(request, write=True)
        if refusal is not None:
            return refusal
        campaign: str = request.path_params["campaignId"]
        too_large = self._too_large(request.headers.get("content-length"), rate_headers)
        if too_large is not None:
            return too_large
        not_json = _media_type_error(request.headers.get("content-type"), rate_headers)
        if not_json is not None:
            return not_json
        raw = await request.body()
        too_large = self._too_large(str(len(raw)), rate_headers)
        if too_large is not None:
            return too_large
        try:
            # Decoded strictly: `json.loads` of bytes would let encoded surrogates through.
            text = raw.decode(json.detect_encoding(raw))
            parsed = json.loads(text, parse_constant=_not_json)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            return _error(400, "VALIDATION_ERROR", "body: not valid JSON", rate_headers)
        except RecursionError:
            return _error(400, "VALIDATION_ERROR", "body: nested too deeply", rate_headers)
        try:
            check_whole_characters(text, parsed)
            body = validate_body(parsed, self.config.max_total)
        except BodyError as exc:
            return _error(400, "VALIDATION_ERROR", str(exc), rate_headers)

        faults = self.config.faults
        response: Response
        if self._draw(faults.hang_rate):
            response = _Broken("hang", self._hang)
        elif self._draw(faults.drop_rate):
            response = _Broken("drop")
        elif self._draw(faults.error_rate):
            status = self._rng.choice(_ERROR_STATUSES)
            response = _error(status, _ERRORS[status], "sandbox fault injection", rate_headers)
        else:
            added, skipped, failed = self.state.apply(campaign, body)
            if self._draw(faults.lost_rate):
                response = _Broken("lost")
            else:
                counts = {"added": added, "skipped": skipped, "failed": failed}
                response = JSONResponse(counts, headers=rate_headers)
        delay = faults.latency_s
        if faults.username_latency_s:
            delay += faults.username_latency_s * count_usernames(body)
        return await self._after(delay, arrived, response)

    async def _after(self, delay: float, arrived: float, response: Response) -> Response:
        """`response`, sent `delay` seconds after the request `arrived`.

        The latency is the time the request takes in all, from its arrival: reading,
        checking and applying a large body are part of it, not added to it. A client
        that gives up meanwhile doesn't stop the server: the batch may already have landed.
        """
        delay -= self._clock() - arrived
        if delay > 0 and not await self._pause(delay):
            return _Broken("shutdown")
        return response

    def _too_large(self, length: str | None, headers: dict[str, str] | None) -> Response | None:
        """413 in the documented error shape for a body over `max_body_bytes` (judged
        from Content-Length before reading it, as a proxy would, when there is one)."""
        limit = self.config.max_body_bytes
        if not limit or length is None or not length.isdigit() or int(length) <= limit:
            return None
        message = f"request body of {int(length):,} bytes is over the limit of {limit:,} bytes"
        return _error(413, "PAYLOAD_TOO_LARGE", message, headers)

    async def _hang(self, receive: Receive) -> None:
        await self._pause(HANG_S, receive)

    async def _pause(self, seconds: float, receive: Receive | None = None) -> bool:
        """Sleep; False when cut short by `release`, or by the client leaving if `receive`."""
        slept = False
        async with anyio.create_task_group() as group:
            scope = group.cancel_scope
            self._pauses.add(scope)
            try:
                if receive is not None:
                    group.start_soon(_cancel_on_disconnect, receive, scope)
                await self._sleep(seconds)
                slept = True
                scope.cancel()  # the watcher
            finally:
                self._pauses.discard(scope)
        return slept

    def release(self) -> None:
        """End every pending sleep: the server is shutting down and must not wait an hour."""
        for scope in list(self._pauses):
            scope.cancel()


def _not_json(constant: str) -> Any:
    """`json.loads` reads NaN, Infinity and -Infinity, which are not JSON: refuse them."""
    raise ValueError(f"{constant} is not JSON")


def _media_type_error(content_type: str | None, headers: dict[str, str] | None) -> Response | None:
    """415 in the documented error shape for a body not said to be JSON."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type == "application/json":
        return None
    given = f"not {media_type!r}" if media_type else "none was given"
    message = f"Content-Type must be application/json, {given}"
    return _error(415, "UNSUPPORTED_MEDIA_TYPE", message, headers)


def _internal_error(exc: Exception) -> Response:
    message = f"the sandbox failed to answer ({type(exc).__name__})"
    return _error(500, "INTERNAL_ERROR", message)


async def _or_internal_error(answer: Coroutine[Any, Any, Response]) -> Response:
    """The answer, or a 500 in the error shape if making it raised (a bug of the sandbox):
    the endpoint counts it as the answer it is."""
    try:
        return await answer
    except Exception as exc:
        return _internal_error(exc)


class _AnswerErrors:
    """Whatever a handler lets out becomes a 500 in the error shape, as the API answers:
    not Starlette's plain-text one, and no traceback on the server's stderr."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except Exception as exc:
            # An answer already begun can only be broken off, as a dropped connection is.
            if scope["type"] == "http" and not started:
                await _internal_error(exc)(scope, receive, send)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    message = f"{exc.detail}: {request.method} {request.url.path}"
    return _error(exc.status_code, code, message, exc.headers)


def create_app(
    config: SandboxConfig | None = None,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> Starlette:
    """The sandbox as an ASGI app; `rng` defaults to ``random.Random(config.faults.seed)``.

    Raises `ValueError` when the API could not answer the campaign of `config` (see
    `SandboxCampaign.problem`).

    ``app.state.sandbox`` is its `SandboxState`; ``app.state.sandbox_release()``, called
    from the app's event loop, ends pending latency and hang sleeps (for shutdown).
    """
    config = config or SandboxConfig()
    # Checked here, where every campaign the sandbox shows passes: a text no answer can
    # carry would make every look-up fail.
    problem = config.campaign.problem()
    if problem is not None:
        raise ValueError(f"the sandbox's campaign: {problem}")
    if rng is None:
        rng = random.Random(config.faults.seed)
    endpoint = _Endpoint(config, clock, sleep, rng)
    routes = [
        Route(API_PREFIX + "/campaigns/v2/{campaignId}/leads", endpoint.leads, methods=["POST"]),
        Route(API_PREFIX + "/campaigns/{campaignId}", endpoint.campaign, methods=["GET"]),
        Route(API_PREFIX + "/_sandbox/state", endpoint.state_view, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_AnswerErrors)],
        exception_handlers={HTTPException: _http_error},
    )
    # A path with a trailing slash is a path the API does not have: 404, not a redirect.
    app.router.redirect_slashes = False
    app.state.sandbox = endpoint.state
    app.state.sandbox_release = endpoint.release
    return app


class _ConnectionBroken(Exception):
    """The app ended without completing its answer."""


class _SandboxTransport(httpx.AsyncBaseTransport):
    def __init__(self, app: Starlette) -> None:
        self._app = app
        self._asgi = httpx.ASGITransport(app=self._guarded)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        await self._app(scope, receive, tracking_send)
        if not complete:
            raise _ConnectionBroken

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # There is no socket to time out on, so the read timeout bounds the whole answer.
        read_timeout = request.extensions.get("timeout", {}).get("read")
        try:
            with anyio.fail_after(read_timeout):
                return await self._asgi.handle_async_request(request)
        except _ConnectionBroken:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response.", request=request
            ) from None
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the sandbox", request=request) from exc

    async def aclose(self) -> None:
        await self._asgi.aclose()


def sandbox_transport(app: Starlette) -> httpx.AsyncBaseTransport:
    """An in-process transport to `app` that fails like a socket on dropped answers and timeouts."""
    return _SandboxTransport(app)
