"""CSV/TSV headers: which columns hold the identifier, and the key of each data column.

Pure functions over a header row, no I/O. Header names are compared normalised
(`normalise`: case, spacing, punctuation and camelCase ignored), so `Twitter
Profile URL`, `twitter_profile_url` and `twitterProfileUrl` are one name.

A column holds identifiers by default only when its name says X or Twitter
(`Twitter Handle`, `X URL`, `twitter_id`) or is the tool's own (`username`,
`handle`, `platform_id`, `external_id`). Generic link columns (`url`,
`profile`) are used when nothing better is there, and never read a bare
number as a user ID. Generic ID columns (`id`, `user_id`, `record id`) are
never taken for X user IDs unless named with `--column`: in a sheet they hold
row numbers or CRM ids, which are real, unrelated X accounts.

Several identifier columns may qualify: each row uses the first of them
(best kind first, as ranked here, or as `--column a,b` orders them) that
holds a value it can read, and the kind follows the column.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from .identifiers import HANDLE_RE, ReadAs

# How a name says X: alone (`X`, `Twitter`, `X (Twitter)`) or before what the column holds.
_X_NAMES = ("twitter", "x", "xtwitter", "twitterx", "xcom", "twittercom", "xformerlytwitter")
_HANDLES = ("handle", "username", "screenname", "user")
_LINKS = ("account", "profile", "url", "link", "profileurl", "profilelink", "page", "profilepage")
_IDS = ("id", "userid", "numericid", "accountid", "idstr", "uid", "platformid")


@dataclass(frozen=True, slots=True)
class Rule:
    """How a recognised column is read, and how it ranks against the others."""

    read_as: ReadAs
    rank: int
    # False: a bare number in it is not taken for a user ID (a generic link column).
    bare_ids: bool = True


# The rank of generic link columns (`url`, `profile`): read only when no other qualifies.
GENERIC_RANK = 5


def _rules() -> dict[str, Rule]:
    handles = Rule(ReadAs.USERNAME, 1)
    accounts = Rule(ReadAs.AUTO, 2)
    ids = Rule(ReadAs.PLATFORM_ID, 3)
    rules: dict[str, Rule] = {}
    for name in ("username", "handle", "screenname", "userhandle", "twitterscreenname"):
        rules[name] = handles
    for x in _X_NAMES:
        rules[x] = accounts
        rules.update({x + suffix: handles for suffix in _HANDLES})
        rules.update({x + suffix: accounts for suffix in _LINKS})
        rules.update({x + suffix: ids for suffix in _IDS})
    # A lone `X` may be a coordinate or a mark: it names the account, never a number.
    rules["x"] = Rule(ReadAs.AUTO, 2, bare_ids=False)
    rules["platformid"] = ids
    for name in ("externalid", "inboxexternalid", "leadexternalid"):
        rules[name] = Rule(ReadAs.EXTERNAL_ID, 4)
    # Used only when no column above is there.
    for name in ("url", "profile", "profileurl", "profilelink", "link", "socialprofile"):
        rules[name] = Rule(ReadAs.AUTO, GENERIC_RANK, bare_ids=False)
    return rules


RULES = _rules()

# Names of columns that hold some other system's ids: read as X user IDs only when named.
GENERIC_IDS = frozenset(
    {
        "id",
        "userid",
        "uid",
        "recordid",
        "rowid",
        "contactid",
        "leadid",
        "personid",
        "accountid",
        "customerid",
        "memberid",
    }
)

# Words that make a name another system's id or a row number (`HubSpot ID`,
# `hs_object_id`, `objectId`, `Lead #`, `S.No`, `Row`): an ID as its own word,
# or after a lower-case letter in camelCase; a number word; a `#`.
_GENERIC_ID_RE = re.compile(
    r"(?<![A-Za-z0-9])[Ii][Dd](?![a-z])|(?<=[a-z])I[Dd](?![a-z])|#"
    r"|(?<![A-Za-z0-9])(?i:no|nr|num|number|index|idx|row|rownum|key|pk|uuid|guid|serial|record)"
    r"(?![A-Za-z0-9])"
)


def normalise(name: str) -> str:
    """A header name compared as users mean it: case, spacing, punctuation ignored."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", name).casefold() if ch.isalnum())


def is_generic_id(name: str) -> bool:
    """Whether a header name (as written) is that of another system's ids or of
    row numbers: never read as X user IDs unless named with --column."""
    key = normalise(name)
    return key in GENERIC_IDS or (key not in RULES and _GENERIC_ID_RE.search(name) is not None)


def is_known(name: str) -> bool:
    """Whether a header name (as written) is exactly one an export uses for an
    identifier column, recognised or generic: a first line with such a name is a
    header. (Not the wider `is_generic_id`: `john_no` is a handle as well.)"""
    key = normalise(name)
    return key in RULES or key in GENERIC_IDS


@dataclass(frozen=True, slots=True)
class IdColumn:
    """One identifier column of a header."""

    index: int
    name: str
    read_as: ReadAs
    bare_ids: bool = True


@dataclass(frozen=True, slots=True)
class Layout:
    """What a header means: its identifier columns in order of preference, the
    data columns with the key each is sent as, and warnings about the header."""

    identifiers: tuple[IdColumn, ...]
    # Each data column: its index and the key its values are sent as.
    data: tuple[tuple[int, str], ...]
    warnings: tuple[str, ...] = ()
    # A name per column (the header, or what a repeated or empty name became).
    keys: tuple[str, ...] = ()
    # The `--map` names this header has.
    mapped: tuple[str, ...] = ()


class HeaderError(ValueError):
    """A header that cannot be read as asked; the message lists its columns."""


def layout(
    header: list[str],
    columns: tuple[str, ...] = (),
    data_columns: tuple[str, ...] | None = None,
    no_data: bool = False,
    read_as: ReadAs = ReadAs.AUTO,
    renames: tuple[tuple[str, str], ...] = (),
    variables: tuple[tuple[str, str], ...] = (),
) -> Layout:
    """Read a header row: raises `HeaderError` when no column qualifies or a
    named one (`--column`, `--data-columns`, `--map`) is not there. A data column
    is sent under the key `renames` (`--map HEADER=KEY`) gives it, else under the
    key of the campaign variable (key, display name) its name equals, else under
    its own name."""
    keys, warnings = distinct_keys(header)
    if columns:
        # Named by the user: `--as` says how to read them, else their name does.
        named = [c for name in columns for c in _named(header, keys, name)]
        identifiers = list({c.index: c for c in named}.values())
        if read_as is not ReadAs.AUTO:
            identifiers = [IdColumn(c.index, c.name, read_as) for c in identifiers]
    else:
        # Found by name: a column whose name says its kind keeps it; `--as` reads the others.
        identifiers = [
            IdColumn(c.index, c.name, read_as)
            if read_as is not ReadAs.AUTO and c.read_as is ReadAs.AUTO
            else c
            for c in _found(header, keys)
        ]
    if no_data:
        data: list[tuple[int, str]] = []
    elif data_columns is None:
        # Every column is data but the one a row takes its identifier from (see
        # `inputs`): an identifier column a row did not use keeps its value.
        data = list(enumerate(keys))
    else:
        chosen: set[int] = set()
        for name in data_columns:
            chosen.update(_matching(header, keys, name, "--data-columns"))
        data = [(i, keys[i]) for i in sorted(chosen)]
    ids = {c.index for c in identifiers}
    found: list[str] = []
    data = _sent_as(header, keys, data, ids, renames, variables, warnings, found)
    return Layout(tuple(identifiers), tuple(data), tuple(warnings), tuple(keys), tuple(found))


def _sent_as(
    header: list[str],
    keys: list[str],
    data: list[tuple[int, str]],
    ids: set[int],
    renames: tuple[tuple[str, str], ...],
    variables: tuple[tuple[str, str], ...],
    warnings: list[str],
    found: list[str],
) -> list[tuple[int, str]]:
    """The key each data column is sent as: `--map` first, then the campaign
    variable whose key or display name the column's name equals (case, spaces
    and punctuation ignored; a key before a display name), else its own name.

    Two columns never go out under one key. A key goes to the column `--map`
    gave it, else to the column of that very name, else to the first column
    mapped to it; the others keep their own name (said in a warning)."""
    sent = {index for index, _ in data}
    mapped: dict[int, str] = {}
    for name, key in renames:
        try:
            index = _matching(header, keys, name, "--map")[0]  # a repeated name: the first
        except HeaderError:
            continue  # another input may have it (see `inputs.open_inputs`)
        found.append(name)
        if index in ids:
            raise HeaderError(
                f"--map: column {keys[index]!r} holds the identifier; only data columns "
                "are sent under another key"
            )
        if index not in sent:
            raise HeaderError(f"--map: column {keys[index]!r} is not sent (see --data-columns)")
        mapped[index] = key
    by_name: dict[str, str] = {}
    for key, _ in variables:
        by_name.setdefault(normalise(key), key)
    for key, shown in variables:
        by_name.setdefault(normalise(shown), key)
    # Identifier columns keep their names (their values are data only in rows that
    # took their identifier from another column).
    wanted = {
        index: mapped.get(index) or (own if index in ids else by_name.get(normalise(own), own))
        for index, own in data
    }

    def claim(index: int) -> tuple[int, int]:
        own = keys[index]
        return (0 if index in mapped else 1 if wanted[index] == own else 2, index)

    holder: dict[str, int] = {}
    for index in sorted(wanted, key=claim):
        holder.setdefault(wanted[index], index)
    out: list[tuple[int, str]] = []
    used = set(holder)
    for index, own in data:
        key = wanted[index]
        if holder[key] != index:
            fallback, copy = own, 1
            while fallback in used:
                copy += 1
                fallback = f"{own}_{copy}"
            used.add(fallback)
            warnings.append(
                f"column {own!r} is not sent as {key!r} (column {keys[holder[key]]!r} is): "
                f"its values are sent as {fallback!r}"
            )
            key = fallback
        out.append((index, key))
    return out


def distinct_keys(header: list[str]) -> tuple[list[str], list[str]]:
    """A key per column, distinct and never empty, and a warning for each repeated
    name: `Name,Name` gives `Name` and `Name_2`, an empty name `column_N` (said
    when a value is found in it: see `unnamed_warning`)."""
    taken = set(header)
    keys: list[str] = []
    seen: set[str] = set()
    warnings: list[str] = []
    for position, name in enumerate(header, start=1):
        key = name
        if not name or name in seen:
            base = name or f"column_{position}"
            key, copy = base, 1
            # A name no other column has or will have: a named `column_3` keeps its own.
            while key in taken or key in seen:
                copy += 1
                key = f"{base}_{copy}"
            if name:
                warnings.append(
                    f"column {position} repeats the name {name!r}: its values are sent as {key!r}"
                )
        seen.add(key)
        keys.append(key)
    return keys, warnings


def unnamed_warning(index: int, key: str) -> str:
    """What to say when a value is found in a column with no name."""
    return f"column {index + 1} has no name: its values are sent as {key!r}"


def _found(header: list[str], keys: list[str]) -> list[IdColumn]:
    ranked = sorted(
        (RULES[key].rank, i, RULES[key])
        for i, key in enumerate(map(normalise, header))
        if key in RULES
    )
    specific = [item for item in ranked if item[0] < GENERIC_RANK]
    chosen = specific or ranked
    if not chosen:
        raise HeaderError(_none_found(header))
    return [IdColumn(i, keys[i], rule.read_as, rule.bare_ids) for _, i, rule in chosen]


def _listed(names: list[str], most: int = 30) -> str:
    """Column names for a message, the first `most` of them."""
    return ", ".join(repr(n) for n in names[:most]) + (", ..." if len(names) > most else "")


def _none_found(header: list[str]) -> str:
    text = (
        f"no identifier column in the header (columns: {_listed(header)}); "
        "name it with --column NAME"
    )
    generic = [h for h in header if is_generic_id(h)]
    if generic:
        text += (
            f". A generic id column such as {generic[0]!r} is not read as X user IDs "
            f"unless you name it: --column {_quoted(generic[0])}"
        )
    if len(header) == 1 and HANDLE_RE.fullmatch(header[0]):
        text += f" (if {header[0]!r} is an account, write it as @{header[0]})"
    return text


def _quoted(name: str) -> str:
    return name if re.fullmatch(r"[\w.-]+", name) else f"'{name}'"


def _named(header: list[str], keys: list[str], name: str) -> list[IdColumn]:
    """The columns a `--column` name names (every one of that name, in order),
    read as their name says, a bare number included."""
    named = []
    for index in _matching(header, keys, name, "--column"):
        rule = RULES.get(normalise(header[index]))
        if rule is not None:
            read_as = rule.read_as
        elif is_generic_id(header[index]):
            read_as = ReadAs.PLATFORM_ID
        else:
            read_as = ReadAs.AUTO
        named.append(IdColumn(index, keys[index], read_as))
    return named


def _matching(header: list[str], keys: list[str], name: str, option: str) -> list[int]:
    """The columns `name` names: every column of that exact header, or its exact
    key (`Name_2`), else every column of that normalised name."""
    exact = [i for i, h in enumerate(header) if h == name]
    if exact:
        return exact
    if name in keys:
        return [keys.index(name)]
    wanted = normalise(name)
    found = [i for i, h in enumerate(header) if wanted and normalise(h) == wanted]
    if not found:
        found = [i for i, k in enumerate(keys) if wanted and normalise(k) == wanted]
    if not found:
        raise HeaderError(f"{option}: no column {name!r} in the header (columns: {_listed(keys)})")
    return found


def looks_like_header(cells: Iterable[str]) -> bool:
    """Whether the cells of a first line could be the names of a table's columns
    (two or more, none of them a handle with @, a link or a number)."""
    names = [c.strip().strip('"').strip() for c in cells]
    if len(names) < 2 or not all(names):
        return False
    return not any(n.startswith("@") or "/" in n or n.isdigit() or len(n) > 100 for n in names)


def empty_reason(names: list[str]) -> str:
    """Why a row with no identifier at all is rejected."""
    quoted = [repr(n) for n in names]
    if len(quoted) == 1:
        return f"empty {quoted[0]} cell"
    return f"empty {', '.join(quoted[:-1])} and {quoted[-1]} cells"


def number_reason(name: str) -> str:
    return (
        f"a bare number in the {name!r} column is not taken for an X user ID "
        f"(name the column with --column to read it as one)"
    )
