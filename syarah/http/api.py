"""REST endpoints beyond uploads: chats, friendships, groups, admin, health."""

from __future__ import annotations

import hmac

from syarah.errors import Forbidden, NotFound, Unauthorized
from syarah.handlers import chats, friendships
from syarah.clock import now_ms
from syarah.http.base import ApiHandler, rate_limited
from syarah.protocol import inbound as dto
from syarah.protocol.fields import Guid, Id, decode
from syarah.types import User


def _guid(value: str, name: str) -> str:
    return Guid().parse(value, name)


def _id(value: str) -> int:
    return Id().parse(value, "id")


class ChatHeaderHandler(ApiHandler):
    """GET /api/chat/getChatHeaderAsync?user1Id=&user2Id="""

    @rate_limited("joinRoom")   # gets or creates a chat, as joinRoom does
    async def get(self):
        ctx = await self.context()
        user1 = _guid(self.get_query_argument("user1Id", ""), "user1Id")
        user2 = _guid(self.get_query_argument("user2Id", ""), "user2Id")
        self.reply(await chats.get_chat_header(ctx, user1, user2))


class FriendshipsHandler(ApiHandler):
    @rate_limited("getMyFriendships")
    async def get(self):
        self.reply(await friendships.list_friendships(await self.context()))

    @rate_limited("friendRequest")
    async def post(self):
        ctx = await self.context()
        body = decode(dto.FriendRequest, self.json_body())
        self.reply(await friendships.change_friendship(ctx, body.user_id, "request"))


class FriendshipHandler(ApiHandler):
    """DELETE /api/friendships/{userId}"""

    @rate_limited("friendshipChange")
    async def delete(self, user_id):
        ctx = await self.context()
        self.reply(await friendships.change_friendship(ctx, _guid(user_id, "userId"), "delete"))


class FriendshipActionHandler(ApiHandler):
    """POST /api/friendships/{userId}/accept|reject|block|unblock"""

    @rate_limited("friendshipChange")
    async def post(self, user_id, action):
        ctx = await self.context()
        self.reply(await friendships.change_friendship(ctx, _guid(user_id, "userId"), action))


class GroupsHandler(ApiHandler):
    @rate_limited("groupCreate")
    async def post(self):
        ctx = await self.context()
        self.reply(await chats.create_group(ctx, decode(dto.CreateGroup, self.json_body())),
                   status=201)


class GroupMembersHandler(ApiHandler):
    @rate_limited("groupMembers")
    async def post(self, chat_id):
        ctx = await self.context()
        body = decode(dto.AddGroupMembers, self.json_body())
        self.reply(await chats.add_group_members(ctx, _id(chat_id), body))

    @rate_limited("groupMembers")
    async def delete(self, chat_id, user_id):
        ctx = await self.context()
        self.reply(await chats.remove_group_member(ctx, _id(chat_id), _guid(user_id, "userId")))


class AdminUserHandler(ApiHandler):
    """PUT /api/admin/users/{id}: the main backend keeps names and avatars current."""

    async def put(self, user_id):
        key = self.services.settings.service_key
        if not key:
            raise Forbidden("The admin API is off: no service_key is configured.")
        given = self.request.headers.get("X-Service-Key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise Unauthorized("A valid X-Service-Key header is required.")
        user_id = _guid(user_id, "id")
        body = decode(dto.AdminUser, self.json_body())
        user = User(user_id, body.name, body.avatar)
        await self.services.store.upsert_user(user, now_ms())
        self.services.users.renamed(user)
        self.reply({"id": user.id, "name": user.name, "avatar": user.avatar})


class DevicesHandler(ApiHandler):
    """POST /api/chat/devices {token, platform}; DELETE /api/chat/devices/{token}:
    the caller's devices for push (CONTRACT §5). Registered even with push off, so
    that turning it on later finds the devices already known."""

    @rate_limited("device")
    async def post(self):
        ctx = await self.context()
        body = decode(dto.RegisterDevice, self.json_body())
        platform = body.platform.strip().lower()
        await self.services.store.register_device(body.token, ctx.user.id, platform,
                                                  now_ms())
        self.reply({"token": body.token, "platform": platform})

    @rate_limited("device")
    async def delete(self, token):
        ctx = await self.context()
        if not await self.services.store.unregister_device(token, ctx.user.id):
            raise NotFound("That device token is not registered to you.")
        self.reply({"token": token, "removed": True})


class HealthHandler(ApiHandler):
    async def get(self):
        self.reply({"status": "up"})


class ReadyHandler(ApiHandler):
    async def get(self):
        if await self.services.store.ping():
            self.reply({"status": "ready"})
        else:
            self.set_status(503)
            self.finish('{"success": false, "data": null, '
                        '"message": "The chat store is unreachable."}')


class NotFoundHandler(ApiHandler):
    async def prepare(self):
        raise NotFound(f"No endpoint at {self.request.path}.")
