// Connection state recovery as socket.io-client (4.6 and later) does it by itself: the
// CONNECT reply carries a pid, a reconnect presents it, and the same pid back means
// the chat rooms are restored (socket.recovered). pytest (tests/test_recovery.py)
// prepares the users and the chat, and restarts or switches the server when this
// script prints READY; it sends a message to the chat when it prints RECOVERED.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';

import { TIMEOUT_MS } from './helpers.js';

const url = process.env.CHAT_SERVER_URL;
const scenario = process.env.CHAT_RECOVERY_SCENARIO;
const [ann, stranger] = JSON.parse(process.env.CHAT_TEST_USERS || '[]');
const chatHeaderId = Number(process.env.CHAT_TEST_CHAT);

function once(socket, event, timeout = TIMEOUT_MS * 3) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} in time`)), timeout);
    socket.once(event, (...args) => { clearTimeout(timer); resolve(args); });
  });
}

test(`the chat rooms come back after a reconnect (${scenario})`, async () => {
  const socket = io(url, {
    transports: ['websocket'],
    query: { userId: ann.id },
    auth: (cb) => cb({ accessToken: ann.token }),
  });
  const messages = [];
  socket.on('message', (m) => messages.push(m));
  let stolen;
  try {
    await once(socket, 'connect');
    assert.equal(socket.recovered, false);
    const joined = await socket.timeout(TIMEOUT_MS).emitWithAck('joinRoom', { chatHeaderId });
    assert.equal(joined.joined, true);
    const reconnected = once(socket, 'connect');
    if (scenario === 'engine') {
      socket.io.engine.close();
    } else {
      console.log('READY');
    }
    await reconnected;
    assert.equal(socket.recovered, true);
    // A pid is worthless without its user's token: someone else presenting it gets
    // a session of their own and none of the rooms.
    stolen = io(url, {
      transports: ['websocket'],
      forceNew: true,
      query: { userId: stranger.id },
      auth: { accessToken: stranger.token, pid: socket._pid },
    });
    const strangerGot = [];
    stolen.on('message', (m) => strangerGot.push(m));
    await once(stolen, 'connect');
    assert.equal(stolen.recovered, false);
    const arrived = once(socket, 'message');
    console.log('RECOVERED');
    const [message] = await arrived;
    assert.equal(message.chatHeaderId, chatHeaderId);
    assert.equal(message.chatMessage.message, 'while you were away');
    // The stranger's socket heard nothing of Ann's chat.
    await socket.timeout(TIMEOUT_MS).emitWithAck('getMyChats', {});
    assert.deepEqual(strangerGot, []);
  } finally {
    socket.close();
    if (stolen) stolen.close();
  }
});
