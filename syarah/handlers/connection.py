"""A user's sockets coming and going: presence, and who hears of it."""

from __future__ import annotations

import logging

from syarah.errors import ChatError
from syarah.handlers.context import Services
from syarah.protocol.outbound import ClientStatus

log = logging.getLogger(__name__)


async def socket_proven(services: Services, user_id: str, sid: str,
                        client_type: str) -> None:
    """A token proved that ``sid`` is ``user_id``'s: from now on it counts for
    presence; the user's first such socket makes them online."""
    if await services.presence.add_socket(user_id, sid):
        await announce(services, user_id, client_type, True)


async def proven_socket_gone(services: Services, user_id: str, sid: str,
                             client_type: str) -> None:
    if await services.presence.remove_socket(user_id, sid):
        await announce(services, user_id, client_type, False)


async def announce(services: Services, user_id: str, client_type: str,
                   active: bool) -> None:
    """clientStatus to the people who know the user: accepted friends, and partners
    of a one-to-one chat in which the user has written; never a blocked pair."""
    try:
        audience = await services.store.presence_audience(user_id)
    except ChatError as exc:
        log.warning("presence of %s not announced: %s", user_id, exc.message)
        return
    audience.discard(user_id)
    if audience:
        await services.rooms.to_users(
            audience, "clientStatus", ClientStatus(user_id, client_type, active))


async def announce_gone(services: Services, user_ids) -> None:
    """The node that held these users' sockets crashed: the people who know them hear
    that they went, as from their last disconnect (which device it was died with the
    node)."""
    for user_id in user_ids:
        await announce(services, user_id, "unknown", False)
