"""Where the store is: the embedded SQLite file, or a PostgreSQL database, by URL.

``sqlite:///path`` (or no URL: ``gatewayd.db`` in the state directory) and
``postgresql://user:password@host:port/db?...`` (``postgres://`` too). The URL
is chosen by ``serve --store`` (and ``doctor --store``), else ``GATEWAYD_STORE``,
else ``[store] url``. A password in it never leaves this module: whatever is
logged, shown in ``status`` or put in an error is :attr:`StoreLocation.shown`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gatewayd.errors import InvalidInput
from gatewayd.paths import DB_NAME
from gatewayd.settings import STORE

ENV_VAR = "GATEWAYD_STORE"
# A schema name gatewayd creates and names unquoted in its messages.
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_HIDDEN = "***"


class StoreKind(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreLocation:
    """One store's place. ``conninfo`` (PostgreSQL) holds the password: pass it only
    to the driver; show :attr:`shown`."""

    kind: StoreKind
    path: Path | None = None
    conninfo: str = field(default="", repr=False)
    schema: str = STORE.schema
    shown: str


def check_schema(name: str, *, field_name: str = "[store] schema") -> str:
    if not _SCHEMA.fullmatch(name):
        raise InvalidInput(
            f"{field_name}: {name!r} is not a schema name gatewayd uses; expected lower-case "
            "letters, digits and _ (at most 63, not starting with a digit)",
            data={"field": field_name},
        )
    return name


def hide_password(url: str) -> str:
    """``url`` with any password in it replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a store URL that does not parse>"
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, hosts = netloc.rpartition("@")
        user, colon, _ = credentials.partition(":")
        netloc = f"{user}{':' + _HIDDEN if colon else ''}@{hosts}"
    query = [
        (key, _HIDDEN if key.lower() == "password" else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def parse_location(
    url: str, *, schema: str = STORE.schema, field_name: str = "store"
) -> StoreLocation:
    """The store at ``url``; :class:`InvalidInput` naming ``field_name`` if it is not one."""
    shown = hide_password(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise InvalidInput(
            f"{field_name}: {shown!r} is not a store URL; expected sqlite:///PATH or "
            "postgresql://USER@HOST/DATABASE",
            data={"field": field_name},
        )
    if scheme == "sqlite":
        if not rest.strip("/"):
            raise InvalidInput(
                f"{field_name}: {shown!r} names no file; expected sqlite:///PATH",
                data={"field": field_name},
            )
        return StoreLocation(kind=StoreKind.SQLITE, path=Path(rest), shown=f"sqlite://{rest}")
    if scheme in ("postgresql", "postgres"):
        check_schema(schema)
        return StoreLocation(kind=StoreKind.POSTGRESQL, conninfo=url, schema=schema, shown=shown)
    raise InvalidInput(
        f"{field_name}: the store URL scheme {scheme!r} is not known; expected sqlite or "
        "postgresql",
        data={"field": field_name},
    )


def embedded(state_dir: Path) -> StoreLocation:
    """The default: the SQLite file in the state directory."""
    path = state_dir / DB_NAME
    return StoreLocation(kind=StoreKind.SQLITE, path=path, shown=f"sqlite://{path}")


def resolve_location(
    flag: str | None,
    env: Mapping[str, str],
    configured: str | None,
    *,
    schema: str,
    state_dir: Path,
) -> StoreLocation:
    """The store to use: ``--store``, else ``$GATEWAYD_STORE``, else ``[store] url``,
    else the embedded one in ``state_dir``."""
    for url, where in ((flag, "--store"), (env.get(ENV_VAR), ENV_VAR), (configured, "[store] url")):
        if url:
            return parse_location(url, schema=schema, field_name=where)
    return embedded(state_dir)
