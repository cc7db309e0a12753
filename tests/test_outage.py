"""MariaDB goes away under traffic and comes back: events answer UNAVAILABLE quickly,
nothing unsaved is broadcast, /readyz says 503, and service resumes without a restart.

A TCP proxy on loopback sits between the server and MariaDB. It runs on a thread of
its own, so that the test's own blocking calls never stall the database traffic.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from urllib.parse import urlparse

from conftest import ServerProcess, User, dm, free_port, http_json, new_database_url, register

DB_TIMEOUT = 1.5


class TcpProxy:
    """Forwards 127.0.0.1:port to the target. ``cut`` resets every connection and
    refuses new ones (MariaDB down); ``hang`` holds every byte (a silent network);
    ``restore`` resumes."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = None
        self.pairs: set = set()
        self._run(self._setup())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _setup(self):
        self.flowing = asyncio.Event()
        self.flowing.set()
        await self._listen()

    async def _listen(self):
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.pairs.discard(pair)
            writer.close()
            up_writer.close()

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _cut(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        for a, b in list(self.pairs):
            a.transport.abort()
            b.transport.abort()

    async def _hang(self):
        self.flowing.clear()

    async def _restore(self):
        self.flowing.set()
        if self.server is None:
            await self._listen()

    def cut(self):
        self._run(self._cut())

    def hang(self):
        self._run(self._hang())

    def restore(self):
        self._run(self._restore())

    def close(self):
        self._run(self._cut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Sender:
    """Sends createMessage back to back, each with a clientMessageId, recording how
    every one was answered and how long the answer took."""

    def __init__(self, client, chat_id: int):
        self.client, self.chat_id = client, chat_id
        self.acked: dict[str, int] = {}      # text -> message id
        self.outcomes: list[tuple[str, float, float]] = []  # (code, when, seconds)
        self.stop = False

    async def run(self):
        i = 0
        while not self.stop:
            text = f"m{i}-{uuid.uuid4().hex[:6]}"
            i += 1
            started = time.monotonic()
            reply = await self.client.call("createMessage", {
                "chatHeaderId": self.chat_id, "message": text, "clientMessageId": text},
                timeout=15)
            took = time.monotonic() - started
            if "chatMessage" in reply:
                assert reply["chatMessage"]["message"] == text
                self.acked[text] = reply["chatMessage"]["id"]
                self.outcomes.append(("ok", time.monotonic(), took))
            else:
                self.outcomes.append((reply["code"], time.monotonic(), took))
                await asyncio.sleep(0.05)

    def since(self, moment: float) -> list:
        return [o for o in self.outcomes if o[1] >= moment]

    async def wait_for(self, code: str, moment: float, timeout: float = 15):
        deadline = time.monotonic() + timeout
        while not any(o[0] == code for o in self.since(moment)):
            assert time.monotonic() < deadline, f"no {code} since the change: {self.since(moment)}"
            await asyncio.sleep(0.05)


def readyz(server) -> int:
    return http_json(server, "GET", "/readyz")[0]


async def test_database_outage_and_recovery_under_traffic():
    url, cleanup = new_database_url("mysql")
    u = urlparse(url)
    proxy = TcpProxy(u.hostname, u.port or 3306)
    via_proxy = url.replace(f"@{u.hostname}:{u.port or 3306}/", f"@127.0.0.1:{proxy.port}/")
    srv = ServerProcess(via_proxy, f"--db-timeout={DB_TIMEOUT}").start()
    opened = []
    try:
        ann, bob = User(srv, "Ann"), User(srv, "Bob")
        await register(ann, bob)
        a, b = await ann.connect(), await bob.connect()
        opened += [a, b]
        chat_id = await dm(a, bob)
        await b.call("joinRoom", {"chatHeaderId": chat_id})
        sender = Sender(a, chat_id)
        traffic = asyncio.create_task(sender.run())
        while len(sender.acked) < 20:
            await asyncio.sleep(0.02)

        for outage in (proxy.cut, proxy.hang):
            before = len(sender.acked)
            began = time.monotonic()
            outage()
            await sender.wait_for("UNAVAILABLE", began)
            await asyncio.sleep(DB_TIMEOUT * 1.5)
            assert await asyncio.to_thread(readyz, srv) == 503
            during = sender.since(began)
            # The first answers may be events that finished just before the cut.
            failures = [o for o in during if o[0] != "ok"]
            assert {o[0] for o in failures} == {"UNAVAILABLE"}, during
            # Quickly: within the store timeout (and its connect attempt), never a hang.
            assert max(o[2] for o in failures) < DB_TIMEOUT * 2 + 0.5, failures
            # Typing keeps working meanwhile (its block check lets it through).
            assert (await a.call("roomTyping", {"chatHeaderId": chat_id}))["ok"] is True

            back = time.monotonic()
            proxy.restore()
            await sender.wait_for("ok", back)
            assert await asyncio.to_thread(readyz, srv) == 200
            assert len(sender.acked) > before

        sender.stop = True
        await asyncio.wait_for(traffic, 20)
        await b.settle(0.3)

        page = await b.call("findAllMessages", {"chatHeaderId": chat_id, "maxResultCount": 200})
        stored = {m["message"]: m["id"] for m in page["items"]}
        while len(stored) < page["totalCount"]:
            page = await b.call("findAllMessages", {
                "chatHeaderId": chat_id, "maxResultCount": 200,
                "lastMessageId": min(stored.values())})
            assert page["items"]
            stored.update({m["message"]: m["id"] for m in page["items"]})
        # Every acked message is stored, under the id its ack gave.
        for text, message_id in sender.acked.items():
            assert stored.get(text) == message_id, text
        # Nothing was broadcast that is not stored.
        broadcast = {m["chatMessage"]["message"]: m["chatMessage"]["id"]
                     for m in b.received("message")}
        assert broadcast.items() <= stored.items()
        # No message half-written: each stored one is whole (a text that was sent)
        # and stored once; the header's last message is the newest one.
        assert all(text.startswith("m") and len(text.split("-")[1]) == 6 for text in stored)
        assert len(set(stored.values())) == len(stored) == page["totalCount"]
        joined = await b.call("joinRoom", {"chatHeaderId": chat_id})
        assert joined["chatHeader"]["lastMessage"]["id"] == max(stored.values())
        # A message whose ack was lost in the outage is stored at most once, and a
        # retry with its clientMessageId answers with that same message.
        lost = [t for t in stored if t not in sender.acked]
        for text in lost:
            again = await a.call("createMessage", {
                "chatHeaderId": chat_id, "message": text, "clientMessageId": text})
            assert again["chatMessage"]["id"] == stored[text]
        log = srv.log()
        assert "database unreachable" in log or "did not answer in time" in log
    finally:
        for c in opened:
            await c.close()
        srv.stop()
        proxy.close()
        cleanup()
