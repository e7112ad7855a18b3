r"""X (Twitter) identifiers: what a pasted value means and its canonical form.

Pure functions, no I/O. `parse_value` turns one raw value (a handle, a profile
link, a user ID, an external ID) into a `(kind, value)` pair or a rejection
reason. The canonical value is what is sent; `dedup_key` is what makes two
values the same lead (handles compare case-insensitively).

A value is read as it was meant, not as it was pasted. A plain ASCII handle
(`jack`, `@jack`) is taken at once; anything else is cleaned first (`_cleaned`):

- zero-width and bidirectional marks, soft hyphens, variation selectors and
  the Hangul fillers (`_INVISIBLE`) are removed wherever they are, and a value
  that is not ASCII is NFKC-normalised, so the full-width forms of `@jack`
  and `12` (as East Asian keyboards type them) read as `@jack` and `12`;
- surrounding quotes (`_QUOTES`: ASCII, typographic, guillemets, CJK corner
  brackets, in any pairing), a trailing comma or semicolon, and `<...>` around
  a link are peeled off, repeatedly and with any whitespace between:
  `"@jack",` is `@jack`.

Links are read by their form whatever the mode: `x.com` or `twitter.com`,
with `www.`, `mobile.` or `m.` in front, old `#!/` links, `%40` for `@`, and
any sub-page of a profile (`x.com/jack/status/20/photo/1` names its author).
Pages that are not profiles (`_RESERVED_PATHS`: `x.com/home`, `x.com/i/...`
but `x.com/i/user/ID`, `x.com/settings/...`) and other hosts are rejected, a
`t.co` short link with a reason that says to open it.

A reason that names a character shows it escaped when it would not show as
itself, `'\u2028' (LINE SEPARATOR)`, and names any character that is not
ASCII, so that a look-alike letter is told apart (`CYRILLIC SMALL LETTER A`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, unquote, urlsplit


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

# Characters that show as nothing (all Default_Ignorable_Code_Point in Unicode):
# format controls (soft hyphen, zero-width space, joiners, bidirectional marks,
# embeddings and isolates, word joiner and invisible operators, BOM), the
# combining grapheme joiner, Khmer inherent vowels, Mongolian and standard
# variation selectors, and the Hangul fillers. Pasted from a web page, a chat or
# a right-to-left document they ride along with a handle unseen; removed anywhere.
_INVISIBLE = frozenset(
    chr(c)
    for c in (
        0x00AD,
        0x034F,
        0x061C,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        *range(0x180B, 0x180F + 1),
        *range(0x200B, 0x200F + 1),
        *range(0x202A, 0x202E + 1),
        *range(0x2060, 0x206F + 1),
        0x3164,
        *range(0xFE00, 0xFE0F + 1),
        0xFEFF,
        0xFFA0,
    )
)
_DROP_INVISIBLE = {ord(ch): None for ch in _INVISIBLE}

# Quotes that may surround a pasted value, in any pairing (full-width ones are
# ASCII ones after NFKC).
_QUOTES = frozenset(
    "\"'`"  # ASCII, and the backtick of chat and Markdown code
    "\u2018\u2019\u201a\u201b"  # single typographic: English, German, Polish
    "\u201c\u201d\u201e\u201f"  # double typographic
    "\u00ab\u00bb\u2039\u203a"  # guillemets, either way round
    "\u300c\u300d\u300e\u300f"  # CJK corner brackets
)
# What, besides whitespace, may start or end a value with something around or after it.
_WRAPPERS = _QUOTES | frozenset(",;<>")

# How a value that is a link starts when it has no '/' to tell.
_LINK_STARTS = ("x.com", "twitter.com", "www.", "mobile.", "m.x.com", "m.twitter.com")

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
        "account",
        "oauth",
        "download",
        "jobs",
        "about",
        "bookmarks",
        "lists",
        "help",
        "following",
        "followers",
        "connect_people",
        "who_to_follow",
        "statuses",
    }
)
_HOSTS = frozenset({"x.com", "twitter.com"})
_SHORT_LINK_HOSTS = frozenset({"t.co"})

ParseResult = tuple[Kind, str] | str


def parse_value(raw: str, read_as: ReadAs = ReadAs.AUTO) -> ParseResult:
    """Read one value: `(kind, canonical value)` on success, else the reason it is rejected.

    In auto mode a bare number is a platform ID (all-digit handles exist; use
    `--as username` for them). A value that is not a plain handle is cleaned
    first (`_cleaned`): invisible marks, full-width forms, quotes and a trailing
    comma or semicolon do not change what it means.
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
    text = _cleaned(text)
    if not text:
        return "empty value (nothing but quotes, commas or invisible characters)"
    if read_as is ReadAs.AUTO and text.isascii() and text.isdigit():
        return _platform_id(text)  # IDs made since 2022 have 19 digits: past the fast path
    if "/" in text or text.lower().startswith(_LINK_STARTS):
        return _parse_link(text)
    if read_as is ReadAs.USERNAME or text.startswith("@"):
        return _username(text.removeprefix("@"))
    if read_as is ReadAs.PLATFORM_ID:
        return _platform_id(text)
    if read_as is ReadAs.EXTERNAL_ID:
        if _EXTERNAL_RE.fullmatch(text):
            return (Kind.EXTERNAL_ID, text)
        return "not an Inbox external ID (lowercase letters and digits only)"
    return _bare(text)


def visible(text: str) -> str:
    """`text` without its invisible marks and surrounding whitespace: what a user sees."""
    return text.strip() if text.isascii() else text.translate(_DROP_INVISIBLE).strip()


def _cleaned(text: str) -> str:
    """`text` as it was meant: without invisible marks, NFKC-normalised when it
    is not ASCII, and without surrounding quotes, a trailing comma or semicolon,
    or `<...>` around a link, however many and in whatever order."""
    text = _normalised(text)
    if text and not (
        text[0] in _WRAPPERS or text[-1] in _WRAPPERS or text[0].isspace() or text[-1].isspace()
    ):
        return text  # the common case: a link as the browser copied it
    return _unwrapped(text)


def _normalised(text: str) -> str:
    """`text` without invisible marks (`_INVISIBLE`), NFKC-normalised; ASCII as it is."""
    if text.isascii():
        return text
    # Marks go first: left between a letter and its accent they would keep NFKC
    # from composing the two, and a rejection would then show a bare accent.
    return unicodedata.normalize("NFKC", text.translate(_DROP_INVISIBLE))


def _unwrapped(text: str) -> str:
    # Indices, not slices: a line of a million commas or quotes costs one pass.
    start, end = 0, len(text)
    while True:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end == start:
            return ""
        first, last = text[start], text[end - 1]
        if last in ",;":
            end -= 1
            continue
        wrapped = (first in _QUOTES and last in _QUOTES) or (
            first == "<" and last == ">" and _link_within(text, start + 1, end - 1)
        )
        if end - start < 2 or not wrapped:
            return text[start:end]
        start += 1
        end -= 1


def _link_within(text: str, start: int, end: int) -> bool:
    """True when `text[start:end]` starts as a link with a scheme or an x.com host."""
    head = text[start : min(end, start + 40)].lstrip().lower()
    return head.startswith(("http://", "https://", *_LINK_STARTS))


def _username(handle: str) -> ParseResult:
    if HANDLE_RE.fullmatch(handle):
        return (Kind.USERNAME, handle)
    if not handle:
        return "empty username"
    bad = next((ch for ch in handle if not (ch.isascii() and (ch.isalnum() or ch == "_"))), None)
    if bad is not None:
        return f"character {_shown_char(bad)} is not allowed in a username"
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


def _bare(text: str) -> ParseResult:
    """A bare value in auto mode: a username, else why it is none."""
    if text.isdigit() and text.isascii():
        return _platform_id(text)
    if len(text) > 15 and _EXTERNAL_RE.fullmatch(text):
        return (
            "too long for a username (max 15 characters); "
            "use --as external-id if these are Inbox external IDs"
        )
    return _username(text)


def _parse_link(text: str) -> ParseResult:
    # `//x.com/jack` (protocol-relative, as pages write links) has its host too.
    url = text if "://" in text else "https://" + text.removeprefix("//")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "not a valid link"
    if parts.scheme not in ("http", "https"):
        return "not a valid link"
    host = host.removeprefix("www.")
    host = host.removeprefix("mobile.") if host.startswith("mobile.") else host.removeprefix("m.")
    if host in _SHORT_LINK_HOSTS:
        return f"a {host} short link: open it and paste the profile link it leads to"
    if host not in _HOSTS:
        return f"not an x.com or twitter.com link ({_escaped(host) or 'no host'})"
    path, query = parts.path, parts.query
    if parts.fragment.startswith("!/") and not path.strip("/"):
        # An old `twitter.com/#!/jack` link: the page is in the fragment.
        path, _, query = parts.fragment[1:].partition("?")
    segments = [_normalised(unquote(s)) for s in path.split("/") if s]
    if not segments:
        return "not a profile link (no username in it)"
    first = segments[0].lower()
    second = segments[1].lower() if len(segments) > 1 else ""
    if first == "i" and second == "user" and len(segments) == 3:
        return _platform_id(segments[2])
    if first == "intent" and second in ("user", "follow"):
        found = parse_qs(query)
        if "user_id" in found:
            return _platform_id(_normalised(found["user_id"][0]))
        if "screen_name" in found:
            return _username(_normalised(found["screen_name"][0]).removeprefix("@"))
        return "intent link without user_id or screen_name"
    if first == "i" and "status" in (s.lower() for s in segments[1:3]):
        return (
            "a post link without its author's username (x.com/i/.../status/...): "
            "open it and paste the author's profile link"
        )
    handle = segments[0].removeprefix("@")
    if handle.lower() in _RESERVED_PATHS:
        page = handle + ("/..." if len(segments) > 1 else "")
        return f"not a profile link (x.com/{page} is a page)"
    # Anything after the username is one of its pages (a post, a photo, its
    # likes): the link still names the account it belongs to.
    return _username(handle)


def _shown_char(ch: str) -> str:
    """`ch` quoted for a message: escaped when it would not show as itself (an
    invisible mark, a space other than ' ', a line separator, a combining accent),
    and named when it is not ASCII, so that a look-alike letter is told apart."""
    shown = repr(ch) if _shows(ch) else ascii(ch)
    if ch.isascii():
        return shown
    name = unicodedata.name(ch, "")
    return f"{shown} ({name})" if name else shown


def _escaped(text: str) -> str:
    """`text` for a message, with every character that would not show as itself escaped."""
    return "".join(ch if _shows(ch) else ascii(ch)[1:-1] for ch in text)


def _shows(ch: str) -> bool:
    """True when `ch`, printed alone, is seen as itself."""
    if ch.isascii():
        return ch.isprintable()
    return ch.isprintable() and unicodedata.category(ch)[0] in "LNPS" and ch not in _INVISIBLE


def readable(kind: Kind, value: str) -> str:
    """The value as written in reports: reads back as the same kind in auto mode."""
    if kind is Kind.USERNAME and value.isdigit():
        return "@" + value  # a bare number reads back as a platform ID
    return value


def dedup_key(kind: Kind, value: str) -> str:
    """The key under which two identifiers are the same lead."""
    return value.lower() if kind is Kind.USERNAME else value
