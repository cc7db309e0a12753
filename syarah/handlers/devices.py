"""The caller's devices for push notifications (REST: /api/chat/devices)."""

from __future__ import annotations

from syarah.errors import NotFound
from syarah.handlers.context import Context
from syarah.protocol import inbound as dto
from syarah.protocol.outbound import Device, DeviceRemoved


async def register_device(ctx: Context, e: dto.RegisterDevice) -> Device:
    """Devices are registered even with push off, so that turning it on later finds
    them already known. A token another user registered moves to the caller."""
    platform = e.platform.strip().lower()
    await ctx.services.store.register_device(e.token, ctx.user.id, platform, ctx.clock.now_ms())
    return Device(e.token, platform)


async def unregister_device(ctx: Context, token: str) -> DeviceRemoved:
    if not await ctx.services.store.unregister_device(token, ctx.user.id):
        raise NotFound("That device token is not registered to you.")
    return DeviceRemoved(token)
