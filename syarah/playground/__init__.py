"""The playground: one web page that is a real client of this server, for trying it
in a browser, and the root page that says where everything is.

Only with the setting ``playground`` on (development): the page signs people in with
tokens that ``POST /playground/token`` mints with the server's HS256 secret for any
user id, so whoever reaches the server can act as anybody. Off, every playground URL
answers 404 and ``GET /`` names the endpoints instead.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import os
import uuid
from dataclasses import dataclass

import tornado.web

from syarah import auth
from syarah.errors import Forbidden
from syarah.transport.http.base import ApiHandler
from syarah.protocol.fields import Guid, Text, decode, wire

log = logging.getLogger("syarah.playground")

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = HERE
# socket.io-client's browser build, installed by bin/setup-env with npm into web/ of
# the checkout (never into the package: it is not ours to ship).
VENDOR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "web", "node_modules",
                      "socket.io-client", "dist")
TOKEN_HOURS = 12

ENDPOINTS = [
    ("Socket.IO", "/socket.io/", "Socket.IO v4: the chat events (see the AsyncAPI "
                                 "document)"),
    ("REST", "/api/", "uploads, chats, friendships, groups, devices, admin (see the "
                      "OpenAPI document)"),
    ("AsyncAPI", "/api/docs/asyncapi.yaml", "every Socket.IO event, its payload and ack"),
    ("OpenAPI", "/api/docs/openapi.yaml", "every REST endpoint"),
    ("Health", "/healthz", "the process is up"),
    ("Readiness", "/readyz", "the store is reachable"),
    ("Metrics", "/metrics", "Prometheus text format"),
]


@dataclass
class TokenRequest:
    name: str = wire(Text(100, min_len=1), "name", "Name", required=True)
    user_id: str | None = wire(Guid(), "userId", "UserId")


class _PlaygroundOnly:
    def prepare(self):
        if not self.services.settings.playground:
            # HTTPError rather than NotFound: the static file handlers know only it.
            raise tornado.web.HTTPError(
                404, "The playground is off (setting playground = False).")


class RootHandler(ApiHandler):
    """GET /: the playground when it is on, else what this server serves."""

    def get(self):
        if self.services.settings.playground:
            self.redirect("/playground")
            return
        if "application/json" in self.request.headers.get("Accept", ""):
            self.reply({"name": "Syarah Chat", "endpoints": [
                {"name": name, "path": path, "description": text}
                for name, path, text in ENDPOINTS]})
            return
        rows = "\n".join(
            f'<li><a href="{html.escape(path)}">{html.escape(path)}</a> '
            f"({html.escape(name)}): {html.escape(text)}</li>"
            for name, path, text in ENDPOINTS)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Syarah Chat</title></head>
<body><h1>Syarah Chat</h1>
<p>A real-time chat server. It serves:</p>
<ul>
{rows}
</ul>
<p>The playground (a web client to try it) is off; turn it on with
<code>playground = True</code> (conf/development.conf has it).</p>
</body></html>
""")


class PageHandler(_PlaygroundOnly, ApiHandler):
    def get(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        with open(os.path.join(STATIC, "index.html"), "rb") as f:
            self.finish(f.read())


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


class TokenHandler(_PlaygroundOnly, ApiHandler):
    """POST /playground/token {userId, name}: a development token for that user."""

    def post(self):
        settings = self.services.settings
        if not settings.jwt_secret or "HS256" not in settings.algorithms:
            raise Forbidden("The playground signs tokens with HS256: set jwt_secret and "
                            "keep HS256 in jwt_algorithms.")
        # A minted token acts as anybody: only for someone at this machine, even when a
        # development server listens on every address.
        if not _is_loopback(self.request.remote_ip):
            raise Forbidden("The playground mints tokens only for browsers on this "
                            "machine (http://localhost).")
        body = decode(TokenRequest, self.json_body())
        user_id = body.user_id or str(uuid.uuid4())
        token = auth.mint(settings.jwt_secret, user_id, body.name, hours=TOKEN_HOURS,
                          issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        self.reply({"accessToken": token, "userId": user_id, "name": body.name})


class FileHandler(_PlaygroundOnly, tornado.web.StaticFileHandler):
    def initialize(self, path, services):
        super().initialize(path)
        self.services = services

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        if (self.services.settings.playground and status_code == 404
                and self.request.path.startswith("/playground/vendor/")):
            message = ("socket.io-client is not installed: run bin/setup-env, which "
                       "needs npm (apt-get install npm).")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"success": False, "data": None, "message": message}))


def routes(services) -> list:
    s = {"services": services}
    if services.settings.playground:
        log.warning("the playground is on at /playground: anyone who reaches this "
                    "server can mint a token for any user (development only)")
        if not os.path.isfile(os.path.join(VENDOR, "socket.io.min.js")):
            log.warning("the playground needs socket.io-client: run bin/setup-env "
                        "(it needs npm)")
    return [
        (r"/playground", PageHandler, s),
        (r"/playground/token", TokenHandler, s),
        (r"/playground/static/(playground\.js|playground\.css)", FileHandler,
         {"path": STATIC, "services": services}),
        (r"/playground/vendor/(socket\.io\.min\.js(?:\.map)?)", FileHandler,
         {"path": VENDOR, "services": services}),
    ]
