"""The playground (setting playground): its page in a real headless Chromium
(tests/browser/playground.mjs), its token endpoint, and GET / with it on and off."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import tempfile

import pytest
from PIL import Image, ImageDraw

from conftest import IN_CI, ROOT, ServerProcess, http_get, http_json, new_database_url
from test_docs import BROWSER_DIR, node_tool_or_skip
from test_js_client import run_node_tests
from syarah import options

CHROMIUM = os.environ.get("SYARAH_TEST_CHROMIUM", "/usr/bin/chromium")
VENDOR = os.path.join(ROOT, "web", "node_modules", "socket.io-client", "dist",
                      "socket.io.min.js")


def chromium_or_skip() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = (f"Chromium is not installed at {CHROMIUM}: apt-get install -y "
                   "chromium (.ci/run does it)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def vendor_or_skip() -> None:
    if not os.path.isfile(VENDOR):
        message = "socket.io-client for the playground is missing: run bin/setup-env (npm)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def beach_photo() -> bytes:
    im = Image.new("RGB", (800, 520), (70, 160, 225))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 330, 800, 520], fill=(236, 212, 150))
    draw.polygon([(0, 330), (800, 300), (800, 345), (0, 360)], fill=(40, 120, 200))
    draw.ellipse([600, 50, 720, 170], fill=(255, 215, 60))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def request(server, method: str, path: str, headers=None):
    """One request without following redirects: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def playground_server():
    url, cleanup = new_database_url("sqlite")
    srv = ServerProcess(url, "--playground=true").start()
    yield srv
    srv.stop()
    cleanup()


async def test_two_people_chat_in_the_playground_in_chromium(playground_server, tmp_path):
    chromium = chromium_or_skip()
    node_tool_or_skip("puppeteer-core")
    vendor_or_skip()
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(beach_photo())
    # SYARAH_PLAYGROUND_SCREENSHOT=docs/playground.png renews the README's picture.
    screenshot = os.environ.get("SYARAH_PLAYGROUND_SCREENSHOT") or str(tmp_path / "shot.png")
    profile = tempfile.mkdtemp(prefix="syarah-chromium-")
    try:
        await run_node_tests(playground_server, os.path.join(BROWSER_DIR, "playground.mjs"),
                             [], CHROMIUM=chromium, PHOTO=str(photo), SCREENSHOT=screenshot,
                             PROFILE=profile)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    with Image.open(screenshot) as shot:
        assert shot.format == "PNG" and shot.size == (1280, 720)


def test_root_leads_to_the_playground_when_it_is_on(playground_server):
    status, headers, _ = request(playground_server, "GET", "/")
    assert status == 302 and headers["Location"] == "/playground", headers
    status, headers, body = http_get(playground_server, "/playground")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), body
    page = body.decode()
    for asset in ("/playground/vendor/socket.io.min.js", "/playground/static/playground.js",
                  "/playground/static/playground.css"):
        assert asset in page
    status, headers, body = http_get(playground_server, "/playground/static/playground.js")
    assert status == 200 and b"class Pane" in body


def test_the_vendor_script_is_the_installed_socket_io_client(playground_server):
    vendor_or_skip()
    status, headers, body = http_get(playground_server, "/playground/vendor/socket.io.min.js")
    assert status == 200 and "javascript" in headers["Content-Type"], headers
    with open(VENDOR, "rb") as f:
        assert body == f.read()
    # Only the two files of that folder, nothing else of node_modules.
    status, _, _ = http_get(playground_server, "/playground/vendor/..%2Fpackage.json")
    assert status == 404


def test_the_token_endpoint_mints_a_token_the_server_accepts(playground_server):
    user_id = "6f1c2a1e-3b7d-4d59-9a55-0f3e2b9c8d71"
    status, body = http_json(playground_server, "POST", "/playground/token",
                             {"userId": user_id.upper(), "name": "Ann"})
    assert status == 200 and body["success"] is True, body
    data = body["data"]
    assert data["userId"] == user_id and data["name"] == "Ann"
    status, body = http_json(playground_server, "GET", "/api/friendships",
                             headers={"Authorization": f"Bearer {data['accessToken']}"})
    assert status == 200 and body["success"] is True, body
    # Without a userId, a new one.
    status, body = http_json(playground_server, "POST", "/playground/token", {"name": "Bob"})
    assert status == 200 and re.fullmatch(r"[0-9a-f-]{36}", body["data"]["userId"]), body


def test_the_token_endpoint_refuses_a_browser_on_another_machine():
    # Behind a proxy (xheaders) the peer is the X-Real-Ip: a request from elsewhere
    # must not get a token that acts as anybody.
    url, cleanup = new_database_url("sqlite")
    srv = ServerProcess(url, "--playground=true", "--xheaders=true").start()
    try:
        status, body = http_json(srv, "POST", "/playground/token", {"name": "Eve"},
                                 headers={"X-Real-Ip": "203.0.113.9"})
        assert status == 403 and body["success"] is False and body["data"] is None, body
        assert "this machine" in body["message"]
        status, body = http_json(srv, "POST", "/playground/token", {"name": "Ann"},
                                 headers={"X-Real-Ip": "127.0.0.1"})
        assert status == 200 and body["data"]["accessToken"], body
    finally:
        srv.stop()
        cleanup()


@pytest.mark.parametrize("payload", [
    {}, {"name": ""}, {"name": "Ann", "userId": "not-a-guid"}, {"name": 5}, [1, 2],
    {"name": "x" * 101},
])
def test_the_token_endpoint_refuses_bad_input_readably(playground_server, payload):
    status, body = http_json(playground_server, "POST", "/playground/token", payload)
    assert status == 400, body
    assert body["success"] is False and body["data"] is None and body["message"], body


def test_with_the_playground_off_its_urls_are_404(server):
    for method, path in (("GET", "/playground"), ("POST", "/playground/token"),
                         ("GET", "/playground/static/playground.js"),
                         ("GET", "/playground/vendor/socket.io.min.js")):
        status, headers, body = request(server, method, path)
        assert status == 404, (path, body)
        reply = json.loads(body)
        assert reply["success"] is False and "playground is off" in reply["message"], reply


def test_with_the_playground_off_root_names_the_endpoints(server):
    wanted = ["/socket.io/", "/api/", "/api/docs/asyncapi.yaml", "/api/docs/openapi.yaml",
              "/healthz", "/readyz", "/metrics"]
    status, headers, body = request(server, "GET", "/", {"Accept": "application/json"})
    assert status == 200, body
    reply = json.loads(body)
    assert reply["success"] is True
    assert [e["path"] for e in reply["data"]["endpoints"]] == wanted
    status, headers, body = request(server, "GET", "/", {"Accept": "text/html"})
    assert status == 200 and headers["Content-Type"].startswith("text/html"), headers
    page = body.decode()
    for path in wanted:
        assert f'href="{path}"' in page


def test_the_playground_is_on_only_in_the_development_sample():
    assert options.defaults().playground is False
    dev = options.load([f"--config={ROOT}/conf/development.conf"], {})
    prod = options.load([f"--config={ROOT}/conf/production.conf"], {})
    assert dev.playground is True and prod.playground is False
