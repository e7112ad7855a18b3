"""The Add leads client: what an answer means, and the request that goes out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from inboxleads import __version__
from inboxleads.answers import Answer, Outcome, RateInfo
from inboxleads.client import (
    InboxClient,
    classify,
    error_message,
    parse_retry_after,
)

TOKEN = "tok_client_test_5e1d"
NOW = 1_700_000_000.0
COUNTS = b'{"added": 3, "skipped": 1, "failed": 0}'

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def answer_for(status: int, body: bytes = b"", **headers: str) -> Answer:
    return classify(status, httpx.Headers(headers), body, NOW)


def post(handler: Handler, payload: dict[str, Any], timeout_s: float = 5.0, **kw: str) -> Answer:
    """One post_leads call through an in-process transport."""

    async def go() -> Answer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = InboxClient(http, kw.get("base", "https://inbox.test/api/v1"), TOKEN)
            return await client.post_leads("camp1", payload, timeout_s, NOW)

    return asyncio.run(go())


# --- classify --------------------------------------------------------------------------


def test_200_with_counts_is_delivered_with_the_servers_counts() -> None:
    answer = answer_for(200, COUNTS)
    assert (answer.outcome, answer.added, answer.skipped, answer.failed) == (Outcome.OK, 3, 1, 0)


def test_rate_limit_headers_are_read_from_any_answer() -> None:
    answer = answer_for(
        200,
        COUNTS,
        **{
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "12",
            "X-RateLimit-Reset": "1700000060",
        },
    )
    assert answer.rate == RateInfo(300, 12, 1_700_000_060)


def test_missing_or_garbled_rate_limit_headers_are_unknown() -> None:
    answer = answer_for(200, COUNTS, **{"X-RateLimit-Remaining": "lots", "X-RateLimit-Reset": ""})
    assert answer.rate == RateInfo(None, None, None)


def test_infinite_rate_limit_header_is_treated_as_unknown() -> None:
    answer = answer_for(200, COUNTS, **{"X-RateLimit-Remaining": "inf"})
    assert answer.outcome is Outcome.OK
    assert answer.rate is not None and answer.rate.remaining is None


@pytest.mark.parametrize(
    "body",
    [
        b"<html>OK</html>",
        b"",
        b'{"added": 1}',
        b'{"added": -1, "skipped": 0, "failed": 0}',
        b'{"added": true, "skipped": 0, "failed": 0}',
        b'{"added": "1", "skipped": 0, "failed": 0}',
        b"[1, 2, 3]",
    ],
)
def test_200_without_the_documented_counts_is_retried(body: bytes) -> None:
    answer = answer_for(200, body)
    assert answer.outcome is Outcome.RETRY
    assert answer.message == "answer is not the documented JSON"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    assert answer_for(status, b"busy").outcome is Outcome.RETRY


def test_429_carries_its_retry_after() -> None:
    body = b'{"error": {"code": "RATE_LIMITED", "message": "Too many requests", "status": 429}}'
    answer = answer_for(429, body, **{"Retry-After": "60"})
    assert answer.retry_after == 60.0
    assert answer.message == "429: RATE_LIMITED: Too many requests"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_token_and_campaign_refusals_stop_the_run(status: int) -> None:
    answer = answer_for(status, b'{"error": "Unauthorized", "message": "bad token"}')
    assert answer.outcome is Outcome.REFUSED
    assert answer.status == status


@pytest.mark.parametrize("status", [400, 409, 422])
def test_other_client_errors_give_up_on_the_batch_with_the_servers_message(status: int) -> None:
    body = b'{"error": {"code": "VALIDATION", "message": "usernames: too many", "status": 400}}'
    answer = answer_for(status, body)
    assert answer.outcome is Outcome.REJECTED
    assert answer.message == f"{status}: VALIDATION: usernames: too many"


def test_error_without_a_body_names_the_status() -> None:
    assert answer_for(502).message == "HTTP 502"


# --- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("60", 60.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
    ],
)
def test_retry_after_in_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", ["inf", "1e400"])
def test_infinite_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_as_an_http_date_counts_from_now() -> None:
    when = datetime.fromtimestamp(NOW + 90, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90.0)


def test_retry_after_date_in_the_past_means_now() -> None:
    when = datetime.fromtimestamp(NOW - 90, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == 0.0


# --- error messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"error": {"code": "FORBIDDEN", "message": "No access", "status": 403}}',
            "FORBIDDEN: No access",
        ),
        (b'{"error": {"code": "CAMPAIGN_NOT_FOUND", "status": 404}}', "CAMPAIGN_NOT_FOUND"),
        (b'{"error": "Unauthorized", "message": "Invalid token"}', "Unauthorized: Invalid token"),
        (b'{"message": "Gateway timeout"}', "Gateway timeout"),
        (
            b"<html>\n  <body>Bad   Gateway</body>\n</html>",
            "<html> <body>Bad Gateway</body> </html>",
        ),
        (b"upstream \xff failed", "upstream \ufffd failed"),
        (b'["odd"]', '["odd"]'),
    ],
)
def test_error_message_reads_every_documented_shape_and_plain_text(
    body: bytes, message: str
) -> None:
    assert error_message(body) == message


def test_error_message_of_a_huge_page_is_cut_short() -> None:
    assert len(error_message(b"x" * 100_000)) == 200


# --- the request ------------------------------------------------------------------------


def test_post_sends_the_payload_to_the_campaigns_endpoint_with_the_token() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=COUNTS)

    payload = {"platform": "twitter", "usernames": ["jack"], "platformIds": ["1234567890123456789"]}
    answer = post(handler, payload)
    assert answer.outcome is Outcome.OK
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://inbox.test/api/v1/campaigns/v2/camp1/leads"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"inboxleads/{__version__}"
    assert json.loads(request.content) == payload


def test_base_url_with_a_trailing_slash_gives_the_same_endpoint() -> None:
    urls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, content=COUNTS)

    post(handler, {"usernames": ["jack"]}, base="http://127.0.0.1:8080/api/v1/")
    assert urls == ["http://127.0.0.1:8080/api/v1/campaigns/v2/camp1/leads"]


def test_non_ascii_data_is_sent_as_utf8_json() -> None:
    bodies: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, content=COUNTS)

    payload = {"leads": [{"username": "jack", "data": {"city": "Zürich 東京"}}]}
    post(handler, payload)
    assert json.loads(bodies[0].decode("utf-8")) == payload


def test_server_answer_is_classified() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"}, content=b"slow down")

    answer = post(handler, {"usernames": ["jack"]})
    assert (answer.outcome, answer.status, answer.retry_after) == (Outcome.RETRY, 429, 7.0)


def test_connection_failure_is_retried_without_raising() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    answer = post(handler, {"usernames": ["jack"]})
    assert (answer.outcome, answer.status) == (Outcome.RETRY, None)
    assert answer.message == "connection error: ConnectError"


def test_transport_timeout_is_retried_and_names_the_timeout() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    answer = post(handler, {"usernames": ["jack"]}, timeout_s=5)
    assert (answer.outcome, answer.message) == (Outcome.RETRY, "no answer within 5 s")


def test_server_that_never_answers_is_given_up_on_after_the_timeout() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # never set: the server hangs
        raise AssertionError("unreachable")

    answer = post(handler, {"usernames": ["jack"]}, timeout_s=0.01)
    assert (answer.outcome, answer.status) == (Outcome.RETRY, None)
    assert answer.message == "no answer within 0.01 s"


def test_failure_messages_never_contain_the_token() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {request.headers['authorization']}", request=request)

    assert TOKEN not in post(handler, {"usernames": ["jack"]}).message


@pytest.mark.parametrize("cut_at", [150, 185, 188])
def test_a_token_echoed_by_the_server_is_masked_before_the_message_is_cut(cut_at: int) -> None:
    """A message cut to length must not keep the first half of a token."""

    async def handler(request: httpx.Request) -> httpx.Response:
        text = "x" * cut_at + request.headers["authorization"] + " and more" + "y" * 300
        return httpx.Response(400, content=text.encode())

    message = post(handler, {"usernames": ["jack"]}).message
    # Cut at 200 characters: the token starts at `cut_at + 7`, whole or in part inside.
    assert TOKEN[:4] not in message
    assert message.startswith("400: " + "x" * cut_at + "Bearer ***")


def test_413_means_the_body_was_too_large() -> None:
    body = b'{"error": {"code": "PAYLOAD_TOO_LARGE", "message": "too big", "status": 413}}'
    answer = answer_for(413, body)
    assert (answer.outcome, answer.message) == (
        Outcome.TOO_LARGE,
        "413: PAYLOAD_TOO_LARGE: too big",
    )


@pytest.mark.parametrize("error", [httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError])
@pytest.mark.parametrize("large", [True, False])
def test_a_connection_cut_while_sending_a_large_body_means_too_large(
    error: type[httpx.TransportError], large: bool
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise error("connection closed", request=request)

    # 42,000 values of 24 bytes: just over 1,000,000 bytes, under 1 MiB.
    values = [f"u{i:06d}" * (3 if large else 1) for i in range(42_000 if large else 10)]
    answer = post(handler, {"usernames": values})
    if large:
        assert answer.outcome is Outcome.TOO_LARGE
        assert answer.message.startswith(f"connection error: {error.__name__} while sending")
    else:
        assert (answer.outcome, answer.message) == (
            Outcome.RETRY,
            f"connection error: {error.__name__}",
        )
