"""Short, URL-safe identifiers for jobs, runs and instances."""

from __future__ import annotations

import random
import secrets
from datetime import datetime

# Ids need to be unique, not secret: a fast generator, seeded from the OS.
_random = random.Random(secrets.randbits(128))

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case


_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]  # ten bits each


def _encode(value: int, width: int) -> str:
    """``value`` in ``width`` base-32 digits (``width`` even), most significant first."""
    pairs = []
    for _ in range(width // 2):
        value, pair = divmod(value, 1024)
        pairs.append(_PAIRS[pair])
    return "".join(reversed(pairs))


def new_job_id() -> str:
    """Ten random characters (50 bits)."""
    return _encode(_random.getrandbits(50), 10)


def new_instance_id() -> str:
    """Twelve random characters (60 bits)."""
    return _encode(_random.getrandbits(60), 12)


def new_session_id() -> str:
    """Fourteen random characters (70 bits)."""
    return _encode(_random.getrandbits(70), 14)


def new_run_id(now: datetime) -> str:
    """Sixteen characters: milliseconds since the epoch, then 30 random bits.

    Ids of runs queued in different milliseconds sort in the order they were queued.
    """
    ms = int(now.timestamp() * 1000)
    return _encode(ms, 10) + _encode(_random.getrandbits(30), 6)
