"""The daemon: load settings, open the store, serve Socket.IO and REST, stop cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

import tornado.httpserver
import tornado.web

from syarah import logs, metrics, options, paths
from syarah.auth import TokenVerifier
from syarah.handlers import recovery
from syarah.handlers.chats import evict_member
from syarah.handlers.connection import announce_gone
from syarah.handlers.context import Services
from syarah.handlers.routes import EVENTS
from syarah.handlers.users import UserDirectory
from syarah.media.service import MediaService
from syarah.periodic import Periodic
from syarah.presence import LocalPresence
from syarah.push import make_push
from syarah.ratelimit import Limits
from syarah.retention import DeletionPruner
from syarah.store import open_store
from syarah.store.database import settings_tls
from syarah.transport import compat
from syarah.transport.channels import (RoomChannels, check_cluster_settings,
                                       check_settings, pick_mode)
from syarah.transport.namespace import ChatNamespace
from syarah.transport.registry import SocketRegistry
from syarah.transport.rooms import Rooms
from syarah.transport.sockets import make_socketio
from syarah.transport.web import make_app

log = logging.getLogger("syarah.server")


def make_verifier(settings) -> TokenVerifier:
    public_key = ""
    if settings.jwt_public_key_file:
        with open(paths.resolve(settings.jwt_public_key_file)) as f:
            public_key = f.read()
    return TokenVerifier(
        secret=settings.jwt_secret, public_key=public_key,
        algorithms=settings.algorithms, issuer=settings.jwt_issuer,
        audience=settings.jwt_audience, user_claim=settings.jwt_user_claim,
        leeway=settings.jwt_leeway)


# How often recovery sessions past their window are deleted.
PRUNE_SESSIONS_SECONDS = 300.0

# Flushing a WebSocket's queue takes milliseconds; a client that does not read for
# this long is too slow to wait for at shutdown.
SOCKET_FLUSH_SECONDS = 3.0


class Node:
    """One running server process and everything it opened."""

    def __init__(self, settings):
        self.settings = settings
        self.store = None
        self.http = None
        self.namespace = None
        self.media = None
        self.metrics_http = None
        self.manager = None
        self.stopping = asyncio.Event()

    async def start(self):
        s = self.settings
        verifier = make_verifier(s)
        if s.redis_url:
            check_settings(s.redis_manager, s.redis_pubsub)
            # Before the store opens: a setting the Redis found cannot carry stops the
            # start with nothing to close.
            from syarah.redis_link import is_cluster, open_client

            self.redis = await open_client(s.redis_url, s.redis_cluster)
            if is_cluster(self.redis):
                try:
                    check_cluster_settings(s.redis_manager, s.redis_pubsub)
                except ValueError:
                    await self.redis.aclose()
                    raise
        self.store = await open_store(
            s.effective_database_url, pool_size=s.db_pool_size, timeout=s.db_timeout,
            run_migrations=s.migrate_on_start, ssl=settings_tls(s))
        self.store.configure_batches(max_size=s.message_batch_size,
                                     in_flight=s.message_batches_in_flight,
                                     busy_after_ms=s.busy_after_ms)
        self.presence, manager = await self._scale_out()
        sio = make_socketio(s, manager)
        if isinstance(manager, RoomChannels):
            # Subscribed before the first connection, not at its first request.
            manager.initialize()
            metrics.ROOM_CHANNELS.set_function(manager.channels_live)
        self.manager = manager
        registry = SocketRegistry(s.jwt_leeway)
        services = Services(
            store=self.store, presence=self.presence, verifier=verifier,
            rooms=Rooms(sio, registry), users=UserDirectory(self.store), settings=s)
        self.media = services.media = MediaService(s, self.store)
        self.media.start()
        self.pruner = DeletionPruner(s, self.store)
        self.pruner.start()
        self.sessions = Periodic(PRUNE_SESSIONS_SECONDS, lambda: recovery.prune(services),
                                 "pruning recovery sessions")
        self.sessions.start()
        self.services = services
        services.push = make_push(s, self.store, services.presence)
        if services.push is not None:
            await services.push.start()
        limits = Limits(s, on_limited=lambda action, scope:
                        metrics.RATE_LIMITED.labels(action, scope).inc())
        services.limits = limits
        if s.redis_url:
            # What other nodes leave to this one: their crashed peers' users to announce
            # offline, their group removals to apply to this node's sockets.
            self.presence.on_gone = lambda users: announce_gone(services, users)
            self.presence.on_removed = lambda user_id, chat_id: evict_member(
                services, user_id, chat_id)
            from syarah.ratelimit_redis import SharedLimits
            shared = limits.shared = SharedLimits(
                self.redis, self.keys, self.presence.node_id, s.presence_ttl,
                self.presence.link, holds=lambda user_id: user_id in registry.user_sockets,
                addresses=registry.tokenless_sockets, presence=self.presence)
            shared.announce = self.presence.announce_spread
            self.presence.on_spread = shared.heard_spread
            shared.start()
        self.namespace = ChatNamespace(
            services, registry, observer=metrics.MetricsObserver(EVENTS), limits=limits)
        sio.register_namespace(self.namespace)
        self.namespace.start()
        self.sio = sio
        metrics.watch(registry, self.store.db)
        metrics_route = (r"/metrics", metrics.MetricsHandler, {"token": s.metrics_token})
        if s.metrics_port:
            # A listener of its own, reachable only where metrics_address is.
            self.metrics_http = tornado.httpserver.HTTPServer(
                tornado.web.Application([metrics_route]))
            self.metrics_http.listen(s.metrics_port, s.metrics_address)
            log.info("metrics on %s:%d", s.metrics_address, s.metrics_port)
        app = make_app(services, sio,
                       extra_routes=[] if s.metrics_port else [metrics_route])
        self.http = tornado.httpserver.HTTPServer(
            app, xheaders=s.xheaders, max_body_size=s.max_http_buffer_size + 64 * 1024,
            idle_connection_timeout=s.http_idle_timeout, body_timeout=s.http_body_timeout)
        self.http.listen(s.port, s.address)
        log.info("Syarah Chat listening on %s:%d (store: %s)", s.address, s.port,
                 self.store.db.engine.name)
        if s.origins == "*":
            log.info("CORS: any origin may connect (cors_allowed_origins = '*'); "
                     "list your web app's origins in production")

    async def _scale_out(self):
        """Without Redis this process is the whole server; with it, room emits and
        presence are shared by every node of the deployment."""
        s = self.settings
        if not s.redis_url:
            return LocalPresence(), None
        from syarah.presence_redis import RedisPresence
        from syarah.redis_link import RedisLink, is_cluster, key_base

        cluster = is_cluster(self.redis)
        self.keys = key_base(s.redis_prefix, cluster)
        link = RedisLink()
        presence = RedisPresence(self.redis, prefix=self.keys, ttl=s.presence_ttl,
                                 link=link)
        await presence.start()
        if s.redis_manager == "broadcast":
            manager = compat.RedisManager(self.redis, s.redis_url,
                                          channel=f"{s.redis_prefix}:socketio", link=link)
            how = "one channel for every room"
        else:
            mode = await pick_mode(self.redis, s.redis_pubsub)
            manager = RoomChannels(self.redis, link, prefix=s.redis_prefix, mode=mode)
            how = f"a {mode} channel per room"
        if cluster:
            how += f", on a Redis Cluster of {len(self.redis.get_primaries())} shards"
        log.info("scale-out through Redis as node %s (%s)", presence.node_id, how)
        return presence, manager

    async def stop(self):
        """Stop accepting, let in-flight events finish, close every socket and the
        store; all of it within shutdown_grace seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace

        def left() -> float:
            return max(0.1, deadline - loop.time())

        log.info("stopping: no new connections; in-flight work has %.0fs",
                 self.settings.shutdown_grace)
        if self.http is not None:
            self.http.stop()
        if self.metrics_http is not None:
            self.metrics_http.stop()
        if self.namespace is not None:
            # From here new events and connections answer UNAVAILABLE; an event under
            # way finishes, so whatever was acked is committed.
            drained = await self.namespace.drain(left())
            await self._close_sockets(left)
            await self._step("stopping Socket.IO", self.sio.shutdown(), left())
            # Disconnects that clients began themselves may still be under way: the
            # store stays open until they are done.
            drained = await self.namespace.drain(left()) and drained
            if drained:
                log.info("every in-flight event finished")
        push = getattr(getattr(self, "services", None), "push", None)
        if push is not None:
            # Unsent pushes stay in the outbox; the next start sends them.
            await self._step("stopping push", push.stop(left()), left() + 1)
        if self.http is not None:
            await self._step("closing HTTP connections",
                             self.http.close_all_connections(), left())
        if getattr(self, "redis", None) is not None:
            if isinstance(self.manager, RoomChannels):
                await self._step("leaving the room channels", self.manager.stop(), left())
            await self._step("leaving the deployment", self.presence.stop(), left())
            if self.services.limits.shared is not None:
                await self._step("clearing the address counts",
                                 self.services.limits.shared.stop(), left())
            await self.redis.aclose()
        if self.media is not None:
            await self._step("stopping media cleanup", self.media.stop(), left())
        if getattr(self, "pruner", None) is not None:
            await self._step("stopping the pruning", self.pruner.stop(), left())
            await self._step("stopping the session pruning", self.sessions.stop(), left())
        if self.store is not None:
            await self._step("closing the store", self.store.close(), left())
        log.info("stopped")

    async def _close_sockets(self, left):
        # An Engine.IO close (not a Socket.IO disconnect) tells clients the transport
        # went away, so socket.io-client reconnects, to this node's successor.
        # The close runs the disconnect handler (presence, through the store), which
        # may take the whole grace period when the store is slow; then a WebSocket's
        # queue, acks included, is flushed for a few seconds at most. A polling client
        # between two polls cannot be flushed to, so it is not waited for.
        sockets = compat.engine_sockets(self.sio)
        closes = [asyncio.ensure_future(compat.close_transport(self.sio, socket=s))
                  for s in sockets]
        late = await self._within_or_cancel(closes, left())
        if late:
            log.warning("shutdown: %d disconnects did not finish within the grace period",
                        late)
        flushes = [asyncio.ensure_future(compat.flush(s)) for s in sockets]
        late = await self._within_or_cancel(flushes, min(left(), SOCKET_FLUSH_SECONDS))
        if late:
            log.info("shutdown: %d WebSocket clients did not read their last packets "
                     "within %.0fs", late, SOCKET_FLUSH_SECONDS)

    @staticmethod
    async def _within_or_cancel(tasks, timeout: float) -> int:
        """Wait for tasks; cancel those still running after timeout (nothing may run
        on once the store is closed). Returns how many were cancelled."""
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    @staticmethod
    async def _step(what: str, coro, timeout: float):
        try:
            await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            log.warning("shutdown: %s took longer than the grace period", what)
        except Exception:
            log.exception("shutdown: %s failed", what)


async def serve(settings) -> int:
    node = Node(settings)
    await node.start()
    # What starting loaded (modules, settings, the app) lives as long as the process:
    # frozen, it is left out of the collector's full passes, which then walk only
    # what serving made: at 2,000 msg/s a pause of 46 ms became one of 7.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.stopping.set)
    await node.stopping.wait()
    await node.stop()
    return 0


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str):
    """The event loop ``choice`` names, as (factory, name). uvloop runs the same
    Tornado and asyncio code with less CPU per frame; auto takes it when it is
    installed. Raises ValueError for a choice that cannot be had."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, "
                         f"not {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ValueError("event_loop is uvloop, but uvloop is not installed")
        else:
            return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"
    return asyncio.new_event_loop, "asyncio"


def run(coro_fn, choice: str):
    """Run ``coro_fn()`` to completion on a new loop of the chosen kind."""
    factory, name = loop_factory(choice)

    async def logged():
        log.info("event loop: %s", name)
        return await coro_fn()

    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(logged())
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(logged())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = options.load(sys.argv[1:] if argv is None else argv)
        loop_factory(settings.event_loop)
    except (options.OptionsError, ValueError) as exc:
        print(f"syarah-server: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format, socketio=settings.log_socketio)
    try:
        return run(lambda: serve(settings), settings.event_loop)
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
