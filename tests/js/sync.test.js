// A client that caches history, as the API document recommends, goes away; Bob edits
// and deletes messages it holds and writes a new one; back online, the client asks
// findAllChatHeaders for what it missed and, from its cache and that reply alone,
// holds what the server holds. Once over each transport, with the real socket.io-client.
// Started by tests/test_sync.py, which runs the server and prepares the users.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { connector, emitWithReply, fromEnvironment, TIMEOUT_MS } from './helpers.js';

const TRANSPORTS = ['websocket', 'polling'];
const { url, users } = fromEnvironment(TRANSPORTS, 2);

/** The missed-message sync applied to a cache of messages by id. */
function applySync(cache, header) {
  for (const message of [...header.updatedMessages, ...header.newMessages]) {
    cache.set(message.id, message);
  }
  for (const id of header.deletedMessageIds) cache.delete(id);
}

function reconnected(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reconnection')), TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.connect();
  });
}

TRANSPORTS.forEach((transport, group) => {
  const [ann, bob] = users.slice(2 * group, 2 * group + 2);

  describe(`the sync after being away, over ${transport}`, () => {
    const opened = [];

    const connectAs = connector(url, transport, opened);

    after(() => {
      for (const socket of opened) socket.disconnect();
    });

    it('brings the edits and deletions made meanwhile, and the cache converges', async () => {
      const a = await connectAs(ann);
      const b = await connectAs(bob);
      const joined = await emitWithReply(a.socket, 'joinRoom', { otherUserId: bob.id });
      const { chatHeaderId } = joined;
      assert.ok(Number.isInteger(chatHeaderId), JSON.stringify(joined));
      const sent = [];
      for (const text of ['one', 'two', 'three', 'four']) {
        const reply = await emitWithReply(b.socket, 'createMessage', {
          message: text, chatHeaderId, messageType: 0,
        });
        sent.push(reply.chatMessage);
      }
      const page = await emitWithReply(a.socket, 'findAllMessages', { chatHeaderId });
      const cache = new Map(page.items.map((m) => [m.id, m]));
      const lastHeld = Math.max(...cache.keys());
      assert.equal(lastHeld, sent[3].id);

      a.socket.disconnect();
      const edited = await emitWithReply(b.socket, 'updateMessage', {
        id: sent[0].id, chatHeaderId, message: 'one (edited)',
      });
      assert.equal(edited.chatMessage.message, 'one (edited)');
      const removed = await emitWithReply(b.socket, 'removeMessage', {
        ids: [sent[1].id, sent[3].id], chatHeaderId,
      });
      assert.deepEqual(removed.deletedIds, [sent[1].id, sent[3].id]);
      const later = await emitWithReply(b.socket, 'createMessage', {
        message: 'while you were away', chatHeaderId, messageType: 0,
      });

      await reconnected(a.socket);
      const reply = await emitWithReply(a.socket, 'findAllChatHeaders', {
        UserId: ann.id,
        RoomsWithLastMessageIds: [{ ChatHeaderId: chatHeaderId, LastMessageId: lastHeld }],
      });
      const header = reply.items.find((h) => h.id === chatHeaderId);
      assert.deepEqual(header.newMessages, [later.chatMessage]);
      assert.deepEqual(header.updatedMessages, [edited.chatMessage]);
      assert.deepEqual(header.deletedMessageIds, [sent[1].id, sent[3].id]);
      assert.equal(header.hasMoreNewMessages, false);
      assert.equal(header.hasMoreUpdatedMessages, false);
      assert.equal(header.hasMoreDeletedMessageIds, false);

      applySync(cache, header);
      const fresh = await emitWithReply(a.socket, 'findAllMessages', { chatHeaderId });
      const mine = [...cache.values()].sort((x, y) => y.id - x.id);
      assert.deepEqual(mine, fresh.items);
    });
  });
});
