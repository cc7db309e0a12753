"""Operator commands: bin/syarah-migrate, --migrate-on-start=false, bin/syarah-mint-token."""

import os
import subprocess
import sys
import uuid

import jwt
import pytest

from conftest import ROOT, SECRET, ServerProcess, User, dm, new_database_url, register

from syarah.store.migrations import available


def run(command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", command), *args],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)


@pytest.fixture
def fresh_database(store_kind):
    url, cleanup = new_database_url(store_kind)
    yield url
    cleanup()


async def test_migrate_applies_everything_once_then_nothing(fresh_database):
    known = available()

    first = run("syarah-migrate", "--database-url", fresh_database)

    assert first.returncode == 0, first.stderr
    assert [line for line in first.stdout.splitlines() if line.startswith("applied")] == [
        f"applied {name}" for _, name, _ in known]
    assert f"schema at version {known[-1][0]}" in first.stdout
    second = run("syarah-migrate", f"--database-url={fresh_database}")
    assert second.returncode == 0, second.stderr
    assert "applied" not in second.stdout
    assert f"schema at version {known[-1][0]}" in second.stdout

    # A server told not to migrate runs on the schema the command made.
    srv = ServerProcess(fresh_database, "--migrate-on-start=false").start()
    try:
        ann, bob = User(srv, "Ann"), User(srv, "Bob")
        await register(ann, bob)
        status, body = ann.http("POST", "/api/chat/groups", {"name": "G", "memberIds": [bob.id]})
        assert status == 201 and len(body["data"]["members"]) == 2
        assert ann.http("GET", "/readyz")[0] == 200
    finally:
        assert srv.stop() == 0


async def test_server_that_may_not_migrate_refuses_an_unmigrated_database(fresh_database):
    srv = ServerProcess(fresh_database, "--migrate-on-start=false")
    with pytest.raises(RuntimeError, match="exited early"):
        srv.start()
    assert srv.proc.wait(10) == 2
    log = srv.log()
    assert "syarah-migrate" in log and available()[0][1] in log
    assert "Traceback" not in log


def test_unreachable_database_is_reported_without_a_traceback():
    result = run("syarah-migrate", "--database-url=mysql://nobody:x@127.0.0.1:1/none",
                 "--db-timeout=2")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot open the database at 127.0.0.1:1/none" in result.stderr

    server = run("syarah-server", "--database-url=mysql://nobody:x@127.0.0.1:1/none",
                 "--db-timeout=2", "--port=0", f"--jwt-secret={SECRET}")
    assert server.returncode == 2
    assert "cannot open the database" in server.stderr and "Traceback" not in server.stderr


async def test_mint_token_prints_a_token_the_server_accepts(server, clients):
    user_id = str(uuid.uuid4())
    result = run("syarah-mint-token", "--jwt-secret", SECRET, "--user-id", user_id,
                 "--name", "Dev Person")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert len(token.splitlines()) == 1
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == user_id and claims["name"] == "Dev Person" and claims["exp"]

    dev = User(server, "Dev Person", user_id)
    dev.token = token
    bob = User(server, "Bob")
    await register(bob)
    client = await clients(dev)
    chat_id = await dm(client, bob)
    reply = await client.call("createMessage", {"message": "hello from a minted token",
                                                "chatHeaderId": chat_id})
    assert reply["chatMessage"]["user"] == {"id": user_id, "name": "Dev Person", "avatar": None}


def test_mint_token_uses_the_config_secret_and_refuses_without_one():
    result = run("syarah-mint-token", "--config=conf/development.conf", "--name=Dev")
    assert result.returncode == 0, result.stderr
    secret = "dev-secret-change-me-0123456789abcdef"
    assert jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])["name"] == "Dev"

    result = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "syarah-mint-token")],
                            capture_output=True, text=True, timeout=30, cwd=ROOT,
                            env={k: v for k, v in os.environ.items() if not k.startswith("SYARAH_")})
    assert result.returncode == 2 and "jwt_secret" in result.stderr and not result.stdout


async def test_nodes_started_together_on_an_empty_database_all_come_up(fresh_database):
    import asyncio

    from syarah.store.database import Database
    from syarah.store.migrations import current_version

    nodes = [ServerProcess(fresh_database) for _ in range(3)]
    try:
        # All at once: each sees the empty database before any has migrated it.
        results = await asyncio.gather(*(asyncio.to_thread(n.start, 60) for n in nodes),
                                       return_exceptions=True)
        failed = [str(r)[-1500:] for r in results if isinstance(r, BaseException)]
        assert not failed, failed
        for n in nodes:
            assert n.proc.poll() is None
            assert "already exists" not in n.log() and "Traceback" not in n.log()
        db = await Database.connect(fresh_database, pool_size=1)
        try:
            assert await current_version(db) == available()[-1][0]
            rows = await db.fetchall("SELECT version FROM schema_version ORDER BY version")
            assert [r[0] for r in rows] == [v for v, _, _ in available()]
        finally:
            await db.close()
        applied = sum(n.log().count("applying migration") for n in nodes)
        assert applied == len(available()), applied
    finally:
        for n in nodes:
            if n.proc is not None:
                assert n.stop() == 0, n.log()
