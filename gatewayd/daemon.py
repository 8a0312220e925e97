"""The composition root: one event loop, signals, readiness and shutdown.

:meth:`Daemon.startup` takes the state directory's lock, opens the store,
settles what a previous instance left, reconciles declared jobs, starts the
scheduler and only then listens and reports ready. :meth:`Daemon.main_loop`
waits for signals. :meth:`Daemon.shutdown` stops accepting requests, stops the
timer and ends the runs as ``on_shutdown`` says.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import structlog

from gatewayd.api.gateway import Gateway
from gatewayd.api.values import Identity, Status
from gatewayd.assembly import Core, open_core
from gatewayd.clock import Clock, SystemClock
from gatewayd.config import Config, load_config
from gatewayd.errors import EXIT_OK, GatewaydError, LeaseLost, SocketInUse, StartupError
from gatewayd.fdlimit import reserve_descriptors
from gatewayd.hosts import host_name, machine_id
from gatewayd.ids import new_instance_id
from gatewayd.leases import LeaseKeeper
from gatewayd.model import Instance
from gatewayd.notify import Notifier
from gatewayd.paths import resolve_socket, resolve_state_dir, state_dir_socket
from gatewayd.racing import first_of
from gatewayd.recovery import Recovery
from gatewayd.rpc.methods import HEAVY, build_methods, build_streams
from gatewayd.rpc.server import RpcServer, bind_unix_socket, link_socket
from gatewayd.runs import RunPipeline
from gatewayd.settings import OnShutdown, Retention
from gatewayd.statelock import PRIVATE_UMASK, hold_state_dir, warn_if_open_to_others
from gatewayd.stopping import end_runs, let_go_of_held_writes
from gatewayd.store.base import Store, StoreHealth
from gatewayd.store.choice import hints_for, open_store
from gatewayd.store.location import resolve_location
from gatewayd.wiring import open_runners, pipeline_settings

if TYPE_CHECKING:
    from gatewayd.web.listener import HttpListener

log = structlog.get_logger("gatewayd.daemon")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Daemon:
    """One gatewayd instance serving one state directory."""

    def __init__(
        self,
        config: Config,
        *,
        state_dir_flag: str | None = None,
        socket_flag: str | None = None,
        store_flag: str | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.clock = clock or SystemClock()
        self.state_dir = resolve_state_dir(state_dir_flag, self.env, config.gateway.state_dir)
        self.socket_path = resolve_socket(
            socket_flag, self.env, self.state_dir, config.gateway.socket
        )
        self.location = resolve_location(
            store_flag,
            self.env,
            config.store.url,
            schema=config.store.schema,
            state_dir=self.state_dir,
        )
        self.instance_id = new_instance_id()
        self.host_id = config.cluster.host_id or machine_id()
        gw = config.gateway
        self.retention = Retention(
            keep_per_job=gw.history_per_job,
            max_age_s=gw.history_max_age_s,
            events_keep=gw.events_keep,
        )
        self.notifier = Notifier(self.env)
        self._lease_lost = anyio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._tasks: anyio.abc.TaskGroup | None = None
        self._store: Store | None = None
        self._pipeline: RunPipeline | None = None
        self._gateway: Gateway | None = None
        self._server: RpcServer | None = None
        self._http: HttpListener | None = None
        self._ready = False
        self._stopping = False

    async def serve(self) -> int:
        """Start, serve until SIGTERM or SIGINT, shut down; the process exit code."""
        # Signals are caught from the start; those that arrive during start-up are
        # handled once the daemon serves.
        with anyio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
            async with self._stack:
                try:
                    await self.startup()
                except GatewaydError as exc:
                    log.error("gatewayd could not start", error=exc.message, kind=exc.kind)
                    return exc.exit_code
                try:
                    await self.main_loop(signals)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.shutdown()
        log.info("gatewayd stopped", instance_id=self.instance_id)
        return LeaseLost.exit_code if self._lease_lost.is_set() else EXIT_OK

    async def startup(self) -> None:
        """Lock the state directory, open the store, settle, reconcile, listen, report ready.

        Nothing is written before the store is checked; a store that cannot be
        used stops the start with the exit code of its fault.
        """
        run_umask = os.umask(PRIVATE_UMASK)  # everything gatewayd creates is its user's alone
        self._stack.enter_context(hold_state_dir(self.state_dir))
        warn_if_open_to_others(self.state_dir)
        self.notifier.status("checking the store")
        store = await self._open_store()
        descriptors = reserve_descriptors(
            connections=self.config.gateway.max_connections,
            runs=self.config.gateway.max_concurrent_runs,
        )
        core, recovery = await self._assemble(store, run_umask, descriptors.inherited)
        await recovery.settle()
        self._gateway = gateway = core.gateway
        await gateway.jobs.reconcile(self.config.jobs)
        await core.scheduler.load()
        # What start-up built lives as long as the daemon: keep it out of the
        # collector's full passes, which would otherwise stall the timer each time.
        gc.collect()
        gc.freeze()
        await self._serve(core, recovery, descriptors.connections)
        jobs, enabled = await store.count_jobs()
        # The full counts (runs among them) come with the sweeper's STATUS= lines.
        self.notifier.ready(
            f"{jobs} jobs ({enabled} enabled), {core.pipeline.active_count} runs active"
        )
        self._ready = True
        if self.notifier.watchdog_interval_s:
            # systemd arms the watchdog once the service is ready.
            assert self._tasks is not None
            self._tasks.start_soon(self._watchdog, self.notifier.watchdog_interval_s)
        log.info(
            "gatewayd ready",
            instance_id=self.instance_id,
            pid=os.getpid(),
            state_dir=str(self.state_dir),
            socket=str(self.socket_path),
            store=self.location.shown,
            jobs=jobs,
            http=None if self._http is None else self._http.url,
        )

    async def _open_store(self) -> Store:
        """The checked store, with this instance recorded in it (its first write)."""
        store = open_store(self.location)
        self._store = store
        await store.open()
        self._stack.push_async_callback(store.close)
        store.watch_health(self._store_health_changed)
        await store.register_instance(
            Instance(
                instance_id=self.instance_id,
                pid=os.getpid(),
                host=host_name(),
                host_id=self.host_id,
                state_dir=str(self.state_dir),
                started_at=self.clock.now(),
            ),
            lease_s=self.config.cluster.lease_s,
        )
        return store

    async def _assemble(self, store: Store, run_umask: int, nofile: int) -> tuple[Core, Recovery]:
        """The runners, the core and recovery, wired on ``store``."""
        stack, config = self._stack, self.config
        settings = pipeline_settings(
            config,
            instance_id=self.instance_id,
            state_dir=self.state_dir,
            socket_path=self.socket_path,
            env=self.env,
        )
        runners = await open_runners(stack, config, self.clock, umask=run_umask, nofile=nofile)
        self._tasks = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(self._tasks.cancel_scope.cancel)
        self._tasks.start_soon(store.upkeep)
        broker = hints_for(self.location)
        await self._tasks.start(broker.relay)
        core = await stack.enter_async_context(
            open_core(
                store=store,
                clock=self.clock,
                runners=runners.by_kind,
                settings=settings,
                identity=Identity(
                    instance_id=self.instance_id,
                    pid=os.getpid(),
                    host=host_name(),
                    host_id=self.host_id,
                    state_dir=self.state_dir,
                    socket_path=self.socket_path,
                    started_at=self.clock.now(),
                    store=self.location.shown,
                ),
                broker=broker,
                event_queue=config.gateway.event_queue,
                backstop_s=config.cluster.backstop_s,
                lease_s=config.cluster.lease_s,
                agents=frozenset(a.name for a in config.agents),
                sinks=config.sinks,
                sink_env=self.env,
                retention=self.retention,
            )
        )
        self._pipeline = core.pipeline
        recovery = Recovery(
            store=store,
            clock=self.clock,
            pipeline=core.pipeline,
            exec_runner=runners.exec,
            agent_runner=runners.agent,
            instance_id=self.instance_id,
            state_dir=self.state_dir,
            host_id=self.host_id,
            orphan_grace_s=config.cluster.orphan_grace_s,
            lease_s=config.cluster.lease_s,
        )
        return core, recovery

    async def _serve(self, core: Core, recovery: Recovery, connections: int) -> None:
        """Bind the socket, start the timer and the sweeper, then answer requests.

        A socket that cannot be bound stops the start with nothing run. Requests
        are served once everything else has started.
        """
        assert self._tasks is not None and self._gateway is not None
        gw, stack = self.config.gateway, self._stack
        http_sock = self._bind_http()
        sock = bind_unix_socket(self.socket_path)
        stack.callback(self._remove_socket)
        link = state_dir_socket(self.state_dir)
        if link != self.socket_path:
            link_socket(link, self.socket_path)
            stack.callback(self._remove_link, link)
        await self._tasks.start(core.scheduler.run)
        assert self._store is not None
        lease = LeaseKeeper(
            store=self._store,
            clock=self.clock,
            instance_id=self.instance_id,
            lease_s=self.config.cluster.lease_s,
            others_lapsed=recovery.settle,
            lost=self._lease_lost.set,
        )
        await self._tasks.start(lease.keep)
        await self._tasks.start(
            partial(
                recovery.sweep,
                interval_s=gw.sweep_interval_s,
                retention=self.retention,
                after=self._report_status,
            )
        )
        if connections < gw.max_connections:
            log.warning(
                "fewer connections than max_connections fit in the open-file limit",
                max_connections=gw.max_connections,
                served=connections,
            )
        if http_sock is not None:
            await self._listen_http(core, http_sock)
        self._server = RpcServer(
            methods=build_methods(self._gateway),
            streams=build_streams(self._gateway),
            max_connections=connections,
            idle_timeout_s=gw.idle_timeout_s,
            heavy=HEAVY,
        )
        await self._server.start(sock)

    def _bind_http(self) -> socket.socket | None:
        """The ``[http]`` socket, bound before anything runs (``None`` if it is not set):
        one that cannot be bound stops the start."""
        listen = self.config.http.listen
        if listen is None:
            return None
        from gatewayd.web.listener import bind

        try:
            sock = bind(listen)
        except OSError as exc:
            message = f"cannot listen for HTTP on {listen}: {exc.strerror or exc}"
            if exc.errno == errno.EADDRINUSE:
                raise SocketInUse(message) from None
            raise StartupError(message) from None
        self._stack.callback(sock.close)
        return sock

    async def _listen_http(self, core: Core, sock: socket.socket) -> None:
        """Serve the ``[http]`` app on ``sock``."""
        http = self.config.http
        # Loaded only for a daemon that listens: starlette, uvicorn and prometheus_client.
        from gatewayd.web.app import Health, build_app
        from gatewayd.web.listener import HttpListener
        from gatewayd.web.metrics import ActiveRuns, Metrics

        assert self._store is not None
        metrics = Metrics(
            store=self._store,
            identity=core.gateway.identity,
            active=ActiveRuns(self._store, self.instance_id),
        )
        core.pipeline.add_finished_listener(metrics.after_run)
        core.pipeline.add_skipped_listener(metrics.skipped)
        token = None if http.token_env is None else self.env.get(http.token_env)
        app = build_app(
            gateway=core.gateway,
            bus=core.bus,
            clock=self.clock,
            metrics=metrics,
            health=Health(reason=self._unhealthy),
            token=token,
        )
        self._http = HttpListener(app, sock)
        await self._http.start()
        self._stack.push_async_callback(self._http.stop)

    def _unhealthy(self) -> str | None:
        """Why the daemon does not serve as it should now, or ``None`` (``/healthz``)."""
        if self._stopping:
            return "shutting down"
        if self._lease_lost.is_set():
            return "lease lost: another instance took over this one's runs"
        if not self._ready:
            return "not ready yet"
        assert self._store is not None
        fault = self._store.health.fault
        if fault is not None:
            return f"the store takes no writes: {fault.message}"
        return None

    def _store_health_changed(self, health: StoreHealth) -> None:
        """Say at once to systemd that the store's health changed (the store logs it)."""
        if health.fault is None:
            self.notifier.status("store writable again")
        else:
            self.notifier.status(
                f"store takes no writes: {health.fault.message} ({health.held} writes held)"
            )

    async def main_loop(self, signals: AsyncIterator[int]) -> None:
        """Serve until SIGTERM or SIGINT, or until the lease is lost; reload on SIGHUP."""

        async def on_signals() -> None:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                    continue
                log.info("stopping", signal=signal.Signals(signum).name)
                return

        first, _ = await first_of(on_signals, self._lease_lost.wait)
        if first == 1:
            log.error("stopping: another instance owns this instance's runs now")

    async def reload(self) -> None:
        """Read the config file again; keep the old one if the new one is bad."""
        assert self._gateway is not None
        path = self.config.path
        if path is None:
            log.info("SIGHUP: no config file to reload")
            return
        self.notifier.reloading()
        try:
            fresh = load_config(path, now=self.clock.now(), env=self.env)
            changes = await self._gateway.jobs.reconcile(fresh.jobs)
        except GatewaydError as exc:
            log.error("reload refused; keeping the running configuration", error=exc.message)
        else:
            old = (
                self.config.gateway,
                self.config.scheduler,
                self.config.agents,
                self.config.sinks,
                self.config.http,
            )
            if (fresh.gateway, fresh.scheduler, fresh.agents, fresh.sinks, fresh.http) != old:
                log.warning(
                    "reload: [gateway], [scheduler], [agents], [alerts] and [http] changes take "
                    "effect at restart"
                )
            self.config = replace(self.config, jobs=fresh.jobs, source_text=fresh.source_text)
            log.info("configuration reloaded", **changes)
        await self._report_status()
        self.notifier.send("READY=1")

    async def shutdown(self) -> None:
        self._stopping = True
        self.notifier.stopping()
        if self._server is not None:
            await self._server.close()
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()
        gw = self.config.gateway
        if self._store is not None:
            await let_go_of_held_writes(self._store, drain_timeout_s=gw.drain_timeout_s)
        pipeline = self._pipeline
        if pipeline is None:
            return
        on_shutdown = OnShutdown.DETACH if self._lease_lost.is_set() else gw.on_shutdown
        await end_runs(pipeline, on_shutdown, drain_timeout_s=gw.drain_timeout_s)
        store = self._store
        if store is not None and store.health.writable and not self._lease_lost.is_set():
            with contextlib.suppress(GatewaydError):
                await store.stop_instance(self.instance_id)

    async def _report_status(self) -> None:
        if self.notifier.enabled and self._gateway is not None:
            self.notifier.status(status_line(await self._gateway.reads.status()))

    async def _watchdog(self, interval_s: float) -> None:
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval_s)

    def _remove_socket(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _remove_link(self, link: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            if link.is_symlink():
                link.unlink()


def status_line(status: Status) -> str:
    """The one-line STATUS= a service manager shows."""
    if status.runs is None:
        return f"{status.active_runs} runs active; the store cannot be read now"
    return (
        f"{status.jobs_total} jobs ({status.jobs_enabled} enabled), "
        f"{status.active_runs} runs active, {status.runs.total} recorded"
    )


def run_daemon(daemon: Daemon) -> int:
    """Run ``daemon`` on its own event loop (uvloop where available)."""
    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:
        options = {}
    return anyio.run(daemon.serve, backend="asyncio", backend_options=options)


def config_path(flag: str | None) -> Path | None:
    return Path(flag).expanduser() if flag else None
