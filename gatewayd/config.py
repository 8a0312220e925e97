"""The TOML configuration, read into a frozen :class:`Config`.

Loading has no side effects: it reads one file and returns a value, or raises
:class:`ConfigError` naming the key (and its line, where it can be found).
Every key, with its default, is documented in ``config.example.toml``.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from gatewayd import bounds
from gatewayd.alerting.values import SINK_NAME, SinkKind, SinkSpec
from gatewayd.durations import parse_duration, parse_size
from gatewayd.errors import ConfigError, InvalidInput
from gatewayd.flatspec import spec_from_flat
from gatewayd.jobspec import job_from_spec
from gatewayd.model import DEFAULT_AGENT, AgentSpec, JobSource
from gatewayd.settings import (
    ClusterSettings,
    GatewaySettings,
    HttpSettings,
    SchedulerSettings,
    StoreSettings,
)
from gatewayd.store.location import check_schema, parse_location
from gatewayd.web.address import is_loopback, parse_listen

ENV_PREFIX = "GATEWAYD_"
GATEWAY_KEYS = frozenset(
    {
        "state_dir",
        "socket",
        "max_concurrent_runs",
        "default_timeout",
        "kill_grace",
        "on_shutdown",
        "drain_timeout",
        "sweep_interval",
        "history_per_job",
        "history_max_age",
        "events_keep",
        "event_queue",
        "log_level",
        "log_format",
        "max_output",
        "max_connections",
        "idle_timeout",
        "pass_env",
    }
)
SCHEDULER_KEYS = frozenset({"misfire_grace", "catchup_window", "catchup_max_runs"})
CLUSTER_KEYS = frozenset({"lease", "host_id", "orphan_grace", "backstop"})
STORE_KEYS = frozenset({"url", "schema"})
HTTP_KEYS = frozenset({"listen", "token_env"})
AGENT_KEYS = frozenset({"command", "timeout", "cwd", "env"})
SINK_KEYS = frozenset(
    {"command", "webhook", "token_env", "retry_backoff", "max_attempts", "timeout"}
)
T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    gateway: GatewaySettings = GatewaySettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    cluster: ClusterSettings = ClusterSettings()
    store: StoreSettings = StoreSettings()
    http: HttpSettings = HttpSettings()
    agents: tuple[AgentSpec, ...] = ()
    sinks: tuple[SinkSpec, ...] = ()
    jobs: tuple[Mapping[str, Any], ...] = ()
    path: Path | None = None
    source_text: str = field(default="", repr=False)


def _line_of(text: str, table: str, key: str) -> int | None:
    """The line where ``key`` is set inside ``[table]``, if it can be found."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\[?\s*([^\]]+?)\s*\]\]?", stripped)
        if header:
            current = header.group(1)
        elif current == table and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


class _Reader:
    """Reads one table of the file, naming the file, key and line in every error."""

    def __init__(
        self,
        path: Path | None,
        text: str,
        table: str,
        body: Any,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.text = text
        self.table = table
        self.env = env or {}
        self.from_env: dict[str, str] = {}
        if not isinstance(body, dict):
            raise self.error(table, f"[{table}] must be a table")
        self.body: dict[str, Any] = body

    def get(self, key: str, default: Any) -> Any:
        """The value of ``key``: ``$GATEWAYD_<KEY>`` if set (``env`` given), else the file's."""
        name = f"{ENV_PREFIX}{key.upper()}"
        if name in self.env:
            self.from_env[key] = name
            return self.env[name]
        return self.body.get(key, default)

    def error(self, key: str, message: str) -> ConfigError:
        if key in self.from_env:
            name = self.from_env[key]
            return ConfigError(
                f"{name} (overrides {self.table}.{key}): {message}", data={"key": key}
            )
        line = _line_of(self.text, self.table, key) if key != self.table else None
        where = str(self.path) if self.path else "config"
        if line is not None:
            where += f":{line}"
        return ConfigError(f"{where}: {self.table}.{key}: {message}", data={"key": key})

    def check_keys(self, allowed: frozenset[str]) -> None:
        for key in self.body:
            if key not in allowed:
                raise self.error(key, f"unknown key; known keys are {', '.join(sorted(allowed))}")

    def string(self, key: str, default: str | None) -> str | None:
        value = self.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def choice(self, key: str, default: E) -> E:
        """One of the values of ``default``'s enum."""
        options = [member.value for member in type(default)]
        value = self.get(key, default.value)
        if value not in options:
            raise self.error(key, f"expected one of {', '.join(options)}, got {value!r}")
        return type(default)(value)

    def integer(self, key: str, default: int, bound: bounds.Count) -> int:
        value = self.get(key, default)
        if isinstance(value, str) and key in self.from_env and value.strip().lstrip("-").isdigit():
            value = int(value)
        return self._checked(key, lambda: bound.check(value, key))

    def duration(self, key: str, default: float, span: bounds.Span) -> float:
        value = self.get(key, default)
        return self._checked(key, lambda: span.check(parse_duration(value, what=key), key))

    def size(self, key: str, default: int, bound: bounds.Count) -> int:
        value = self.get(key, default)
        return self._checked(key, lambda: bound.check(parse_size(value, what=key), key))

    def names(self, key: str) -> tuple[str, ...] | None:
        """A list of variable names, or ``None`` if the key is not set."""
        value = self.body.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(n, str) and n and "=" not in n and "\0" not in n for n in value
        ):
            raise self.error(key, 'expected a list of variable names, like ["PATH", "HOME"]')
        return tuple(value)

    def _checked(self, key: str, check: Callable[[], T]) -> T:
        try:
            return check()
        except InvalidInput as exc:
            raise self.error(key, exc.message.removeprefix(f"{key}: ")) from None


def _gateway(path: Path | None, text: str, body: Any, env: Mapping[str, str]) -> GatewaySettings:
    r = _Reader(path, text, "gateway", body, env)
    d = GatewaySettings()
    r.check_keys(GATEWAY_KEYS)
    return GatewaySettings(
        state_dir=r.string("state_dir", None),
        socket=r.string("socket", None),
        max_concurrent_runs=r.integer(
            "max_concurrent_runs", d.max_concurrent_runs, bounds.MAX_CONCURRENT_RUNS
        ),
        default_timeout_s=r.duration("default_timeout", d.default_timeout_s, bounds.TIMEOUT),
        kill_grace_s=r.duration("kill_grace", d.kill_grace_s, bounds.KILL_GRACE),
        on_shutdown=r.choice("on_shutdown", d.on_shutdown),
        drain_timeout_s=r.duration("drain_timeout", d.drain_timeout_s, bounds.DRAIN_TIMEOUT),
        sweep_interval_s=r.duration("sweep_interval", d.sweep_interval_s, bounds.SWEEP_INTERVAL),
        history_per_job=r.integer("history_per_job", d.history_per_job, bounds.HISTORY_PER_JOB),
        history_max_age_s=r.duration(
            "history_max_age", d.history_max_age_s, bounds.HISTORY_MAX_AGE
        ),
        events_keep=r.integer("events_keep", d.events_keep, bounds.EVENTS_KEEP),
        event_queue=r.integer("event_queue", d.event_queue, bounds.EVENT_QUEUE),
        log_level=r.choice("log_level", d.log_level),
        log_format=r.choice("log_format", d.log_format),
        max_output=r.size("max_output", d.max_output, bounds.MAX_OUTPUT),
        max_connections=r.integer("max_connections", d.max_connections, bounds.MAX_CONNECTIONS),
        idle_timeout_s=r.duration("idle_timeout", d.idle_timeout_s, bounds.IDLE_TIMEOUT),
        pass_env=r.names("pass_env"),
    )


def _scheduler(
    path: Path | None, text: str, body: Any, env: Mapping[str, str]
) -> SchedulerSettings:
    r = _Reader(path, text, "scheduler", body, env)
    d = SchedulerSettings()
    r.check_keys(SCHEDULER_KEYS)
    return SchedulerSettings(
        misfire_grace_s=r.duration("misfire_grace", d.misfire_grace_s, bounds.MISFIRE_GRACE),
        catchup_window_s=r.duration("catchup_window", d.catchup_window_s, bounds.CATCHUP_WINDOW),
        catchup_max_runs=r.integer("catchup_max_runs", d.catchup_max_runs, bounds.CATCHUP_MAX_RUNS),
    )


def _cluster(path: Path | None, text: str, body: Any, env: Mapping[str, str]) -> ClusterSettings:
    r = _Reader(path, text, "cluster", body, env)
    d = ClusterSettings()
    r.check_keys(CLUSTER_KEYS)
    lease = r.duration("lease", d.lease_s, bounds.LEASE)
    backstop = r.duration("backstop", d.backstop_s, bounds.BACKSTOP)
    host_id = r.string("host_id", d.host_id)
    if host_id is not None and (not host_id.strip() or "\0" in host_id):
        raise r.error("host_id", "expected a name for this machine, or no key (its machine id)")
    return ClusterSettings(
        lease_s=lease,
        host_id=host_id,
        orphan_grace_s=r.duration("orphan_grace", d.orphan_grace_s, bounds.ORPHAN_GRACE),
        backstop_s=backstop,
    )


def check_http(settings: HttpSettings, env: Mapping[str, str]) -> HttpSettings:
    """``settings`` if its address parses and its token rule holds (an address other
    than loopback needs ``token_env``, naming a variable that is set); else InvalidInput
    naming the field."""
    if settings.listen is None:
        return settings
    host, _ = parse_listen(settings.listen)
    name = settings.token_env
    if name is None and not is_loopback(host):
        raise InvalidInput(
            f"token_env: listening on {settings.listen}, beyond this machine, needs a bearer "
            "token: set [http] token_env to the name of a variable that holds one",
            data={"field": "token_env"},
        )
    if name is not None and not env.get(name):
        raise InvalidInput(
            f"token_env: the variable {name} that holds the token is not set",
            data={"field": "token_env"},
        )
    return settings


def _http(path: Path | None, text: str, body: Any, env: Mapping[str, str]) -> HttpSettings:
    r = _Reader(path, text, "http", body)
    r.check_keys(HTTP_KEYS)
    settings = HttpSettings(listen=r.string("listen", None), token_env=r.string("token_env", None))
    try:
        return check_http(settings, env)
    except InvalidInput as exc:
        key = exc.data.get("field", "listen")
        raise r.error(key, exc.message.removeprefix(f"{key}: ")) from None


def _store(path: Path | None, text: str, body: Any) -> StoreSettings:
    r = _Reader(path, text, "store", body)
    d = StoreSettings()
    r.check_keys(STORE_KEYS)
    url = r.string("url", d.url)
    schema = r.string("schema", d.schema) or d.schema
    try:
        if url is not None:
            parse_location(url, schema=schema, field_name="url")
        check_schema(schema, field_name="schema")
    except InvalidInput as exc:
        key = exc.data.get("field", "url")
        raise r.error(key, exc.message.removeprefix(f"{key}: ")) from None
    return StoreSettings(url=url, schema=schema)


def _agents(path: Path | None, text: str, body: Any) -> tuple[AgentSpec, ...]:
    where = str(path) if path else "config"
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: agents: declare each agent as an [agents.NAME] table")
    agents = []
    for name, table in body.items():
        r = _Reader(path, text, f"agents.{name}", table)
        r.check_keys(AGENT_KEYS)
        command = r.body.get("command")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) and a for a in command)
        ):
            raise r.error("command", 'expected a list of strings, like ["my-agent", "--json"]')
        env = r.body.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise r.error("env", "expected a table of strings")
        timeout = r.body.get("timeout")
        agents.append(
            AgentSpec(
                name=name,
                command=tuple(command),
                timeout_s=None if timeout is None else r.duration("timeout", 0.0, bounds.TIMEOUT),
                cwd=r.string("cwd", None),
                env=tuple(sorted(env.items())),
            )
        )
    return tuple(agents)


def _sinks(path: Path | None, text: str, body: Any, env: Mapping[str, str]) -> tuple[SinkSpec, ...]:
    where = str(path) if path else "config"
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: alerts: declare each alert sink as an [alerts.NAME] table")
    sinks = []
    defaults = SinkSpec(name="-", kind=SinkKind.COMMAND)
    for name, table in body.items():
        r = _Reader(path, text, f"alerts.{name}", table)
        if not SINK_NAME.fullmatch(name):
            raise r.error(r.table, "a sink's name is letters, digits, '_', '.' and '-'")
        r.check_keys(SINK_KEYS)
        command, webhook = r.body.get("command"), r.string("webhook", None)
        if (command is None) == (webhook is None):
            raise r.error(r.table, "give exactly one of command or webhook")
        if command is not None and (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) and a and "\0" not in a for a in command)
        ):
            raise r.error("command", 'expected a list of strings, like ["notify", "--json"]')
        if webhook is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", webhook):
            raise r.error("webhook", f"expected an http:// or https:// URL, got {webhook!r}")
        token_env = r.string("token_env", None)
        if token_env is not None:
            if webhook is None:
                raise r.error("token_env", "a bearer token goes only with a webhook")
            if not token_env or "=" in token_env or "\0" in token_env:
                raise r.error("token_env", f"{token_env!r} is not a variable name")
            if not env.get(token_env):
                raise r.error(
                    "token_env", f"the variable {token_env} that holds the token is not set"
                )
        sinks.append(
            SinkSpec(
                name=name,
                kind=SinkKind.COMMAND if command is not None else SinkKind.WEBHOOK,
                command=tuple(command or ()),
                webhook=webhook,
                token_env=token_env,
                retry_backoff_s=r.duration(
                    "retry_backoff", defaults.retry_backoff_s, bounds.SINK_RETRY_BACKOFF
                ),
                max_attempts=r.integer(
                    "max_attempts", defaults.max_attempts, bounds.SINK_MAX_ATTEMPTS
                ),
                timeout_s=r.duration("timeout", defaults.timeout_s, bounds.SINK_TIMEOUT),
            )
        )
    return tuple(sinks)


def _jobs(
    path: Path | None,
    text: str,
    body: Any,
    now: datetime,
    agents: frozenset[str],
    sinks: frozenset[str],
) -> tuple[Mapping[str, Any], ...]:
    where = str(path) if path else "config"
    if not isinstance(body, list):
        raise ConfigError(f"{where}: jobs: declare jobs as [[jobs]] tables")
    specs = []
    seen: set[str] = set()
    for index, item in enumerate(body):
        label = f"jobs[{index}]"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            label = f"jobs[{index}] ({item['name']!r})"
        try:
            if not isinstance(item, dict):
                raise InvalidInput("each [[jobs]] entry must be a table")
            spec = spec_from_flat(item, what="job")
            job_from_spec(
                spec,
                job_id="config-check",
                source=JobSource.CONFIG,
                now=now,
                created_at=now,
                updated_at=now,
                allow_past_at=True,
            )
        except InvalidInput as exc:
            raise ConfigError(f"{where}: {label}: {exc.message}") from None
        payload = spec.get("payload") or {}
        agent = payload.get("agent", DEFAULT_AGENT)
        if payload.get("kind") == "agent_turn" and agent not in agents:
            raise ConfigError(
                f"{where}: {label}: agent {agent!r} is not declared; add [agents.{agent}]"
            )
        for sink in (spec.get("alerts") or {}).get("sinks") or ():
            if sink not in sinks:
                raise ConfigError(
                    f"{where}: {label}: alert sink {sink!r} is not declared; add [alerts.{sink}]"
                )
        if spec["name"] in seen:
            raise ConfigError(f"{where}: {label}: the name {spec['name']!r} is declared twice")
        seen.add(spec["name"])
        specs.append(MappingProxyType(spec))
    return tuple(specs)


def parse_config(
    text: str,
    *,
    now: datetime,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """A :class:`Config` from TOML text; ``now`` resolves relative one-shot times.

    ``$GATEWAYD_<KEY>`` in ``env`` overrides the key of the same name in
    ``[gateway]``, ``[scheduler]`` or ``[cluster]``: ``GATEWAYD_MAX_CONCURRENT_RUNS=4``.
    """
    env = env or {}
    where = str(path) if path else "config"
    try:
        body = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    known = {"gateway", "scheduler", "cluster", "store", "http", "jobs", "agents", "alerts"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown table or key {unknown[0]!r}; "
            "known are gateway, scheduler, cluster, store, http, agents, alerts, jobs"
        )
    agents = _agents(path, text, body.get("agents", {}))
    names = frozenset(a.name for a in agents)
    sinks = _sinks(path, text, body.get("alerts", {}), env)
    return Config(
        gateway=_gateway(path, text, body.get("gateway", {}), env),
        scheduler=_scheduler(path, text, body.get("scheduler", {}), env),
        cluster=_cluster(path, text, body.get("cluster", {}), env),
        store=_store(path, text, body.get("store", {})),
        http=_http(path, text, body.get("http", {}), env),
        agents=agents,
        sinks=sinks,
        jobs=_jobs(path, text, body.get("jobs", []), now, names, frozenset(s.name for s in sinks)),
        path=path,
        source_text=text,
    )


def load_config(
    path: Path | None, *, now: datetime, env: Mapping[str, str] | None = None
) -> Config:
    """The configuration in ``path`` (the defaults when there is none), with overrides."""
    if path is None:
        return parse_config("", now=now, env=env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the config file {path} is not UTF-8 text") from None
    return parse_config(text, path=path, now=now, env=env)
