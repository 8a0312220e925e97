"""Fixtures shared by the test modules."""

from __future__ import annotations

import os

import pytest
from _pytest.terminal import TerminalReporter

from tests import browser, harness, pgserver


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = pgserver.missing()
    if missing is not None and os.environ.get("CI"):
        pytest.exit(f"CI is set and the PostgreSQL suite cannot run: {missing}", returncode=3)
    no_browser = browser.missing()
    if no_browser is not None and os.environ.get("CI"):
        pytest.exit(f"CI is set and the browser test cannot run: {no_browser}", returncode=3)


def pytest_sessionfinish(session: pytest.Session) -> None:
    pgserver.drop_schemas()


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    missing = pgserver.missing()
    if missing is not None:
        terminalreporter.write_line(
            f"the PostgreSQL suite did not run: {missing}. To run it, {pgserver.HOW}."
        )
    no_browser = browser.missing()
    if no_browser is not None:
        terminalreporter.write_line(
            f"the dashboard's browser test did not run: {no_browser}. To run it, {browser.HOW}."
        )


def needs_postgres(kind: str) -> None:
    """Skip a PostgreSQL case when the test server does not answer (said at the end)."""
    if kind == "postgresql":
        missing = pgserver.missing()
        if missing is not None:
            pytest.skip(f"no PostgreSQL: {missing}")


@pytest.fixture(params=harness.STORE_KINDS)
def each_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once over each store: the harnesses it opens use that store."""
    kind: str = request.param
    needs_postgres(kind)
    monkeypatch.setattr(harness, "default_store_kind", kind)
    return kind
