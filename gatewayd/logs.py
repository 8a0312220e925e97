"""structlog set-up: JSON lines under a service manager or in a pipe, console on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import orjson
import structlog


def configure_logging(
    *, level: str = "info", fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Send gatewayd's logs to ``stream`` (stderr): ``console`` on a TTY, else ``json``."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        processors: list[structlog.typing.Processor] = [
            *shared,
            structlog.dev.ConsoleRenderer(colors=out.isatty()),
        ]
        factory: structlog.types.WrappedLogger = structlog.PrintLoggerFactory(file=out)
    else:
        processors = [
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory = structlog.BytesLoggerFactory(file=out.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
