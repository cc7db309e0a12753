"""The daemon: load settings, open the store, serve Socket.IO and REST, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import tornado.httpserver

from syarah import jsonlib, logs, options, paths
from syarah.app import make_app
from syarah.auth import TokenVerifier
from syarah.handlers.context import Rooms, Services, UserDirectory
from syarah.handlers.dispatcher import ChatNamespace, ChatServer
from syarah.presence import LocalPresence
from syarah.sockets import LocalManager
from syarah.store import open_store

log = logging.getLogger("syarah.server")


def make_verifier(settings) -> TokenVerifier:
    public_key = ""
    if settings.jwt_public_key_file:
        with open(paths.resolve(settings.jwt_public_key_file)) as f:
            public_key = f.read()
    return TokenVerifier(
        secret=settings.jwt_secret, public_key=public_key,
        algorithms=settings.algorithms, issuer=settings.jwt_issuer,
        audience=settings.jwt_audience, user_claim=settings.jwt_user_claim)


def make_socketio(settings) -> ChatServer:
    return ChatServer(
        async_mode="tornado",
        # Events of one socket run one after another, in the order it sent them, so
        # its messages are stored and delivered in that order; sockets still run
        # concurrently with each other.
        async_handlers=False,
        cors_allowed_origins=settings.origins,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_http_buffer_size=settings.max_http_buffer_size,
        logger=False, engineio_logger=False,
        # Measured in bench/: orjson and task-free room emits cut the CPU per message.
        json=jsonlib, client_manager=LocalManager())


class Node:
    """One running server process and everything it opened."""

    def __init__(self, settings):
        self.settings = settings
        self.store = None
        self.http = None
        self.namespace = None
        self.stopping = asyncio.Event()

    async def start(self):
        s = self.settings
        verifier = make_verifier(s)
        self.store = await open_store(
            s.effective_database_url, pool_size=s.db_pool_size, timeout=s.db_timeout,
            run_migrations=s.migrate_on_start)
        sio = make_socketio(s)
        services = Services(
            store=self.store, presence=LocalPresence(), verifier=verifier,
            rooms=Rooms(sio), users=UserDirectory(self.store), settings=s)
        self.services = services
        self.namespace = ChatNamespace(services)
        sio.register_namespace(self.namespace)
        self.sio = sio
        app = make_app(services, sio)
        self.http = tornado.httpserver.HTTPServer(
            app, xheaders=s.xheaders, max_body_size=s.max_http_buffer_size + 64 * 1024)
        self.http.listen(s.port, s.address)
        log.info("Syarah Chat listening on %s:%d (store: %s)", s.address, s.port,
                 self.store.db.engine.name)

    async def stop(self):
        grace = self.settings.shutdown_grace
        log.info("stopping: no new connections; in-flight work has %.0fs", grace)
        if self.http is not None:
            self.http.stop()
        if self.namespace is not None:
            await self.namespace.drain(grace)
            try:
                await asyncio.wait_for(self.sio.shutdown(), timeout=grace)
            except Exception:
                log.warning("sockets did not all close in time")
        if self.http is not None:
            try:
                await asyncio.wait_for(self.http.close_all_connections(), timeout=grace)
            except Exception:
                pass
        if self.store is not None:
            await self.store.close()
        log.info("stopped")


async def serve(settings) -> int:
    node = Node(settings)
    await node.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.stopping.set)
    await node.stopping.wait()
    await node.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = options.load(sys.argv[1:] if argv is None else argv)
    logs.configure(settings.log_level, settings.log_format)
    try:
        return asyncio.run(serve(settings))
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
