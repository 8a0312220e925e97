"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

from tests import harness


@pytest.fixture(params=harness.STORE_KINDS)
def each_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once over each store: the harnesses it opens use that store."""
    kind: str = request.param
    monkeypatch.setattr(harness, "default_store_kind", kind)
    return kind
