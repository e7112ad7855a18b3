"""How an option is declared: once, as a dataclass field that carries its flag and help.

A field made with `option()` or `argument()` is the whole declaration of an
option: its default is the field's, and its flag, help and command-line form
ride along in the field's metadata. `cli` builds a command's parameters from
these fields (`declared`) and the job from what was given (`build`); the runner
and the engine read the same fields. A field of a dataclass type holds a group
of options declared the same way (the job's `read`). Fields made without
`option()` are settings the command line does not offer.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

from .errors import UsageError

T = TypeVar("T")
_FLAG = "inboxleads.flag"


@dataclass(frozen=True)
class Flag:
    """How the command line offers one field."""

    names: tuple[str, ...]  # empty for a positional argument
    help: str
    metavar: str | None = None
    show_default: bool = True
    # The type the command line takes when it is not the field's own (a comma-separated
    # list, a repeated HEADER=KEY); `parse` turns a given value into the field's.
    given_as: Any = None
    parse: Callable[[Any], Any] | None = None
    # When not given (or given empty): this environment variable's text, then .env's,
    # then the default.
    env: str | None = None

    @property
    def argument(self) -> bool:
        return not self.names

    @property
    def name(self) -> str:
        """How messages name it: its first flag, or an argument's metavar."""
        return self.names[0] if self.names else self.metavar or "argument"

    @property
    def optional(self) -> bool:
        """Whether the command line passes None for "not given" (the field's default
        then applies), rather than the default itself."""
        return self.given_as is not None or self.env is not None


def option(
    default: Any,
    *names: str,
    help: str,
    metavar: str | None = None,
    show_default: bool = True,
    given_as: Any = None,
    parse: Callable[[Any], Any] | None = None,
    env: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A field that is an option: `names` are its flags; `factory` makes a default
    that is mutable."""
    flag = Flag(tuple(names), help, metavar, show_default, given_as, parse, env)
    return _field(flag, default, factory)


def argument(
    *,
    help: str,
    metavar: str,
    default: Any = MISSING,
    factory: Callable[[], Any] | None = None,
    given_as: Any = None,
    parse: Callable[[Any], Any] | None = None,
) -> Any:
    """A field that is a positional argument; without a default it is required."""
    return _field(Flag((), help, metavar, False, given_as, parse), default, factory)


def _field(flag: Flag, default: Any, factory: Callable[[], Any] | None) -> Any:
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_FLAG: flag})
    return dataclasses.field(default=default, metadata={_FLAG: flag})


@dataclass(frozen=True)
class Declared:
    """One option as a command builds it: its field, type, flag and default."""

    name: str
    hint: Any
    flag: Flag
    default: Any  # MISSING: required

    @property
    def given_type(self) -> Any:
        return self.flag.given_as if self.flag.given_as is not None else self.hint


def declared(cls: type[Any]) -> Iterator[Declared]:
    """Every option of a dataclass, in declaration order, its groups' options in place."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            yield from declared(typing.cast(type[Any], hint))
            continue
        flag = field.metadata.get(_FLAG)
        if flag is None:
            continue
        if field.default is not MISSING:
            default = field.default
        elif field.default_factory is not MISSING:
            default = field.default_factory()
        else:
            default = MISSING
        yield Declared(field.name, hint, flag, default)


def build(cls: type[T], given: dict[str, Any], lookup: Callable[[str], str | None]) -> T:
    """An instance of `cls` from the values a command line gave, by field name (None:
    not given, for a flag that allows it); `lookup` reads an option's variable."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(typing.cast(Any, cls)):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            values[field.name] = build(typing.cast(type[Any], hint), given, lookup)
            continue
        flag: Flag | None = field.metadata.get(_FLAG)
        if flag is None or field.name not in given:
            continue
        value, where = given[field.name], flag.name
        if not value and flag.env is not None:  # `--base-url "$UNSET"` too
            value, where = lookup(flag.env) or None, flag.env
        if value is None and flag.optional:
            continue  # not given: the field's default
        if not flag.argument:  # an argument may be a file's name, which need not be text
            _check_text(value, where)
        values[field.name] = flag.parse(value) if flag.parse is not None else value
    return cls(**values)


def _check_text(value: Any, where: str) -> None:
    """Text that cannot be sent or shown as UTF-8 (bytes of another encoding on the
    command line, or in the environment) is a usage error naming where it came from,
    each value of a repeated option too; the value itself is not shown, since it may
    be a secret."""
    for text in value if isinstance(value, list) else [value]:
        if not isinstance(text, str):
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(
                f"{where} is not valid UTF-8 text (check the terminal's or the script's encoding)"
            ) from None
