// Small waiting aids for the socket.io-client tests. The flows themselves stay in
// chat.test.js, written the way the API document writes them.

import { io } from 'socket.io-client';

// Long enough for a loaded 2-core CI machine on MariaDB, short enough that a lost
// event fails the run in seconds instead of hanging it.
export const TIMEOUT_MS = 8000;

// Every server event of the API document, so that each socket records all of them.
export const SERVER_EVENTS = [
  'clientStatus', 'message', 'onMemberJoin', 'typing', 'messageUpdated',
  'messageDeleted', 'messageHasBeenRead', 'exception',
];

/**
 * The server and users that pytest prepared (tests/test_js_client.py):
 * CHAT_SERVER_URL, and CHAT_TEST_USERS, a JSON list of {id, name, token} in groups of
 * `perTransport` per transport; in each group the first user is friends with the others.
 */
export function fromEnvironment(transports, perTransport = 3) {
  const url = process.env.CHAT_SERVER_URL;
  const raw = process.env.CHAT_TEST_USERS;
  if (!url || !raw) {
    throw new Error('CHAT_SERVER_URL and CHAT_TEST_USERS are not set: run these tests '
      + 'through pytest (tests/test_js_client.py), which starts the server and mints tokens.');
  }
  const users = JSON.parse(raw);
  if (users.length !== perTransport * transports.length) {
    throw new Error(`CHAT_TEST_USERS must hold ${perTransport * transports.length} users, `
      + `got ${users.length}`);
  }
  return { url, users };
}

/** Records every server event a socket receives, and waits for the ones a test expects. */
export class Inbox {
  constructor(socket) {
    this.socket = socket;
    this.received = Object.fromEntries(SERVER_EVENTS.map((name) => [name, []]));
    this.waiters = new Set();
    for (const name of SERVER_EVENTS) {
      socket.on(name, (data) => {
        this.received[name].push(data);
        for (const waiter of this.waiters) waiter.check();
      });
    }
  }

  /** Resolves with the first `count` events named `event` that satisfy `where`. */
  waitFor(event, { where = () => true, count = 1, timeout = TIMEOUT_MS } = {}) {
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          const matching = this.received[event].filter(where);
          if (matching.length >= count) {
            clearTimeout(waiter.timer);
            this.waiters.delete(waiter);
            resolve(matching.slice(0, count));
          }
        },
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new Error(`waited ${timeout} ms for ${count} '${event}' event(s); `
            + `received: ${JSON.stringify(this.received)}`));
        }, timeout),
      };
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  matching(event, where = () => true) {
    return this.received[event].filter(where);
  }
}

/** socket.emit(event, payload, (response) => ...) as a promise that cannot hang. */
export function emitWithReply(socket, event, payload) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no reply to '${event}' within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    socket.emit(event, payload, (response) => {
      clearTimeout(timer);
      resolve(response);
    });
  });
}

/**
 * A reply on this socket means that everything the server sent to it before has
 * arrived: Socket.IO keeps one socket's packets in order on both transports. So a
 * test asserts that an event did NOT come after this, not after a sleep.
 */
export async function drained(socket) {
  const reply = await emitWithReply(socket, 'getMyChats', {});
  if (!Array.isArray(reply)) throw new Error(`getMyChats failed: ${JSON.stringify(reply)}`);
}

/**
 * io(url, options) as the document connects, resolved once connected. Each socket gets
 * its own Manager (forceNew), since one process plays several users; reconnection is
 * off so that a refused or lost connection fails the test instead of retrying.
 */
export function connect(url, options) {
  const socket = io(url, { forceNew: true, reconnection: false, ...options });
  const inbox = new Inbox(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no connection to ${url} within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve({ socket, inbox });
    });
    socket.once('connect_error', (error) => {
      clearTimeout(timer);
      socket.close();
      reject(error);
    });
  });
}

/**
 * connectAs(user, query) for the tests of one transport: each user connects with
 * their token and userId as the document shows, and every socket is kept in `opened`
 * for the suite's after() to close.
 */
export function connector(url, transport, opened) {
  return async function connectAs(user, query = {}) {
    const connection = await connect(url, {
      query: { userId: user.id, ...query },
      auth: { accessToken: user.token },
      transports: [transport],
    });
    opened.push(connection.socket);
    return connection;
  };
}

/** The connect_error that a refused connection raises (rejects if it connects). */
export function connectError(url, options) {
  return connect(url, options).then(
    ({ socket }) => {
      socket.close();
      throw new Error('the connection was accepted but should have been refused');
    },
    (error) => error,
  );
}
