// Through nginx (conf/nginx-syarah.conf) in front of two nodes: each transport the
// document's client may use connects, its events are answered, and a message crosses
// from one user to another. Run by tests/test_nginx.py, which starts nginx and the nodes.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { connect, drained, emitWithReply, fromEnvironment } from './helpers.js';

const TRANSPORTS = [['polling'], ['websocket'], ['polling', 'websocket']];
const { url, users } = fromEnvironment(TRANSPORTS, 2);
const opened = [];
after(() => opened.forEach((socket) => socket.close()));

TRANSPORTS.forEach((transports, i) => {
  const [ann, bob] = users.slice(2 * i, 2 * i + 2);
  describe(`through the load balancer over ${transports.join(' then ')}`, () => {
    it('connects, and a message reaches the other user', async () => {
      const as = async (user) => {
        const connection = await connect(url, {
          query: { userId: user.id }, auth: { accessToken: user.token }, transports,
          // Keeps the route cookie, where the config uses one instead of ip_hash.
          withCredentials: true,
        });
        opened.push(connection.socket);
        return connection;
      };
      const a = await as(ann);
      const b = await as(bob);
      const joined = await emitWithReply(a.socket, 'joinRoom', { otherUserId: bob.id });
      assert.equal(joined.joined, true, JSON.stringify(joined));
      const chatHeaderId = joined.chatHeaderId;
      assert.equal((await emitWithReply(b.socket, 'joinRoom', { chatHeaderId })).joined, true);
      // Several round trips: a polling session whose requests went to another node
      // would fail here.
      for (let n = 0; n < 5; n += 1) await drained(a.socket);
      const sent = await emitWithReply(a.socket, 'createMessage',
        { chatHeaderId, message: `hello over ${transports.join('+')}` });
      assert.ok(sent.chatMessage?.id, JSON.stringify(sent));
      const [got] = await b.inbox.waitFor('message');
      assert.deepEqual(got, sent);
      if (transports.length === 2) {
        await drained(a.socket);
        assert.equal(a.socket.io.engine.transport.name, 'websocket');
      }
    });
  });
});
