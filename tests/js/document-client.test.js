// The API document's "Full Chat Integration Example": its ChatClient class, copied
// below verbatim from the document (the lines between the markers), run as it stands
// with only the server URL, the user ids and the tokens its usage example shows
// replaced. It must send, edit, delete and read without one failure.
// Started by tests/test_js_client.py, which runs the server and prepares the users.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { TIMEOUT_MS } from './helpers.js';

// What the document's class logs is how it reports replies: recorded here.
const logged = [];
const consoleLog = console.log;
console.log = (...args) => logged.push(args);

// ---- the API document's ChatClient, verbatim ----
import { io } from 'socket.io-client';
class ChatClient {
constructor(serverUrl, userId, accessToken) {
this.userId = userId;
this.accessToken = accessToken;
this.socket = io(serverUrl, {
query: { userId }
});
this.setupEventListeners();
}
setupEventListeners() {
// Connection events
this.socket.on('connect', () => {
console.log('Connected:', this.socket.id);
});
this.socket.on('disconnect', () => {
console.log('Disconnected');
});
// Message events
this.socket.on('message', (data) => {
console.log('New message:', data);
this.onMessageReceived(data);
});
this.socket.on('typing', (data) => {
console.log(`${data.name} is typing`);
this.onTyping(data);
});
this.socket.on('clientStatus', (data) => {
console.log('User status:', data);
this.onUserStatusChanged(data);
});
this.socket.on('onMemberJoin', (member) => {
console.log('Member joined:', member);
this.onMemberJoined(member);
});
this.socket.on('messageUpdated', (message) => {
console.log('Message updated:', message);
this.onMessageUpdated(message);
});
this.socket.on('messageDeleted', (messageId) => {
console.log('Message deleted:', messageId);
this.onMessageDeleted(messageId);
});
this.socket.on('messageHasBeenRead', (chatHeaderId) => {
console.log('Messages read:', chatHeaderId);
this.onMessagesRead(chatHeaderId);
});
}
// Join a chat room
// Option 1: With chatHeaderId (if you already have it)
joinRoom(chatHeaderId) {
this.socket.emit('joinRoom', {
chatHeaderId,
userId: this.userId,
socketId: this.socket.id,
accessToken: this.accessToken
}, (response) => {
console.log('Joined room:', response);
});
}
// Option 2: With otherUserId (auto-create/get chat header)
joinRoomWithUser(otherUserId, callback) {
this.socket.emit('joinRoom', {
userId: this.userId,
otherUserId: otherUserId,
socketId: this.socket.id,
accessToken: this.accessToken
}, (response) => {
if (response.error) {
console.error('Error joining room:', response.error);
if (callback) callback(null, response.error);
return;
}
const chatHeaderId = response.chatHeaderId || response.chatHeader?.id;
console.log('Joined room:', response);
console.log('Chat Header ID:', chatHeaderId);
// Store chatHeaderId for future use
if (callback) callback(response, null);
});
}
// Send a message
sendMessage(chatHeaderId, message, messageType = 1, caption = '') {
this.socket.emit('createMessage', {
message,
chatHeaderId,
accessToken: this.accessToken,
messageType,
caption: caption
});
}
// Get all messages
getAllMessages(chatHeaderId, skipCount = 0, maxResultCount = 50) {
this.socket.emit('findAllMessages', {
chatHeaderId: chatHeaderId.toString(),
accessToken: this.accessToken,
skipCount,
maxResultCount
}, (response) => {
console.log('Messages:', response);
return response;
});
}
// Get all chat headers
getAllChatHeaders(skipCount = 0, maxResultCount = 20) {
this.socket.emit('findAllChatHeaders', {
AccessToken: this.accessToken,
UserId: this.userId,
SkipCount: skipCount,
MaxResultCount: maxResultCount
}, (response) => {
console.log('Chat headers:', response);
return response;
});
}
// Get friendships and handle null chatHeaderId
getFriendshipsAndCreateChats(callback) {
this.socket.emit('getMyFriendships', {
accessToken: this.accessToken
}, (friendships) => {
const pendingChats = [];
friendships.forEach(friend => {
if (!friend.chatHeaderId) {
// Create/get chat header for friends without chat
pendingChats.push(
new Promise((resolve) => {
this.joinRoomWithUser(friend.userId, (response, error) => {
if (!error && response?.chatHeaderId) {
friend.chatHeaderId = response.chatHeaderId;
}
resolve(friend);
});
})
);
}
});
Promise.all(pendingChats).then(() => {
if (callback) callback(friendships);
});
});
}
// Typing indicator
setTyping(chatHeaderId, isTyping, userName) {
this.socket.emit('roomTyping', {
isTyping,
name: userName,
chatHeaderId
});
}
// Update a message
updateMessage(messageId, chatHeaderId, newMessage, caption = '') {
this.socket.emit('updateMessage', {
id: messageId,
message: newMessage,
chatHeaderId,
accessToken: this.accessToken,
caption: caption
});
}
// Delete a message
deleteMessage(messageId, chatHeaderId) {
this.socket.emit('removeMessage', {
id: messageId,
chatHeaderId,
accessToken: this.accessToken
});
}
// Mark messages as read
markAsRead(chatHeaderId) {
this.socket.emit('readMessage', {
chatHeaderId
});
}
// Event handlers (override these in your implementation)
onMessageReceived(data) {}
onTyping(data) {}
onUserStatusChanged(data) {}
onMemberJoined(member) {}
onMessageUpdated(message) {}
onMessageDeleted(messageId) {}
onMessagesRead(chatHeaderId) {}
// Disconnect
disconnect() {
this.socket.disconnect();
}
}
// ---- end of the document's text ----

const url = process.env.CHAT_SERVER_URL;
const [ann, bob] = JSON.parse(process.env.CHAT_TEST_USERS || '[]');
if (!url || !bob) {
  throw new Error('run through pytest (tests/test_js_client.py): CHAT_SERVER_URL and '
    + 'CHAT_TEST_USERS are not set');
}

/** Resolves with the first value `check` returns that is not undefined. */
function until(what, check) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const found = check();
      if (found !== undefined) return resolve(found);
      if (Date.now() - started > TIMEOUT_MS) {
        return reject(new Error(`waited ${TIMEOUT_MS} ms for ${what}; logged: `
          + JSON.stringify(logged.slice(-20))));
      }
      return setTimeout(poll, 20);
    };
    poll();
  });
}

/** The document's class, with its event handlers recording what arrives. */
function recordingClient(user) {
  const chat = new ChatClient(url, user.id, user.token);
  chat.seen = { message: [], updated: [], deleted: [], read: [], joined: [], exception: [] };
  chat.onMessageReceived = (data) => chat.seen.message.push(data);
  chat.onMessageUpdated = (message) => chat.seen.updated.push(message);
  chat.onMessageDeleted = (messageId) => chat.seen.deleted.push(messageId);
  chat.onMessagesRead = (chatHeaderId) => chat.seen.read.push(chatHeaderId);
  chat.onMemberJoined = (member) => chat.seen.joined.push(member);
  chat.socket.on('exception', (error) => chat.seen.exception.push(error));
  return chat;
}

function lastLogged(label) {
  const found = logged.filter((args) => args[0] === label);
  return found.length ? found[found.length - 1][1] : undefined;
}

describe("the API document's ChatClient class", () => {
  const annChat = recordingClient(ann);
  const bobChat = recordingClient(bob);
  after(() => {
    annChat.disconnect();
    bobChat.disconnect();
    console.log = consoleLog;
  });

  it('sends, edits, deletes and reads', async () => {
    await until('both to connect', () => (annChat.socket.connected
      && bobChat.socket.connected ? true : undefined));
    // Option 2 of the usage example: get or create the chat with the other user.
    const joined = await new Promise((resolve) => {
      annChat.joinRoomWithUser(bob.id, (response, error) => resolve({ response, error }));
    });
    assert.equal(joined.error, null);
    const chatHeaderId = joined.response.chatHeaderId;
    assert.ok(Number.isInteger(chatHeaderId));
    // Option 1, for Bob: with the chatHeaderId.
    bobChat.joinRoom(chatHeaderId);
    await until('Bob to join', () => annChat.seen.joined[0]);

    // As the usage example sends it: messageType left at the class's default.
    annChat.sendMessage(chatHeaderId, 'Hello, world!');
    annChat.sendMessage(chatHeaderId, 'a second one');
    const [first, second] = await until('both messages', () => (
      bobChat.seen.message.length >= 2 ? bobChat.seen.message : undefined));
    assert.equal(first.chatMessage.message, 'Hello, world!');
    assert.equal(first.chatMessage.messageType, 0);
    assert.equal(second.chatMessage.message, 'a second one');
    assert.deepEqual(annChat.seen.message, [first, second]);

    annChat.updateMessage(first.chatMessage.id, chatHeaderId, 'Hello again!');
    const updated = await until('the edit', () => bobChat.seen.updated[0]);
    assert.equal(updated.id, first.chatMessage.id);
    assert.equal(updated.message, 'Hello again!');

    annChat.deleteMessage(second.chatMessage.id, chatHeaderId);
    assert.equal(await until('the deletion', () => bobChat.seen.deleted[0]),
      second.chatMessage.id);

    bobChat.markAsRead(chatHeaderId);
    assert.equal(await until('the read receipt', () => annChat.seen.read[0]), chatHeaderId);

    bobChat.getAllMessages(chatHeaderId);
    const page = await until('the messages', () => lastLogged('Messages:'));
    assert.deepEqual(page.items.map((m) => [m.id, m.message]),
      [[first.chatMessage.id, 'Hello again!']]);
    assert.equal(page.totalCount, 1);

    bobChat.getAllChatHeaders();
    const headers = await until('the chat headers', () => lastLogged('Chat headers:'));
    assert.deepEqual(headers.items.map((h) => h.id), [chatHeaderId]);
    assert.equal(headers.items[0].unreadCount, 0);
    assert.equal(headers.items[0].lastMessage.message, 'Hello again!');

    // The class leaves socket.io-client's transports at their default: it starts
    // polling and upgrades to a WebSocket, over which the chat goes on.
    await until('the upgrade to a WebSocket', () => (
      [annChat, bobChat].every((c) => c.socket.io.engine.transport.name === 'websocket')
        ? true : undefined));
    annChat.sendMessage(chatHeaderId, 'over the WebSocket');
    const [, third] = await until('the message after the upgrade', () => (
      bobChat.seen.message.length >= 3 ? bobChat.seen.message.slice(1) : undefined));
    assert.equal(third.chatMessage.message, 'over the WebSocket');
    annChat.getAllMessages(chatHeaderId);
    const after = await until('the messages after the upgrade', () => {
      const last = lastLogged('Messages:');
      return last && last.totalCount === 2 ? last : undefined;
    });
    assert.deepEqual(after.items.map((m) => m.message).sort(),
      ['Hello again!', 'over the WebSocket']);

    assert.deepEqual(annChat.seen.exception, []);
    assert.deepEqual(bobChat.seen.exception, []);
  });
});
