// The playground in headless Chromium, as a person would use it: two people sign in
// side by side, open a chat, exchange messages, see typing and a read receipt, send a
// photo, edit and delete. Run by tests/test_playground.py, which starts the server.
//
// Environment: CHAT_SERVER_URL (the server), CHROMIUM (the browser), PHOTO (an image
// file to send), SCREENSHOT (where to save the page mid-conversation), PROFILE (a
// fresh, empty folder for the browser profiles).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import puppeteer from 'puppeteer-core';

const WAIT_MS = 15000;
const { CHAT_SERVER_URL: PLAYGROUND_URL, CHROMIUM, PHOTO, SCREENSHOT, PROFILE } = process.env;

async function textOf(page, selector) {
  return page.$eval(selector, (node) => node.textContent);
}

/** Waits until `check` (run in the page) is true; fails naming `what`. */
async function until(page, what, check, ...args) {
  try {
    await page.waitForFunction(check, { timeout: WAIT_MS, polling: 50 }, ...args);
  } catch (err) {
    const log = await page.$$eval('.entries li', (rows) => rows.slice(-30).map((r) => r.textContent));
    throw new Error(`${what}: not seen within ${WAIT_MS} ms\nlast events:\n${log.join('\n')}`);
  }
}

async function signIn(page, pane, name) {
  await page.$eval(`#${pane} .signin input[name=name]`, (input, value) => { input.value = value; }, name);
  await page.click(`#${pane} .signin button`);
  await until(page, `${name} connected`,
    (id) => document.getElementById(id).dataset.connected === 'yes', pane);
  return page.$eval(`#${pane}`, (node) => node.dataset.userId);
}

// Lists are drawn anew when the server's data changes: a click in the page itself
// cannot land on an element that was just replaced.
async function click(page, selector) {
  await page.$eval(selector, (node) => node.click());
}

async function send(page, pane, text) {
  await page.type(`#${pane} .composer input[name=text]`, text);
  await click(page, `#${pane} .composer .send`);
}

function messageWith(pane, text) {
  return [(id, wanted) => [...document.querySelectorAll(`#${id} .msg .text`)]
    .some((node) => node.textContent === wanted), pane, text];
}

function launch(profile) {
  assert.ok(PLAYGROUND_URL && CHROMIUM && PHOTO && PROFILE,
    'run through pytest (tests/test_playground.py), which sets the environment');
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

test('without socket.io-client the page says how to install it', { timeout: 60000 }, async () => {
  const browser = await launch(`${PROFILE}/without-client`);
  try {
    const page = await browser.newPage();
    await page.setRequestInterception(true);
    page.on('request', (request) => {
      if (request.url().includes('/playground/vendor/')) request.abort();
      else request.continue();
    });
    await page.goto(`${PLAYGROUND_URL}/playground`, { waitUntil: 'load' });
    assert.equal(await page.$eval('#missing', (n) => n.hidden), false);
    assert.match(await textOf(page, '#missing'), /bin\/setup-env.*npm/s);
  } finally {
    await browser.close();
  }
});

test('two people chat in the playground', { timeout: 120000 }, async () => {
  const browser = await launch(`${PROFILE}/chat`);
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
    });
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
    });
    await page.setViewport({ width: 1280, height: 720 });

    // GET / leads to the playground while it is on.
    await page.goto(`${PLAYGROUND_URL}/`, { waitUntil: 'load' });
    assert.equal(new URL(page.url()).pathname, '/playground');
    assert.equal(await page.$eval('#missing', (n) => n.hidden), true,
      'the page says socket.io-client is missing');

    const ann = await signIn(page, 'pane-a', 'Ann');
    const bob = await signIn(page, 'pane-b', 'Bob');
    assert.notEqual(ann, bob);

    // Ann opens a chat by Bob's id and writes.
    await page.type('#pane-a .open input', bob);
    await page.click('#pane-a .open button');
    await until(page, 'Ann has the chat open', () => document.getElementById('pane-a').dataset.chatId);
    await send(page, 'pane-a', 'Hello Bob!');
    await until(page, 'Ann sees her message', ...messageWith('pane-a', 'Hello Bob!'));

    // Bob's list shows the chat with its last message, one unread, Ann online.
    await until(page, "Bob's chat list: Ann's chat, unread 1, online", () => {
      const item = document.querySelector('#pane-b .chat-list li');
      return item && item.querySelector('.unread')?.textContent === '1'
        && item.querySelector('.preview').textContent.includes('Hello Bob!')
        && item.querySelector('.name').textContent === 'Ann'
        && item.querySelector('.dot').dataset.online === 'true';
    });

    // Bob opens it: Ann sees the read receipt.
    await click(page, '#pane-b .chat-list li');
    await until(page, 'Bob sees the message', ...messageWith('pane-b', 'Hello Bob!'));
    await until(page, "Ann sees 'read'", () =>
      document.querySelector('#pane-a .msg.mine .receipt')?.textContent === '✓✓ read');
    await until(page, "Bob's unread count is gone",
      () => !document.querySelector('#pane-b .chat-list li .unread'));

    // Bob types: Ann sees it; Bob sends: Ann gets it.
    await page.type('#pane-b .composer input[name=text]', 'Hi Ann');
    await until(page, 'Ann sees Bob typing',
      () => document.querySelector('#pane-a .typing').textContent === 'Bob is typing…');
    await page.click('#pane-b .composer .send');
    await until(page, "Ann gets Bob's message", ...messageWith('pane-a', 'Hi Ann'));

    // Ann sends a photo (uploadFile, then createMessage with messageType 2).
    await page.type('#pane-a .composer input[name=text]', 'The beach');
    const picker = await page.$('#pane-a .composer input[type=file]');
    await picker.uploadFile(PHOTO);
    for (const pane of ['pane-a', 'pane-b']) {
      await until(page, `the photo shows in ${pane}`, (id) => {
        const img = document.querySelector(`#${id} .msg img`);
        return img && img.complete && img.naturalWidth > 0;
      }, pane);
    }
    const src = await page.$eval('#pane-b .msg img', (img) => img.getAttribute('src'));
    assert.match(src, /^\/uploads\/chat-messages\/images\/[A-Za-z0-9_-]+\.webp$/);
    await until(page, 'the caption shows', () =>
      document.querySelector('#pane-b .msg .caption')?.textContent === 'The beach');

    // Mid-conversation, Bob typing a reply: the picture for the README.
    await page.type('#pane-b .composer input[name=text]', 'Lovely!');
    await until(page, 'Ann sees Bob typing again',
      () => document.querySelector('#pane-a .typing').textContent === 'Bob is typing…');
    if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT });

    // Ann edits her first message; Bob sees the new text, marked edited.
    await click(page, '#pane-a .msg.mine .edit');
    await page.$eval('#pane-a .composer input[name=text]', (input) => { input.value = ''; });
    await send(page, 'pane-a', 'Hello Bob! (edited)');
    await until(page, 'Bob sees the edit', ...messageWith('pane-b', 'Hello Bob! (edited)'));
    assert.equal(await page.$$eval('#pane-b .msg .edited', (n) => n.length), 1);

    // Ann deletes it; it goes from Bob's screen.
    await click(page, '#pane-a .msg.mine .delete');
    await until(page, 'the message is gone for Bob',
      () => ![...document.querySelectorAll('#pane-b .msg .text')]
        .some((n) => n.textContent.startsWith('Hello Bob')));

    // The log holds each event out with its ack, and those that came in.
    const log = await page.$$eval('#pane-a .entries li', (rows) => rows.map((r) => r.textContent));
    for (const line of ['→joinRoom', '↩joinRoom', '→createMessage', '↩createMessage',
      '←messageHasBeenRead', '←typing', '←messageDeleted', '→updateMessage']) {
      assert.ok(log.some((row) => row.startsWith(line)), `log has ${line}`);
    }
    assert.match(await textOf(page, '#pane-a .conv-head'), /Bob/);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
