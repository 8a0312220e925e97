"""SQL rows by column name, SQLite's and PostgreSQL's: one table of fields per record.

A :class:`Table` names each column once, with how its value is written and read;
queries take their column lists and placeholders from it, and rows become
values by name, so no two places can disagree about what column ``n`` holds.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(value: datetime | None) -> int | None:
    """Microseconds since the epoch, as every time is stored."""
    if value is None:
        return None
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name (the record's attribute's too, unless ``get`` derives its
    value from the record), and how its value is kept."""

    name: str
    write: Callable[[Any], Any] = field(default=_same)
    read: Callable[[Any], Any] = field(default=_same)
    get: Callable[[Any], Any] | None = None

    def value_of(self, item: Any) -> Any:
        """The column's value for ``item``, as it is written."""
        return self.write(getattr(item, self.name) if self.get is None else self.get(item))


def time_column(name: str) -> Column:
    return Column(name, to_us, from_us)


def enum_column(name: str, kind: type[E]) -> Column:
    def read(value: Any) -> E | None:
        return None if value is None else kind(value)

    def write(value: E | None) -> Any:
        return None if value is None else value.value

    return Column(name, write, read)


class Table(Generic[T]):
    """The columns of one record's table, in the order every query names them."""

    def __init__(self, name: str, make: Callable[..., T], columns: Sequence[Column]) -> None:
        self.name = name
        self._make = make
        self.columns = tuple(columns)
        self.names = ", ".join(c.name for c in self.columns)
        self.marks = self.placeholders("?")
        self._index = {c.name: i for i, c in enumerate(self.columns)}

    def placeholders(self, mark: str) -> str:
        """One placeholder per column: ``?`` for SQLite, ``%s`` for PostgreSQL."""
        return ", ".join([mark] * len(self.columns))

    def values(self, item: T) -> tuple[Any, ...]:
        """The record's values, in column order, as they are written."""
        return tuple(c.value_of(item) for c in self.columns)

    def load(self, row: Sequence[Any]) -> T:
        """The record from a row selected with :attr:`names`."""
        return self._make(
            **{c.name: c.read(value) for c, value in zip(self.columns, row, strict=True)}
        )

    def assignments(self, names: Sequence[str], mark: str = "?") -> str:
        """``a = ?, b = ?`` for an UPDATE of these columns."""
        return ", ".join(f"{self.columns[self._index[n]].name} = {mark}" for n in names)

    def names_of(self, names: Sequence[str]) -> str:
        """``a, b``: some of the columns, in the order given (checked to exist)."""
        return ", ".join(self.columns[self._index[n]].name for n in names)

    def values_of(self, item: T, names: Sequence[str]) -> tuple[Any, ...]:
        """The values of some columns of a record, in the order given."""
        return tuple(self.columns[self._index[n]].value_of(item) for n in names)
