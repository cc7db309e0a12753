"""A MariaDB server of the test's own, on a free loopback port in a temporary datadir,
for tests that kill the database or configure it (TLS): the shared one is never
stopped or reconfigured."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from conftest import free_port

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


def available() -> bool:
    return os.path.exists(MARIADBD) and os.path.exists(INSTALL_DB)


class OwnMariadb:
    """``start`` runs mariadbd on ``port`` over ``datadir`` (made on first start);
    ``kill`` is kill -9; ``start`` again reuses the same datadir and port."""

    def __init__(self, *extra_args: str):
        self.dir = tempfile.mkdtemp(prefix="syarah-mdb-")
        self.datadir = os.path.join(self.dir, "data")
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.dir, "mariadbd.log")
        subprocess.run(
            [INSTALL_DB, "--no-defaults", "--auth-root-authentication-method=normal",
             f"--datadir={self.datadir}", "--skip-test-db"],
            check=True, capture_output=True, timeout=60)

    def url(self, database: str = "syarah") -> str:
        return f"mysql://root:@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30) -> "OwnMariadb":
        args = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}",
                f"--port={self.port}", f"--socket={self.dir}/sock",
                "--bind-address=127.0.0.1", "--skip-networking=0",
                f"--pid-file={self.dir}/mariadbd.pid", f"--log-error={self.log_path}",
                # Small and quick to start: a test database holds a few hundred rows.
                "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
                "--max-connections=200", *self.extra_args]
        if os.geteuid() == 0:
            args.insert(2, "--user=root")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.log()[-2000:]}")
            try:
                self.admin("SELECT 1")
                return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"mariadbd did not start: {self.log()[-2000:]}")

    def admin(self, sql: str, **connect_args):
        import pymysql

        # Through the socket: it counts as secure when the server requires TLS.
        conn = pymysql.connect(unix_socket=f"{self.dir}/sock", user="root", password="",
                               connect_timeout=2, **connect_args)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def create_database(self, name: str = "syarah") -> str:
        self.admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 "
                   "COLLATE utf8mb4_unicode_ci")
        return self.url(name)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""
