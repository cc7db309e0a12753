// A socket whose access token expires is closed at the transport, so socket.io-client
// reconnects by itself and asks its auth function for a fresh token. pytest
// (tests/test_lifecycle.py) starts the server with a leeway of one second.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { io } from 'socket.io-client';

import { TIMEOUT_MS } from './helpers.js';

const url = process.env.CHAT_SERVER_URL;
const secret = process.env.CHAT_TEST_SECRET;
const users = JSON.parse(process.env.CHAT_TEST_USERS || '[]');

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

// What the main backend would issue: an HS256 token for `seconds` from now.
function mint(user, seconds) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({
    sub: user.id, name: user.name, iat: now, exp: now + seconds })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

function once(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} in time`)), TIMEOUT_MS);
    socket.once(event, (...args) => { clearTimeout(timer); resolve(args); });
  });
}

for (const [index, transport] of ['websocket', 'polling'].entries()) {
  test(`an expiring token reconnects a listening socket with a fresh one (${transport})`,
    async () => {
      const user = users[index];
      const minted = [];
      const socket = io(url, {
        transports: [transport],
        query: { userId: user.id },
        // The first token lives three seconds; every later one an hour.
        auth: (cb) => {
          const token = mint(user, minted.length === 0 ? 3 : 3600);
          minted.push(token);
          cb({ accessToken: token });
        },
      });
      try {
        await once(socket, 'connect');
        const other = users[users.length - 1 - index];
        const joined = await socket.timeout(TIMEOUT_MS).emitWithAck(
          'joinRoom', { otherUserId: other.id });
        assert.equal(joined.joined, true);
        // From here the socket only listens: the server closes it all the same.
        const [reason] = await once(socket, 'disconnect');
        assert.equal(reason, 'transport close');
        await once(socket, 'connect');
        assert.equal(minted.length, 2);
        // The reconnect presented the previous socket's pid: its room is back.
        assert.equal(socket.recovered, true);
        // The new connection rests on the fresh token: events work without one.
        const chats = await socket.timeout(TIMEOUT_MS).emitWithAck('getMyChats', {});
        assert.deepEqual(chats.map((c) => c.chatHeaderId), [joined.chatHeaderId]);
      } finally {
        socket.close();
      }
    });
}
