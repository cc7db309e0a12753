"""The REST envelope {success, data, message}, Bearer authentication, CORS, and the
one place where a ChatError becomes an HTTP reply."""

from __future__ import annotations

import functools
import json
import logging
import math
import sys

import tornado.web

from syarah.auth import strip_bearer
from syarah.errors import ChatError, PayloadTooLarge, Unauthorized, Validation
from syarah.handlers.context import Context, Services
from syarah.protocol.outbound import to_wire

log = logging.getLogger("syarah.http")

MAX_JSON_BODY = 256 * 1024


def as_chat_error(exc: BaseException | None, status_code: int, reason: str) -> ChatError:
    """Whatever ended a request, as the ChatError its answer shows: a ChatError as it
    is, Tornado's own (a bad method, a missing file) with its status and message,
    anything else without its details."""
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
        error = ChatError(exc.log_message)
    else:
        error = ChatError(reason if status_code < 500 else None)
    error.status = status_code
    return error


def render_error(handler: tornado.web.RequestHandler, error: ChatError) -> None:
    """Answer the request with ``error`` in the REST envelope {success: false, data:
    null, message}: the one place where an error becomes an HTTP reply."""
    handler.set_status(error.status)
    handler.set_header("Content-Type", "application/json; charset=utf-8")
    if getattr(error, "retry_after", None):
        handler.set_header("Retry-After", str(math.ceil(error.retry_after)))
    handler.finish(json.dumps({"success": False, "data": None, "message": error.message}))


class ApiHandler(tornado.web.RequestHandler):
    services: Services

    def initialize(self, services: Services):
        self.services = services
        # Tornado sets default headers before initialize(); now CORS can be known.
        self.set_default_headers()

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        services = getattr(self, "services", None)
        if services is None:
            return
        origins = services.settings.origins
        origin = self.request.headers.get("Origin")
        if origin and (origins == "*" or origin in origins):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
            self.set_header("Access-Control-Allow-Headers",
                            "Authorization, Content-Type, X-Service-Key")
            self.set_header("Access-Control-Allow-Methods",
                            "GET, POST, PUT, DELETE, OPTIONS")

    def options(self, *args):
        self.set_status(204)
        self.finish()

    def reply(self, data, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps({"success": True, "data": to_wire(data), "message": None}))

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        render_error(self, as_chat_error(exc, status_code, self._reason))

    def _handle_request_exception(self, e):
        if isinstance(e, ChatError):
            if self._finished:
                return
            # The server's own trouble (UNAVAILABLE, INTERNAL) at warning, the client's at debug.
            (log.warning if e.status >= 500 else log.debug)(
                "%s %s: %s %s", self.request.method, self.request.path, e.code, e.message)
            self.send_error(e.status, exc_info=sys.exc_info())
            return
        super()._handle_request_exception(e)

    def bearer(self) -> str:
        token = strip_bearer(self.request.headers.get("Authorization"))
        if not token:
            raise Unauthorized("Send the access token as Authorization: Bearer <token>.")
        return token

    async def context(self) -> Context:
        identity = self.services.verifier.verify(self.bearer())
        user = await self.services.users.ensure(identity.user, identity.issued_at)
        return Context(self.services, user)

    def json_body(self) -> dict:
        body = self.request.body
        if len(body) > MAX_JSON_BODY:
            raise PayloadTooLarge("The request body is too large.")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise Validation("The request body must be JSON.")
        if not isinstance(data, dict):
            raise Validation("The request body must be a JSON object.")
        return data


def rate_limited(action: str):
    """Spend one of the caller's ``action`` tokens (syarah.ratelimit) before the
    handler method runs; over the limit the request answers 429 with Retry-After."""
    def decorate(method):
        @functools.wraps(method)
        async def limited(self: ApiHandler, *args):
            limits = self.services.limits
            if limits is not None:
                user_id = self.services.verifier.verify(self.bearer()).user.id
                shared = limits.shared
                await limits.check_user(action, user_id, here=shared is None
                                        or shared.holds(user_id))
            return await method(self, *args)
        return limited
    return decorate
