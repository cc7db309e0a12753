"""The rules the handlers decide on what the store read, in process: no server, no
store. The end-to-end tests (test_rest.py, test_friendships_events.py) show the same
rules from a client's side."""

from __future__ import annotations

import pytest

from syarah.errors import Conflict, Forbidden, NotFound
from syarah.handlers.friendships import next_friendship
from syarah.types import FriendshipRow
from syarah.types import FriendshipStatus as S

ME, OTHER = "me", "other"


@pytest.mark.parametrize("row, action, expected", [
    (None, "request", FriendshipRow(S.PENDING, ME)),
    (FriendshipRow(S.PENDING, OTHER), "request", FriendshipRow(S.ACCEPTED, OTHER)),
    (FriendshipRow(S.REJECTED, OTHER), "request", FriendshipRow(S.PENDING, ME)),
    (FriendshipRow(S.PENDING, OTHER), "accept", FriendshipRow(S.ACCEPTED, OTHER)),
    (FriendshipRow(S.PENDING, OTHER), "reject", FriendshipRow(S.REJECTED, OTHER)),
    (None, "block", FriendshipRow(S.BLOCKED, ME, ME)),
    (FriendshipRow(S.ACCEPTED, OTHER), "block", FriendshipRow(S.BLOCKED, OTHER, ME)),
    (FriendshipRow(S.BLOCKED, OTHER, ME), "unblock", None),
    (FriendshipRow(S.ACCEPTED, OTHER), "delete", None),
])
def test_each_action_makes_the_next_state(row, action, expected):
    assert next_friendship(ME, OTHER, action, row) == expected


@pytest.mark.parametrize("row, action, error, words", [
    (FriendshipRow(S.ACCEPTED, OTHER), "request", Conflict, "already friends"),
    (FriendshipRow(S.PENDING, ME), "request", Conflict, "already pending"),
    (FriendshipRow(S.PENDING, ME), "accept", NotFound, "no friend request"),
    (None, "reject", NotFound, "no friend request"),
    (FriendshipRow(S.BLOCKED, OTHER, OTHER), "request", Forbidden, "blocked"),
    (FriendshipRow(S.BLOCKED, OTHER, OTHER), "delete", Forbidden, "blocked"),
    (FriendshipRow(S.BLOCKED, ME, OTHER), "unblock", Forbidden, "Only the user who blocked"),
    (FriendshipRow(S.ACCEPTED, OTHER), "unblock", Conflict, "not blocked"),
    (None, "delete", NotFound, "no friendship"),
])
def test_refused_actions_say_why(row, action, error, words):
    with pytest.raises(error, match=words):
        next_friendship(ME, OTHER, action, row)
