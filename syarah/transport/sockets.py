"""The Socket.IO server: its construction, room emits tuned for the message path, and
the reading of packets that clients could not have meant; no chat logic here.

python-socketio's AsyncManager.emit wraps the send to every member of a room in its
own asyncio task and waits for them all. Without a callback the send only puts the
encoded packet on each socket's unbounded queue, which never waits, so doing it in
line gives the same result without two tasks per two-member room per message.
"""

from __future__ import annotations

import json
import logging

import socketio
from engineio import packet as eio_packet
from socketio import packet

from syarah import jsonlib
from syarah.transport import compat

log = logging.getLogger("syarah.sockets")


class DirectEmit:
    """Mixin for a python-socketio async manager: room emits without a task each."""

    async def emit(self, event, data, namespace, room=None, skip_sid=None,
                   callback=None, to=None, ignore_queue=False, **kwargs):
        # ignore_queue only matters to the pub/sub managers.
        if callback is not None or kwargs:
            return await super().emit(event, data, namespace, room=room,
                                      skip_sid=skip_sid, callback=callback, to=to,
                                      **kwargs)
        if namespace not in self.rooms:
            return
        await self.deliver(namespace, to or room, skip_sid,
                           self.eio_packets(self.encode_event(event, data, namespace)))

    def encode_event(self, event, data, namespace) -> list:
        """The Socket.IO EVENT packet of an emit, encoded: its text, then any binary
        attachments."""
        if isinstance(data, tuple):
            data = list(data)
        elif data is not None:
            data = [data]
        else:
            data = []
        encoded = self.server.packet_class(
            packet.EVENT, namespace=namespace, data=[event] + data).encode()
        return encoded if isinstance(encoded, list) else [encoded]

    @staticmethod
    def eio_packets(encoded: list) -> list:
        return [eio_packet.Packet(eio_packet.MESSAGE, p) for p in encoded]

    async def deliver(self, namespace, room, skip_sid, eio_pkts, besides=()):
        """Put the packets on the queue of each of this node's sockets in ``room`` (a
        name, a list of names, or None for the whole namespace), but those in
        ``skip_sid`` and those in any of the rooms ``besides``."""
        if not isinstance(skip_sid, list):
            skip_sid = [skip_sid]
        if besides:
            ns = self.rooms.get(namespace, {})
            skip_sid = skip_sid + [sid for r in besides for sid in ns.get(r, ())]
        for sid, eio_sid in list(self.get_participants(namespace, room)):
            if sid not in skip_sid:
                for p in eio_pkts:
                    try:
                        await compat.send_eio_packet(self.server, eio_sid, p)
                    except Exception:
                        # A socket closing under us must not keep the others from
                        # their copy (as with the library's one task per member).
                        break


class LocalManager(DirectEmit, socketio.AsyncManager):
    """The in-process manager (one node). Several nodes use RoomChannels
    (syarah/transport/channels.py), which delivers with DirectEmit's ``deliver`` and
    publishes beside it; python-socketio's own pub/sub manager would need DirectEmit
    below it in the MRO, so the one-channel manager keeps the library's emit."""


class UnreadablePayload:
    """Stands in for an event's arguments that could not be decoded, so that the
    event is still answered (with VALIDATION) rather than dropped."""

    def __init__(self, reason: str):
        self.reason = reason


TOO_DEEP = ("The payload nests arrays or objects too deeply to be read; no event "
            "needs more than a few levels.")


class EventPacket(packet.Packet):
    """A Socket.IO packet whose event survives arguments nested too deeply to decode:
    the packet type, ack id and event name come before them, so the client can be
    answered."""

    # Nothing the server sends holds bytes (files go over HTTP), so a packet is not
    # searched for them: the search walks every value of a reply, 6 ms for a
    # getMyChats of 1,000 chats. Binary packets from clients still decode.
    uses_binary_events = False

    def decode(self, encoded_packet):
        try:
            attachments = super().decode(encoded_packet)
        except jsonlib.TooDeep as exc:
            name = _event_name(exc.doc) if self.packet_type == packet.EVENT else None
            if name is None:
                raise
            self.data = [name, UnreadablePayload(TOO_DEEP)]
            return 0
        if self.packet_type in (packet.EVENT, packet.BINARY_EVENT) and not (
                isinstance(self.data, list) and self.data
                and isinstance(self.data[0], str)):
            # python-socketio would index it as such and fail with a traceback.
            raise ValueError("an event packet is an array that opens with the event name")
        return attachments


def _event_name(doc: str) -> str | None:
    """The event name that opens the JSON array ``doc``, read without the rest."""
    head = doc.lstrip()
    if not head.startswith("["):
        return None
    start = len(doc) - len(head) + 1
    while start < len(doc) and doc[start] in " \t\r\n":
        start += 1
    if doc[start:start + 1] != '"':
        return None
    try:
        name, end = _NAME_DECODER.raw_decode(doc, start)
    except ValueError:
        return None
    return name if doc[end:].lstrip()[:1] in (",", "]") else None


_NAME_DECODER = json.JSONDecoder()


class ChatServer(compat.AckAware, compat.DecodeGuard, compat.ConnectReply,
                 socketio.AsyncServer):
    """python-socketio's server, reading packets with EventPacket."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("serializer", EventPacket)
        super().__init__(*args, **kwargs)


# python-engineio decodes at most 16 packets from one polling request and drops the
# whole request beyond that; socket.io-client batches every event queued while a poll
# was out (a burst of sends, or what was emitted before connecting) into one request.
POLLING_PACKETS_PER_REQUEST = 1000


def make_socketio(settings, client_manager=None) -> ChatServer:
    compat.set_max_decode_packets(POLLING_PACKETS_PER_REQUEST)
    sio = ChatServer(
        async_mode="tornado",
        # The Redis manager for a deployment of several nodes; else the in-process one.
        client_manager=client_manager or LocalManager(),
        # Events of one socket run one after another, in the order it sent them, so
        # its messages are stored and delivered in that order; sockets still run
        # concurrently with each other.
        async_handlers=False,
        cors_allowed_origins=settings.origins,
        # Clients authenticate with tokens, never cookies: browsers need not send
        # credentials cross-site, so even the '*' default lends no ambient authority.
        cors_credentials=False,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_http_buffer_size=settings.max_http_buffer_size,
        # Logger objects rather than booleans: with a boolean python-socketio may add
        # a handler of its own, which would bypass the redacting one (syarah.logs).
        logger=logging.getLogger("socketio.server"),
        engineio_logger=logging.getLogger("engineio.server"),
        # Measured in bench/: orjson and task-free room emits cut the CPU per message.
        json=jsonlib)
    # Measured in bench/ too: WebSocket frames written without a task each.
    compat.direct_frames(sio)
    return sio
