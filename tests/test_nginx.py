"""conf/nginx-syarah.conf as it stands, run by the test (its own folder, free ports,
stopped by pid) in front of two nodes of one deployment, with the real
socket.io-client over polling, WebSocket, and polling upgraded to WebSocket; once
with ip_hash, once with the route cookie."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import IN_CI, ROOT, User, free_port, register
from test_js_client import node_or_skip, run_node_tests
from test_scaleout import deployment  # noqa: F401 (fixture)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SAMPLE = os.path.join(ROOT, "conf", "nginx-syarah.conf")


def site(ports: list[int], listen: int, cookie: bool) -> str:
    """The sample with the test's ports; with ``cookie`` its second way swapped in."""
    text = open(SAMPLE).read()
    for sample_port, port in zip((3005, 3006), ports):
        text = text.replace(f"server 127.0.0.1:{sample_port};", f"server 127.0.0.1:{port};")
    assert text.count("listen 80;") == 1
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    if cookie:
        text = text.replace("    ip_hash;", "    # ip_hash;")
        text = text.replace("# hash $syarah_route consistent;", "hash $syarah_route consistent;")
        text = text.replace("# add_header Set-Cookie", "add_header Set-Cookie")
        assert "    hash $syarah_route" in text and "    add_header Set-Cookie" in text
    return text


class Nginx:
    def __init__(self, tmp_path, nodes, cookie: bool):
        self.dir = str(tmp_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.nodes = nodes
        with open(os.path.join(self.dir, "site.conf"), "w") as f:
            f.write(site([n.port for n in nodes], self.port, cookie))
        temp = " ".join(f"{kind}_temp_path {self.dir}/{kind};"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(f"pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log;\n"
                    f"events {{}}\nhttp {{ access_log off; {temp}\n"
                    f"include {self.dir}/site.conf; }}\n")
        self.proc = None

    def start(self) -> "Nginx":
        conf = os.path.join(self.dir, "nginx.conf")
        check = subprocess.run([NGINX, "-t", "-p", self.dir, "-c", conf],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", conf, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx did not answer: {self.log()}")

    def log(self) -> str:
        """nginx's error log and the nodes' latest lines, for a failure's message."""
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                text = f.read()
        except OSError:
            text = ""
        return text + "".join(f"\n--- node {n.port} ---\n{n.log()[-1500:]}"
                              for n in self.nodes)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.mark.parametrize("cookie", [False, True], ids=["ip_hash", "cookie"])
async def test_two_nodes_behind_the_sample_nginx_config(deployment, tmp_path, cookie):
    if not os.path.exists(NGINX):
        # .ci/run installs it; elsewhere the test waits for someone who has it.
        (pytest.fail if IN_CI else pytest.skip)("nginx is not installed (apt-get install nginx-light)")
    node_or_skip()
    one, two = deployment(), deployment()
    proxy = Nginx(tmp_path, (one, two), cookie).start()
    try:
        users = []
        for i in range(3):
            ann, bob = User(one, f"Ann{i}"), User(two, f"Bob{i}")
            await register(ann, bob)
            users += [{"id": u.id, "name": u.name, "token": u.token} for u in (ann, bob)]
        await run_node_tests(proxy, "nginx.test.js", users)
    finally:
        proxy.stop()
