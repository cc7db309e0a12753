"""The sockets this node holds: what each has proven, how long that proof lasts, and
the caps on how many one user or one address may open. State only, no I/O: the
namespace (syarah.transport.namespace) does the connecting, proving, expiring and
closing, and keeps this in step at each of those steps only.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from syarah.auth import Identity
from syarah.clock import SYSTEM, Clock


@dataclass(eq=False, slots=True)
class SocketState:
    """One connected socket: whom it claims to be and what it has proven."""

    sid: str
    user_id: str
    client_type: str
    # The client's address as Tornado sees it (the proxy's X-Real-Ip with xheaders).
    address: str | None = None
    # The token the connection itself carried, if any.
    connect_identity: Identity | None = None
    # The latest token an event brought (it wins over the connection's while valid).
    event_identity: Identity | None = None
    # In the user's personal room and counted for presence: only once a token has
    # proven the socket is that user's (a bare userId proves nothing).
    proven: bool = False
    # When the last proof it holds runs out, leeway included (None: nothing proven).
    expires_at: float | None = None
    # The chats whose rooms it is in on this node: the one record of it that the room
    # cap, roomTyping and group removal all read.
    joined: set[int] = field(default_factory=set)
    # Gone: released from the registry and presence, whoever noticed first.
    closed: bool = False
    # Its recovery session's id, given in the CONNECT reply (None: recovery off), and
    # whether the session has been written (once it joined a room).
    pid: str | None = None
    saved: bool = False

    def identities(self) -> list[Identity]:
        return [i for i in (self.event_identity, self.connect_identity) if i is not None]


class SocketRegistry:
    def __init__(self, leeway: float, clock: Clock = SYSTEM):
        self.leeway = leeway
        self.clock = clock
        self.sockets: dict[str, SocketState] = {}
        # user id -> how many of the user's sockets this node holds
        self.user_sockets: dict[str, int] = {}
        self.proven_sockets: dict[str, int] = {}
        self.tokenless_sockets: dict[str, int] = {}
        # (when, sid): the next proof to run out first
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self.sockets)

    def get(self, sid: str) -> SocketState | None:
        return self.sockets.get(sid)

    # -- caps ---------------------------------------------------------------------

    def _cap_count(self, socket: SocketState) -> tuple[dict, str]:
        # A token-proven connection counts against its user; a tokenless one only
        # claims a userId, so it counts against its address (else anyone could use up
        # another user's sockets by naming them).
        if socket.connect_identity is not None:
            return self.proven_sockets, socket.user_id
        return self.tokenless_sockets, socket.address or "?"

    def over_cap(self, socket: SocketState, per_user: int, per_address: int,
                 elsewhere: int = 0) -> str | None:
        """The refusal when the socket would pass its cap; ``elsewhere``: the user's
        sockets on the other nodes of the deployment."""
        counts, key = self._cap_count(socket)
        cap = per_user if counts is self.proven_sockets else per_address
        if cap > 0 and counts.get(key, 0) + elsewhere >= cap:
            return self.cap_refusal(socket, per_user, per_address)
        return None

    def cap_refusal(self, socket: SocketState, per_user: int, per_address: int) -> str:
        """What a socket over its cap is told."""
        if self._cap_count(socket)[0] is self.proven_sockets:
            return f"You have {per_user} connections open, the most allowed; close one first."
        return (f"{per_address} connections without an access token are open from your "
                "address; connect with auth: {accessToken}.")

    # -- lifecycle ----------------------------------------------------------------

    def add(self, socket: SocketState) -> None:
        self.sockets[socket.sid] = socket
        _bump(self.user_sockets, socket.user_id, +1)
        _bump(*self._cap_count(socket), +1)
        if socket.connect_identity is not None:
            self.note_proof(socket, socket.connect_identity)

    def remove(self, sid: str) -> SocketState | None:
        socket = self.sockets.pop(sid, None)
        if socket is not None:
            _bump(self.user_sockets, socket.user_id, -1)
            _bump(*self._cap_count(socket), -1)
        return socket

    def note_proof(self, socket: SocketState, identity: Identity) -> None:
        """A token proved the socket: it now rests on whichever of its proofs lasts
        longest."""
        until = identity.expires_at + self.leeway
        if socket.expires_at is None or until > socket.expires_at:
            socket.expires_at = until
            heapq.heappush(self._expiry, (until, socket.sid))

    def current_identity(self, socket: SocketState) -> Identity | None:
        """The latest token an event brought, else the connection's own, while it is
        unexpired (leeway included)."""
        now = self.clock.time()
        for identity in socket.identities():
            if identity.expires_at + self.leeway >= now:
                return identity
        return None

    def is_expired(self, socket: SocketState) -> bool:
        """The proof the socket rests on has run out: its personal room, its presence
        and its caller rest on it."""
        return socket.expires_at is not None and socket.expires_at < self.clock.time()

    def expired(self) -> list[SocketState]:
        """Sockets whose proofs have all run out, each returned once."""
        now = self.clock.time()
        due = []
        while self._expiry and self._expiry[0][0] < now:
            until, sid = heapq.heappop(self._expiry)
            socket = self.sockets.get(sid)
            # An entry is stale when a later proof extended the socket's life.
            if socket is not None and socket.expires_at == until:
                due.append(socket)
        return due

    def next_expiry(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None


def _bump(counts: dict, key, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
