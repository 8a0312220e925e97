"""structlog set-up: JSON lines under a service manager or in a pipe, console on a TTY.

A log line can never raise into the daemon's code, nor block its event loop:
lines are handed to a bounded queue, and a thread of their own writes them to
stderr. A line that cannot be written (a full disk, a pipe whose reader has
gone) or that finds the queue full is dropped and counted; ``gatewayd status``
shows the count.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sys
import threading
from typing import Any, TextIO

import orjson
import structlog

QUEUE_LINES = 10_000


class LineSink:
    """Writes lines to a file descriptor from its own thread; never raises, never blocks."""

    def __init__(self, fd: int, *, size: int = QUEUE_LINES) -> None:
        self._fd = fd
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=size)
        self._thread = threading.Thread(target=self._run, name="gatewayd-log", daemon=True)
        self.dropped = 0
        self._thread.start()

    def put(self, line: bytes) -> None:
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                return
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                self.dropped += 1

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (for at most ``timeout_s``), then end the thread."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)


class SinkLogger:
    """A structlog logger whose every method hands the rendered line to a :class:`LineSink`."""

    def __init__(self, sink: LineSink) -> None:
        self._sink = sink

    def msg(self, message: str | bytes) -> None:
        data = message if isinstance(message, bytes) else message.encode("utf-8", "replace")
        self._sink.put(data + b"\n")

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class SinkLoggerFactory:
    def __init__(self, sink: LineSink) -> None:
        self._sink = sink

    def __call__(self, *args: Any) -> SinkLogger:
        return SinkLogger(self._sink)


# The process's one sink, made by the first configure_logging.
_sinks: list[LineSink] = []


def dropped_lines() -> int:
    """How many log lines could not be written so far."""
    return sum(sink.dropped for sink in _sinks)


def configure_logging(
    *, level: str = "info", fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Send gatewayd's logs to ``stream`` (stderr): ``console`` on a TTY, else ``json``."""
    out = stream or sys.stderr
    try:
        tty = out.isatty()
    except (OSError, ValueError):
        tty = False
    console = fmt == "console" or (fmt == "auto" and tty)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        processors: list[structlog.typing.Processor] = [
            *shared,
            structlog.dev.ConsoleRenderer(colors=tty),
        ]
    else:
        processors = [
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
    if not _sinks:
        _sinks.append(LineSink(out.fileno()))
        atexit.register(_sinks[0].close)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=SinkLoggerFactory(_sinks[0]),
        cache_logger_on_first_use=True,
    )
