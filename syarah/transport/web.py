"""The Tornado application: one URL table for Socket.IO, REST and uploads."""

from __future__ import annotations

import re

import tornado.web

from syarah import docs, paths, playground
from syarah.transport.http import api, uploads
from syarah.transport import compat


_POLLING = re.compile(r"(^|&)transport=polling(?=&|$)")


def as_websocket_query(query: str) -> str:
    """A WebSocket request's query, naming the transport it really uses.

    Flutter's socket_io_client on Android and iOS only has a WebSocket transport, yet
    its query names the first entry of its transports list, polling by default.
    python-engineio would answer such a request as a long poll, which a WebSocket
    never delivers: the client saw a 101 and then silence."""
    return _POLLING.sub(r"\1transport=websocket", query)


def socketio_handler(sio, settings):
    # tests/test_flutter_transport.py fails loudly if the library stops reading the
    # query from request.query.
    return compat.tornado_handler(
        sio, settings.websocket_compression, as_websocket_query,
        write_buffer_limit=int(settings.websocket_write_buffer_mb * 1024 * 1024) or None)


def make_app(services, sio, extra_routes=()) -> tornado.web.Application:
    s = {"services": services}
    routes = [
        (r"/socket.io/", socketio_handler(sio, services.settings)),
        (r"/api/chat/getChatHeaderAsync", api.ChatHeaderHandler, s),
        (r"/api/friendships", api.FriendshipsHandler, s),
        (r"/api/friendships/([^/]+)", api.FriendshipHandler, s),
        (r"/api/friendships/([^/]+)/(accept|reject|block|unblock)",
         api.FriendshipActionHandler, s),
        (r"/api/chat/groups", api.GroupsHandler, s),
        (r"/api/chat/groups/([0-9]+)/members", api.GroupMembersHandler, s),
        (r"/api/chat/groups/([0-9]+)/members/([^/]+)", api.GroupMembersHandler, s),
        (r"/api/admin/users/([^/]+)", api.AdminUserHandler, s),
        (r"/api/chat/devices", api.DevicesHandler, s),
        (r"/api/chat/devices/([^/]+)", api.DevicesHandler, s),
        (r"/api/chat/uploadFile", uploads.UploadFileHandler, s),
        (r"/uploads/(.*)", uploads.UploadedFileHandler,
         {"path": paths.resolve(services.settings.upload_dir), "services": services}),
        (r"/healthz", api.HealthHandler, s),
        (r"/readyz", api.ReadyHandler, s),
        (r"/api/docs/(asyncapi|openapi)\.yaml", docs.DocsHandler, s),
        (r"/", playground.RootHandler, s),
        *playground.routes(services),
        *extra_routes,
    ]
    return tornado.web.Application(
        routes, default_handler_class=api.NotFoundHandler, default_handler_args=s,
        xheaders=services.settings.xheaders, websocket_ping_interval=None)
