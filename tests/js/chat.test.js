// The API document's main flows, driven by the real socket.io-client v4 from npm,
// once over each transport. Payloads are written as the document writes them.
// Started by tests/test_js_client.py, which runs the server and prepares the users.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  connect, connectError, connector, drained, emitWithReply, fromEnvironment,
} from './helpers.js';

const TRANSPORTS = ['websocket', 'polling'];
const { url, users } = fromEnvironment(TRANSPORTS);
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

TRANSPORTS.forEach((transport, group) => {
  // Ann is friends with Bob and with Cy (made over REST by pytest); Bob and Cy are
  // strangers to each other. Each transport has users of its own.
  const [ann, bob, cy] = users.slice(3 * group, 3 * group + 3);

  describe(`the API document's flows over ${transport}`, () => {
    const opened = [];
    let a; // Ann's {socket, inbox}
    let b; // Bob's
    let chatHeaderId; // Ann and Bob's chat
    const ids = {}; // message ids by text

    const connectAs = connector(url, transport, opened);

    after(() => {
      for (const socket of opened) socket.disconnect();
    });

    it('refuses a bad access token with a connect_error that says why', async () => {
      const bad = await connectError(url, {
        query: { userId: ann.id },
        auth: { accessToken: 'not-a-token' },
        transports: [transport],
      });
      assert.match(bad.message, /access token/i);

      const someoneElses = await connectError(url, {
        query: { userId: ann.id },
        auth: { accessToken: bob.token },
        transports: [transport],
      });
      assert.match(someoneElses.message, /another user/i);
    });

    it('connects, and tells friends with clientStatus', async () => {
      a = await connectAs(ann, { clientType: 'web' });
      assert.ok(a.socket.connected && a.socket.id);
      assert.equal(a.socket.io.engine.transport.name, transport);

      b = await connectAs(bob, { clientType: 'android' });
      const [status] = await a.inbox.waitFor('clientStatus', {
        where: (data) => data.userId === bob.id,
      });
      assert.deepEqual(status, { userId: bob.id, clientType: 'android', activeNow: true });
    });

    it('joinRoom with otherUserId gets or creates the chat (Example 2)', async () => {
      const response = await emitWithReply(a.socket, 'joinRoom', {
        userId: ann.id,
        otherUserId: bob.id,
        socketId: a.socket.id,
        accessToken: ann.token,
      });
      assert.equal(response.error, undefined, JSON.stringify(response));
      chatHeaderId = response.chatHeaderId || response.chatHeader?.id;
      assert.ok(Number.isInteger(chatHeaderId));
      assert.equal(response.chatHeader.id, chatHeaderId);
      assert.equal(response.joined, true);
      assert.equal(response.friendshipStatus, 1);
      assert.equal(response.currentMember.userId, ann.id);
      assert.deepEqual(response.members.map((m) => m.userId).sort(), [ann.id, bob.id].sort());
      assert.deepEqual(response.roomMembers, response.members);
      const bobAsMember = response.members.find((m) => m.userId === bob.id);
      assert.equal(bobAsMember.name, bob.name);
      assert.equal(bobAsMember.isOnline, true);
    });

    it('joinRoom with chatHeaderId (Example 1) announces onMemberJoin', async () => {
      const response = await emitWithReply(b.socket, 'joinRoom', {
        chatHeaderId,
        userId: bob.id,
        socketId: b.socket.id,
        accessToken: bob.token,
      });
      assert.equal(response.chatHeaderId, chatHeaderId);
      assert.equal(response.joined, true);
      assert.equal(response.currentMember.userId, bob.id);

      const [memberData] = await a.inbox.waitFor('onMemberJoin', {
        where: (data) => data.chatHeaderId === chatHeaderId,
      });
      assert.equal(memberData.member.userId, bob.id);
      assert.equal(memberData.member.name, bob.name);
      await drained(b.socket);
      assert.equal(b.inbox.matching('onMemberJoin').length, 0, 'the joiner is not told about itself');
    });

    it('createMessage (the Text Message Example) reaches both members as message', async () => {
      a.socket.emit('createMessage', {
        message: 'Hello, world!',
        chatHeaderId,
        accessToken: ann.token,
        messageType: 0, // 0 = Text
        caption: '',
      });
      const hello = (data) => data.chatMessage?.message === 'Hello, world!';
      const [atBob] = await b.inbox.waitFor('message', { where: hello });
      const [atAnn] = await a.inbox.waitFor('message', { where: hello });
      assert.deepEqual(atAnn, atBob);
      assert.equal(atBob.chatHeaderId, chatHeaderId);
      const m = atBob.chatMessage;
      assert.ok(Number.isInteger(m.id));
      assert.equal(m.chatHeaderId, chatHeaderId);
      assert.equal(m.userId, ann.id);
      assert.equal(m.messageType, 0);
      assert.equal(m.caption, '');
      assert.match(m.creationTime, ISO_UTC);
      assert.equal(m.lastModificationTime, null);
      assert.deepEqual(m.user, { id: ann.id, name: ann.name, avatar: null });
      ids['Hello, world!'] = m.id;

      // With an ack the sender also gets {chatHeaderId, chatMessage} back.
      const reply = await emitWithReply(b.socket, 'createMessage', {
        message: 'Hi Ann',
        chatHeaderId,
        accessToken: bob.token,
        messageType: 0,
        caption: '',
      });
      assert.equal(reply.chatHeaderId, chatHeaderId);
      const [echo] = await a.inbox.waitFor('message', {
        where: (data) => data.chatMessage?.id === reply.chatMessage.id,
      });
      assert.deepEqual(echo, reply);
      ids['Hi Ann'] = reply.chatMessage.id;

      const third = await emitWithReply(a.socket, 'createMessage', {
        message: 'How are you?', chatHeaderId, accessToken: ann.token, messageType: 0, caption: '',
      });
      ids['How are you?'] = third.chatMessage.id;
      assert.ok(ids['Hello, world!'] < ids['Hi Ann'] && ids['Hi Ann'] < ids['How are you?']);
    });

    it('roomTyping reaches the others in the room as typing', async () => {
      a.socket.emit('roomTyping', { isTyping: true, name: ann.name, chatHeaderId });
      const [typing] = await b.inbox.waitFor('typing', { where: (data) => data.isTyping });
      assert.deepEqual(typing, { name: ann.name, isTyping: true, chatHeaderId, userId: ann.id });

      a.socket.emit('roomTyping', { isTyping: false, name: ann.name, chatHeaderId });
      const [stopped] = await b.inbox.waitFor('typing', { where: (data) => !data.isTyping });
      assert.equal(stopped.chatHeaderId, chatHeaderId);

      await drained(a.socket);
      assert.equal(a.inbox.matching('typing').length, 0, 'the typist is not told about itself');
    });

    it('findAllMessages pages newest first, with chatHeaderId as a string', async () => {
      const response = await emitWithReply(a.socket, 'findAllMessages', {
        chatHeaderId: String(chatHeaderId),
        accessToken: ann.token,
        skipCount: 0,
        maxResultCount: 50,
      });
      assert.deepEqual(response.items.map((m) => m.message),
        ['How are you?', 'Hi Ann', 'Hello, world!']);
      assert.equal(response.totalCount, 3);

      const second = await emitWithReply(a.socket, 'findAllMessages', {
        chatHeaderId: String(chatHeaderId), accessToken: ann.token, skipCount: 1, maxResultCount: 1,
      });
      assert.deepEqual(second.items.map((m) => m.id), [ids['Hi Ann']]);
      assert.equal(second.totalCount, 3);

      const older = await emitWithReply(b.socket, 'findAllMessages', {
        chatHeaderId: String(chatHeaderId), accessToken: bob.token, LastMessageId: ids['How are you?'],
      });
      assert.deepEqual(older.items.map((m) => m.id), [ids['Hi Ann'], ids['Hello, world!']]);
    });

    it('findAllChatHeaders lists the chat with its last message and unread count', async () => {
      const response = await emitWithReply(b.socket, 'findAllChatHeaders', {
        AccessToken: bob.token,
        UserId: bob.id,
        SkipCount: 0,
        MaxResultCount: 20,
      });
      assert.equal(response.totalCount, 1);
      const [header] = response.items;
      assert.equal(header.id, chatHeaderId);
      assert.equal(header.isGroup, false);
      assert.equal(header.name, ann.name, "an individual chat shows the other person's name");
      assert.equal(header.lastMessage.id, ids['How are you?']);
      assert.equal(header.unreadCount, 2, "Ann's two messages are unread by Bob");
      assert.match(header.creationTime, ISO_UTC);
      assert.deepEqual(header.members.map((m) => m.userId).sort(), [ann.id, bob.id].sort());

      // After a reconnect a client asks for what it missed since its last message.
      const sync = await emitWithReply(b.socket, 'findAllChatHeaders', {
        AccessToken: bob.token,
        UserId: bob.id,
        RoomsWithLastMessageIds: [{ ChatHeaderId: chatHeaderId, LastMessageId: ids['Hello, world!'] }],
        SkipCount: 0,
        MaxResultCount: 20,
      });
      assert.deepEqual(sync.items[0].newMessages.map((m) => m.id),
        [ids['Hi Ann'], ids['How are you?']]);
    });

    it('updateMessage reaches the room as messageUpdated', async () => {
      a.socket.emit('updateMessage', {
        id: ids['Hello, world!'],
        message: 'Updated message content',
        chatHeaderId,
        accessToken: ann.token,
        caption: '', // Optional
      });
      const updated = (message) => message.id === ids['Hello, world!'];
      const [atBob] = await b.inbox.waitFor('messageUpdated', { where: updated });
      const [atAnn] = await a.inbox.waitFor('messageUpdated', { where: updated });
      assert.deepEqual(atAnn, atBob);
      assert.equal(atBob.message, 'Updated message content');
      assert.equal(atBob.chatHeaderId, chatHeaderId);
      assert.match(atBob.lastModificationTime, ISO_UTC);
    });

    it('removeMessage with ids emits messageDeleted once per id', async () => {
      const doomed = [];
      for (const text of ['typo 1', 'typo 2']) {
        const reply = await emitWithReply(a.socket, 'createMessage', {
          message: text, chatHeaderId, accessToken: ann.token, messageType: 0, caption: '',
        });
        doomed.push(reply.chatMessage.id);
      }
      a.socket.emit('removeMessage', {
        ids: doomed,
        chatHeaderId,
        accessToken: ann.token,
      });
      const wasDoomed = (messageId) => doomed.includes(messageId);
      for (const inbox of [b.inbox, a.inbox]) {
        const deleted = await inbox.waitFor('messageDeleted', { where: wasDoomed, count: 2 });
        assert.deepEqual([...deleted].sort((x, y) => x - y), doomed);
      }
      await drained(b.socket);
      assert.equal(b.inbox.matching('messageDeleted').length, 2);

      const left = await emitWithReply(b.socket, 'findAllMessages', {
        chatHeaderId: String(chatHeaderId), accessToken: bob.token, skipCount: 0, maxResultCount: 50,
      });
      assert.equal(left.totalCount, 3);
      assert.ok(left.items.every((m) => !doomed.includes(m.id)));
    });

    it('readMessage clears the unread count and emits messageHasBeenRead', async () => {
      const mine = (chats) => chats.find((chat) => chat.chatHeaderId === chatHeaderId);
      const before = await emitWithReply(b.socket, 'getMyChats', { accessToken: bob.token });
      assert.equal(mine(before).unreadCount, 2);

      b.socket.emit('readMessage', { chatHeaderId });
      const [read] = await a.inbox.waitFor('messageHasBeenRead');
      assert.equal(read, chatHeaderId);
      await b.inbox.waitFor('messageHasBeenRead');

      const afterwards = await emitWithReply(b.socket, 'getMyChats', { accessToken: bob.token });
      assert.equal(mine(afterwards).unreadCount, 0);
    });

    it('getMyFriendships, then the Handling Null chatHeaderId flow', async () => {
      const friendships = await emitWithReply(a.socket, 'getMyFriendships', {
        accessToken: ann.token,
      });
      const byId = Object.fromEntries(friendships.map((f) => [f.userId, f]));
      assert.deepEqual(Object.keys(byId).sort(), [bob.id, cy.id].sort());
      assert.deepEqual(byId[bob.id], {
        userId: bob.id, name: bob.name, avatar: null, isOnline: true, chatHeaderId,
      });
      assert.deepEqual(byId[cy.id], {
        userId: cy.id, name: cy.name, avatar: null, isOnline: false, chatHeaderId: null,
      });

      // As the document does it: join with otherUserId where chatHeaderId is null.
      await Promise.all(friendships.map((friend) => new Promise((resolve, reject) => {
        if (friend.chatHeaderId) {
          resolve();
          return;
        }
        emitWithReply(a.socket, 'joinRoom', {
          otherUserId: friend.userId,
          accessToken: ann.token,
        }).then((joinResponse) => {
          if (joinResponse.chatHeaderId) {
            friend.chatHeaderId = joinResponse.chatHeaderId;
            resolve();
          } else {
            reject(new Error(`Failed to create chat: ${joinResponse.error}`));
          }
        }, reject);
      })));
      const cyChat = byId[cy.id].chatHeaderId;
      assert.ok(Number.isInteger(cyChat) && cyChat !== chatHeaderId);

      const again = await emitWithReply(a.socket, 'getMyFriendships', {});
      assert.deepEqual(
        Object.fromEntries(again.map((f) => [f.userId, f.chatHeaderId])),
        { [bob.id]: chatHeaderId, [cy.id]: cyChat },
      );

      // The document's REST alternative answers with the same chat.
      const rest = await fetch(
        `${url}/api/chat/getChatHeaderAsync?user1Id=${ann.id}&user2Id=${cy.id}`,
        { headers: { Authorization: `Bearer ${ann.token}` } },
      );
      const data = await rest.json();
      assert.equal(data.success, true, JSON.stringify(data));
      assert.equal(data.data?.id, cyChat);
    });

    it('getMyChats lists individual chats, most recent first', async () => {
      const chats = await emitWithReply(a.socket, 'getMyChats', { accessToken: ann.token });
      assert.equal(chats.length, 2);
      const activity = (chat) => Date.parse(chat.lastMessageTime ?? chat.creationTime);
      assert.ok(activity(chats[0]) >= activity(chats[1]), JSON.stringify(chats));

      const withBob = chats.find((chat) => chat.userId === bob.id);
      assert.equal(withBob.chatHeaderId, chatHeaderId);
      assert.equal(withBob.userName, bob.name);
      assert.equal(withBob.userAvatar, null);
      assert.equal(withBob.lastMessage, 'How are you?');
      assert.match(withBob.lastMessageTime, ISO_UTC);
      assert.equal(withBob.isOnline, true);
      assert.equal(withBob.unreadCount, 1, "Bob's one message is unread by Ann");
      assert.equal(withBob.friendshipStatus, 1);

      const withCy = chats.find((chat) => chat.userId === cy.id);
      assert.equal(withCy.userName, cy.name);
      assert.equal(withCy.lastMessage, null);
      assert.equal(withCy.lastMessageTime, null);
      assert.equal(withCy.isOnline, false);
      assert.equal(withCy.unreadCount, 0);
    });

    it('leaveRoom stops the room messages for that socket', async () => {
      const response = await emitWithReply(b.socket, 'leaveRoom', {
        chatHeaderId,
        accessToken: bob.token, // Optional if connected with token
      });
      assert.equal(response.error, undefined, JSON.stringify(response));
      assert.deepEqual(response, { chatHeaderId, left: true });

      const reply = await emitWithReply(a.socket, 'createMessage', {
        message: 'Are you still there?', chatHeaderId, accessToken: ann.token, messageType: 0, caption: '',
      });
      await a.inbox.waitFor('message', { where: (data) => data.chatMessage.id === reply.chatMessage.id });
      await drained(b.socket);
      assert.equal(
        b.inbox.matching('message', (data) => data.chatMessage.id === reply.chatMessage.id).length, 0);
    });

    it('clientStatus goes to friends on connect and disconnect, not to strangers', async () => {
      const c = await connectAs(cy, { clientType: 'ios' });
      const online = await a.inbox.waitFor('clientStatus', {
        where: (data) => data.userId === cy.id && data.activeNow,
      });
      assert.deepEqual(online[0], { userId: cy.id, clientType: 'ios', activeNow: true });

      c.socket.disconnect();
      const offline = await a.inbox.waitFor('clientStatus', {
        where: (data) => data.userId === cy.id && !data.activeNow,
      });
      assert.deepEqual(offline[0], { userId: cy.id, clientType: 'ios', activeNow: false });

      await drained(b.socket);
      assert.equal(b.inbox.matching('clientStatus', (data) => data.userId === cy.id).length, 0,
        'Bob is neither friend nor chat partner of Cy');
    });

    it('a bad payload without an ack comes back as an exception event', async () => {
      a.socket.emit('createMessage', {
        message: 'Hello, world!',
        chatHeaderId: 'not-a-number',
        accessToken: ann.token,
        messageType: 0,
        caption: '',
      });
      const [exception] = await a.inbox.waitFor('exception');
      assert.equal(exception.code, 'VALIDATION');
      assert.equal(exception.event, 'createMessage');
      assert.match(exception.error, /chatHeaderId/);

      // With an ack the same failure is the reply, and the socket keeps working.
      const refused = await emitWithReply(a.socket, 'updateMessage', {
        id: ids['Hi Ann'], message: 'not mine', chatHeaderId, accessToken: ann.token,
      });
      assert.equal(refused.code, 'FORBIDDEN', JSON.stringify(refused));
      assert.equal(typeof refused.error, 'string');
      const fine = await emitWithReply(a.socket, 'findAllMessages', {
        chatHeaderId: String(chatHeaderId), accessToken: ann.token, skipCount: 0, maxResultCount: 1,
      });
      assert.equal(fine.items.length, 1);
      assert.equal(a.inbox.matching('exception').length, 1);
    });

    it('a connection without a token (Basic Connection) works with the accessToken of each event', async () => {
      const { socket } = await connect(url, {
        query: {
          userId: bob.id, // Use GUID format
        },
        transports: [transport],
      });
      opened.push(socket);
      const without = await emitWithReply(socket, 'getMyChats', {});
      assert.equal(without.code, 'UNAUTHORIZED', JSON.stringify(without));
      assert.match(without.error, /access token/i);

      const withToken = await emitWithReply(socket, 'findAllChatHeaders', {
        AccessToken: bob.token, UserId: bob.id, SkipCount: 0, MaxResultCount: 20,
      });
      assert.equal(withToken.items[0]?.id, chatHeaderId, JSON.stringify(withToken));
    });
  });
});
