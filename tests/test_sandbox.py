"""The sandbox stand-ins of Add leads and Get campaign: rules, rate limit, faults, serving."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from inboxleads.sandbox import (
    API_PREFIX,
    DEFAULT_TOKEN,
    HANG_S,
    Faults,
    SandboxCampaign,
    SandboxConfig,
    SandboxState,
    create_app,
    sandbox_transport,
    serve,
)
from inboxleads.sandbox.config import campaign_from_json, load_campaign

from .conftest import Run, cli_env
from .sandbox_server import RunningSandbox

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingSleep:
    """Returns at once, remembering how long it was asked to sleep."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = sandbox_transport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox" + API_PREFIX) as c:
        yield c


async def post(
    app: Starlette,
    body: Any,
    campaign: str = "camp1",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async with client_for(app) as client:
        url = f"/campaigns/v2/{campaign}/leads"
        return await client.post(url, json=body, headers=AUTH if headers is None else headers)


def state_of(app: Starlette) -> SandboxState:
    state: SandboxState = app.state.sandbox
    return state


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == response.status_code
    return error


# --- auth and path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": DEFAULT_TOKEN},
        {"Authorization": "Basic c2FuZGJveA=="},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong-token"},
    ],
    ids=["missing", "no-scheme", "basic", "empty", "wrong"],
)
async def test_bad_or_missing_token_is_401_unauthorized(headers: dict[str, str]) -> None:
    app = create_app()
    response = await post(app, {"usernames": ["jack"]}, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "UNAUTHORIZED"
    assert state_of(app).members("camp1") == set()


async def test_read_only_token_is_403_forbidden() -> None:
    response = await post(
        create_app(), {"usernames": ["jack"]}, headers={"Authorization": "Bearer ro_x"}
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "FORBIDDEN"


async def test_error_messages_never_echo_the_token() -> None:
    response = await post(
        create_app(), {"usernames": ["jack"]}, headers={"Authorization": "Bearer s3cret"}
    )
    assert "s3cret" not in response.text


async def test_campaign_id_outside_pattern_is_400() -> None:
    response = await post(create_app(), {"usernames": ["jack"]}, campaign="Camp-1")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert "campaignId" in error["message"]


async def test_campaign_starting_with_missing_is_404() -> None:
    response = await post(create_app(), {"usernames": ["jack"]}, campaign="missing42")
    assert response.status_code == 404
    assert error_of(response)["code"] == "CAMPAIGN_NOT_FOUND"


async def test_auth_is_checked_before_path_and_path_before_body() -> None:
    app = create_app()
    bad_token = {"Authorization": "Bearer nope"}
    assert (await post(app, "not an object", campaign="BAD", headers=bad_token)).status_code == 401
    response = await post(app, "not an object", campaign="BAD")
    assert "campaignId" in error_of(response)["message"]


async def test_unknown_route_and_wrong_method_answer_in_the_error_shape() -> None:
    async with client_for(create_app()) as client:
        missing = await client.post("/campaigns/v1/camp1/leads", json={}, headers=AUTH)
        wrong_method = await client.get("/campaigns/v2/camp1/leads", headers=AUTH)
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "METHOD_NOT_ALLOWED"
    assert wrong_method.headers["allow"] == "POST"


# --- body validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (["jack"], "body"),
        ({}, "body"),
        ({"platform": "twitter"}, "body"),
        ({"usernames": ["jack"], "emails": ["a@b.c"]}, "emails"),
        ({"platform": "instagram", "usernames": ["jack"]}, "platform"),
        ({"usernames": "jack"}, "usernames"),
        ({"usernames": []}, "usernames"),
        ({"usernames": ["u"] * 2001}, "usernames"),
        ({"usernames": ["jack", ""]}, "usernames[1]"),
        ({"platformIds": [44196397]}, "platformIds[0]"),
        ({"externalIds": [None]}, "externalIds[0]"),
        ({"leads": []}, "leads"),
        ({"leads": ["jack"]}, "leads[0]"),
        ({"leads": [{}]}, "leads[0]"),
        ({"leads": [{"username": "jack", "platformId": "1"}]}, "leads[0]"),
        ({"leads": [{"username": "jack", "email": "x"}]}, "leads[0].email"),
        ({"leads": [{"username": ""}]}, "leads[0].username"),
        ({"leads": [{"username": "jack", "platform": "x"}]}, "leads[0].platform"),
        ({"leads": [{"username": "jack", "data": ["x"]}]}, "leads[0].data"),
        ({"leads": [{"username": "jack", "data": {"custom_a": 3}}]}, "leads[0].data.custom_a"),
    ],
)
async def test_invalid_body_is_400_naming_the_field(body: Any, field: str) -> None:
    app = create_app()
    response = await post(app, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith(field + ":")
    assert state_of(app).bodies("camp1") == []


async def test_body_that_is_not_json_is_400() -> None:
    async with client_for(create_app()) as client:
        headers = {**AUTH, "Content-Type": "application/json"}
        response = await client.post("/campaigns/v2/c/leads", content=b"{nope", headers=headers)
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("body:")


async def test_more_identifiers_than_max_total_across_arrays_is_400() -> None:
    app = create_app(SandboxConfig(max_total=3))
    response = await post(
        app, {"usernames": ["a", "b"], "leads": [{"platformId": "1"}, {"externalId": "x"}]}
    )
    assert response.status_code == 400
    assert "4 identifiers" in error_of(response)["message"]
    assert (await post(app, {"usernames": ["a", "b"], "platformIds": ["1"]})).status_code == 200


# --- resolution and state ------------------------------------------------------------------


async def test_counts_follow_the_resolution_rule() -> None:
    app = create_app()
    body = {
        "platform": "twitter",
        # added jack, Ok_1; skipped JACK (same, case-insensitive); failed the last three
        "usernames": ["jack", "JACK", "Ok_1", "Gone_away", "bad-name", "a" * 16],
        # added 44196397; skipped its repeat; failed: 404 suffix, not digits, 20 digits
        "platformIds": ["44196397", "44196397", "12404", "12a", "1" * 20],
        # added hy4k7m2x; failed: gone prefix, upper case
        "externalIds": ["hy4k7m2x", "gone1", "ABC"],
        "leads": [
            {"username": "jack"},  # skipped
            {"platformId": "50393960", "data": {"custom_x": "1"}},  # added
            {"externalId": "gonez"},  # failed
        ],
    }
    response = await post(app, body)
    assert response.status_code == 200
    assert response.json() == {"added": 5, "skipped": 3, "failed": 9}
    assert state_of(app).members("camp1") == {
        ("username", "jack"),
        ("username", "ok_1"),
        ("platformId", "44196397"),
        ("platformId", "50393960"),
        ("externalId", "hy4k7m2x"),
    }


async def test_resending_counts_skipped_and_is_logged_again() -> None:
    app = create_app()
    body = {"usernames": ["jack", "nope!"], "leads": [{"username": "ev", "data": {"c": "v"}}]}
    assert (await post(app, body)).json() == {"added": 2, "skipped": 0, "failed": 1}
    assert (await post(app, body)).json() == {"added": 0, "skipped": 2, "failed": 1}
    state = state_of(app)
    assert (
        state.received("camp1")
        == [("username", "jack"), ("username", "nope!"), ("username", "ev")] * 2
    )
    assert state.bodies("camp1") == [body, body]
    assert state.requests_by_status() == {200: 2}
    assert state.members("other") == set()


async def test_campaigns_are_kept_apart() -> None:
    app = create_app()
    await post(app, {"usernames": ["jack"]}, campaign="a1")
    assert (await post(app, {"usernames": ["jack"]}, campaign="b2")).json()["added"] == 1


async def test_state_endpoint_reports_requests_and_members_without_auth() -> None:
    app = create_app()
    await post(app, {"usernames": ["jack", "jack"]})
    await post(app, {"usernames": ["x"]}, headers={})
    async with client_for(app) as client:
        state = (await client.get("/_sandbox/state")).json()
    assert state["requests"] == 2
    assert state["by_status"] == {"200": 1, "401": 1}
    assert state["lookups"] == {}
    assert state["campaigns"] == {
        "camp1": {
            "members": 1,
            "requests": [
                {"usernames": ["jack", "jack"], "platformIds": [], "externalIds": [], "leads": []}
            ],
            "data": {},
        }
    }


async def test_state_endpoint_reports_each_campaigns_first_request_at_either_endpoint() -> None:
    app = create_app()
    before = time.monotonic()
    async with client_for(app) as client:
        await client.get("/campaigns/fresh1", headers=AUTH)
        between = time.monotonic()
        await client.post("/campaigns/v2/fresh1/leads", json={"usernames": ["jack"]}, headers=AUTH)
        await client.post("/campaigns/v2/other1/leads", json={"usernames": ["jack"]}, headers={})
        timing = (await client.get("/_sandbox/state")).json()["timing"]
    first = timing["first_request_by_campaign"]
    assert set(first) == {"fresh1", "other1"}  # a refused request arrived all the same
    assert before <= first["fresh1"] <= between  # the look-up's arrival, not the upload's
    assert first["other1"] >= between
    assert timing["first_arrival"] >= between  # still the leads endpoint's alone


def test_the_first_request_of_a_campaign_is_kept_on_the_states_clock() -> None:
    clock = FakeClock(10.0)
    state = SandboxState(clock=clock)
    state.arrive("c1")
    clock.now = 12.5
    state.arrive("c1")
    state.arrive("c2")
    assert state.first_requests() == {"c1": 10.0, "c2": 12.5}
    assert state.snapshot()["timing"]["first_request_by_campaign"] == {"c1": 10.0, "c2": 12.5}


_HANDLES = st.one_of(
    st.from_regex(r"[A-Za-z0-9_]{1,15}", fullmatch=True),
    st.sampled_from(["gone", "GoneX", "a-b", "", "x" * 16, "Jack", "jack"]),
)


@settings(max_examples=50)
@given(st.lists(_HANDLES, min_size=1, max_size=50))
def test_counts_add_up_and_a_resend_is_all_skipped(names: list[str]) -> None:
    state = SandboxState()
    body = {"usernames": names}
    added, skipped, failed = state.apply("c", body)
    assert added + skipped + failed == len(names)
    valid = [
        n
        for n in names
        if re.fullmatch(r"[A-Za-z0-9_]{1,15}", n) and not n.lower().startswith("gone")
    ]
    assert failed == len(names) - len(valid)
    assert added == len({n.lower() for n in valid})
    assert state.apply("c", body) == (0, added + skipped, failed)


async def test_flaky_identifiers_fail_on_their_first_send_only() -> None:
    app = create_app()
    body = {
        # failed: Flaky_a (its first send), gone_x; added: FLAKY_A (a repeat: a later send)
        "usernames": ["Flaky_a", "FLAKY_A", "jack", "gone_x"],
        # failed: 12503 (its first send), the 404 suffix; added: its repeat, 15031
        "platformIds": ["12503", "12503", "15031", "7404"],
        # failed: flakyz (its first send), upper case; added: aflaky (not a prefix)
        "externalIds": ["flakyz", "FLAKYQ", "aflaky"],
        "leads": [
            {"username": "flaky_b", "data": {"c": "v"}},  # failed: its first send
            {"externalId": "flakyz"},  # added: sent before, in the array above
            {"platformId": "99503"},  # failed: its first send
        ],
    }
    assert (await post(app, body)).json() == {"added": 6, "skipped": 0, "failed": 8}
    # Every later send resolves them: only the unresolvable ones fail again.
    assert (await post(app, body)).json() == {"added": 2, "skipped": 9, "failed": 3}
    assert (await post(app, body)).json() == {"added": 0, "skipped": 11, "failed": 3}
    assert {("username", "flaky_a"), ("platformId", "99503")} <= state_of(app).members("camp1")
    # Per campaign: another campaign receives them for the first time.
    assert (await post(app, {"usernames": ["flaky_a"]}, campaign="other")).json()["failed"] == 1
    assert (await post(app, {"usernames": ["flaky_a"]}, campaign="other")).json()["added"] == 1


async def test_a_request_not_applied_is_not_a_first_send() -> None:
    app = create_app(SandboxConfig(faults=Faults(error_rate=1.0, seed=2)))
    assert (await post(app, {"usernames": ["flaky_a"]})).status_code >= 500
    state = state_of(app)
    assert state.apply("camp1", {"usernames": ["flaky_a"]}) == (0, 0, 1)
    assert state.apply("camp1", {"usernames": ["flaky_a"]}) == (1, 0, 0)


_MAYBE_FLAKY = st.one_of(
    _HANDLES, st.sampled_from(["flaky", "Flaky_1", "FLAKY_1", "flakyflaky", "xflaky", "flaky!"])
)


@settings(max_examples=50)
@given(st.lists(st.lists(_MAYBE_FLAKY, min_size=1, max_size=30), min_size=1, max_size=4))
def test_a_flaky_handle_fails_once_per_campaign_in_bodies_of_any_shape(
    bodies: list[list[str]],
) -> None:
    state = SandboxState()
    seen: set[str] = set()
    members: set[str] = set()
    for index, names in enumerate(bodies):
        expected = [0, 0, 0]
        for name in names:
            key = name.lower()
            if not re.fullmatch(r"[A-Za-z0-9_]{1,15}", name) or key.startswith("gone"):
                expected[2] += 1
            elif key.startswith("flaky") and key not in seen:
                seen.add(key)
                expected[2] += 1
            elif key in members:
                expected[1] += 1
            else:
                members.add(key)
                expected[0] += 1
        as_leads = {"leads": [{"username": name} for name in names]}
        body = {"usernames": names} if index % 2 else as_leads
        assert state.apply("c", body) == tuple(expected)


# --- rate limit ----------------------------------------------------------------------------


async def test_rate_limit_headers_and_429_with_retry_after() -> None:
    clock = FakeClock(1000.0)
    app = create_app(SandboxConfig(faults=Faults(rate_limit=2, rate_window_s=10.0)), clock=clock)
    body = {"usernames": ["jack"]}

    first = await post(app, body)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert first.headers["X-RateLimit-Reset"] == "1010"

    clock.now = 1004.5
    second = await post(app, {"usernames": ["ev"]})
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert second.headers["X-RateLimit-Reset"] == "1010"  # when the oldest leaves the window

    clock.now = 1005.5
    limited = await post(app, {"usernames": ["new1"]})
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "RATE_LIMITED"
    assert limited.headers["Retry-After"] == "5"  # 4.5 s rounded up
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert ("username", "new1") not in state_of(app).members("camp1")

    clock.now = 1010.0  # the first request leaves the window; the 429 did not take a slot
    after = await post(app, {"usernames": ["new1"]})
    assert after.status_code == 200
    assert after.headers["X-RateLimit-Remaining"] == "0"
    assert after.headers["X-RateLimit-Reset"] == "1015"


async def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock(1000.0)
    app = create_app(SandboxConfig(faults=Faults(rate_limit=1, rate_window_s=1.0)), clock=clock)
    await post(app, {"usernames": ["jack"]})
    clock.now = 1000.9999
    assert (await post(app, {"usernames": ["jack"]})).headers["Retry-After"] == "1"


async def test_rate_headers_on_errors_other_than_auth_and_none_without_a_limit() -> None:
    app = create_app(SandboxConfig(faults=Faults(rate_limit=5)), clock=FakeClock())
    assert "X-RateLimit-Limit" in (await post(app, {"nope": 1})).headers
    assert "X-RateLimit-Limit" in (await post(app, {}, campaign="missing1")).headers
    assert "X-RateLimit-Limit" not in (await post(app, {}, headers={})).headers
    assert "X-RateLimit-Limit" not in (await post(create_app(), {"usernames": ["a"]})).headers


# --- faults --------------------------------------------------------------------------------


async def test_error_fault_answers_5xx_and_does_not_apply() -> None:
    app = create_app(SandboxConfig(faults=Faults(error_rate=1.0, seed=7)))
    statuses = []
    for _ in range(12):
        response = await post(app, {"usernames": ["jack"]})
        codes = {500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE"}
        assert error_of(response)["code"] == codes[response.status_code]
        statuses.append(response.status_code)
    assert set(statuses) <= {500, 502, 503}
    assert len(set(statuses)) > 1
    assert state_of(app).members("camp1") == set()
    assert sum(state_of(app).requests_by_status().values()) == 12


async def test_fault_draws_are_reproducible_from_the_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        app = create_app(SandboxConfig(faults=Faults(error_rate=0.5, seed=seed)))
        return [(await post(app, {"usernames": ["jack"]})).status_code for _ in range(10)]

    assert await statuses(3) == await statuses(3)


async def test_injected_rng_is_used_for_fault_draws() -> None:
    app = create_app(SandboxConfig(faults=Faults(error_rate=0.5)), rng=random.Random(3))
    again = create_app(SandboxConfig(faults=Faults(error_rate=0.5, seed=3)))
    first = [(await post(app, {"usernames": ["a"]})).status_code for _ in range(8)]
    assert first == [(await post(again, {"usernames": ["a"]})).status_code for _ in range(8)]


async def test_drop_fault_breaks_the_connection_without_applying() -> None:
    app = create_app(SandboxConfig(faults=Faults(drop_rate=1.0, seed=1)))
    with pytest.raises(httpx.RemoteProtocolError):
        await post(app, {"usernames": ["jack"]})
    assert state_of(app).members("camp1") == set()
    assert state_of(app).faults() == {"drop": 1}


async def test_lost_fault_applies_then_breaks_the_connection() -> None:
    app = create_app(SandboxConfig(faults=Faults(lost_rate=1.0, seed=1)))
    with pytest.raises(httpx.RemoteProtocolError):
        await post(app, {"usernames": ["jack"]})
    assert state_of(app).members("camp1") == {("username", "jack")}
    assert state_of(app).received("camp1") == [("username", "jack")]
    assert state_of(app).faults() == {"lost": 1}
    assert state_of(app).requests_by_status() == {}


async def test_hang_sleeps_an_hour_then_drops_without_applying() -> None:
    sleep = RecordingSleep()
    app = create_app(SandboxConfig(faults=Faults(hang_rate=1.0, seed=1)), sleep=sleep)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(app, {"usernames": ["jack"]})
    assert sleep.calls == [HANG_S]
    assert state_of(app).members("camp1") == set()
    assert state_of(app).faults() == {"hang": 1}


async def test_hang_is_cut_short_by_the_client_read_timeout() -> None:
    async def sleep_forever(seconds: float) -> None:
        await anyio.sleep_forever()

    app = create_app(SandboxConfig(faults=Faults(hang_rate=1.0, seed=1)), sleep=sleep_forever)
    transport = sandbox_transport(app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox" + API_PREFIX
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                "/campaigns/v2/c/leads", json={"usernames": ["a"]}, headers=AUTH, timeout=0.05
            )
    assert state_of(app).members("c") == set()


async def test_latency_is_fixed_plus_per_username_through_the_injected_sleep() -> None:
    sleep = RecordingSleep()
    faults = Faults(latency_s=0.5, username_latency_s=0.01)
    app = create_app(SandboxConfig(faults=faults), sleep=sleep, clock=lambda: 1000.0)
    body = {
        "usernames": ["a", "b", "c"],
        "platformIds": ["1"],
        "leads": [{"username": "d"}, {"externalId": "e"}],
    }
    assert (await post(app, body)).status_code == 200
    assert sleep.calls == [pytest.approx(0.54)]


async def test_no_sleep_without_latency() -> None:
    sleep = RecordingSleep()
    await post(create_app(sleep=sleep), {"usernames": ["a"]})
    assert sleep.calls == []


# --- serving over real sockets -------------------------------------------------------------


def test_running_sandbox_answers_over_loopback_and_drops_connections() -> None:
    with RunningSandbox() as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", sandbox.base_url)
        response = client.post("/campaigns/v2/c1/leads", json={"usernames": ["jack"]}, headers=AUTH)
        assert response.json() == {"added": 1, "skipped": 0, "failed": 0}
        assert sandbox.state.members("c1") == {("username", "jack")}
        assert client.get("/_sandbox/state").json()["campaigns"]["c1"]["members"] == 1

    config = SandboxConfig(faults=Faults(drop_rate=1.0, seed=1))
    with RunningSandbox(config) as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        with pytest.raises(httpx.TransportError):
            client.post("/campaigns/v2/c1/leads", json={"usernames": ["jack"]}, headers=AUTH)
        assert sandbox.state.members("c1") == set()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_running_sandbox_stops_promptly_with_a_request_hanging() -> None:
    errors: list[Exception] = []

    def call(url: str) -> None:
        try:
            httpx.post(url, json={"usernames": ["a"]}, headers=AUTH, timeout=30)
        except httpx.TransportError as exc:
            errors.append(exc)

    config = SandboxConfig(faults=Faults(hang_rate=1.0, seed=1))
    with RunningSandbox(config) as sandbox:
        client = threading.Thread(target=call, args=(sandbox.base_url + "/campaigns/v2/c1/leads",))
        client.start()
        wait_for(lambda: sandbox.state.faults() == {"hang": 1})
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1.0  # not the hour, nor uvicorn's grace period
    client.join(timeout=5)
    assert len(errors) == 1
    assert sandbox.state.members("c1") == set()


def test_a_client_that_times_out_may_still_see_its_batch_applied() -> None:
    # Over a real socket the server does not notice the client leaving: as with the real API,
    # a timed-out request is not proof that nothing was added.
    config = SandboxConfig(faults=Faults(latency_s=0.3))
    with RunningSandbox(config) as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                "/campaigns/v2/c1/leads", json={"usernames": ["a"]}, headers=AUTH, timeout=0.05
            )
        wait_for(lambda: sandbox.state.members("c1") == {("username", "a")})


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "example.com", "::"])
def test_serve_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve(SandboxConfig(), host=host)


@pytest.mark.posix  # SIGINT or SIGTERM to the server's process
@pytest.mark.parametrize(
    ("sig", "host"), [(signal.SIGINT, "127.0.0.1"), (signal.SIGTERM, "localhost")]
)
def test_serve_reports_its_url_and_returns_quietly_on_a_signal(sig: int, host: str) -> None:
    code = (
        "from inboxleads.sandbox import SandboxConfig, serve\n"
        f"serve(SandboxConfig(), host={host!r}, ready=lambda url: print(url, flush=True))\n"
        "print('returned', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        try:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", url)
            response = httpx.post(
                url + "/campaigns/v2/c1/leads", json={"usernames": ["jack"]}, headers=AUTH
            )
            assert response.status_code == 200
        finally:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out == "returned\n"
    assert err == ""


# --- get campaign --------------------------------------------------------------------------


async def get_campaign(
    app: Starlette, campaign: str = "camp1", headers: dict[str, str] | None = None
) -> httpx.Response:
    async with client_for(app) as client:
        return await client.get(
            f"/campaigns/{campaign}", headers=AUTH if headers is None else headers
        )


async def test_get_campaign_answers_the_campaign_object_counting_the_leads_it_holds() -> None:
    app = create_app(clock=FakeClock(1_000_000.0))
    await post(app, {"usernames": ["jack", "JACK", "gone_x"], "platformIds": ["1"]})
    await post(app, {"usernames": ["ev"]}, campaign="other")
    response = await get_campaign(app)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "id": "camp1",
        "name": "Sandbox campaign",
        "description": None,
        "status": "active",
        "targetsCount": 2,
        "contactedCount": 0,
        "isHydrating": False,
        "customVariables": {},
        "createdAt": "1970-01-12T13:46:40.000Z",
    }
    assert (await get_campaign(app, "never1")).json()["targetsCount"] == 0


async def test_get_campaign_shows_the_configured_campaign_for_every_id() -> None:
    campaign = SandboxCampaign(
        name="Spring outreach",
        status="paused",
        description="Founders in SF",
        variables={"company-name": "Company name", "city": "City"},
    )
    app = create_app(SandboxConfig(campaign=campaign))
    for campaign_id in ("camp1", "z9"):
        answer = (await get_campaign(app, campaign_id)).json()
        assert answer["id"] == campaign_id
        assert (answer["name"], answer["status"]) == ("Spring outreach", "paused")
        assert answer["description"] == "Founders in SF"
        assert answer["customVariables"] == {
            "company-name": {"displayName": "Company name", "description": None},
            "city": {"displayName": "City", "description": None},
        }
        assert list(answer["customVariables"]) == ["company-name", "city"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic c2FuZGJveA=="}, {"Authorization": "Bearer wrong-token"}],
    ids=["missing", "basic", "wrong"],
)
async def test_get_campaign_without_a_good_token_is_401_in_the_error_shape(
    headers: dict[str, str],
) -> None:
    response = await get_campaign(create_app(), headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "UNAUTHORIZED"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_read_only_token_may_get_a_campaign_but_not_add_leads() -> None:
    app = create_app()
    read_only = {"Authorization": "Bearer ro_reader"}
    assert (await get_campaign(app, headers=read_only)).status_code == 200
    assert (await post(app, {"usernames": ["jack"]}, headers=read_only)).status_code == 403


async def test_get_campaign_checks_the_id_as_adding_leads_does() -> None:
    app = create_app()
    bad = await get_campaign(app, "Camp-1")
    assert bad.status_code == 400
    assert error_of(bad)["code"] == "VALIDATION_ERROR"
    assert "campaignId" in error_of(bad)["message"]
    missing = await get_campaign(app, "missing42")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "CAMPAIGN_NOT_FOUND"


async def test_get_campaign_uses_the_teams_rate_limit_slots_and_sends_its_headers() -> None:
    clock = FakeClock(1000.0)
    app = create_app(SandboxConfig(faults=Faults(rate_limit=3, rate_window_s=10.0)), clock=clock)
    first = await get_campaign(app)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "3"
    assert first.headers["X-RateLimit-Remaining"] == "2"
    assert first.headers["X-RateLimit-Reset"] == "1010"
    # Path errors report the window without using a slot, as adding leads does.
    assert (await get_campaign(app, "missing1")).headers["X-RateLimit-Remaining"] == "2"
    assert "X-RateLimit-Limit" not in (await get_campaign(app, headers={})).headers
    clock.now = 1002.0
    assert (await post(app, {"usernames": ["jack"]})).headers["X-RateLimit-Remaining"] == "1"
    assert (await get_campaign(app)).headers["X-RateLimit-Remaining"] == "0"
    clock.now = 1003.0
    limited = await get_campaign(app)
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "RATE_LIMITED"
    assert limited.headers["Retry-After"] == "7"
    assert (await post(app, {"usernames": ["ev"]})).status_code == 429


async def test_get_campaign_waits_the_latency_but_draws_no_fault() -> None:
    sleep = RecordingSleep()
    faults = Faults(
        latency_s=0.5, username_latency_s=1.0, error_rate=1.0, drop_rate=1.0, hang_rate=1.0
    )
    app = create_app(SandboxConfig(faults=faults), sleep=sleep, clock=FakeClock())
    assert (await get_campaign(app)).status_code == 200
    assert sleep.calls == [0.5]
    assert state_of(app).faults() == {}


async def test_getting_campaigns_leaves_a_seeds_fault_sequence_for_adding_leads_as_it_was() -> None:
    async def statuses(look_up: bool) -> list[int]:
        app = create_app(SandboxConfig(faults=Faults(error_rate=0.5, seed=3)))
        out = []
        for _ in range(10):
            if look_up:
                assert (await get_campaign(app)).status_code == 200
            out.append((await post(app, {"usernames": ["jack"]})).status_code)
        return out

    without = await statuses(look_up=False)
    assert len(set(without)) > 1
    assert await statuses(look_up=True) == without


async def test_get_campaign_answers_are_counted_apart_from_the_leads_requests() -> None:
    app = create_app()
    await post(app, {"usernames": ["jack"]})
    await get_campaign(app)
    await get_campaign(app, "missing1")
    await get_campaign(app, headers={})
    state = state_of(app)
    assert state.lookups() == {200: 1, 404: 1, 401: 1}
    assert state.requests_by_status() == {200: 1}
    assert state.total_requests() == 1
    async with client_for(app) as client:
        snapshot = (await client.get("/_sandbox/state")).json()
    assert snapshot["lookups"] == {"200": 1, "401": 1, "404": 1}
    assert snapshot["requests"] == 1


async def test_posting_to_a_campaign_or_getting_its_leads_is_405() -> None:
    async with client_for(create_app()) as client:
        posted = await client.post("/campaigns/camp1", json={"usernames": ["a"]}, headers=AUTH)
        got = await client.get("/campaigns/v2/camp1/leads", headers=AUTH)
    assert (posted.status_code, got.status_code) == (405, 405)
    assert error_of(posted)["code"] == "METHOD_NOT_ALLOWED"


# --- each lead's data ----------------------------------------------------------------------


async def test_each_leads_data_is_kept_and_a_resend_keeps_the_first() -> None:
    app = create_app()
    first = {
        "usernames": ["bare"],
        "leads": [
            {"username": "Jack", "data": {"company-name": "Block", "city": "SF"}},
            {"platformId": "44196397", "data": {}},
            {"externalId": "hy4k7m2x"},
            {"username": "gone_x", "data": {"city": "nowhere"}},
            {"username": "flaky_a", "data": {"city": "first"}},
        ],
    }
    assert (await post(app, first)).json() == {"added": 4, "skipped": 0, "failed": 2}
    again = {
        "leads": [
            {"username": "jack", "data": {"company-name": "Other"}},
            {"username": "bare", "data": {"city": "late"}},
            {"username": "flaky_a", "data": {"city": "second"}},
        ]
    }
    assert (await post(app, again)).json() == {"added": 1, "skipped": 2, "failed": 0}
    expected = {
        ("username", "jack"): {"company-name": "Block", "city": "SF"},
        ("platformId", "44196397"): {},
        ("username", "flaky_a"): {"city": "second"},
    }
    assert state_of(app).data("camp1") == expected
    assert state_of(app).data("other") == {}
    async with client_for(app) as client:
        snapshot = (await client.get("/_sandbox/state")).json()
    assert snapshot["campaigns"]["camp1"]["data"] == {
        "username:jack": {"company-name": "Block", "city": "SF"},
        "platformId:44196397": {},
        "username:flaky_a": {"city": "second"},
    }


async def test_a_lead_not_applied_keeps_no_data() -> None:
    app = create_app(SandboxConfig(faults=Faults(error_rate=1.0, seed=1)))
    response = await post(app, {"leads": [{"username": "jack", "data": {"c": "v"}}]})
    assert response.status_code >= 500
    assert state_of(app).data("camp1") == {}


# --- malformed requests --------------------------------------------------------------------


JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}


async def test_json_nested_too_deeply_is_400_in_the_error_shape() -> None:
    app = create_app()
    async with client_for(app) as client:
        response = await client.post(
            "/campaigns/v2/c1/leads", content=b"[" * 100_000, headers=JSON_HEADERS
        )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith("body:")
    assert state_of(app).requests_by_status() == {400: 1}


async def post_raw(app: Starlette, content: bytes) -> httpx.Response:
    async with client_for(app) as client:
        return await client.post("/campaigns/v2/c1/leads", content=content, headers=JSON_HEADERS)


async def get_state(app: Starlette) -> httpx.Response:
    async with client_for(app) as client:
        return await client.get("/_sandbox/state")


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (
            rb'{"leads":[{"username":"jack","data":{"a":"\udfff"}}],"platform":"twitter"}',
            "leads[0].data.a",
        ),
        (rb'{"usernames":["\ud800"],"platform":"twitter"}', "usernames[0]"),
        (rb'{"usernames":["jack","x\uDBFFy"]}', "usernames[1]"),
        (rb'{"externalIds":["\ude00\ud83d"]}', "externalIds[0]"),
        (rb'{"leads":[{"username":"ev"},{"externalId":"\udC00"}]}', "leads[1].externalId"),
        (rb'{"leads":[{"username":"jack","data":{"\ud800":"v"}}]}', "leads[0].data"),
        (rb'{"usernames":["jack"],"\ud800":1}', "body"),
    ],
)
async def test_a_string_holding_half_a_character_is_400_and_never_stored(
    content: bytes, field: str
) -> None:
    app = create_app()
    response = await post_raw(app, content)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith(field + ": ")
    assert "half of a character" in error["message"]
    assert state_of(app).bodies("c1") == []
    state = await get_state(app)
    assert state.status_code == 200
    assert state.json()["by_status"] == {"400": 1}
    assert (await post(app, {"usernames": ["jack"]}, campaign="c1")).status_code == 200
    assert (await get_state(app)).status_code == 200


@pytest.mark.parametrize(
    "content",
    [
        b'{"usernames":["\xed\xa0\x80"]}',  # a surrogate written in UTF-8 bytes
        '{"usernames":["\ud800"]}'.encode("utf-16-le", "surrogatepass"),
    ],
    ids=["utf-8", "utf-16"],
)
async def test_a_body_encoding_half_a_character_is_not_valid_json(content: bytes) -> None:
    app = create_app()
    response = await post_raw(app, content)
    assert response.status_code == 400
    assert error_of(response)["message"] == "body: not valid JSON"
    assert (await get_state(app)).status_code == 200


async def test_whole_characters_escaped_as_pairs_or_backslashes_are_accepted() -> None:
    app = create_app()
    content = rb'{"leads":[{"username":"jack","data":{"a":"\ud83d\ude00","b":"\\ud800"}}]}'
    response = await post_raw(app, content)
    assert response.json() == {"added": 1, "skipped": 0, "failed": 0}
    state = await get_state(app)
    assert state.status_code == 200
    assert state.json()["campaigns"]["c1"]["data"] == {
        "username:jack": {"a": "\U0001f600", "b": "\\ud800"}
    }


@pytest.mark.parametrize(
    "content",
    [
        b'{"usernames":[NaN]}',
        b'{"platformIds":[Infinity]}',
        b'{"leads":[{"username":"jack","data":{"a":-Infinity}}]}',
        b'{"usernames":["jack"],"platform":NaN}',
    ],
)
async def test_nan_and_infinity_are_not_json(content: bytes) -> None:
    app = create_app()
    response = await post_raw(app, content)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["message"]) == ("VALIDATION_ERROR", "body: not valid JSON")
    assert state_of(app).bodies("c1") == []


async def test_nothing_a_client_sends_makes_the_campaign_or_state_answer_500() -> None:
    app = create_app()
    odd_token = {"Authorization": b"Bearer t\xff\xed\xa0\x80"}
    async with client_for(app) as client:
        answers = [
            await client.get("/campaigns/%ED%A0%80", headers=AUTH),
            await client.get("/campaigns/%FF", headers=AUTH),
            await client.get("/campaigns/c1", headers=odd_token),
            await client.post(
                "/campaigns/v2/c1/leads", json={"usernames": ["a"]}, headers=odd_token
            ),
        ]
    assert [response.status_code for response in answers] == [400, 400, 401, 401]
    assert (await get_state(app)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/campaigns/v2/c1/leads/"), ("GET", "/campaigns/c1/"), ("GET", "/_sandbox/state/")],
)
async def test_a_trailing_slash_is_404_in_the_error_shape_not_a_redirect(
    method: str, path: str
) -> None:
    app = create_app()
    async with client_for(app) as client:
        response = await client.request(method, path, json={"usernames": ["a"]}, headers=AUTH)
    assert response.status_code == 404
    assert error_of(response)["code"] == "NOT_FOUND"
    assert "location" not in response.headers
    assert state_of(app).members("c1") == set()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/jsonp",
        None,
    ],
)
async def test_a_body_not_said_to_be_json_is_415(content_type: str | None) -> None:
    app = create_app(SandboxConfig(faults=Faults(rate_limit=5)), clock=FakeClock())
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with client_for(app) as client:
        response = await client.post(
            "/campaigns/v2/c1/leads", content=b'{"usernames": ["jack"]}', headers=headers
        )
    assert response.request.headers.get("content-type") == content_type
    assert response.status_code == 415
    assert error_of(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert response.headers["X-RateLimit-Remaining"] == "4"
    assert state_of(app).members("c1") == set()


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_content_types_are_accepted(content_type: str) -> None:
    async with client_for(create_app()) as client:
        response = await client.post(
            "/campaigns/v2/c1/leads",
            content=b'{"usernames": ["jack"]}',
            headers={**AUTH, "Content-Type": content_type},
        )
    assert response.json() == {"added": 1, "skipped": 0, "failed": 0}


async def test_an_exception_in_a_handler_is_a_500_in_the_error_shape() -> None:
    async def broken_sleep(seconds: float) -> None:
        raise RuntimeError("boom")

    app = create_app(SandboxConfig(faults=Faults(latency_s=1.0)), sleep=broken_sleep)
    posted = await post(app, {"usernames": ["jack"]})
    got = await get_campaign(app)
    for response in (posted, got):
        assert response.status_code == 500
        assert error_of(response)["code"] == "INTERNAL_ERROR"
    assert state_of(app).requests_by_status() == {500: 1}
    assert state_of(app).lookups() == {500: 1}


async def test_an_exception_outside_the_endpoints_is_a_500_in_the_error_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app()

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(state_of(app), "snapshot", broken)
    async with client_for(app) as client:
        response = await client.get("/_sandbox/state")
    assert response.status_code == 500
    assert error_of(response)["code"] == "INTERNAL_ERROR"


# --- the sandbox command -------------------------------------------------------------------


class SandboxCommand:
    """`python -m inboxleads sandbox --port 0 ARGS` in its own process, for a `with` block;
    ended by its PID, its stderr kept."""

    def __init__(self, *args: str, cwd: Path = ROOT) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inboxleads", "sandbox", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
            cwd=cwd,
        )
        self.stderr = ""
        self.base_url = ""

    def __enter__(self) -> SandboxCommand:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = re.fullmatch(r"export INBOX_BASE_URL=(http://127\.0\.0\.1:\d+/api/v1)\s*", line)
        if match is None:
            self.__exit__()
            raise AssertionError(f"no URL from the sandbox: {line!r}\n{self.stderr}")
        self.base_url = match.group(1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM; TerminateProcess on Windows
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr = err.decode("utf-8", "replace")


def test_the_sandbox_command_answers_malformed_requests_in_the_error_shape() -> None:
    with SandboxCommand() as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        leads = "/campaigns/v2/c1/leads"
        nested = http.post(leads, content=b"[" * 100_000, headers=JSON_HEADERS)
        slash = http.post(leads + "/", json={"usernames": ["jack"]}, headers=AUTH)
        text = http.post(leads, content=b"jack", headers={**AUTH, "Content-Type": "text/plain"})
        good = http.post(leads, json={"usernames": ["jack"]}, headers=AUTH)
    assert "Traceback" not in server.stderr
    assert "Exception" not in server.stderr
    assert server.stderr.startswith("Sandbox listening on ")
    assert (nested.status_code, error_of(nested)["code"]) == (400, "VALIDATION_ERROR")
    assert (slash.status_code, error_of(slash)["code"]) == (404, "NOT_FOUND")
    assert (text.status_code, error_of(text)["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert good.json() == {"added": 1, "skipped": 0, "failed": 0}


def test_the_sandbox_command_sets_the_campaign_from_a_file_and_options(tmp_path: Path) -> None:
    args = [
        *("--campaign-file", str(ROOT / "samples" / "campaign.json")),
        *("--campaign-name", "Autumn outreach"),
        *("--campaign-variable", "city=Town"),
        *("--campaign-variable", "team="),
        *("--campaign-variable", "note=Note = what to say"),
    ]
    with SandboxCommand(*args) as server, httpx.Client(base_url=server.base_url) as http:
        http.post("/campaigns/v2/c1/leads", json={"usernames": ["jack", "ev"]}, headers=AUTH)
        answer = http.get("/campaigns/c1", headers=AUTH).json()
    assert answer["name"] == "Autumn outreach"
    assert answer["status"] == "active"
    assert answer["targetsCount"] == 2
    assert {key: value["displayName"] for key, value in answer["customVariables"].items()} == {
        "company-name": "Company name",
        "city": "Town",
        "first-line": "First line",
        "team": "team",
        "note": "Note = what to say",
    }


def test_the_sandbox_command_sets_the_campaign_by_options_alone() -> None:
    args = ["--campaign-status", "draft", "--campaign-variable", "company-name=Company name"]
    with SandboxCommand(*args) as server, httpx.Client(base_url=server.base_url) as http:
        answer = http.get("/campaigns/c1", headers=AUTH).json()
    assert (answer["name"], answer["status"]) == ("Sandbox campaign", "draft")
    assert answer["customVariables"] == {
        "company-name": {"displayName": "Company name", "description": None}
    }


def test_the_sample_campaign_has_a_variable_for_the_sample_columns_and_one_for_none() -> None:
    campaign = load_campaign(ROOT / "samples" / "campaign.json")
    assert (campaign.name, campaign.status) == ("Spring outreach", "active")
    assert campaign.variables == {
        "company-name": "Company name",
        "city": "City",
        "first-line": "First line",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, SandboxCampaign()),
        (
            {"name": "N", "status": "completed", "description": "D", "steps": [], "id": "x"},
            SandboxCampaign(name="N", status="completed", description="D"),
        ),
        (
            {"customVariables": {"a": "A", "b": "", "c": {"displayName": "", "x": 1}}},
            SandboxCampaign(variables={"a": "A", "b": "b", "c": "c"}),
        ),
        (
            {"customVariables": {"a": {"displayName": "A", "description": "why"}}},
            SandboxCampaign(variables={"a": "A"}),
        ),
    ],
    ids=["empty", "fields-and-unknown-ones", "short-and-empty-names", "variable-description"],
)
def test_a_campaign_reads_from_the_apis_shape(data: Any, expected: SandboxCampaign) -> None:
    assert campaign_from_json(data) == expected


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[]", "must be a JSON object"),
        (
            b'{"status": "live"}',
            'status: must be one of draft, active, paused, completed, not "live"',
        ),
        (b'{"name": 3}', "name: must be a string"),
        (b'{"description": []}', "description: must be a string"),
        (b'{"customVariables": []}', "customVariables: must be an object"),
        (b'{"customVariables": {"city": 3}}', "customVariables.city: must be"),
        (
            b'{"customVariables": {"city": {"name": "City"}}}',
            "customVariables.city.displayName: must be a string",
        ),
        (b'{"customVariables": {"": "x"}}', "key must not be empty"),
        (b"{nope", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"name": "\xff"}', "not UTF-8 text"),
        (b'{"name": "bad \\ud800 name"}', "name: holds half of a character"),
        (b'{"description": "\\udfff"}', "description: holds half of a character"),
        (
            b'{"status": "\\ud800"}',
            'status: must be one of draft, active, paused, completed, not "\\ud800"',
        ),
        (b'{"customVariables": {"k\\udfff": "K"}}', "customVariables: a key holds half of"),
        (b'{"customVariables": {"k": "\\udfff"}}', "customVariables.k: holds half of"),
        (
            b'{"customVariables": {"k": {"displayName": "\\ud800"}}}',
            "customVariables.k.displayName: holds half of",
        ),
    ],
)
def test_a_bad_campaign_file_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "campaign.json"
    path.write_bytes(content)
    code, out, err = refused_in_process(capsys, "--campaign-file", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"inboxleads: error: --campaign-file {path}: ")
    assert problem in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("campaign", "problem"),
    [
        (SandboxCampaign(name="bad \ud800 name"), "name: holds half of a character"),
        (
            SandboxCampaign(status="\udcff"),
            'status: must be one of draft, active, paused, completed, not "\\udcff"',
        ),
        (SandboxCampaign(description="\udfff"), "description: holds half of a character"),
        (SandboxCampaign(variables={"k\udcff": "K"}), "customVariables: a key holds half of a"),
        (SandboxCampaign(variables={"k": "\udcff"}), "customVariables.k: holds half of a"),
    ],
    ids=["name", "status", "description", "key", "display-name"],
)
def test_a_campaign_the_api_could_not_answer_is_refused_when_the_app_is_made(
    campaign: SandboxCampaign, problem: str
) -> None:
    with pytest.raises(ValueError, match=r"^the sandbox's campaign: ") as raised:
        create_app(SandboxConfig(campaign=campaign))
    assert problem in str(raised.value)


def test_a_campaign_file_that_cannot_be_read_is_a_usage_error(run_cli: Run, tmp_path: Path) -> None:
    for path in (tmp_path / "absent.json", tmp_path):
        result = run_cli("sandbox", "--port", "0", "--campaign-file", str(path), timeout=30)
        assert result.code == 2
        assert result.stderr.startswith(f"inboxleads: error: --campaign-file {path}: cannot read")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--port", "65536"], "--port"),
        (["--port", "-1"], "--port"),
        (["--error-rate", "1.5"], "--error-rate"),
        (["--drop-rate", "-0.1"], "--drop-rate"),
        (["--lost-rate", "nan"], "--lost-rate"),
        (["--hang-rate", "inf"], "--hang-rate"),
        (["--rate-window", "0"], "--rate-window"),
        (["--rate-window", "-5"], "--rate-window"),
        (["--rate-window", "nan"], "--rate-window"),
        (["--rate-window", "inf"], "--rate-window"),
        (["--latency", "-1"], "--latency"),
        (["--latency", "nan"], "--latency"),
        (["--latency", "inf"], "--latency"),
        (["--username-latency", "-0.5"], "--username-latency"),
        (["--username-latency", "inf"], "--username-latency"),
        (["--rate-limit", "-1"], "--rate-limit"),
        (["--token", ""], "--token"),
        (["--token", "two words"], "--token"),
        (["--token", "tab\there"], "--token"),
        (["--token", "bell\x07"], "--token"),
        (["--token", "tök"], "--token"),
        (["--max-body-bytes", "-1"], "--max-body-bytes"),
        (["--campaign-status", "live"], "--campaign-status"),
        (["--campaign-variable", "city"], "--campaign-variable"),
        (["--campaign-variable", "=City"], "--campaign-variable"),
        (["--campaign-variable", "a=A", "--campaign-variable", "a=B"], "--campaign-variable"),
        # Bytes that are not UTF-8, as Python gives them: surrogate escapes.
        (["--campaign-name", "x\udcff"], "--campaign-name"),
        (["--campaign-status", "x\udcff"], "--campaign-status"),
        (["--campaign-variable", "k\udcff=v"], "--campaign-variable"),
        (["--campaign-variable", "k=v\udcff"], "--campaign-variable"),
        (["--token", "t\udcff"], "--token"),
    ],
)
def test_nonsense_sandbox_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    code, out, err = refused_in_process(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.startswith(f"inboxleads: error: {option} ")
    assert len(err.splitlines()) == 1


def refused_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`inboxleads sandbox --port 0 ARGS` in this process (its start-up is what such a
    test would mostly measure in a process of its own): (exit code, stdout, stderr).
    Meant for options it refuses; one it accepted would serve until the test's timeout."""
    from inboxleads.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["sandbox", "--port", "0", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return int(ended.value.code or 0), captured.out, captured.err


def test_importing_the_sandbox_loads_neither_starlette_nor_uvicorn() -> None:
    code = (
        "import sys, inboxleads.sandbox\n"
        "print(sorted({'starlette', 'uvicorn'} & {m.split('.')[0] for m in sys.modules}))\n"
        "inboxleads.sandbox.serve\n"
        "print(sorted({'starlette', 'uvicorn'} & {m.split('.')[0] for m in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out == "[]\n['starlette', 'uvicorn']\n"
