"""bin/run: the development start, and how its extra arguments combine with its
defaults (--config=conf/development.conf --address=0.0.0.0)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.request

import jwt
import pytest

from conftest import ROOT, free_port, new_database_url

BIN_RUN = os.path.join(ROOT, "bin", "run")
START_TIMEOUT = 60


def dev_secret() -> str:
    settings = {}
    with open(os.path.join(ROOT, "conf", "development.conf")) as f:
        exec(f.read(), {}, settings)
    return settings["jwt_secret"]


def start(*args: str, log_path: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYARAH_")}
    with open(log_path, "wb") as log:
        return subprocess.Popen([BIN_RUN, *args], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> int:
    # bin/run execs the server, so its pid is the server's.
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait()


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def get(url: str, headers=None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


@pytest.fixture
def database(store_kind):
    url, cleanup = new_database_url(store_kind)
    yield url
    cleanup()


def test_extra_arguments_add_to_the_development_defaults(database, tmp_path):
    port = free_port()
    log_path = str(tmp_path / "run.log")
    proc = start(f"--port={port}", f"--database-url={database}",
                 f"--upload-dir={tmp_path / 'uploads'}", log_path=log_path)
    try:
        deadline = time.time() + START_TIMEOUT
        while True:
            assert proc.poll() is None, f"bin/run exited {proc.returncode}:\n{read(log_path)}"
            assert time.time() < deadline, f"no /healthz within {START_TIMEOUT} s:\n{read(log_path)}"
            try:
                if get(f"http://127.0.0.1:{port}/healthz") == 200:
                    break
            except OSError:
                time.sleep(0.2)
        # The development config is still read: its jwt_secret signs accepted tokens,
        # and --address=0.0.0.0 of the defaults holds.
        now = int(time.time())
        token = jwt.encode({"sub": "550e8400-e29b-41d4-a716-446655440000", "name": "Ann",
                            "iat": now, "exp": now + 600}, dev_secret(), algorithm="HS256")
        assert get(f"http://127.0.0.1:{port}/api/friendships",
                   {"Authorization": f"Bearer {token}"}) == 200
        assert f"listening on 0.0.0.0:{port}" in read(log_path)
    finally:
        assert stop(proc) == 0, read(log_path)


def test_an_explicit_config_replaces_the_default_one(tmp_path):
    # This file has no jwt_secret: were conf/development.conf read too, its secret
    # would let the server start.
    conf = tmp_path / "other.conf"
    conf.write_text(f'port = {free_port()}\n'
                    f'database_url = "sqlite:///{tempfile.mkdtemp()}/chat.db"\n'
                    f'upload_dir = "{tmp_path / "uploads"}"\n')
    log_path = str(tmp_path / "run.log")
    proc = start(f"--config={conf}", log_path=log_path)
    try:
        code = proc.wait(START_TIMEOUT)
    finally:
        stop(proc)
    assert code != 0 and "jwt_secret is required" in read(log_path), read(log_path)
