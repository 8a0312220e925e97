"""The ``gatewayd`` command: ``serve`` runs the daemon, everything else talks to it.

Client commands import nothing heavy, so that they start fast. Exit codes are
those of DESIGN.md: 0 ok, 1 the awaited run did not succeed, 2 usage or
validation, 3 daemon not reachable, 4 not found, 5 conflict, 6 internal or a
failed start.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gatewayd import __version__, cli_output
from gatewayd.bounds import ALERT_PAGE, JOB_PAGE, NEXT_SLOTS, RUN_PAGE, SESSION_PAGE, check_time
from gatewayd.clock import SystemClock
from gatewayd.durations import parse_time
from gatewayd.errors import (
    EXIT_CONFLICT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    GatewaydError,
    InvalidInput,
    NotFound,
)
from gatewayd.flatspec import spec_from_flat
from gatewayd.model import UTC_ZONE, Catchup, LeftoverPolicy, Overlap, SessionTarget
from gatewayd.paths import resolve_socket, resolve_state_dir
from gatewayd.rpc.client import RpcClient

OPENCLAW_DIR = "~/.openclaw/cron"


class _Parser(argparse.ArgumentParser):
    """An argument parser that exits 2 with one line naming the problem.

    A value that starts with a dash and a digit (``--every -1s``) is taken as a
    value, so that the daemon can say what is wrong with it: no option of
    gatewayd starts that way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d")

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _common() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--state-dir", default=argparse.SUPPRESS, help="the daemon's state directory"
    )
    common.add_argument("--socket", default=argparse.SUPPRESS, help="the daemon's socket")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return common


def _job_flags(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument("--name", required=adding)
    parser.add_argument("--description", metavar="TEXT", help="what the job is for")
    when = parser.add_mutually_exclusive_group(required=adding)
    when.add_argument("--cron", metavar="EXPR", help="5 fields, or 6 with leading seconds")
    when.add_argument("--every", metavar="DUR", help="an interval such as 30s, 5m, 1h")
    when.add_argument("--at", metavar="WHEN", help="ISO 8601, or relative like +20m")
    parser.add_argument("--tz", metavar="ZONE", help="IANA time zone of --cron (default UTC)")
    what = parser.add_mutually_exclusive_group(required=adding)
    what.add_argument("--command", metavar="CMD", help="argv, split like a shell does")
    what.add_argument("--shell", metavar="SCRIPT", help="run by /bin/sh -c")
    what.add_argument("--agent-message", metavar="TEXT", help="an agent turn")
    what.add_argument("--system-event", metavar="TEXT", help="appended to the main inbox")
    parser.add_argument("--agent", metavar="NAME", help="the [agents.NAME] of an agent turn")
    parser.add_argument("--cwd", metavar="DIR", help="working directory of an exec")
    parser.add_argument(
        "--env", metavar="KEY=VALUE", action="append", help="environment of an exec (repeat)"
    )
    parser.add_argument("--timeout", metavar="DUR", help="0 for none; default from config")
    parser.add_argument("--overlap", choices=[p.value for p in Overlap])
    parser.add_argument("--catchup", choices=[p.value for p in Catchup])
    parser.add_argument("--catchup-window", metavar="DUR")
    parser.add_argument("--retry", metavar="N", type=int, help="retries after a failure")
    parser.add_argument("--retry-backoff", metavar="DUR")
    parser.add_argument("--stagger", metavar="DUR")
    parser.add_argument("--session", choices=[t.value for t in SessionTarget])
    parser.add_argument(
        "--max-output", metavar="SIZE", help="output kept per run, like 16MiB (0: no limit)"
    )
    parser.add_argument(
        "--leftovers",
        choices=[p.value for p in LeftoverPolicy],
        help="processes left in the run's group after its command ends (default kill)",
    )
    parser.add_argument("--disabled", action="store_true", default=None)
    parser.add_argument("--delete-after-run", action="store_true", default=None)
    parser.add_argument(
        "--alert",
        metavar="SINK",
        action="append",
        help="send its alerts to the [alerts.SINK] of the config (repeatable)",
    )
    parser.add_argument(
        "--alert-after", metavar="N", type=int, help="alert after N failures in a row (1)"
    )
    parser.add_argument(
        "--alert-cooldown", metavar="DUR", help="alert again while failing after DUR (1h)"
    )
    parser.add_argument(
        "--expect-success-within", metavar="DUR", help="alert if no run succeeds for DUR"
    )
    parser.add_argument(
        "--pause-after", metavar="N", type=int, help="pause the schedule after N failures in a row"
    )


_FLAT_FROM_ARGS = (
    "name",
    "description",
    "cron",
    "tz",
    "every",
    "at",
    "command",
    "shell",
    "agent_message",
    "agent",
    "system_event",
    "cwd",
    "timeout",
    "overlap",
    "catchup",
    "catchup_window",
    "retry",
    "retry_backoff",
    "stagger",
    "session",
    "delete_after_run",
    "max_output",
    "leftovers",
    "alert",
    "alert_after",
    "alert_cooldown",
    "expect_success_within",
    "pause_after",
)


def _flat(args: argparse.Namespace) -> dict[str, Any]:
    flat = {k: getattr(args, k) for k in _FLAT_FROM_ARGS if getattr(args, k, None) is not None}
    if args.disabled:
        flat["enabled"] = False
    if args.env:
        env = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InvalidInput(f"--env: expected KEY=VALUE, got {item!r}")
            env[key] = value
        flat["env"] = env
    return flat


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(prog="gatewayd", description=__doc__.splitlines()[0], parents=[common])
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", parents=[common], help="run the daemon in the foreground")
    serve.add_argument(
        "--http", metavar="ADDR", help="serve metrics and health on HOST:PORT (see [http])"
    )
    serve.add_argument("--config", metavar="FILE", help="TOML config file")
    serve.add_argument(
        "--store", metavar="URL", help="sqlite:///PATH or postgresql://... (else $GATEWAYD_STORE)"
    )
    sub.add_parser("status", parents=[common], help="the daemon's status")

    cron = sub.add_parser("cron", help="jobs").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    add = cron.add_parser("add", parents=[common], help="add a job")
    _job_flags(add, adding=True)
    listing = cron.add_parser("list", parents=[common], help="list jobs")
    listing.add_argument("--all", action="store_true", help="include disabled jobs")
    for name, text in (
        ("show", "show a job"),
        ("rm", "remove a job (its runs stay in history)"),
        ("enable", "enable a job"),
        ("disable", "disable a job"),
    ):
        cron.add_parser(name, parents=[common], help=text).add_argument("job", metavar="JOB")
    edit = cron.add_parser("edit", parents=[common], help="change a job")
    edit.add_argument("job", metavar="JOB")
    _job_flags(edit, adding=False)
    run = cron.add_parser("run", parents=[common], help="run a job now")
    run.add_argument("job", metavar="JOB")
    run.add_argument("--due", action="store_true", help="only if a slot is due")
    run.add_argument("--wait", action="store_true", help="wait for the run to end")
    cancel = cron.add_parser("cancel", parents=[common], help="cancel a run, or a job's runs")
    cancel.add_argument("ref", metavar="JOB|RUN_ID")
    upcoming = cron.add_parser(
        "next", parents=[common], help="the next slots of a job, or of a schedule (no daemon)"
    )
    upcoming.add_argument("job", metavar="JOB", nargs="?")
    upcoming.add_argument("--cron", metavar="EXPR", help="a cron schedule instead of a job")
    upcoming.add_argument("--tz", metavar="ZONE", help="the cron schedule's zone (default UTC)")
    upcoming.add_argument("--every", metavar="DUR", help="an interval instead of a job")
    upcoming.add_argument(
        "--count", type=int, default=NEXT_SLOTS.default, help=f"at most {NEXT_SLOTS.largest}"
    )
    upcoming.add_argument("--from", dest="after", metavar="TIME", help="the slots after TIME")
    why = cron.add_parser("why", parents=[common], help="what became of a job's slots, and why")
    why.add_argument("job", metavar="JOB")
    why.add_argument("--since", metavar="TIME", help="from TIME (default: the last 24 hours)")
    history = cron.add_parser("runs", parents=[common], help="a job's run history")
    history.add_argument("--id", dest="job", metavar="JOB", required=True)
    history.add_argument(
        "--limit", type=int, default=RUN_PAGE.default, help=f"at most {RUN_PAGE.largest}"
    )
    history.add_argument("--before", metavar="RUN_ID", help="only runs older than this one")

    doctor = sub.add_parser(
        "doctor", parents=[common], help="check the store's run records (works offline)"
    )
    doctor.add_argument(
        "--store", metavar="URL", help="the store to check (else $GATEWAYD_STORE, else the file)"
    )
    doctor.add_argument("--config", metavar="FILE", help="take [store] from this config file")

    store = sub.add_parser("store", help="the store file").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    store.add_parser(
        "check", parents=[common], help="check the store file (read only; works offline)"
    )
    backup = store.add_parser(
        "backup", parents=[common], help="a consistent copy of the store, taken while it runs"
    )
    backup.add_argument("dest", metavar="DEST", help="a new file")

    sessions = sub.add_parser("sessions", help="sessions").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    session_list = sessions.add_parser("list", parents=[common], help="recent sessions")
    session_list.add_argument(
        "--limit",
        type=int,
        default=SESSION_PAGE.default,
        help=f"at most {SESSION_PAGE.largest}",
    )
    session_list.add_argument("--before", metavar="KEY", help="only sessions after this one")
    sessions.add_parser("show", parents=[common], help="a session").add_argument("key")

    events = sub.add_parser("events", parents=[common], help="lifecycle and run events")
    events.add_argument("--follow", action="store_true", help="stream live events")
    events.add_argument("--since", type=int, metavar="SEQ", help="events after this seq")
    events.add_argument("--limit", type=int, default=100, help="how much history (100)")

    alerts = sub.add_parser("alerts", parents=[common], help="alerts and their delivery")
    alerts.add_argument("--job", metavar="JOB", help="only this job's")
    alerts.add_argument(
        "--limit", type=int, default=ALERT_PAGE.default, help=f"at most {ALERT_PAGE.largest}"
    )

    importing = sub.add_parser("import", help="jobs and history from another scheduler")
    source = importing.add_subparsers(dest="system", required=True, parser_class=_Parser)
    openclaw = source.add_parser(
        "openclaw", parents=[common], help="OpenClaw's cron jobs and their run history"
    )
    openclaw.add_argument(
        "dir", nargs="?", default=OPENCLAW_DIR, metavar="DIR", help=f"default {OPENCLAW_DIR}"
    )
    openclaw.add_argument(
        "--dry-run", action="store_true", help="print the whole plan and change nothing"
    )
    openclaw.add_argument(
        "--alert-sink", metavar="NAME", help="the [alerts.NAME] that failureAlert settings go to"
    )
    runs = sub.add_parser("runs", help="runs").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    runs.add_parser("show", parents=[common], help="show a run").add_argument("run_id")
    last = runs.add_parser("last", parents=[common], help="a job's latest run")
    last.add_argument("--job", required=True, metavar="JOB")
    return parser


def _client(args: argparse.Namespace) -> RpcClient:
    env = os.environ
    state_dir = resolve_state_dir(getattr(args, "state_dir", None), env)
    return RpcClient(resolve_socket(getattr(args, "socket", None), env, state_dir))


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from gatewayd.clock import SystemClock
    from gatewayd.config import check_http, load_config
    from gatewayd.daemon import Daemon, config_path, run_daemon
    from gatewayd.logs import configure_logging

    config = load_config(config_path(args.config), now=SystemClock().now(), env=os.environ)
    if args.http is not None:
        try:
            http = check_http(replace(config.http, listen=args.http), os.environ)
        except InvalidInput as exc:
            raise InvalidInput(f"--http: {exc.message}") from None
        config = replace(config, http=http)
    configure_logging(level=config.gateway.log_level, fmt=config.gateway.log_format)
    daemon = Daemon(
        config,
        state_dir_flag=getattr(args, "state_dir", None),
        socket_flag=getattr(args, "socket", None),
        store_flag=args.store,
    )
    return run_daemon(daemon)


def _show(args: argparse.Namespace, value: Any, printer: Callable[[Any], None]) -> int:
    if getattr(args, "json", False):
        cli_output.print_json(value)
    else:
        printer(value)
    return EXIT_OK


def _cron(args: argparse.Namespace, client: RpcClient) -> int:
    action = args.action
    if action == "add":
        job = client.call("cron.add", spec_from_flat(_flat(args)))
        return _show(args, job, cli_output.print_job)
    if action == "list":
        return _show(args, _all_jobs(client, include_disabled=args.all), cli_output.print_jobs)
    if action == "show":
        return _show(args, client.call("cron.get", {"job": args.job}), cli_output.print_job)
    if action == "edit":
        patch = spec_from_flat(_flat(args))
        if not patch:
            raise InvalidInput("cron edit: give at least one flag to change")
        job = client.call("cron.update", {"job": args.job, "patch": patch})
        return _show(args, job, cli_output.print_job)
    if action == "rm":
        result = client.call("cron.remove", {"job": args.job})
        return _show(args, result, lambda r: print(f"removed job {r['removed']} ({r['name']})"))
    if action in ("enable", "disable"):
        job = client.call(f"cron.{action}", {"job": args.job})
        return _show(args, job, cli_output.print_job)
    if action == "run":
        return _run(args, client)
    if action == "cancel":
        runs = client.call("cron.cancel", {"job": args.ref})
        return _show(args, runs, cli_output.print_runs)
    if action == "next":
        if args.job is None:
            raise InvalidInput("cron next: give a job, or --cron EXPR or --every DUR")
        if args.tz is not None:
            raise InvalidInput("tz: a time zone goes only with --cron (a job has its own)")
        asked: dict[str, Any] = {"job": args.job, "count": args.count}
        if args.after is not None:
            asked["from"] = args.after
        now = SystemClock().now()
        shown = client.call("cron.next", asked)
        return _show(args, shown, lambda s: cli_output.print_upcoming(s, now=now))
    if action == "why":
        asked = {"job": args.job}
        if args.since is not None:
            asked["since"] = args.since
        return _show(args, client.call("cron.why", asked), cli_output.print_why)
    params: dict[str, Any] = {"job": args.job, "limit": args.limit}
    if args.before:
        params["before"] = args.before
    runs = client.call("cron.runs", params)
    return _show(args, runs, cli_output.print_runs)


def _all_jobs(client: RpcClient, *, include_disabled: bool) -> list[dict[str, Any]]:
    """Every job, page after page (the daemon answers at most a page a call)."""
    jobs: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"all": include_disabled, "limit": JOB_PAGE.largest}
        if jobs:
            params["after"] = jobs[-1]["name"]
        page = client.call("cron.list", params)
        jobs += page
        if len(page) < JOB_PAGE.largest:
            return jobs


def _run(args: argparse.Namespace, client: RpcClient) -> int:
    result = client.call("cron.run", {"job": args.job, "due": args.due})
    if not result.get("ran"):
        _show(args, result, _print_not_ran)
        return EXIT_CONFLICT if result.get("reason") == "already-running" else EXIT_OK
    if not args.wait:
        return _show(args, result, lambda r: print(f"queued run {r['run_id']}"))
    client.set_timeout(None)
    if getattr(args, "json", False) or not sys.stdout.isatty():
        run = client.call("runs.wait", {"run_id": result["run_id"]})
    else:
        run = _wait_with_progress(client, result["run_id"])
    _show(args, run, cli_output.print_run)
    return EXIT_OK if run.get("status") == "succeeded" else EXIT_RUN_FAILED


def _wait_with_progress(client: RpcClient, run_id: str) -> dict[str, Any]:
    """Wait for a run, showing its phase and elapsed time on one terminal line."""
    started = time.monotonic()
    while True:
        run: dict[str, Any] = client.call("runs.wait", {"run_id": run_id, "timeout_s": 1.0})
        elapsed = time.monotonic() - started
        line = f"\r{run_id}  {run['status']:<10} {elapsed:6.1f}s"
        sys.stdout.write(line)
        sys.stdout.flush()
        if run["status"] not in ("queued", "running"):
            sys.stdout.write("\n")
            return run


def _sessions(args: argparse.Namespace, client: RpcClient) -> int:
    if args.action == "list":
        params: dict[str, Any] = {"limit": args.limit}
        if args.before:
            params["before"] = args.before
        found = client.call("sessions.list", params)
        return _show(args, found, cli_output.print_sessions)
    return _show(args, client.call("sessions.get", {"key": args.key}), cli_output.print_session)


def _events(args: argparse.Namespace, client: RpcClient) -> int:
    params: dict[str, Any] = {"limit": args.limit, "follow": args.follow}
    if args.since is not None:
        params["since"] = args.since
    if args.follow:
        client.set_timeout(None)
    as_json = getattr(args, "json", False)
    for event in client.stream("events.subscribe", params):
        if as_json:
            cli_output.print_json_line(event)
        else:
            cli_output.print_event(event)
        sys.stdout.flush()
    return EXIT_OK


def host_zone() -> str:
    """The IANA name of this host's time zone (UTC if it names none)."""
    import tzlocal

    try:
        return tzlocal.get_localzone_name() or UTC_ZONE
    except (LookupError, ValueError, OSError):
        return UTC_ZONE


def _import(args: argparse.Namespace, client: RpcClient) -> int:
    params: dict[str, Any] = {
        "dir": str(Path(args.dir).expanduser().absolute()),
        "dry_run": args.dry_run,
        "host_zone": host_zone(),
    }
    if args.alert_sink is not None:
        params["alert_sink"] = args.alert_sink
    client.set_timeout(None)  # a long history takes a while to store
    return _show(args, client.call("import.openclaw", params), cli_output.print_import)


def _print_not_ran(result: dict[str, Any]) -> None:
    if result.get("reason") == "already-running":
        print(f"not run: run {result['run_id']} is live since {result.get('running_since')}")
    else:
        print(f"not run: {result.get('reason')}")


def _doctor(args: argparse.Namespace) -> int:
    import anyio

    from gatewayd.clock import SystemClock
    from gatewayd.config import load_config
    from gatewayd.daemon import config_path
    from gatewayd.doctor import examine, report, violations_of
    from gatewayd.store.location import resolve_location

    config = load_config(config_path(args.config), now=SystemClock().now(), env=os.environ)
    state_dir = resolve_state_dir(
        getattr(args, "state_dir", None), os.environ, config.gateway.state_dir
    )
    location = resolve_location(
        args.store, os.environ, config.store.url, schema=config.store.schema, state_dir=state_dir
    )
    found = anyio.run(examine, location, state_dir)
    print(report(found, as_json=getattr(args, "json", False)))
    return EXIT_RUN_FAILED if violations_of(found) else EXIT_OK


def _store(args: argparse.Namespace) -> int:
    """``store check`` and ``store backup``: the file itself, with or without a daemon."""
    from gatewayd.paths import DB_NAME
    from gatewayd.store.sqlitefile import backup, check_file

    path = resolve_state_dir(getattr(args, "state_dir", None), os.environ) / DB_NAME
    if args.action == "check":
        if not path.exists():
            raise NotFound(f"there is no store at {path}")
        report = check_file(path)
        body = {"ok": True, "path": str(report.path), "version": report.version}
        body["size"] = report.size
        return _show(args, body, lambda b: print(f"{b['path']}: ok (schema {b['version']})"))
    report = backup(path, Path(args.dest).expanduser().absolute())
    body = {"ok": True, "path": str(report.path), "size": report.size, "source": str(path)}
    return _show(args, body, lambda b: print(f"backed up {b['source']} to {b['path']} (checked)"))


def _next_of_schedule(args: argparse.Namespace) -> int:
    """``cron next --cron EXPR | --every DUR``: worked out here, with no daemon."""
    from gatewayd import views  # the daemon's planning, loaded only for this command
    from gatewayd.jobspec import schedule_from_spec
    from gatewayd.planning import upcoming

    if args.job is not None:
        raise InvalidInput("cron next: give a job, or --cron or --every, not both")
    now = SystemClock().now()
    after = None if args.after is None else check_time(parse_time(args.after, what="from"), "from")
    flat = {"cron": args.cron, "every": args.every, "tz": args.tz}
    spec = spec_from_flat({k: v for k, v in flat.items() if v is not None})
    schedule = schedule_from_spec(spec.get("schedule"), now=after or now)
    slots = upcoming(schedule, count=args.count, after=after or now)
    shown = views.upcoming_to_json(slots, schedule)
    return _show(args, shown, lambda s: cli_output.print_upcoming(s, now=now))


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "serve":
        return _serve(args)
    if args.cmd == "cron" and args.action == "next" and (args.cron or args.every):
        return _next_of_schedule(args)
    if args.cmd == "doctor":
        return _doctor(args)
    if args.cmd == "store":
        return _store(args)
    with _client(args) as client:
        if args.cmd == "status":
            return _show(args, client.call("gateway.status"), cli_output.print_status)
        if args.cmd == "cron":
            return _cron(args, client)
        if args.cmd == "sessions":
            return _sessions(args, client)
        if args.cmd == "events":
            return _events(args, client)
        if args.cmd == "import":
            return _import(args, client)
        if args.cmd == "alerts":
            asked = {"limit": args.limit} | ({} if args.job is None else {"job": args.job})
            return _show(args, client.call("alerts.list", asked), cli_output.print_alerts)
        if args.action == "show":
            return _show(
                args, client.call("runs.get", {"run_id": args.run_id}), cli_output.print_run
            )
        run = client.call("runs.last", {"job": args.job})
        return _show(args, run, lambda r: cli_output.print_run(r) if r else print("no runs yet"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except GatewaydError as exc:
        if getattr(args, "json", False):
            cli_output.print_json(
                {
                    "ok": False,
                    "error": {"kind": exc.kind, "code": exc.rpc_code, "message": exc.message},
                }
            )
        print(f"gatewayd: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        print(f"gatewayd: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


def entry() -> None:
    sys.exit(main())
