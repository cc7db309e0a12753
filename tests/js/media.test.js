// The API document's media message flow (the "Image Message Example (with file
// upload)" and the "Video Message Example"), driven by the real socket.io-client v4 and
// Node's own fetch, FormData and File, once over each transport: upload, createMessage
// with the returned path, the room receives it, the file downloads.
// Started by tests/test_js_client.py, which runs the server, prepares the users and
// makes the sample files (CHAT_TEST_MEDIA).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

import { connector, drained, emitWithReply, fromEnvironment } from './helpers.js';

const TRANSPORTS = ['websocket', 'polling'];
const { url, users } = fromEnvironment(TRANSPORTS, 2);
const media = JSON.parse(process.env.CHAT_TEST_MEDIA ?? 'null');
if (!media) throw new Error('CHAT_TEST_MEDIA is not set: run these tests through pytest.');

const UPLOAD_PATH = /^\/uploads\/chat-messages\/(images|videos|audios|files)\/[A-Za-z0-9_-]{32}\.[a-z0-9]+$/;
const MAX_SIDE = 1920; // Photos are fitted inside 1920×1920.

// What a browser's <input type="file"> would hand the page.
async function fileFromDisk(path, name, type) {
  return new File([await readFile(path)], name, { type });
}

/** The document's Step 1, as written there. */
async function uploadFile(file, messageType, accessToken) {
  const formData = new FormData();
  formData.append('file', file);
  formData.append('messageType', messageType);
  const uploadResponse = await fetch(`${url}/api/chat/uploadFile`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${accessToken}` },
    body: formData,
  });
  const uploadResult = await uploadResponse.json();
  assert.equal(uploadResponse.status, 200, JSON.stringify(uploadResult));
  return uploadResult;
}

/** A WebP's canvas size, read from its first chunk (simple lossy, lossless, extended). */
function webpSize(bytes) {
  const chunk = bytes.toString('latin1', 12, 16);
  if (chunk === 'VP8 ') {
    return { width: bytes.readUInt16LE(26) & 0x3fff, height: bytes.readUInt16LE(28) & 0x3fff };
  }
  if (chunk === 'VP8L') {
    const bits = bytes.readUInt32LE(21);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X') {
    return { width: bytes.readUIntLE(24, 3) + 1, height: bytes.readUIntLE(27, 3) + 1 };
  }
  throw new Error(`not a WebP chunk: ${JSON.stringify(chunk)}`);
}

describe('uploadFile without a token', () => {
  it('answers 401 in the envelope', async () => {
    const formData = new FormData();
    formData.append('file', await fileFromDisk(media.image.path, 'beach.jpg', 'image/jpeg'));
    formData.append('messageType', 2);
    const response = await fetch(`${url}/api/chat/uploadFile`, { method: 'POST', body: formData });
    assert.equal(response.status, 401);
    assert.match(response.headers.get('content-type'), /^application\/json/);
    const body = await response.json();
    assert.equal(body.success, false);
    assert.equal(body.data, null);
    assert.match(body.message, /token/i);
  });
});

TRANSPORTS.forEach((transport, group) => {
  // Ann and Bob are friends (made over REST by pytest); each transport has its own pair.
  const [ann, bob] = users.slice(2 * group, 2 * group + 2);

  describe(`the document's media message flow over ${transport}`, () => {
    const opened = [];
    let a; // Ann's {socket, inbox}
    let b; // Bob's
    let chatHeaderId;
    let imagePath; // what uploadFile returned for Ann's photo

    const connectAs = connector(url, transport, opened);

    before(async () => {
      a = await connectAs(ann);
      b = await connectAs(bob);
      const joined = await emitWithReply(a.socket, 'joinRoom', {
        otherUserId: bob.id, accessToken: ann.token,
      });
      chatHeaderId = joined.chatHeaderId;
      assert.ok(Number.isInteger(chatHeaderId), JSON.stringify(joined));
      const bobJoined = await emitWithReply(b.socket, 'joinRoom', {
        chatHeaderId, accessToken: bob.token,
      });
      assert.equal(bobJoined.joined, true, JSON.stringify(bobJoined));
    });

    after(() => {
      for (const socket of opened) socket.disconnect();
    });

    it('Image Message Example: upload, createMessage, the room receives it, it downloads', async () => {
      const imageFile = await fileFromDisk(media.image.path, 'beach.jpg', 'image/jpeg');
      const accessToken = ann.token;

      // Step 1: Upload file
      const uploadResult = await uploadFile(imageFile, 2, accessToken); // 2 = Image
      assert.equal(uploadResult.success, true);
      assert.equal(uploadResult.message, null);
      const filePath = uploadResult.data; // e.g., "/uploads/chat-messages/images/abc123.webp"
      assert.match(filePath, UPLOAD_PATH);
      assert.ok(filePath.startsWith('/uploads/chat-messages/images/') && filePath.endsWith('.webp'),
        filePath);
      imagePath = filePath;

      // Step 2: Send message with file path
      a.socket.emit('createMessage', {
        message: filePath, // Use the uploaded file path
        chatHeaderId,
        accessToken,
        messageType: 2, // 2 = Image
        caption: 'Check out this image!', // Optional caption
      });
      const isImage = (data) => data.chatMessage?.message === filePath;
      const [atBob] = await b.inbox.waitFor('message', { where: isImage });
      const [atAnn] = await a.inbox.waitFor('message', { where: isImage });
      assert.deepEqual(atAnn, atBob);
      assert.equal(atBob.chatHeaderId, chatHeaderId);
      assert.equal(atBob.chatMessage.messageType, 2);
      assert.equal(atBob.chatMessage.caption, 'Check out this image!');
      assert.equal(atBob.chatMessage.userId, ann.id);

      // Bob shows the picture: the path is served from the same origin.
      const download = await fetch(url + atBob.chatMessage.message);
      assert.equal(download.status, 200);
      assert.equal(download.headers.get('content-type'), 'image/webp');
      assert.equal(download.headers.get('x-content-type-options'), 'nosniff');
      const bytes = Buffer.from(await download.arrayBuffer());
      assert.equal(bytes.toString('latin1', 0, 4), 'RIFF');
      assert.equal(bytes.toString('latin1', 8, 12), 'WEBP');
      assert.equal(bytes.readUInt32LE(4) + 8, bytes.length, 'the RIFF size covers the whole file');
      const { width, height } = media.image;
      const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
      const size = webpSize(bytes);
      assert.ok(Math.abs(size.width - width * scale) <= 1 && Math.abs(size.height - height * scale) <= 1,
        `${width}×${height} fitted inside ${MAX_SIDE}: got ${size.width}×${size.height}`);
    });

    it('Video Message Example: upload, createMessage, the room receives it, it downloads and seeks', async () => {
      const videoFile = await fileFromDisk(media.video.path, 'holiday.mp4', 'video/mp4');
      const original = Buffer.from(await videoFile.arrayBuffer());
      const accessToken = ann.token;

      // Upload video first
      const uploadResult = await uploadFile(videoFile, 4, accessToken); // 4 = Video
      assert.equal(uploadResult.success, true);
      assert.match(uploadResult.data, UPLOAD_PATH);
      assert.ok(uploadResult.data.startsWith('/uploads/chat-messages/videos/'), uploadResult.data);
      assert.ok(!uploadResult.data.includes('holiday'), "the stored name is not the client's");

      // Send message with video path
      a.socket.emit('createMessage', {
        message: uploadResult.data,
        chatHeaderId,
        accessToken,
        messageType: 4, // 4 = Video
        caption: 'Watch this video!',
      });
      const isVideo = (data) => data.chatMessage?.message === uploadResult.data;
      const [atBob] = await b.inbox.waitFor('message', { where: isVideo });
      assert.equal(atBob.chatMessage.messageType, 4);
      assert.equal(atBob.chatMessage.caption, 'Watch this video!');
      await a.inbox.waitFor('message', { where: isVideo });

      const download = await fetch(url + atBob.chatMessage.message);
      assert.equal(download.status, 200);
      assert.equal(download.headers.get('content-type'), 'video/mp4');
      assert.equal(download.headers.get('accept-ranges'), 'bytes');
      assert.ok(original.equals(Buffer.from(await download.arrayBuffer())),
        'the video downloads byte for byte as uploaded');

      // A player seeking into the video asks for a range.
      const start = 1000;
      const end = 4999;
      const seek = await fetch(url + atBob.chatMessage.message, {
        headers: { Range: `bytes=${start}-${end}` },
      });
      assert.equal(seek.status, 206);
      assert.equal(seek.headers.get('content-range'), `bytes ${start}-${end}/${original.length}`);
      assert.ok(original.subarray(start, end + 1).equals(Buffer.from(await seek.arrayBuffer())),
        'the range holds exactly the requested bytes');
    });

    it('createMessage with an image path as messageType 4 answers VALIDATION', async () => {
      assert.ok(imagePath, 'the image example ran first');
      const refused = await emitWithReply(a.socket, 'createMessage', {
        message: imagePath,
        chatHeaderId,
        accessToken: ann.token,
        messageType: 4, // 4 = Video, but the path is an image's
        caption: 'Watch this video!',
      });
      assert.equal(refused.code, 'VALIDATION', JSON.stringify(refused));
      assert.match(refused.error, /image/i);

      // Nothing reached the room, and only the two examples' messages are stored.
      await drained(b.socket);
      assert.equal(b.inbox.matching('message', (data) => data.chatMessage?.messageType === 4
        && data.chatMessage?.message === imagePath).length, 0);
      const page = await emitWithReply(b.socket, 'findAllMessages', {
        chatHeaderId: String(chatHeaderId), accessToken: bob.token, skipCount: 0, maxResultCount: 50,
      });
      assert.deepEqual(page.items.map((m) => [m.messageType, m.caption]),
        [[4, 'Watch this video!'], [2, 'Check out this image!']]);
    });
  });
});
