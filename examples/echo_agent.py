#!/usr/bin/env python3
"""A tiny demo agent for gatewayd's agent turns.

gatewayd writes the turn's message on stdin and sets GATEWAYD_* variables; the
agent's stdout is its reply, stored as the run's summary and appended to the
session transcript. Anything on stderr goes to the run's log. A non-zero exit
fails the turn.

A real agent CLI plugs in the same way: read the message, print the reply.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    message = sys.stdin.read().strip()
    if not message:
        print("echo-agent: no message on stdin", file=sys.stderr)
        return 2
    session = os.environ.get("GATEWAYD_SESSION_KEY", "?")
    previous = os.environ.get("GATEWAYD_PREV_RUN_STATUS") or "none"
    words = len(message.split())
    print(f"echo-agent heard {words} word(s) in session {session}: {message!r}")
    print(f"(the previous turn of this job ended: {previous})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
