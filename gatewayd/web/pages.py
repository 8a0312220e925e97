"""The dashboard's pages: HTML rendered on the server from the JSON the CLI prints.

Every page is built from the shapes of :mod:`gatewayd.views`, read through
the same operations as the CLI, so the page and ``gatewayd cron …`` cannot
disagree. No asset comes from outside the daemon: the style and the script
are inline. Each page's live part (``#live``) is fetched again, without a
reload, whenever the daemon's event stream (``/events``) tells of a run.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from gatewayd.cli_output import from_now, payload_text, schedule_text
from gatewayd.durations import parse_time
from gatewayd.model import UTC_ZONE
from gatewayd.planning import zone

JsonObject = dict[str, Any]

# How much of a job's history its timeline spans, and at most how many runs it draws.
TIMELINE_SPAN = timedelta(hours=24)
TIMELINE_RUNS = 200
_WIDTH = 1000
_HEIGHT = 60

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { text-align: left; padding: .25em .8em; border-bottom: 1px solid #ddd; }
.status { padding: 0 .4em; border-radius: 3px; color: #fff; }
.succeeded { background: #2e7d32; fill: #2e7d32; } .failed { background: #c62828; fill: #c62828; }
.timed_out { background: #ef6c00; fill: #ef6c00; } .running { background: #1565c0; fill: #1565c0; }
.queued { background: #6a1b9a; fill: #6a1b9a; } .cancelled, .interrupted { background: #616161;
  fill: #616161; } .skipped { background: #9e9e9e; fill: #9e9e9e; }
.mark { stroke: #c62828; stroke-width: 2; } .mark.skipped { stroke: #9e9e9e; }
.flag { color: #c62828; font-weight: bold; } svg { background: #f7f7f7; }
pre { background: #f4f4f4; padding: .8em; overflow: auto; max-height: 30em; }
"""

# Fetch the page's live part again when the event stream tells of a run.
_SCRIPT = """
const events = new EventSource("/events");
let pending = false;
events.onmessage = () => {
  if (pending) return;
  pending = true;
  setTimeout(async () => {
    pending = false;
    const answer = await fetch(location.href, {headers: {"X-Gatewayd-Part": "live"}});
    if (answer.ok) document.getElementById("live").innerHTML = await answer.text();
  }, 100);
};
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def page(title: str, live: str) -> str:
    """A whole page around its live part."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)} · gatewayd</title><style>{_STYLE}</style></head><body>"
        f"<p><a href='/'>gatewayd</a></p><h1>{_e(title)}</h1>"
        f"<div id='live'>{live}</div><script>{_SCRIPT}</script></body></html>"
    )


def _status(status: str | None) -> str:
    if status is None:
        return "—"
    return f"<span class='status {_e(status)}'>{_e(status)}</span>"


def _from_now(at: str | None, now: datetime, tz: str = UTC_ZONE) -> str:
    """A time in the zone ``tz`` (the job's), from now; UTC in its tooltip."""
    if at is None:
        return "—"
    when = parse_time(at)
    local = when.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"<span title='{_e(at)}'>{_e(local)}</span> ({from_now((when - now).total_seconds())})"


def _zone_of(job: JsonObject) -> str:
    schedule = job["schedule"]
    return str(schedule.get("tz") or UTC_ZONE) if schedule.get("kind") == "cron" else UTC_ZONE


def _standing(job: JsonObject) -> str:
    if job.get("paused"):
        paused = job["paused"]
        return f"<span class='flag'>paused</span> after {_e(paused['failures'])} failures"
    if not job["enabled"]:
        return "<span class='flag'>disabled</span>"
    return "enabled"


def jobs_part(jobs: Sequence[JsonObject], now: datetime) -> str:
    """The jobs: schedule in words, next run, last run's status, running, standing."""
    rows = []
    for job in jobs:
        last = job.get("last_run") or {}
        running = job.get("running_run_id")
        rows.append(
            "<tr class='job'>"
            f"<td><a href='/jobs/{_e(job['id'])}'>{_e(job['name'])}</a></td>"
            f"<td>{_e(schedule_text(job['schedule']))}</td>"
            f"<td>{_from_now(job.get('next_run_at'), now, _zone_of(job))}</td>"
            f"<td>{_status(last.get('status'))}</td>"
            f"<td>{'<a href=/runs/' + _e(running) + '>running</a>' if running else ''}</td>"
            f"<td>{_standing(job)}</td></tr>"
        )
    head = (
        "<tr><th>job</th><th>schedule</th><th>next run</th><th>last run</th><th></th><th></th></tr>"
    )
    return f"<table id='jobs'>{head}{''.join(rows)}</table>" if rows else "<p>no jobs</p>"


def timeline(runs: Sequence[JsonObject], why: JsonObject, now: datetime) -> str:
    """An SVG of the job's latest runs (up to :data:`TIMELINE_RUNS`) over the last day, or
    further back if they began earlier: a bar per run (position its start, length its
    duration, colour its status), and a mark at each missed or skipped slot."""
    drawn = [r for r in runs[:TIMELINE_RUNS] if r.get("started_at") and r["status"] != "skipped"]
    start = min([now - TIMELINE_SPAN, *(parse_time(r["started_at"]) for r in drawn)])
    span = max((now - start).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return max(0.0, min(_WIDTH, (at - start).total_seconds() / span * _WIDTH))

    shapes = []
    for run in drawn:
        began = run["started_at"]
        began_at = parse_time(began)
        ended_at = parse_time(run["ended_at"]) if run.get("ended_at") else now
        left = x(began_at)
        width = max(2.0, x(ended_at) - left)
        title = f"{run['run_id']} {run['status']} {began}"
        shapes.append(
            f"<a href='/runs/{_e(run['run_id'])}'><rect class='run {_e(run['status'])}' "
            f"x='{left:.1f}' y='10' width='{width:.1f}' height='40'>"
            f"<title>{_e(title)}</title></rect></a>"
        )
    for entry in why.get("slots") or ():
        if entry["fate"] in ("missed", "skipped") and entry.get("at"):
            at = x(parse_time(entry["at"]))
            shapes.append(
                f"<line class='mark {_e(entry['fate'])}' x1='{at:.1f}' x2='{at:.1f}' y1='0' "
                f"y2='{_HEIGHT}'><title>{_e(entry['fate'])}: {_e(entry['detail'])}</title></line>"
            )
    return (
        f"<svg id='timeline' width='{_WIDTH}' height='{_HEIGHT}' "
        f"viewBox='0 0 {_WIDTH} {_HEIGHT}'>{''.join(shapes)}</svg>"
        f"<p>from {_e(start.isoformat(timespec='seconds'))} "
        f"to {_e(now.isoformat(timespec='seconds'))}</p>"
    )


def job_part(
    job: JsonObject,
    runs: Sequence[JsonObject],
    why: JsonObject,
    upcoming: Sequence[JsonObject],
    alerts: Sequence[JsonObject],
    now: datetime,
) -> str:
    """A job: its timeline, its ``cron why`` and ``cron next``, its alerts and runs."""
    next_run = _from_now(job.get("next_run_at"), now, _zone_of(job))
    rows = (
        f"<tr><th>schedule</th><td>{_e(schedule_text(job['schedule']))}</td></tr>"
        f"<tr><th>payload</th><td>{_e(payload_text(job['payload']))}</td></tr>"
        f"<tr><th>next run</th><td>{next_run}</td></tr>"
        f"<tr><th>standing</th><td>{_standing(job)}</td></tr>"
    )
    slots = "".join(
        f"<tr><td>{_e(s['at'])}</td><td>{_e(s['fate'])}</td><td>{_e(s.get('run_id'))}</td>"
        f"<td>{_e(s['detail'])}</td></tr>"
        for s in list(why.get("slots") or ())[-50:]
    )
    nexts = "".join(
        f"<tr><td>{_e(n['at'])}</td><td>{_e(n['local'])}</td><td>{_e(n['dst'] or '')}</td></tr>"
        for n in upcoming
    )
    alert_rows = "".join(
        f"<tr><td>{_e(a['raised_at'])}</td><td>{_e(a['reason'])}</td><td>{_e(a['sink'])}</td>"
        f"<td>{_e(a['state'])}</td><td>{_e(a.get('error'))}</td></tr>"
        for a in alerts
    )
    run_rows = "".join(
        f"<tr class='history'><td><a href='/runs/{_e(r['run_id'])}'>{_e(r['run_id'])}</a></td>"
        f"<td>{_e(r['trigger'])}</td><td>{_status(r['status'])}</td>"
        f"<td>{_e(r.get('started_at'))}</td><td>{_e(r.get('duration_ms'))}</td></tr>"
        for r in runs[:50]
    )
    return (
        f"<table>{rows}</table>{timeline(runs, why, now)}"
        f"<h2>Why</h2><p id='why'>{_e(why['summary'])}</p><table>{slots}</table>"
        f"<h2>Next</h2><table>{nexts}</table>"
        f"<h2>Alerts</h2><table>{alert_rows or '<tr><td>none</td></tr>'}</table>"
        f"<h2>Runs</h2><table>{run_rows}</table>"
    )


def run_part(run: JsonObject) -> str:
    """A run's record, and its output tail."""
    keys = (
        "run_id",
        "job_name",
        "trigger",
        "status",
        "scheduled_for",
        "started_at",
        "ended_at",
        "duration_ms",
        "exit_code",
        "error",
        "stop_reason",
        "attempt",
        "owner",
    )
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(run.get(k))}</td></tr>" for k in keys)
    job = f"<p><a href='/jobs/{_e(run['job_id'])}'>the job</a></p>"
    return f"{job}<table>{rows}</table><h2>Output</h2><pre>{_e(run.get('output_tail'))}</pre>"
