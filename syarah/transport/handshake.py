"""What a Socket.IO connection request says about its client: the user it claims,
its client type, its token, its address."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from syarah.protocol.fields import Guid
from syarah.transport import compat


@dataclass(frozen=True)
class Handshake:
    user_id: str | None
    client_type: str
    token: str | None
    address: str | None


def _first(query: dict, *names: str) -> str | None:
    for name in names:
        values = query.get(name)
        if values and values[0]:
            return values[0]
    return None


def connection_token(environ: dict, auth, query: dict | None = None) -> str | None:
    """The token a client sent with its connection, wherever it put it: auth
    {accessToken} (or token, AccessToken), the query, or an Authorization header."""
    if isinstance(auth, dict):
        for key in ("accessToken", "token", "AccessToken"):
            if isinstance(auth.get(key), str) and auth[key]:
                return auth[key]
    if query is None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
    token = _first(query, "accessToken", "AccessToken")
    if token:
        return token
    header = environ.get("HTTP_AUTHORIZATION", "")
    return header or None


def remote_address(environ: dict) -> str | None:
    # python-engineio's Tornado driver puts a fixed 127.0.0.1 in REMOTE_ADDR; the
    # request itself knows the peer (or, with xheaders, the proxy's X-Real-Ip).
    request = compat.tornado_request(environ)
    if request is not None:
        return request.remote_ip
    return environ.get("REMOTE_ADDR")


def read(environ: dict, auth) -> Handshake:
    """Raises Validation for a userId that is no GUID."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    raw_user = _first(query, "userId", "UserId")
    return Handshake(
        user_id=Guid().parse(raw_user, "userId") if raw_user else None,
        # Only echoed in clientStatus: an odd value is trimmed rather than refused.
        client_type=(_first(query, "clientType") or "unknown").replace("\x00", "")[:40],
        token=connection_token(environ, auth, query),
        address=remote_address(environ))
