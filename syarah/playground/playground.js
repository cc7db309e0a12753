// The playground: each pane is one person, signed in with a development token from
// POST /playground/token and connected with socket.io-client as any web app would.
// Every event in and out, and every ack, goes to the pane's log.
'use strict';

const ACK_TIMEOUT_MS = 10000;
const TYPING_IDLE_MS = 2000;
const TYPING_SHOWN_MS = 6000;
// Only the sockets in a chat's room hear its events, and a chat is only joined while it
// is open (joinRoom marks it viewed, which stops its pushes): the list is read again
// now and then to learn of messages in the other chats, and of new chats.
const LIST_REFRESH_MS = 3000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function clock(iso) {
  return iso ? new Date(iso).toTimeString().slice(0, 5) : '';
}

function newUserId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Outside a secure context: the same version-4 layout from random bytes.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el('textarea');
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
}

const MEDIA_LABELS = { 1: 'audio', 2: 'photo', 3: 'file', 4: 'video' };

function preview(message) {
  if (!message) return 'No messages yet';
  const label = MEDIA_LABELS[message.messageType];
  if (label) return `[${label}]${message.caption ? ' ' + message.caption : ''}`;
  return message.message;
}

class Pane {
  constructor(root, name) {
    this.root = root;
    this.q = (selector) => root.querySelector(selector);
    this.user = null;
    this.socket = null;
    this.headers = new Map();      // chatHeaderId -> ChatHeader
    this.current = null;           // chatHeaderId of the open chat
    this.members = [];             // members of the open chat (read receipts)
    this.messages = new Map();     // id -> ChatMessage of the open chat
    this.editing = null;           // id of the message being edited
    this.typingSent = false;
    this.typingTimer = null;
    this.typingShown = null;
    this.entries = [];
    this.refreshing = null;
    this.listTimer = null;

    const signin = this.q('.signin');
    signin.elements.name.value = name;
    signin.elements.userId.value = newUserId();
    signin.addEventListener('submit', (ev) => { ev.preventDefault(); this.signIn(); });
    this.q('.signout').addEventListener('click', () => this.signOut());
    this.q('.copy-id').addEventListener('click', () => copyText(this.user.id));
    this.q('.open').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const other = ev.target.elements.otherUserId.value.trim();
      if (other) this.openChat({ otherUserId: other });
    });
    const composer = this.q('.composer');
    composer.addEventListener('submit', (ev) => { ev.preventDefault(); this.send(); });
    composer.elements.text.addEventListener('input', () => this.typed());
    composer.elements.photo.addEventListener('change', (ev) => {
      const file = ev.target.files[0];
      ev.target.value = '';
      if (file) this.sendPhoto(file);
    });
    this.q('.cancel-edit').addEventListener('click', () => this.stopEditing());
    this.q('.copy-log').addEventListener('click', async () => {
      await copyText(this.entries.map((e) => JSON.stringify(e)).join('\n'));
      this.flash('copied');
    });
    this.q('.clear-log').addEventListener('click', () => {
      this.entries = [];
      this.q('.entries').replaceChildren();
    });
  }

  flash(text) {
    const note = this.q('.copied');
    note.textContent = text;
    setTimeout(() => { note.textContent = ''; }, 1500);
  }

  // --- the log -------------------------------------------------------------------

  log(direction, event, payload, failed = false) {
    const entry = { time: new Date().toISOString(), direction, event, payload };
    this.entries.push(entry);
    const marks = { out: '→', in: '←', ack: '↩', http: 'http', state: '•' };
    const text = payload === undefined ? '' : JSON.stringify(payload);
    const row = el('li', { class: direction + (failed ? ' err' : ''), title: 'click to open and copy' },
      el('span', { class: 'dir' }, marks[direction] || direction),
      el('b', {}, event), ' ', el('pre', {}, text));
    row.addEventListener('click', async () => {
      row.classList.toggle('open');
      await copyText(JSON.stringify(entry));
      this.flash('copied one event');
    });
    const list = this.q('.entries');
    list.append(row);
    list.scrollTop = list.scrollHeight;
  }

  /** Emits an event with an ack callback; resolves with the ack (success or error). */
  call(event, payload) {
    this.log('out', event, payload);
    return new Promise((resolve) => {
      this.socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, reply) => {
        if (err) {
          reply = { error: `No ack within ${ACK_TIMEOUT_MS / 1000} s.`, code: 'TIMEOUT' };
        }
        const failed = reply && typeof reply === 'object' && 'error' in reply;
        this.log('ack', event, reply, failed);
        resolve(reply);
      });
    });
  }

  // --- signing in ------------------------------------------------------------------

  async signIn() {
    const form = this.q('.signin').elements;
    const body = { userId: form.userId.value.trim(), name: form.name.value.trim() };
    this.log('http', 'POST /playground/token', body);
    const response = await fetch('/playground/token', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const result = await response.json();
    this.log('http', `${response.status}`, result, !result.success);
    if (!result.success) return;
    this.user = { id: result.data.userId, name: result.data.name,
      token: result.data.accessToken };
    this.q('.signin').hidden = true;
    this.q('.me').hidden = false;
    this.q('.me-name').textContent = this.user.name;
    this.q('.me-id').textContent = this.user.id;
    this.root.dataset.userId = this.user.id;
    this.connect();
  }

  connect() {
    const socket = io(location.origin, {
      query: { userId: this.user.id, clientType: 'web' },
      // A function, so that a reconnect after the token expired asks for it again.
      auth: (give) => give({ accessToken: this.user.token }),
      transports: ['websocket', 'polling'],
    });
    this.socket = socket;
    socket.on('connect', () => {
      this.log('state', 'connect', { id: socket.id, recovered: socket.recovered });
      this.setConnected(true);
      this.refreshChats();
      clearInterval(this.listTimer);
      this.listTimer = setInterval(() => this.refreshChats(), LIST_REFRESH_MS);
      if (this.current !== null && !socket.recovered) {
        this.openChat({ chatHeaderId: this.current });
      }
    });
    socket.on('disconnect', (reason) => {
      this.log('state', 'disconnect', reason);
      clearInterval(this.listTimer);
      this.setConnected(false);
    });
    socket.on('connect_error', (error) => {
      this.log('state', 'connect_error', { message: error.message, data: error.data }, true);
    });
    socket.onAny((event, ...args) => {
      this.log('in', event, args.length === 1 ? args[0] : args);
      const handler = this.handlers[event];
      if (handler) handler.apply(this, args);
    });
  }

  setConnected(up) {
    this.q('.me .dot').classList.toggle('online', up);
    this.q('.conn').textContent = up ? 'connected' : 'disconnected';
    this.root.dataset.connected = up ? 'yes' : 'no';
  }

  signOut() {
    clearInterval(this.listTimer);
    if (this.socket) this.socket.disconnect();
    this.socket = null;
    this.user = null;
    this.current = null;
    this.headers.clear();
    this.messages.clear();
    delete this.root.dataset.userId;
    this.q('.me').hidden = true;
    this.q('.signin').hidden = false;
    this.q('.signin').elements.userId.value = newUserId();
    this.q('.chat-list').replaceChildren();
    this.q('.messages').replaceChildren();
    this.q('.conv-head').textContent = 'No chat open.';
  }

  // --- the chat list ---------------------------------------------------------------

  refreshChats() {
    // Several events in a burst need one refresh, not one each.
    if (!this.refreshing) {
      this.refreshing = new Promise((resolve) => setTimeout(resolve, 50)).then(async () => {
        this.refreshing = null;
        const reply = await this.call('findAllChatHeaders', { MaxResultCount: 50 });
        if (!reply || !Array.isArray(reply.items)) return;
        this.headers = new Map(reply.items.map((h) => [h.id, h]));
        const open = this.headers.get(this.current);
        if (open) {
          // Read receipts change only when someone's last read message does.
          const reads = (members) => JSON.stringify(members.map((m) => [m.userId, m.lastReadMessageId]));
          const changed = reads(open.members) !== reads(this.members);
          this.members = open.members;
          if (changed) this.renderMessages();
        }
        this.renderChats();
      });
    }
    return this.refreshing;
  }

  other(header) {
    return header.members.find((m) => m.userId !== this.user.id) || null;
  }

  chatTitle(header) {
    if (header.isGroup) return header.name || `Group ${header.id}`;
    const other = this.other(header);
    return (other && (other.name || other.userId)) || `Chat ${header.id}`;
  }

  renderChats() {
    const items = [...this.headers.values()].map((h) => {
      const other = h.isGroup ? null : this.other(h);
      const online = h.isGroup ? h.members.some((m) => m.userId !== this.user.id && m.isOnline)
        : Boolean(other && other.isOnline);
      return el('li', {
        class: h.id === this.current ? 'current' : '', 'data-chat-id': String(h.id),
        onclick: () => this.openChat({ chatHeaderId: h.id }),
      },
      el('div', { class: 'title' },
        el('span', { class: 'dot' + (online ? ' online' : ''), 'data-online': String(online) }),
        el('span', { class: 'name' }, this.chatTitle(h)),
        h.unreadCount ? el('span', { class: 'unread' }, String(h.unreadCount)) : null),
      el('div', { class: 'preview' }, preview(h.lastMessage),
        h.lastMessageTime ? ` · ${clock(h.lastMessageTime)}` : ''));
    });
    this.q('.chat-list').replaceChildren(...items);
  }

  // --- a conversation --------------------------------------------------------------

  async openChat(target) {
    const previous = this.current;
    const reply = await this.call('joinRoom', target);
    if (!reply || reply.error) return;
    if (previous !== null && previous !== reply.chatHeaderId) {
      await this.call('leaveRoom', { chatHeaderId: previous });
    }
    this.stopEditing();
    this.current = reply.chatHeaderId;
    this.root.dataset.chatId = String(this.current);
    this.members = reply.members;
    this.headers.set(reply.chatHeaderId, reply.chatHeader);
    const head = this.q('.conv-head');
    const other = reply.chatHeader.isGroup ? null : this.other(reply.chatHeader);
    const friendship = ['pending', 'accepted', 'rejected', 'blocked'][reply.friendshipStatus];
    head.replaceChildren(...[
      el('span', { class: 'dot' + (other && other.isOnline ? ' online' : '') }),
      el('b', {}, this.chatTitle(reply.chatHeader)),
      el('span', {}, `chat ${reply.chatHeaderId}`),
      friendship ? el('span', {}, `friendship ${friendship}`) : el('span', {}, 'not friends'),
    ]);
    const page = await this.call('findAllMessages',
      { chatHeaderId: reply.chatHeaderId, maxResultCount: 50 });
    this.messages = new Map();
    for (const m of (page.items || []).slice().reverse()) this.messages.set(m.id, m);
    this.renderMessages(true);
    await this.call('readMessage', { chatHeaderId: this.current });
    this.refreshChats();
  }

  readBy(message) {
    const others = this.members.filter((m) => m.userId !== this.user.id);
    return others.length > 0
      && others.every((m) => (m.lastReadMessageId || 0) >= message.id);
  }

  renderMessages(scroll = false) {
    const list = this.q('.messages');
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 30;
    const rows = [...this.messages.values()].sort((a, b) => a.id - b.id).map((m) => {
      const mine = m.userId === this.user.id;
      const body = MEDIA_LABELS[m.messageType] === 'photo'
        ? el('img', { src: m.message, alt: m.caption || 'photo' })
        : MEDIA_LABELS[m.messageType]
          ? el('a', { href: m.message, target: '_blank' }, `[${MEDIA_LABELS[m.messageType]}]`)
          : el('div', { class: 'text' }, m.message);
      const read = mine && this.readBy(m);
      return el('li', { class: 'msg' + (mine ? ' mine' : ''), 'data-id': String(m.id) },
        el('div', { class: 'who' }, m.user && m.user.name ? m.user.name : m.userId),
        body,
        m.caption && m.messageType !== 0 ? el('div', { class: 'text caption' }, m.caption) : null,
        el('div', { class: 'meta' }, clock(m.creationTime),
          m.lastModificationTime ? el('span', { class: 'edited' }, 'edited') : null,
          mine ? el('span', { class: 'receipt' + (read ? ' read' : '') }, read ? '✓✓ read' : '✓ sent') : null,
          mine && m.messageType === 0 ? el('button', { type: 'button', class: 'edit', onclick: () => this.startEditing(m) }, 'edit') : null,
          mine ? el('button', { type: 'button', class: 'delete', onclick: () => this.call('removeMessage', { id: m.id, chatHeaderId: m.chatHeaderId }) }, 'delete') : null));
    });
    list.replaceChildren(...rows);
    if (scroll || atBottom) list.scrollTop = list.scrollHeight;
  }

  startEditing(message) {
    this.editing = message.id;
    const composer = this.q('.composer');
    composer.classList.add('editing');
    composer.elements.text.value = message.message;
    composer.elements.text.focus();
    this.q('.send').textContent = 'Save';
    this.q('.cancel-edit').hidden = false;
  }

  stopEditing() {
    this.editing = null;
    const composer = this.q('.composer');
    composer.classList.remove('editing');
    this.q('.send').textContent = 'Send';
    this.q('.cancel-edit').hidden = true;
  }

  typed() {
    if (this.current === null || this.editing !== null) return;
    if (!this.typingSent) {
      this.typingSent = true;
      this.call('roomTyping', { chatHeaderId: this.current, isTyping: true, name: this.user.name });
    }
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingTimer);
    if (this.typingSent && this.current !== null) {
      this.typingSent = false;
      this.call('roomTyping', { chatHeaderId: this.current, isTyping: false, name: this.user.name });
    }
  }

  async send() {
    const input = this.q('.composer').elements.text;
    const text = input.value.trim();
    if (this.current === null || !text) return;
    if (this.editing !== null) {
      const reply = await this.call('updateMessage',
        { id: this.editing, chatHeaderId: this.current, message: text });
      if (reply && reply.chatMessage) this.messages.set(reply.chatMessage.id, reply.chatMessage);
      this.stopEditing();
    } else {
      this.stopTyping();
      const reply = await this.call('createMessage',
        { chatHeaderId: this.current, message: text, messageType: 0 });
      if (reply && reply.chatMessage) this.messages.set(reply.chatMessage.id, reply.chatMessage);
    }
    input.value = '';
    this.renderMessages(true);
  }

  async sendPhoto(file) {
    if (this.current === null) return;
    const form = new FormData();
    form.append('file', file);
    form.append('messageType', '2');
    this.log('http', 'POST /api/chat/uploadFile', { file: file.name, size: file.size, messageType: 2 });
    const response = await fetch('/api/chat/uploadFile', {
      method: 'POST', headers: { Authorization: `Bearer ${this.user.token}` }, body: form,
    });
    const result = await response.json();
    this.log('http', `${response.status}`, result, !result.success);
    if (!result.success) return;
    const caption = this.q('.composer').elements.text.value.trim();
    const reply = await this.call('createMessage', {
      chatHeaderId: this.current, message: result.data, messageType: 2, caption,
    });
    if (reply && reply.chatMessage) {
      this.messages.set(reply.chatMessage.id, reply.chatMessage);
      this.q('.composer').elements.text.value = '';
      this.renderMessages(true);
    }
  }

  showTyping(data) {
    const line = this.q('.typing');
    clearTimeout(this.typingShown);
    line.textContent = data.isTyping ? `${data.name} is typing…` : '';
    if (data.isTyping) {
      this.typingShown = setTimeout(() => { line.textContent = ''; }, TYPING_SHOWN_MS);
    }
  }
}

// Server events: what each one changes on screen (all of them are logged).
Pane.prototype.handlers = {
  message(data) {
    const m = data.chatMessage;
    if (data.chatHeaderId === this.current) {
      this.messages.set(m.id, m);
      this.renderMessages();
      if (m.userId !== this.user.id) {
        this.showTyping({ isTyping: false });
        this.call('readMessage', { chatHeaderId: this.current });
      }
    }
    this.refreshChats();
  },
  typing(data) {
    if (data.chatHeaderId === this.current) this.showTyping(data);
  },
  messageUpdated(m) {
    if (this.messages.has(m.id)) {
      this.messages.set(m.id, m);
      this.renderMessages();
    }
    this.refreshChats();
  },
  messageDeleted(id) {
    if (this.messages.delete(id)) this.renderMessages();
    this.refreshChats();
  },
  messageHasBeenRead() {
    this.refreshChats();
  },
  onMemberJoin() {
    this.refreshChats();
  },
  clientStatus(data) {
    for (const h of this.headers.values()) {
      for (const m of h.members) {
        if (m.userId === data.userId) m.isOnline = data.activeNow;
      }
    }
    this.renderChats();
  },
};

function start() {
  const template = document.getElementById('pane-template');
  const panes = document.getElementById('panes');
  if (typeof io === 'undefined') {
    document.getElementById('missing').hidden = false;
  }
  window.panes = ['Ann', 'Bob'].map((name, i) => {
    const root = template.content.firstElementChild.cloneNode(true);
    root.id = `pane-${'ab'[i]}`;
    panes.append(root);
    return new Pane(root, name);
  });
}

start();
