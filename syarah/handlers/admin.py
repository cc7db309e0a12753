"""What the main backend tells the chat about its users (the admin API)."""

from __future__ import annotations

from syarah.handlers.context import Services
from syarah.protocol import inbound as dto
from syarah.protocol.outbound import UserRef
from syarah.types import User


async def upsert_user(services: Services, user_id: str, e: dto.AdminUser) -> UserRef:
    """Create or update a user's name and avatar; later events show them at once.
    The caller is the main backend, not a user: authorising it is the transport's."""
    user = User(user_id, e.name, e.avatar)
    await services.store.upsert_user(user, services.clock.now_ms())
    services.users.renamed(user)
    return UserRef(user.id, user.name, user.avatar)
