"""Delivering stored alerts: each pending alert tried until it is delivered or fails.

The deliverer takes due alerts from the store (which holds each taken one
from every other instance while it is tried), tries each in a task of its
own, and records every attempt before the next. A sink that hangs holds one
of :data:`CONCURRENT_ATTEMPTS` slots until its timeout, never the timer or a
run. A daemon that dies mid-attempt leaves the alert pending: it is tried
again once its hold has passed, by whichever instance is there. So an alert
is delivered at least once, and a failure is never silent: the alert ends
``failed`` with its last error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import orjson
import structlog

from gatewayd.alerting.rules import attempted
from gatewayd.alerting.sinks import DeliveryFailed, deliver, http_client
from gatewayd.alerting.values import Alert, AlertAttempt, AlertState, SinkSpec
from gatewayd.clock import Clock
from gatewayd.errors import StoreError
from gatewayd.racing import first_of
from gatewayd.store.interface_alerts import AlertStore
from gatewayd.views import alert_message_to_json

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger("gatewayd.alerts")

CONCURRENT_ATTEMPTS = 8
# How long past its sink's timeout a taken alert is kept from other instances.
HOLD_MARGIN_S = 30.0
# After the store failed to hand out alerts, how long until it is asked again.
STORE_RETRY_S = 5.0


class Deliverer:
    """Tries the store's pending alerts; :meth:`wake` when new ones were stored."""

    def __init__(
        self,
        *,
        store: AlertStore,
        clock: Clock,
        sinks: Sequence[SinkSpec],
        env: Mapping[str, str],
    ) -> None:
        self._store = store
        self._clock = clock
        self._sinks = {s.name: s for s in sinks}
        self._env = env
        self._slots = anyio.Semaphore(CONCURRENT_ATTEMPTS)
        self._wake = anyio.Event()
        # Alerts this instance is trying: a hold that lapses under a clock stepped
        # forward hands them out again, and they are not tried twice at once.
        self._trying: set[str] = set()
        longest = max((s.timeout_s for s in sinks), default=0.0)
        self._hold_s = longest + HOLD_MARGIN_S

    def wake(self) -> None:
        self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver until cancelled."""
        async with (
            http_client(list(self._sinks.values())) as client,
            anyio.create_task_group() as attempts,
        ):
            task_status.started()
            while True:
                self._wake = anyio.Event()
                wait_until = await self._start_due(client, attempts)
                if wait_until is None:
                    await self._wake.wait()
                else:
                    await first_of(self._wake.wait, partial(self._clock.sleep_until, wait_until))

    async def _start_due(
        self, client: httpx.AsyncClient | None, attempts: anyio.abc.TaskGroup
    ) -> datetime | None:
        """Start an attempt for each due alert a slot is free for; when to look again."""
        try:
            due_at = await self._store.next_alert_at()
            now = self._clock.now()
            if due_at is None or due_at > now:
                return due_at  # nothing to take: no write
            free = self._slots.value
            if free:
                for alert in await self._store.take_alerts(
                    now=now, hold_s=self._hold_s, limit=free
                ):
                    if alert.alert_id in self._trying:
                        continue
                    await self._slots.acquire()
                    self._trying.add(alert.alert_id)
                    attempts.start_soon(self._attempt, alert, client)
            if not self._slots.value:
                return None  # full: an attempt that ends wakes the loop
            return await self._store.next_alert_at()
        except StoreError as exc:
            log.warning("alerts could not be read; trying again", error=exc.message)
            return self._clock.now() + timedelta(seconds=STORE_RETRY_S)
        except Exception:  # never the end of the daemon: tried again, and said loudly
            log.exception("taking the due alerts failed; trying again")
            return self._clock.now() + timedelta(seconds=STORE_RETRY_S)

    async def _attempt(self, alert: Alert, client: httpx.AsyncClient | None) -> None:
        try:
            await self._try(alert, client)
        except Exception:  # the alert stays pending: tried again once its hold passes
            log.exception("an alert's attempt failed unexpectedly", alert_id=alert.alert_id)
        finally:
            self._trying.discard(alert.alert_id)
            self._slots.release()
            self._wake.set()

    async def _try(self, alert: Alert, client: httpx.AsyncClient | None) -> None:
        sink = self._sinks.get(alert.sink)
        number = len(alert.attempts) + 1
        at, started = self._clock.now(), self._clock.monotonic()
        error: str | None = None
        if sink is None:
            error = f"no sink {alert.sink!r} is configured: add [alerts.{alert.sink}]"
        else:
            body = orjson.dumps({**alert_message_to_json(alert), "attempt": number})
            try:
                await deliver(sink, body, env=self._env, client=client)
            except DeliveryFailed as exc:
                error = str(exc)
            except Exception as exc:
                log.exception("an alert's delivery failed unexpectedly", alert_id=alert.alert_id)
                error = f"internal error: {exc!r}"
        duration_ms = round((self._clock.monotonic() - started) * 1000)
        attempt = AlertAttempt(number=number, at=at, duration_ms=duration_ms, error=error)
        updated = attempted(alert, sink, attempt)
        try:
            recorded = await self._store.record_attempt(updated)
        except StoreError as exc:
            # Held for the store (it is durable) or refused: either way, tried again later.
            log.warning("an alert's attempt could not be recorded", error=exc.message)
            return
        if not recorded:
            log.warning(
                "an alert's attempt was recorded by another instance", alert_id=alert.alert_id
            )
        elif updated.state is AlertState.DELIVERED:
            log.info("alert delivered", alert_id=alert.alert_id, sink=alert.sink, attempt=number)
        elif updated.state is AlertState.FAILED:
            log.error(
                "alert not delivered after its last attempt",
                alert_id=alert.alert_id,
                sink=alert.sink,
                attempts=number,
                error=error,
            )
        else:
            log.warning(
                "alert delivery failed; it will be tried again",
                alert_id=alert.alert_id,
                sink=alert.sink,
                attempt=number,
                error=error,
                next_attempt_at=updated.next_attempt_at,
            )
