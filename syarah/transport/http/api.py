"""REST endpoints beyond uploads: chats, friendships, groups, admin, health."""

from __future__ import annotations

import hmac

from syarah.errors import Forbidden, NotFound, Unauthorized, Unavailable
from syarah.handlers import admin, chats, devices, friendships
from syarah.transport.http.base import ApiHandler, rate_limited, render_error
from syarah.protocol import inbound as dto
from syarah.protocol.fields import Guid, Id, decode


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
        body = decode(dto.AdminUser, self.json_body())
        self.reply(await admin.upsert_user(self.services, _guid(user_id, "id"), body))


class DevicesHandler(ApiHandler):
    """POST /api/chat/devices {token, platform}; DELETE /api/chat/devices/{token}:
    the caller's devices for push."""

    @rate_limited("device")
    async def post(self):
        ctx = await self.context()
        self.reply(await devices.register_device(
            ctx, decode(dto.RegisterDevice, self.json_body())))

    @rate_limited("device")
    async def delete(self, token):
        self.reply(await devices.unregister_device(await self.context(), token))


class HealthHandler(ApiHandler):
    async def get(self):
        self.reply({"status": "up"})


class ReadyHandler(ApiHandler):
    async def get(self):
        if await self.services.store.ping():
            self.reply({"status": "ready"})
        else:
            # Answered, not raised: a probe of a store that is down is no event to log.
            render_error(self, Unavailable("The chat store is unreachable."))


class NotFoundHandler(ApiHandler):
    async def prepare(self):
        raise NotFound(f"No endpoint at {self.request.path}.")
