"""Reading one pasted value: handles, profile links, user IDs and external IDs."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inboxleads.identifiers import Kind, ReadAs, dedup_key, parse_value

# What the Add leads API accepts (FACTS.md): anything else must never be sent.
API_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,15}$")
API_USER_ID = re.compile(r"^[0-9]{1,19}$")
API_EXTERNAL_ID = re.compile(r"^[0-9a-z]+$")

# x.com paths that are pages, not profiles: a link to them is not a lead.
PAGES = frozenset(
    {
        "home",
        "explore",
        "search",
        "settings",
        "messages",
        "notifications",
        "login",
        "logout",
        "signup",
        "tos",
        "privacy",
        "compose",
        "hashtag",
        "share",
        "i",
        "intent",
    }
)

# The largest ID the API's `^[0-9]{1,19}$` admits (2**64 - 1 has 20 digits).
MAX_API_ID = 10**19 - 1

handles = st.from_regex(r"[A-Za-z0-9_]{1,15}", fullmatch=True)
profile_handles = handles.filter(lambda h: h.lower() not in PAGES)
word_handles = handles.filter(lambda h: not h.isdigit())
api_ids = st.integers(min_value=1, max_value=MAX_API_ID)

PROFILE_FORMS = (
    "@{}",
    "https://x.com/{}",
    "twitter.com/{}?lang=en",
    "mobile.twitter.com/{}/",
    "www.x.com/{}",
    "https://twitter.com/{}?lang=en",
    "http://x.com/@{}",
)
ID_FORMS = (
    "https://x.com/i/user/{}",
    "x.com/i/user/{}",
    "twitter.com/intent/user?user_id={}",
    "https://twitter.com/intent/user?user_id={}",
)

# Raw values as users paste them, good and bad, for the properties that hold for any input.
_noise = st.text(alphabet="@/:.?=&#_- xXcomtwiersu0123456789ABZz\t\u00e9\uff20", max_size=40)
raw_values = st.one_of(
    st.text(max_size=40),
    _noise,
    st.builds(lambda f, h: f.format(h), st.sampled_from(PROFILE_FORMS), handles),
    st.builds(lambda f, n: f.format(n), st.sampled_from(ID_FORMS), st.integers(0, 2**70)),
    st.integers(min_value=0, max_value=2**70).map(str),
    st.builds(lambda h: f"twitter.com/intent/user?screen_name={h}", handles),
)
read_modes = st.sampled_from(list(ReadAs))


def _satisfies_api(kind: Kind, value: str) -> bool:
    if kind is Kind.USERNAME:
        return API_USERNAME.match(value) is not None
    if kind is Kind.PLATFORM_ID:
        return API_USER_ID.match(value) is not None and int(value) < 2**64
    return API_EXTERNAL_ID.match(value) is not None


# --- usernames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "@jack",
        "jack",
        "  jack  ",
        "https://x.com/jack",
        "https://twitter.com/jack?lang=en",
        "mobile.twitter.com/jack/",
        "www.x.com/jack",
        "X.COM/jack",
        "https://x.com/@jack",
        "https://twitter.com/intent/user?screen_name=jack",
        "https://x.com/intent/follow?screen_name=@jack",
    ],
)
def test_handle_in_every_pasted_form_reads_as_username(raw: str) -> None:
    assert parse_value(raw) == (Kind.USERNAME, "jack")


def test_username_keeps_the_case_it_was_written_in() -> None:
    assert parse_value("@JackDorsey") == (Kind.USERNAME, "JackDorsey")


def test_all_digit_handle_with_at_sign_is_a_username() -> None:
    assert parse_value("@12345") == (Kind.USERNAME, "12345")


def test_all_digit_value_read_as_username_is_a_username() -> None:
    assert parse_value("12345", ReadAs.USERNAME) == (Kind.USERNAME, "12345")


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        ("@", "empty username"),
        ("Abcdefghijklmnop_", "longer than 15"),
        ("jack-dorsey", "'-'"),
        ("jäck", "'ä'"),
        ("@ja ck", "' '"),
    ],
)
def test_invalid_handle_is_rejected_with_a_reason(raw: str, reason_part: str) -> None:
    result = parse_value(raw)
    assert isinstance(result, str)
    assert reason_part in result


def test_long_lowercase_value_hints_at_external_id_mode() -> None:
    result = parse_value("hy4k7m2x9p1n6v3w8j5q0r")
    assert isinstance(result, str)
    assert "--as external-id" in result


@pytest.mark.parametrize("page", ["home", "explore", "search", "settings", "i", "intent"])
def test_link_to_an_x_page_is_not_a_profile(page: str) -> None:
    result = parse_value(f"https://x.com/{page}")
    assert isinstance(result, str)
    assert "not a profile link" in result


@pytest.mark.parametrize(
    "raw",
    [
        "https://example.com/jack",
        "ftp://x.com/jack",
        "x.com/",
        "https://twitter.com/intent/user",
    ],
)
def test_link_that_names_no_profile_is_rejected(raw: str) -> None:
    assert isinstance(parse_value(raw), str)


# --- platform IDs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "44196397",
        "https://x.com/i/user/44196397",
        "x.com/i/user/44196397",
        "https://twitter.com/intent/user?user_id=44196397",
        " 44196397\t",
    ],
)
def test_user_id_in_every_pasted_form_reads_as_platform_id(raw: str) -> None:
    assert parse_value(raw) == (Kind.PLATFORM_ID, "44196397")


def test_user_id_with_leading_zeros_is_sent_without_them() -> None:
    assert parse_value("00044196397") == (Kind.PLATFORM_ID, "44196397")


@pytest.mark.parametrize("raw", ["0", "000", "x.com/i/user/0"])
def test_user_id_zero_is_rejected(raw: str) -> None:
    assert isinstance(parse_value(raw), str)


@pytest.mark.parametrize("number", [10**19, 2**64 - 1, 2**64, 10**25])
def test_user_id_the_api_cannot_take_is_rejected(number: int) -> None:
    # The API takes `^[0-9]{1,19}$`: twenty digits or more are never sent.
    result = parse_value(f"x.com/i/user/{number}")
    assert isinstance(result, str)
    assert isinstance(parse_value(str(number), ReadAs.PLATFORM_ID), str)


def test_non_digit_value_read_as_platform_id_is_rejected() -> None:
    result = parse_value("jack", ReadAs.PLATFORM_ID)
    assert result == "not a user ID (digits only)"


@pytest.mark.parametrize("raw", ["1234567890123456", "1234567890123456789"])
def test_bare_user_id_of_16_to_19_digits_reads_as_platform_id(raw: str) -> None:
    # Every X user ID made since 2022 has 19 digits.
    assert parse_value(raw) == (Kind.PLATFORM_ID, raw)


# --- external IDs ----------------------------------------------------------------------


def test_external_id_mode_reads_lowercase_alphanumerics() -> None:
    assert parse_value("hy4k7m2x9p1n6v3w8j5q0r", ReadAs.EXTERNAL_ID) == (
        Kind.EXTERNAL_ID,
        "hy4k7m2x9p1n6v3w8j5q0r",
    )


@pytest.mark.parametrize("raw", ["HY4K7", "hy4k-7m", "hy 4k"])
def test_external_id_with_other_characters_is_rejected(raw: str) -> None:
    assert isinstance(parse_value(raw, ReadAs.EXTERNAL_ID), str)


def test_links_are_read_by_their_form_whatever_the_mode() -> None:
    assert parse_value("https://x.com/jack", ReadAs.PLATFORM_ID) == (Kind.USERNAME, "jack")
    assert parse_value("x.com/i/user/12", ReadAs.USERNAME) == (Kind.PLATFORM_ID, "12")


@pytest.mark.parametrize("read_as", list(ReadAs))
@pytest.mark.parametrize("raw", ["", "   ", "\t"])
def test_empty_value_is_rejected_in_every_mode(raw: str, read_as: ReadAs) -> None:
    assert isinstance(parse_value(raw, read_as), str)


# --- de-duplication keys ---------------------------------------------------------------


def test_usernames_differing_only_in_case_share_a_dedup_key() -> None:
    assert dedup_key(Kind.USERNAME, "Jack") == dedup_key(Kind.USERNAME, "jACK")


def test_external_ids_are_case_sensitive_for_dedup() -> None:
    assert dedup_key(Kind.EXTERNAL_ID, "abc") != dedup_key(Kind.EXTERNAL_ID, "ABC")


# --- properties ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(handle=profile_handles, form=st.sampled_from(PROFILE_FORMS))
def test_every_valid_handle_in_every_link_form_parses_to_that_username(
    handle: str, form: str
) -> None:
    result = parse_value(form.format(handle))
    assert isinstance(result, tuple), result
    kind, value = result
    assert kind is Kind.USERNAME
    assert value.lower() == handle.lower()


@settings(max_examples=100, deadline=None)
@given(handle=word_handles)
def test_every_bare_non_digit_handle_parses_to_that_username(handle: str) -> None:
    assert parse_value(handle) == (Kind.USERNAME, handle)


@settings(max_examples=150, deadline=None)
@given(number=api_ids, form=st.sampled_from(ID_FORMS))
def test_every_user_id_in_every_link_form_parses_to_that_id(number: int, form: str) -> None:
    assert parse_value(form.format(number)) == (Kind.PLATFORM_ID, str(number))


@settings(max_examples=100, deadline=None)
@given(number=api_ids)
def test_every_bare_user_id_up_to_15_digits_parses_to_that_id(number: int) -> None:
    assert parse_value(str(number)) == (Kind.PLATFORM_ID, str(number))


@settings(max_examples=50, deadline=None)
@given(number=api_ids)
@example(number=1234567890123456789)
def test_every_user_id_written_as_bare_digits_parses_to_that_id(number: int) -> None:
    assert parse_value(str(number)) == (Kind.PLATFORM_ID, str(number))


@settings(max_examples=100, deadline=None)
@given(number=api_ids)
def test_every_user_id_read_as_platform_id_parses_to_that_id(number: int) -> None:
    assert parse_value(str(number), ReadAs.PLATFORM_ID) == (Kind.PLATFORM_ID, str(number))


@settings(max_examples=300, deadline=None)
@given(raw=raw_values, read_as=read_modes)
def test_nothing_the_api_would_refuse_is_ever_accepted(raw: str, read_as: ReadAs) -> None:
    result = parse_value(raw, read_as)
    if isinstance(result, tuple):
        assert _satisfies_api(*result), (raw, read_as, result)
    else:
        assert result, "a rejection always says why"


MODE_OF_KIND = {
    Kind.USERNAME: ReadAs.USERNAME,
    Kind.PLATFORM_ID: ReadAs.PLATFORM_ID,
    Kind.EXTERNAL_ID: ReadAs.EXTERNAL_ID,
}


def _as_auto_text(kind: Kind, value: str) -> str:
    # An all-digit handle reads as an ID in auto mode unless written with '@'.
    if kind is Kind.USERNAME and value.isdigit():
        return "@" + value
    return value


ids_that_reparse = st.one_of(
    st.builds(lambda f, n: f.format(n), st.sampled_from(ID_FORMS), api_ids),
    api_ids.map(str),
)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(raw_values.filter(lambda r: not re.search(r"\d{16}", r)), ids_that_reparse),
    read_as=read_modes,
)
def test_parsing_the_canonical_value_again_gives_the_same_lead(raw: str, read_as: ReadAs) -> None:
    first = parse_value(raw, read_as)
    if isinstance(first, str):
        return
    kind, value = first
    assert parse_value(value, MODE_OF_KIND[kind]) == first
    if kind is not Kind.EXTERNAL_ID:
        # What --undelivered writes must read back the same in auto mode.
        assert parse_value(_as_auto_text(kind, value)) == first
