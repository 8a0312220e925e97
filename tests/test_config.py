"""The config file: defaults, declared jobs, and errors that name the key and line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from gatewayd.config import Config, load_config, parse_config
from gatewayd.errors import ConfigError

NOW = datetime(2026, 3, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


class TestConfig:
    def test_no_file_means_defaults(self) -> None:
        assert load_config(None, now=NOW) == Config()

    def test_example_config_loads(self) -> None:
        """The shipped example is valid and declares at least one job."""
        config = load_config(ROOT / "config.example.toml", now=NOW)
        assert config.jobs
        assert config.gateway.max_concurrent_runs == 16
        assert config.http.listen == "127.0.0.1:9464"  # `make run` shows the listener

    def test_values_are_read(self) -> None:
        config = parse_config(
            '[gateway]\nmax_concurrent_runs = 3\nkill_grace = "2s"\n'
            '[scheduler]\ncatchup_window = "1h"\n'
            '[[jobs]]\nname = "a"\nevery = "5m"\ncommand = "true"\n',
            now=NOW,
        )
        assert config.gateway.max_concurrent_runs == 3
        assert config.gateway.kill_grace_s == 2.0
        assert config.scheduler.catchup_window_s == 3600.0
        assert config.jobs[0]["schedule"] == {"kind": "every", "every_s": "5m"}

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ("[gateway\n", "not valid TOML"),
            ("[gateway]\nmax_concurrent_runs = 'many'\n", "x.toml:2: gateway.max_concurrent_runs"),
            ("[gateway]\n\nkill_grace = '-1s'\n", "x.toml:3: gateway.kill_grace"),
            ("[gateway]\nbogus = 1\n", "gateway.bogus: unknown key"),
            ("[gateway]\non_shutdown = 'explode'\n", "expected one of detach, wait, cancel"),
            ("[[jobs]]\nname = 'a'\ncron = '99 * * * *'\ncommand = 'x'\n", "jobs[0] ('a')"),
            ("[[jobs]]\nname = 'a'\nevery = '1m'\n", "payload: missing"),
            (
                "[[jobs]]\nname = 'a'\nevery = '1m'\ncommand = 'x'\n"
                "[[jobs]]\nname = 'a'\nevery = '1m'\ncommand = 'x'\n",
                "declared twice",
            ),
            ("[surprise]\n", "unknown table or key 'surprise'"),
        ],
    )
    def test_errors_name_the_problem(self, text: str, words: str) -> None:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, path=Path("x.toml"), now=NOW)
        assert words in caught.value.message

    def test_every_key_is_documented_in_the_example(self) -> None:
        """config.example.toml names every key the parser knows (set, or commented out)."""
        import re

        from gatewayd.config import (
            AGENT_KEYS,
            GATEWAY_KEYS,
            HTTP_KEYS,
            SCHEDULER_KEYS,
            SINK_KEYS,
        )
        from gatewayd.flatspec import FLAT_KEYS

        text = (ROOT / "config.example.toml").read_text()
        for key in GATEWAY_KEYS | SCHEDULER_KEYS | AGENT_KEYS | SINK_KEYS | HTTP_KEYS:
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), key
        for key in FLAT_KEYS:
            assert key in text, key

    def test_unreadable_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read the config file"):
            load_config(tmp_path / "missing.toml", now=NOW)


class TestAlertSinks:
    """``[alerts.NAME]``: a bad sink is refused at load, naming its key; nothing starts."""

    def test_a_command_and_a_webhook_sink(self) -> None:
        config = parse_config(
            '[alerts.file]\ncommand = ["notify"]\n'
            '[alerts.hook]\nwebhook = "https://hooks.example.com/x"\ntoken_env = "TOKEN"\n'
            'retry_backoff = "1s"\nmax_attempts = 3\n'
            '[[jobs]]\nname = "j"\nevery = "1h"\ncommand = "true"\nalert = ["file", "hook"]\n',
            now=NOW,
            env={"TOKEN": "t"},
        )
        file, hook = config.sinks
        assert file.command == ("notify",) and file.max_attempts == 8
        assert hook.webhook == "https://hooks.example.com/x" and hook.token_env == "TOKEN"
        assert (hook.retry_backoff_s, hook.max_attempts) == (1.0, 3)

    @pytest.mark.parametrize(
        ("text", "named"),
        [
            ('[alerts.x]\ncommand = ["a"]\nwebhook = "https://h/x"\n', "give exactly one"),
            ('[alerts.x]\nwebhook = "ftp://h/x"\n', "alerts.x.webhook"),
            ('[alerts.x]\nwebhook = "https://h/x"\ntoken_env = "UNSET_VAR"\n', "is not set"),
            ('[alerts.x]\ncommand = ["a"]\nmax_attempts = 0\n', "alerts.x.max_attempts"),
            ('[alerts.x]\ncommand = ["a"]\nretry = 1\n', "unknown key"),
            (
                '[[jobs]]\nname = "j"\nevery = "1h"\ncommand = "true"\nalert = ["nowhere"]\n',
                "alert sink 'nowhere' is not declared",
            ),
            (
                '[[jobs]]\nname = "j"\nevery = "1h"\ncommand = "true"\npause_after = 0\n',
                "pause_after",
            ),
        ],
    )
    def test_refused(self, text: str, named: str) -> None:
        with pytest.raises(ConfigError, match=named):
            parse_config(text, now=NOW, env={})
