"""Faults under traffic, with real processes on loopback: the server killed with
SIGKILL (on SQLite and MariaDB), and MariaDB itself killed with SIGKILL (a MariaDB of
the test's own, on a free port: the shared one is never touched).

What must hold: every acked message is stored; a client that resends what it sent
without an answer, with the same clientMessageId, never gets it stored twice; each
chat's totalCount, history and lastMessage agree.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from conftest import IN_CI, ServerProcess, User, dm, http_json, new_database_url, register
from own_mariadb import OwnMariadb, available

DB_TIMEOUT = 1.5
SENDERS = 3


class Sender:
    """One client sending createMessage back to back, each text its own
    clientMessageId. An UNAVAILABLE answer is retried with the same id, as a client
    should; a lost connection ends the run with that message unanswered."""

    def __init__(self, client, chat_id: int, tag: str):
        self.client, self.chat_id, self.tag = client, chat_id, tag
        self.sent: list[str] = []              # every clientMessageId, in order
        self.acked: dict[str, int] = {}        # clientMessageId -> message id
        self.replies: list[tuple[str, float, float]] = []  # (outcome, when, seconds)
        self.stop = False

    async def run(self, call_timeout: float = 10):
        n = 0
        while not self.stop:
            cmid = f"{self.tag}-{n}"
            if not self.sent or self.sent[-1] != cmid:
                self.sent.append(cmid)
            started = time.monotonic()
            try:
                reply = await self.client.call("createMessage", {
                    "chatHeaderId": self.chat_id, "message": cmid,
                    "clientMessageId": cmid}, timeout=call_timeout)
            except Exception:
                return  # the server went away: this one stays unanswered
            took = time.monotonic() - started
            if "chatMessage" in reply:
                assert reply["chatMessage"]["message"] == cmid, reply
                self.acked[cmid] = reply["chatMessage"]["id"]
                self.replies.append(("ok", time.monotonic(), took))
                n += 1
            else:
                self.replies.append((reply["code"], time.monotonic(), took))
                await asyncio.sleep(0.05)

    def unanswered(self) -> list[str]:
        return [c for c in self.sent if c not in self.acked]

    def since(self, moment: float) -> list:
        return [r for r in self.replies if r[1] >= moment]


async def start_traffic(server, reader_user: User | None = None, users=None):
    """SENDERS users, each in an individual chat with a reader; returns the users,
    the reader, their clients and the senders."""
    users = users or [User(server, f"S{i}") for i in range(SENDERS)]
    reader = reader_user or User(server, "Reader")
    await register(reader, *users)
    clients = [await u.connect() for u in users]
    chats = [await dm(c, reader) for c in clients]
    senders = [Sender(c, chat_id, f"{u.name}:{chat_id}")
               for u, c, chat_id in zip(users, clients, chats)]
    return users, reader, clients, senders


async def wait_for_acks(senders, count: int, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while sum(len(s.acked) for s in senders) < count:
        assert time.monotonic() < deadline, [len(s.acked) for s in senders]
        await asyncio.sleep(0.02)


async def history(client, chat_id: int) -> tuple[dict[str, list[int]], int]:
    """Every message of the chat, paged: {text: [ids]} and the totalCount."""
    stored: dict[str, list[int]] = {}
    page = await client.call("findAllMessages", {"chatHeaderId": chat_id,
                                                 "maxResultCount": 200})
    total, seen = page["totalCount"], 0
    while page["items"]:
        for m in page["items"]:
            stored.setdefault(m["message"], []).append(m["id"])
        seen += len(page["items"])
        if seen >= total:
            break
        page = await client.call("findAllMessages", {
            "chatHeaderId": chat_id, "maxResultCount": 200,
            "lastMessageId": page["items"][-1]["id"]})
    return stored, total


async def resend_unanswered(client, sender: Sender) -> int:
    """What a client does after reconnecting: every message it has no ack for goes
    again, under its clientMessageId. Returns how many of them were stored already
    (their ack was lost): the resend must answer with that same message."""
    before, _ = await history(client, sender.chat_id)
    pending = sender.unanswered()
    for cmid in pending:
        reply = await client.call("createMessage", {
            "chatHeaderId": sender.chat_id, "message": cmid, "clientMessageId": cmid})
        assert reply.get("chatMessage", {}).get("message") == cmid, reply
        if cmid in before:
            assert before[cmid] == [reply["chatMessage"]["id"]], (cmid, before[cmid], reply)
        sender.acked[cmid] = reply["chatMessage"]["id"]
    return sum(1 for cmid in pending if cmid in before)


async def check_consistent(reader_client, senders) -> dict:
    """Every acked message stored once under its ack's id; nothing else stored;
    totalCount, history and lastMessage agree. Returns figures for the report."""
    figures = {"stored": 0}
    for s in senders:
        stored, total = await history(reader_client, s.chat_id)
        for cmid, message_id in s.acked.items():
            assert stored.get(cmid) == [message_id], (cmid, stored.get(cmid), message_id)
        assert set(stored) == set(s.sent), sorted(set(stored) ^ set(s.sent))[:5]
        ids = [i for found in stored.values() for i in found]
        assert len(ids) == len(set(ids)) == total == len(s.sent), (len(ids), total)
        joined = await reader_client.call("joinRoom", {"chatHeaderId": s.chat_id})
        assert joined["chatHeader"]["lastMessage"]["id"] == max(ids), joined["chatHeader"]
        figures["stored"] += total
    return figures


async def resend_and_check(clients, reader_client, senders) -> tuple[int, int]:
    """Each sender's client resends what it has no ack for, then the chats are
    checked; the clients are closed. Returns (messages stored though their ack was
    lost, messages stored)."""
    try:
        stored_unacked = 0
        for client, sender in zip(clients, senders):
            stored_unacked += await resend_unanswered(client, sender)
        return stored_unacked, (await check_consistent(reader_client, senders))["stored"]
    finally:
        await close_all(dict.fromkeys([*clients, reader_client]))


def kill_and_reap(server: ServerProcess) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server._log.close()


async def close_all(clients) -> None:
    for c in clients:
        try:
            await asyncio.wait_for(c.close(), 5)
        except Exception:
            pass


# --- the server killed during traffic ----------------------------------------------

async def test_server_killed_during_traffic_loses_no_acked_message(store_kind, make_server):
    srv = make_server(store_kind)
    users, reader, clients, senders = await start_traffic(srv)
    traffic = [asyncio.create_task(s.run(call_timeout=3)) for s in senders]
    await wait_for_acks(senders, 60)

    kill_and_reap(srv)
    await asyncio.wait_for(asyncio.gather(*traffic), 20)
    await close_all(clients)
    unanswered = sum(len(s.unanswered()) for s in senders)

    again = make_server(store_kind, database_url=srv.database_url)
    back = [User(again, u.name, user_id=u.id) for u in users]
    reconnected = [await u.connect() for u in back]
    reader_client = await User(again, "Reader", user_id=reader.id).connect()
    stored_unacked, stored = await resend_and_check(reconnected, reader_client, senders)
    print(f"\n[{store_kind}] server SIGKILL: {stored} stored; {unanswered} "
          f"unanswered at the kill ({stored_unacked} of them stored, ack lost), resent, "
          "none stored twice")


# --- MariaDB killed during traffic ---------------------------------------------------

@pytest.fixture
def own_mariadb():
    if not available():
        if IN_CI:
            pytest.fail("mariadbd and mariadb-install-db are required in CI")
        pytest.skip("mariadbd is not installed")
    db = OwnMariadb()
    try:
        db.start()
        yield db
    finally:
        db.stop()


def readyz(server) -> int:
    return http_json(server, "GET", "/readyz")[0]


async def wait_for_readyz(server, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := await asyncio.to_thread(readyz, server)) != status:
        assert time.monotonic() < deadline, f"/readyz stayed {got}, not {status}"
        await asyncio.sleep(0.1)


async def wait_for_outcome(senders, outcome: str, moment: float, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not any(r[0] == outcome for s in senders for r in s.since(moment)):
        assert time.monotonic() < deadline, f"no {outcome} since the change"
        await asyncio.sleep(0.02)


async def test_mariadb_killed_during_traffic_and_restarted(own_mariadb, make_server):
    url = own_mariadb.create_database()
    srv = make_server(None, f"--db-timeout={DB_TIMEOUT}", database_url=url)
    users, reader, clients, senders = await start_traffic(srv)
    reader_client = await reader.connect()
    clients.append(reader_client)
    traffic = [asyncio.create_task(s.run()) for s in senders]
    try:
        await wait_for_acks(senders, 30)

        killed = time.monotonic()
        own_mariadb.kill()
        await wait_for_outcome(senders, "UNAVAILABLE", killed)
        await wait_for_readyz(srv, 503)
        await asyncio.sleep(DB_TIMEOUT * 2)   # traffic keeps meeting the outage
        assert srv.proc.poll() is None, srv.log()[-3000:]

        restored = time.monotonic()
        await asyncio.to_thread(own_mariadb.start)
        await wait_for_outcome(senders, "ok", restored)
        first_ok = min(r[1] for s in senders for r in s.since(restored) if r[0] == "ok")
        await wait_for_readyz(srv, 200)
        await wait_for_acks(senders, sum(len(s.acked) for s in senders) + 15)
    finally:
        for s in senders:
            s.stop = True
        await asyncio.wait_for(asyncio.gather(*traffic), 30)

    during = [r for s in senders for r in s.replies if killed <= r[1] and r[0] != "ok"]
    assert {r[0] for r in during} == {"UNAVAILABLE"}, {r[0] for r in during}
    slowest = max(r[2] for r in during)
    # Never a hang: the store's timeout (and one connect attempt) bounds every answer.
    assert slowest < DB_TIMEOUT * 2 + 1, slowest
    stored_unacked, stored = await resend_and_check(clients, reader_client, senders)
    assert srv.stop() == 0, srv.log()[-3000:]
    print(f"\n[mysql] MariaDB SIGKILL: {len(during)} UNAVAILABLE, slowest reply "
          f"{slowest:.2f}s (db_timeout {DB_TIMEOUT}s), first success "
          f"{first_ok - restored:.2f}s after mariadbd was started again, "
          f"{stored} stored ({stored_unacked} stored with their ack lost)")
