"""Socket connect and disconnect: identity, the personal room, presence broadcasts."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from syarah.errors import ChatError, Unauthorized, Validation
from syarah.handlers.context import Services, SocketState, prove
from syarah.protocol.fields import Guid
from syarah.protocol.outbound import ClientStatus

log = logging.getLogger(__name__)


def _first(query: dict, *names: str) -> str | None:
    for name in names:
        values = query.get(name)
        if values and values[0]:
            return values[0]
    return None


def connection_token(environ: dict, auth) -> str | None:
    """The token a client sent with its connection, wherever it put it (CONTRACT §1)."""
    if isinstance(auth, dict):
        for key in ("accessToken", "token", "AccessToken"):
            if isinstance(auth.get(key), str) and auth[key]:
                return auth[key]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    token = _first(query, "accessToken", "AccessToken")
    if token:
        return token
    header = environ.get("HTTP_AUTHORIZATION", "")
    return header or None


async def open_socket(services: Services, sid: str, environ: dict, auth) -> SocketState:
    """Decide whether a connection is accepted. Raises ChatError to refuse it."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    raw_user = _first(query, "userId", "UserId")
    user_id = Guid().parse(raw_user, "userId") if raw_user else None
    # Only echoed in clientStatus: an odd value is trimmed rather than refused.
    client_type = (_first(query, "clientType") or "unknown").replace("\x00", "")[:40]
    token = connection_token(environ, auth)
    identity = None
    if token:
        identity = services.verifier.verify(token)
        if user_id is not None and identity.user.id != user_id:
            raise Unauthorized("The access token belongs to another user than userId.")
        user_id = identity.user.id
        await services.users.ensure(identity.user, identity.issued_at)
    elif services.settings.require_connect_token:
        raise Unauthorized("This server requires an access token to connect: "
                           "pass auth: {accessToken}.")
    if user_id is None:
        raise Validation("The userId query parameter is required.")
    socket = SocketState(sid=sid, user_id=user_id, client_type=client_type,
                         identity=identity, connect_identity=identity)
    if identity is not None:
        await prove(services, socket)
    # A tokenless socket still counts for presence (CONTRACT §1: seed-compatible), but
    # hears nothing addressed to the user until a token proves it is theirs.
    if await services.presence.add_socket(user_id, sid):
        await announce(services, socket, True)
    return socket


async def close_socket(services: Services, socket: SocketState) -> None:
    if await services.presence.remove_socket(socket.user_id, socket.sid):
        await announce(services, socket, False)


async def announce(services: Services, socket: SocketState, active: bool) -> None:
    """clientStatus to the user's friends and chat partners only (CONTRACT §1)."""
    store = services.store
    try:
        partners = await store.presence_audience(socket.user_id)
    except ChatError as exc:
        log.warning("presence of %s not announced: %s", socket.user_id, exc.message)
        return
    partners.discard(socket.user_id)
    if partners:
        await services.rooms.to_users(
            partners, "clientStatus", ClientStatus(socket.user_id, socket.client_type, active))


async def announce_gone(services: Services, user_ids) -> None:
    """The node that held these users' sockets crashed: their partners hear that they
    went, as from their last disconnect (which device it was died with the node)."""
    for user_id in user_ids:
        await announce(services, SocketState(sid="", user_id=user_id,
                                             client_type="unknown"), False)
