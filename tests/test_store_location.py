"""Where the store is: URLs, their precedence, and passwords that never show."""

from __future__ import annotations

from pathlib import Path

import pytest
from gatewayd.errors import InvalidInput
from gatewayd.store.location import StoreKind, parse_location, resolve_location

URL = "postgresql://gw:s3cret-pw@db.example:5432/gatewayd?password=other-pw&sslmode=require"


class TestLocations:
    def test_a_password_never_shows(self) -> None:
        """A password in the URL (user part or query) is in no shown form, repr or error."""
        location = parse_location(URL, schema="c1")
        assert location.kind is StoreKind.POSTGRESQL and location.schema == "c1"
        for text in (location.shown, repr(location)):
            assert "s3cret-pw" not in text and "other-pw" not in text
        assert location.shown.startswith("postgresql://gw:***@db.example:5432/gatewayd")
        with pytest.raises(InvalidInput) as refused:
            parse_location(URL.replace("postgresql", "mysql"))
        assert "s3cret-pw" not in refused.value.message and "store" in refused.value.message

    def test_flag_then_environment_then_config_then_the_state_dir(self, tmp_path: Path) -> None:
        """--store wins over GATEWAYD_STORE, which wins over [store] url; else the file."""
        env = {"GATEWAYD_STORE": "sqlite:///env.db"}
        pick = resolve_location("sqlite:///flag.db", env, URL, schema="s", state_dir=tmp_path)
        assert pick.path == Path("/flag.db")
        assert resolve_location(None, env, URL, schema="s", state_dir=tmp_path).path == Path(
            "/env.db"
        )
        assert resolve_location(None, {}, URL, schema="s", state_dir=tmp_path).kind is (
            StoreKind.POSTGRESQL
        )
        default = resolve_location(None, {}, None, schema="s", state_dir=tmp_path)
        assert default.path == tmp_path / "gatewayd.db"

    def test_a_bad_schema_is_refused_naming_the_field(self) -> None:
        """Bad input gets an error naming its field, and changes nothing."""
        with pytest.raises(InvalidInput, match=r"\[store\] schema"):
            parse_location("postgresql:///db", schema="Not-A-Schema")
