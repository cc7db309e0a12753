"""A blocked pair: no way around the block through a group, and no presence either way
in any read."""

from helpers import block, group, people


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
