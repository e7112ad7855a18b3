"""The Add leads API client: one POST, and what its answer means.

`classify` is pure: it turns a status, headers and body into an `Answer` the
engine acts on (deliver, retry, give up on the batch, or stop the run).
`InboxClient.post_leads` wraps the HTTP call and maps transport failures to
retryable answers, so the engine never sees an httpx exception.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from . import __version__
from .answers import Answer, CampaignInfo, Outcome, RateInfo

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A connection that ends while a body this large was being sent is taken for a
# server (or proxy) that would not read it, not for a flaky network.
LARGE_BODY_BYTES = 1_000_000
# Transport errors that end a connection after the request began to be written.
_CUT_OFF = (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)
REFUSE_STATUSES = frozenset({401, 403, 404})


def parse_campaign(campaign: str, body: bytes) -> CampaignInfo | None:
    """The campaign object of a 200 answer; None when it is not a JSON object.
    Fields that are missing or of another type are left out, never an error."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    name, status = data.get("name"), data.get("status")
    variables: list[tuple[str, str]] = []
    found = data.get("customVariables")
    if isinstance(found, dict):
        for key, about in found.items():
            if not isinstance(key, str) or not key:
                continue
            shown = about.get("displayName") if isinstance(about, dict) else None
            variables.append((key, shown if isinstance(shown, str) and shown else key))
    return CampaignInfo(
        campaign,
        name if isinstance(name, str) else None,
        status if isinstance(status, str) else None,
        tuple(variables),
    )


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except (ValueError, OverflowError):  # "inf" and friends
        return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_message(body: bytes) -> str:
    """The server's error message, from either documented error shape or plain text."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return " ".join(text.split())[:200]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            code, msg = err.get("code"), err.get("message")
            return ": ".join(str(p) for p in (code, msg) if p) or json.dumps(err)[:200]
        parts = [str(p) for p in (err, data.get("message")) if p]
        if parts:
            return ": ".join(parts)
    return json.dumps(data)[:200]


def _counts(body: bytes) -> tuple[int, int, int] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    values = [data.get(k) for k in ("added", "skipped", "failed")]
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return (values[0], values[1], values[2])  # type: ignore[return-value]
    return None


def classify(
    status: int, headers: httpx.Headers, body: bytes, now: float, *, counted: bool = True
) -> Answer:
    """Decide what an HTTP answer means for its batch (`counted`: a 200 must carry
    the Add-leads counts; a look-up's 200 is read by its caller)."""
    rate = RateInfo(
        _int_header(headers, "x-ratelimit-limit"),
        _int_header(headers, "x-ratelimit-remaining"),
        _int_header(headers, "x-ratelimit-reset"),
    )
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    if status == 200 and not counted:
        return Answer(Outcome.OK, status, "", rate=rate)
    if status == 200:
        counts = _counts(body)
        if counts is None:
            return Answer(Outcome.RETRY, status, "answer is not the documented JSON", rate=rate)
        added, skipped, failed = counts
        return Answer(Outcome.OK, status, "", added, skipped, failed, rate=rate)
    message = f"{status}: {error_message(body)}" if body else f"HTTP {status}"
    if status == 413:
        return Answer(Outcome.TOO_LARGE, status, message, rate=rate)
    if status in RETRY_STATUSES:
        return Answer(Outcome.RETRY, status, message, retry_after=retry_after, rate=rate)
    if status in REFUSE_STATUSES:
        return Answer(Outcome.REFUSED, status, message, rate=rate)
    if 300 <= status < 400:
        # Never followed: the leads (and, on the same host, the token) would go
        # somewhere the user did not configure, perhaps over plain http.
        where = headers.get("location", "?")
        return Answer(
            Outcome.REFUSED,
            status,
            f"redirect ({status}) to {where}",
            rate=rate,
        )
    return Answer(Outcome.REJECTED, status, message, rate=rate)


class _OneShot:
    """A request body that is given out once and then forgotten."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _OneShot:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


class InboxClient:
    """Posts batches to one campaign's Add leads endpoint over a shared client."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token
        self._token_bytes = token.encode()
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"inboxleads/{__version__}",
        }

    def url(self, campaign: str) -> str:
        """The endpoint for a campaign."""
        return f"{self._base}/campaigns/v2/{campaign}/leads"

    async def get_campaign(self, campaign: str, timeout_s: float, now: float) -> Answer:
        """One attempt of the campaign look-up (`GET /campaigns/{id}`): an OK answer
        carries the campaign; never raises for network trouble."""
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        url = f"{self._base}/campaigns/{campaign}"
        got = await self._exchange("GET", url, headers, None, 0, timeout_s)
        if isinstance(got, Answer):
            return got
        status, response_headers, body = got
        answer = self._masked(classify(status, response_headers, body, now, counted=False))
        if answer.outcome is not Outcome.OK:
            return answer
        found = parse_campaign(campaign, body)
        if found is None:  # retried, as an upload's answer that is not the documented JSON
            message = "answer is not the documented JSON"
            return Answer(Outcome.RETRY, status, message, rate=answer.rate)
        return dataclasses.replace(answer, campaign=found)

    async def post_leads(
        self, campaign: str, payload: dict[str, Any], timeout_s: float, now: float
    ) -> Answer:
        """One attempt: POST the payload, never raising for network trouble."""
        content = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        size = len(content)
        # The body goes out through a one-shot stream, which lets go of it once sent: an
        # httpx response keeps its request, and a response lives until the cyclic
        # garbage collector runs, so `content=bytes` kept every large body alive for
        # a while (memory grew with the file, not with the requests in flight).
        headers = {**self._headers, "Content-Length": str(size)}
        stream = _OneShot(content)
        del content
        got = await self._exchange("POST", self.url(campaign), headers, stream, size, timeout_s)
        if isinstance(got, Answer):
            return got
        status, response_headers, body = got
        answer = classify(status, response_headers, body, now)
        if answer.outcome is Outcome.TOO_LARGE:
            answer = dataclasses.replace(answer, sent_bytes=size)
        return self._masked(answer)

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        stream: _OneShot | None,
        size: int,
        timeout_s: float,
    ) -> Answer | tuple[int, httpx.Headers, bytes]:
        """One request: its status, headers and body (the token masked in it), or the
        retryable answer a transport failure means."""
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._http.request(method, url, content=stream, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return Answer(Outcome.RETRY, None, f"no answer within {timeout_s:g} s")
        except _CUT_OFF as exc:
            what = f"connection error: {type(exc).__name__}"
            if size >= LARGE_BODY_BYTES:
                sent = f"{size / 1e6:.1f} MB"
                return Answer(
                    Outcome.TOO_LARGE, None, f"{what} while sending {sent}", sent_bytes=size
                )
            return Answer(Outcome.RETRY, None, what)
        except httpx.TransportError as exc:
            # The message of a transport error names the host at most, never headers.
            return Answer(Outcome.RETRY, None, f"connection error: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Answer(Outcome.REJECTED, None, f"request failed: {type(exc).__name__}")
        # A server may echo what it was sent: the token is masked before anything is
        # read from the answer, so that no cut to length can leave a piece of it.
        body = response.content.replace(self._token_bytes, b"***")
        return response.status_code, response.headers, body

    def _masked(self, answer: Answer) -> Answer:
        """The answer's message without the token, and without control characters
        (a server's words are shown on terminals and written to logs)."""
        message = answer.message.replace(self._token, "***")
        if not message.isprintable():
            message = "".join(ch if ch.isprintable() else "?" for ch in message)
        if message != answer.message:
            answer = dataclasses.replace(answer, message=message)
        return answer
