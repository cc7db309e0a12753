"""Socket.IO plumbing tuned for the message path; no chat logic here.

python-socketio's AsyncManager.emit wraps the send to every member of a room in its
own asyncio task and waits for them all. Without a callback the send only puts the
encoded packet on each socket's unbounded queue, which never waits, so doing it in
line gives the same result without two tasks per two-member room per message.
"""

from __future__ import annotations

import socketio
from engineio import packet as eio_packet
from socketio import packet


class DirectEmit:
    """Mixin for a python-socketio async manager: room emits without a task each."""

    async def emit(self, event, data, namespace, room=None, skip_sid=None,
                   callback=None, to=None, ignore_queue=False, **kwargs):
        # ignore_queue only matters to the pub/sub managers.
        if callback is not None or kwargs:
            return await super().emit(event, data, namespace, room=room,
                                      skip_sid=skip_sid, callback=callback, to=to,
                                      **kwargs)
        room = to or room
        if namespace not in self.rooms:
            return
        if isinstance(data, tuple):
            data = list(data)
        elif data is not None:
            data = [data]
        else:
            data = []
        if not isinstance(skip_sid, list):
            skip_sid = [skip_sid]
        encoded = self.server.packet_class(
            packet.EVENT, namespace=namespace, data=[event] + data).encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        eio_pkts = [eio_packet.Packet(eio_packet.MESSAGE, p) for p in encoded]
        for sid, eio_sid in list(self.get_participants(namespace, room)):
            if sid not in skip_sid:
                for p in eio_pkts:
                    try:
                        await self.server._send_eio_packet(eio_sid, p)
                    except Exception:
                        # A socket closing under us must not keep the others from
                        # their copy (as with the library's one task per member).
                        break


class LocalManager(DirectEmit, socketio.AsyncManager):
    """The in-process manager (one node). Not for the pub/sub managers: their emit
    must publish first, so DirectEmit would have to sit below them in the MRO."""
