// Two nodes of one deployment, driven by the real socket.io-client v4: Ann on one
// node, Bob on the other, once over each transport. Started by tests/test_scaleout.py,
// which runs both nodes (CHAT_SERVER_URL, CHAT_OTHER_URL), makes Ann and Bob friends
// and puts them in a group of Ann's (CHAT_TEST_GROUPS, one per transport).

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { connector, drained, emitWithReply, fromEnvironment } from './helpers.js';

const TRANSPORTS = ['websocket', 'polling'];
const { url, users } = fromEnvironment(TRANSPORTS, 2);
const otherUrl = process.env.CHAT_OTHER_URL;
const groups = JSON.parse(process.env.CHAT_TEST_GROUPS || '[]');

TRANSPORTS.forEach((transport, group) => {
  const [ann, bob] = users.slice(2 * group, 2 * group + 2);
  const groupId = groups[group];

  describe(`Ann and Bob on two nodes over ${transport}`, () => {
    const opened = [];
    const onAnnsNode = connector(url, transport, opened);
    const onBobsNode = connector(otherUrl, transport, opened);
    let a;
    let b;

    after(() => {
      for (const socket of opened) socket.disconnect();
    });

    it("tells Ann on her node that Bob came online on his (Ann's personal room)", async () => {
      a = await onAnnsNode(ann, { clientType: 'web' });
      b = await onBobsNode(bob, { clientType: 'android' });
      const [status] = await a.inbox.waitFor('clientStatus', {
        where: (data) => data.userId === bob.id,
      });
      assert.deepEqual(status, { userId: bob.id, clientType: 'android', activeNow: true });
    });

    it("delivers Ann's message to Bob on the other node, and Bob's typing back", async () => {
      const joined = await emitWithReply(a.socket, 'joinRoom', { otherUserId: bob.id });
      assert.equal(joined.joined, true);
      const { chatHeaderId } = joined;
      assert.equal((await emitWithReply(b.socket, 'joinRoom', { chatHeaderId })).joined, true);

      const reply = await emitWithReply(a.socket, 'createMessage', {
        chatHeaderId, message: 'from the other node', messageType: 0,
      });
      const [got] = await b.inbox.waitFor('message');
      assert.deepEqual(got, reply);

      await emitWithReply(b.socket, 'roomTyping', { chatHeaderId, isTyping: true, name: 'Bob' });
      const [typing] = await a.inbox.waitFor('typing');
      assert.equal(typing.userId, bob.id);
    });

    it('stops the group reaching Bob on his node once Ann removes him', async () => {
      for (const c of [a, b]) {
        assert.equal((await emitWithReply(c.socket, 'joinRoom', { chatHeaderId: groupId })).joined, true);
      }
      await emitWithReply(a.socket, 'createMessage', {
        chatHeaderId: groupId, message: 'before', messageType: 0,
      });
      await b.inbox.waitFor('message', { where: (m) => m.chatMessage.message === 'before' });

      const removed = await fetch(`${url}/api/chat/groups/${groupId}/members/${bob.id}`, {
        method: 'DELETE', headers: { Authorization: `Bearer ${ann.token}` },
      });
      assert.equal(removed.status, 200);
      // The removal crosses to Bob's node on its own; the group's next message follows
      // a moment later, as a member's next message would.
      await new Promise((resolve) => setTimeout(resolve, 500));
      await emitWithReply(a.socket, 'createMessage', {
        chatHeaderId: groupId, message: 'after', messageType: 0,
      });
      await drained(a.socket);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await drained(b.socket);
      const texts = b.inbox.matching('message', (m) => ['before', 'after'].includes(m.chatMessage.message))
        .map((m) => m.chatMessage.message);
      assert.deepEqual(texts, ['before']);
    });
  });
});
