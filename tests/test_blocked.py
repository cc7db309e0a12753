"""A blocked pair: no way around the block through a group, and no presence either way
in any read."""

from conftest import dm
from helpers import befriend, block, group, people


def refused(reply, status=403):
    code, body = reply
    assert code == status, body
    assert body["success"] is False and body["data"] is None, body
    assert isinstance(body["message"], str) and body["message"], body


async def test_a_blocked_pair_cannot_put_each_other_in_a_group(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    block(ann, bob)
    # Neither side of the block may bring the other in, at creation or later.
    refused(bob.http("POST", "/api/chat/groups", {"name": "G", "memberIds": [ann.id]}))
    refused(ann.http("POST", "/api/chat/groups",
                     {"name": "G", "memberIds": [cat.id, bob.id]}))
    gid = group(bob, "Mine", cat)
    refused(bob.http("POST", f"/api/chat/groups/{gid}/members", {"userIds": [ann.id]}))
    refused(bob.http("POST", f"/api/chat/groups/{gid}/members",
                     {"userIds": [cat.id, ann.id]}))
    # Nothing was half written: no group with Ann in it, no member added.
    a = await clients(ann)
    headers = await a.call("findAllChatHeaders", {})
    assert [h for h in headers["items"] if h["isGroup"]] == []
    b = await clients(bob)
    (mine,) = [h for h in (await b.call("findAllChatHeaders", {}))["items"] if h["isGroup"]]
    assert sorted(m["userId"] for m in mine["members"]) == sorted([bob.id, cat.id])
    # Somebody blocked by neither may still have both in one group.
    assert group(cat, "Both", ann, bob)


def online_of(members, user) -> bool:
    (found,) = [m["isOnline"] for m in members if m["userId"] == user.id]
    return found


async def test_a_blocked_pair_sees_each_other_offline_in_every_read(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    befriend(ann, cat)
    befriend(bob, cat)
    a, b, c = await clients(ann), await clients(bob), await clients(cat)
    dm_id = await dm(b, ann)
    await dm(b, cat)
    gid = group(cat, "Both", ann, bob)
    block(ann, bob)
    for viewer, me, other in ((b, bob, ann), (a, ann, bob)):
        # What each read shows of the other side of the block; Cat, online and blocked
        # by nobody, shows online in the same reads (the reads do see presence).
        seen, cat_seen = {}, {}
        joined = await viewer.call("joinRoom", {"chatHeaderId": dm_id})
        for key in ("roomMembers", "members"):
            seen[f"joinRoom {key}"] = online_of(joined[key], other)
        seen["joinRoom chatHeader"] = online_of(joined["chatHeader"]["members"], other)
        assert joined["currentMember"]["userId"] == me.id
        assert joined["currentMember"]["isOnline"] is True
        in_group = await viewer.call("joinRoom", {"chatHeaderId": gid})
        for key in ("roomMembers", "members"):
            seen[f"group joinRoom {key}"] = online_of(in_group[key], other)
            cat_seen[f"group joinRoom {key}"] = online_of(in_group[key], cat)
        headers = {h["id"]: h for h in (await viewer.call("findAllChatHeaders", {}))["items"]}
        seen["findAllChatHeaders dm"] = online_of(headers[dm_id]["members"], other)
        seen["findAllChatHeaders group"] = online_of(headers[gid]["members"], other)
        cat_seen["findAllChatHeaders group"] = online_of(headers[gid]["members"], cat)
        chats = await viewer.call("getMyChats", {})
        (seen["getMyChats"],) = [c["isOnline"] for c in chats if c["userId"] == other.id]
        friends = await viewer.call("getMyFriendships", {})
        assert [f["userId"] for f in friends] == [cat.id]  # accepted friends only
        cat_seen["getMyFriendships"] = friends[0]["isOnline"]
        status, body = me.http("GET", "/api/friendships")
        assert status == 200, body
        listed = {f["userId"]: f for f in body["data"]}
        assert listed[other.id]["status"] == 3
        seen["GET /api/friendships"] = listed[other.id]["isOnline"]
        cat_seen["GET /api/friendships"] = listed[cat.id]["isOnline"]
        assert seen == dict.fromkeys(seen, False), (me.name, seen)
        assert cat_seen == dict.fromkeys(cat_seen, True), (me.name, cat_seen)
    # Cat, blocked by neither, sees both online.
    joined = await c.call("joinRoom", {"chatHeaderId": gid})
    assert online_of(joined["members"], ann) is online_of(joined["members"], bob) is True
