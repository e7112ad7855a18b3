"""X (Twitter) identifiers: what a pasted value means and its canonical form.

Pure functions, no I/O. `parse_value` turns one raw value (a handle, a profile
link, a user ID, an external ID) into a `(kind, value)` pair or a rejection
reason. The canonical value is what is sent; `dedup_key` is what makes two
values the same lead (handles compare case-insensitively).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, urlsplit


class Kind(StrEnum):
    """The kind of an identifier, named as the API's lead fields are."""

    USERNAME = "username"
    PLATFORM_ID = "platformId"
    EXTERNAL_ID = "externalId"

    @property
    def array(self) -> str:
        """The compact request array that carries this kind."""
        return _ARRAYS[self]


_ARRAYS = {
    Kind.USERNAME: "usernames",
    Kind.PLATFORM_ID: "platformIds",
    Kind.EXTERNAL_ID: "externalIds",
}


class ReadAs(StrEnum):
    """How bare values are read (`--as`); links are always read by their form."""

    AUTO = "auto"
    USERNAME = "username"
    PLATFORM_ID = "platform-id"
    EXTERNAL_ID = "external-id"


@dataclass(slots=True)
class Lead:
    """One identifier to add, with where it came from and optional column data."""

    kind: Kind
    value: str
    source: str
    line: int
    data: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class HandleRun:
    """Consecutive lines of one input that are all bare usernames, kept as plain
    strings: a large list of handles needs no object per line until one is
    reported (`leads`)."""

    source: str
    first_line: int
    values: list[str]

    def __len__(self) -> int:
        return len(self.values)

    def leads(self) -> list[Lead]:
        """The same identifiers as `Lead` objects, with their line numbers."""
        source, first = self.source, self.first_line
        return [Lead(Kind.USERNAME, v, source, n) for n, v in enumerate(self.values, first)]

    def follows(self, other: HandleRun) -> bool:
        """True when this run starts on the line after `other` ends, in the same input."""
        return self.source == other.source and self.first_line == other.first_line + len(other)


HANDLE_RE = re.compile(r"[A-Za-z0-9_]{1,15}")
FAST_HANDLE_RE = re.compile(r"@?([A-Za-z0-9_]{1,15})")
_DIGITS_RE = re.compile(r"[0-9]{1,19}")
_EXTERNAL_RE = re.compile(r"[0-9a-z]{1,64}")
_MAX_USER_ID = 2**64 - 1

# First path segments of x.com that are pages, not profiles.
_RESERVED_PATHS = frozenset(
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
_HOSTS = frozenset({"x.com", "twitter.com"})

ParseResult = tuple[Kind, str] | str


def parse_value(raw: str, read_as: ReadAs = ReadAs.AUTO) -> ParseResult:
    """Read one value: `(kind, canonical value)` on success, else the reason it is rejected.

    In auto mode a bare number is a platform ID (all-digit handles exist; use
    `--as username` for them).
    """
    text = raw.strip()
    if read_as is ReadAs.AUTO:
        match = FAST_HANDLE_RE.fullmatch(text)
        if match is not None:
            handle = match.group(1)
            if text[0] == "@" or not handle.isdigit():
                return (Kind.USERNAME, handle)
            return _platform_id(handle)
    if not text:
        return "empty value"
    if read_as is ReadAs.AUTO and text.isascii() and text.isdigit():
        return _platform_id(text)  # IDs made since 2022 have 19 digits: past the fast path
    if "/" in text or text.lower().startswith(("x.com", "twitter.com", "www.", "mobile.")):
        return _parse_link(text)
    if read_as is ReadAs.USERNAME or text.startswith("@"):
        return _username(text.removeprefix("@"))
    if read_as is ReadAs.PLATFORM_ID:
        return _platform_id(text)
    if read_as is ReadAs.EXTERNAL_ID:
        if _EXTERNAL_RE.fullmatch(text):
            return (Kind.EXTERNAL_ID, text)
        return "not an Inbox external ID (lowercase letters and digits only)"
    return _explain_bare(text)


def _username(handle: str) -> ParseResult:
    if HANDLE_RE.fullmatch(handle):
        return (Kind.USERNAME, handle)
    if not handle:
        return "empty username"
    bad = next((ch for ch in handle if not (ch.isascii() and (ch.isalnum() or ch == "_"))), None)
    if bad is not None:
        return f"character {bad!r} is not allowed in a username"
    return "username longer than 15 characters"


def _platform_id(digits: str) -> ParseResult:
    if not _DIGITS_RE.fullmatch(digits):
        if digits.isdigit() and digits.isascii():
            return "user ID longer than 19 digits"
        return "not a user ID (digits only)"
    number = int(digits)
    if number == 0 or number > _MAX_USER_ID:
        return "user ID out of range"
    return (Kind.PLATFORM_ID, str(number))


def _explain_bare(text: str) -> str:
    if text.isdigit() and text.isascii():
        reason = _platform_id(text)
        return reason if isinstance(reason, str) else "not a user ID"
    if len(text) > 15 and _EXTERNAL_RE.fullmatch(text):
        return (
            "too long for a username (max 15 characters); "
            "use --as external-id if these are Inbox external IDs"
        )
    reason = _username(text.removeprefix("@"))
    return reason if isinstance(reason, str) else "not a username"


def _parse_link(text: str) -> ParseResult:
    url = text if "://" in text else "https://" + text
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "not a valid link"
    if parts.scheme not in ("http", "https"):
        return "not a valid link"
    host = host.removeprefix("www.").removeprefix("mobile.")
    if host not in _HOSTS:
        return f"not an x.com or twitter.com link ({host or 'no host'})"
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) == 3 and segments[0] == "i" and segments[1] == "user":
        return _platform_id(segments[2])
    if segments[:2] == ["intent", "user"] or segments[:2] == ["intent", "follow"]:
        query = parse_qs(parts.query)
        if "user_id" in query:
            return _platform_id(query["user_id"][0])
        if "screen_name" in query:
            return _username(query["screen_name"][0].removeprefix("@"))
        return "intent link without user_id or screen_name"
    if len(segments) != 1:
        return "not a profile link"
    handle = segments[0].removeprefix("@")
    if handle.lower() in _RESERVED_PATHS:
        return f"not a profile link (x.com/{handle} is a page)"
    return _username(handle)


def readable(kind: Kind, value: str) -> str:
    """The value as written in reports: reads back as the same kind in auto mode."""
    if kind is Kind.USERNAME and value.isdigit():
        return "@" + value  # a bare number reads back as a platform ID
    return value


def dedup_key(kind: Kind, value: str) -> str:
    """The key under which two identifiers are the same lead."""
    return value.lower() if kind is Kind.USERNAME else value
