"""A small streaming HTTP/1.1 client for upload tests: it sends a multipart body from
generators (so a 500 MB upload never exists in the test's memory either), reads the
answer while still sending, and reports how much it had sent when the answer came,
which shows whether an oversize upload was cut off early."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

MIB = 1024 * 1024


@dataclass
class Part:
    name: str
    body: bytes | None = None
    filename: str | None = None
    content_type: str | None = None
    # For large bodies: size and a factory of byte chunks, instead of body.
    size: int = 0
    chunks: object = None

    def length(self) -> int:
        return len(self.body) if self.body is not None else self.size

    def iter_chunks(self):
        if self.body is not None:
            yield self.body
        else:
            yield from self.chunks()


def field_part(name: str, value) -> Part:
    return Part(name, str(value).encode())


def file_part(data: bytes, filename: str = "file.bin", content_type=None) -> Part:
    return Part("file", data, filename, content_type or "application/octet-stream")


def streamed_file(size: int, head: bytes = b"", filename: str = "big.mp4",
                  content_type="video/mp4") -> Part:
    """``size`` bytes: ``head`` then a repeated random MiB, generated as it is sent."""
    block = os.urandom(MIB)

    def chunks():
        yield head
        left = size - len(head)
        while left > 0:
            piece = block[:min(MIB, left)]
            left -= len(piece)
            yield piece
    return Part("file", None, filename, content_type, size=size, chunks=chunks)


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes
    sent: int
    body_size: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def json(self):
        return json.loads(self.body)


def _part_header(boundary: str, part: Part) -> bytes:
    disposition = f'form-data; name="{part.name}"'
    if part.filename is not None:
        disposition += f'; filename="{part.filename}"'
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    if part.content_type:
        lines.append(f"Content-Type: {part.content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


async def post_multipart(base_url: str, parts: list[Part], token: str | None = None, *,
                         path: str = "/api/chat/uploadFile", chunked: bool = False,
                         content_length: int | None = None, headers: dict | None = None,
                         slow_after: int | None = None, timeout: float = 60) -> Reply:
    """POST ``parts`` as multipart/form-data. With ``slow_after``, the body is sent at
    about 50 MiB/s past that many bytes, so that a reply cut off early visibly
    arrives before the body's end."""
    url = urlparse(base_url)
    boundary = "----syarah" + uuid.uuid4().hex
    pieces = []
    for part in parts:
        pieces.append((_part_header(boundary, part), part))
    epilogue = f"\r\n--{boundary}--\r\n".encode()
    total = 0
    for i, (head, part) in enumerate(pieces):
        total += (2 if i else 0) + len(head) + part.length()
    total += len(epilogue)

    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    request = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}",
               f"Content-Type: multipart/form-data; boundary={boundary}"]
    if token:
        request.append(f"Authorization: Bearer {token}")
    if chunked:
        request.append("Transfer-Encoding: chunked")
    else:
        request.append(f"Content-Length: {content_length if content_length is not None else total}")
    for k, v in (headers or {}).items():
        request.append(f"{k}: {v}")
    writer.write(("\r\n".join(request) + "\r\n\r\n").encode())
    sent = 0

    async def send(data: bytes):
        nonlocal sent
        if not data:
            return
        writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        await writer.drain()
        sent += len(data)
        if slow_after is not None and sent > slow_after:
            await asyncio.sleep(len(data) / (50 * MIB))

    async def send_body():
        for i, (head, part) in enumerate(pieces):
            await send((b"\r\n" if i else b"") + head)
            for chunk in part.iter_chunks():
                await send(chunk)
        await send(epilogue)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def read_reply():
        return await read_answer(reader)

    sender = asyncio.ensure_future(send_body())
    receiver = asyncio.ensure_future(read_reply())
    try:
        done, _ = await asyncio.wait({sender, receiver}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if receiver not in done:
            # The body went out (or the server stopped taking it): the answer is due.
            await asyncio.wait({receiver}, timeout=timeout)
        status, hdrs, body = receiver.result()
        sent_at_reply = sent
    finally:
        sender.cancel()
        try:
            await sender
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        try:
            writer.close()
            await writer.wait_closed()
        except OSError:
            # The server closes a refused upload's connection while it is sent.
            pass
    return Reply(status, hdrs, body, sent_at_reply, total)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS")


def hwm_kib(pid: int) -> int:
    return _status_kib(pid, "VmHWM")


# ----- the multipart body as Flutter apps send it

# Dart's http package draws its boundary from these characters after a fixed prefix,
# 70 characters in all.
_DART_BOUNDARY_CHARS = "+_-." + "0123456789" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + \
    "abcdefghijklmnopqrstuvwxyz"


def dart_multipart(fields: dict, data: bytes, filename: str) -> tuple[dict, bytes]:
    """Headers and body byte for byte as Dart's ``http.MultipartRequest`` writes them
    for ``fields`` and one ``MultipartFile.fromPath('file', ...)``: fields first,
    lower-case part headers, the part type ``application/octet-stream`` whatever the
    file is, and the path's basename as the file name."""
    import random
    prefix = "dart-http-boundary-"
    boundary = prefix + "".join(random.choice(_DART_BOUNDARY_CHARS)
                                for _ in range(70 - len(prefix)))
    body = bytearray()
    for name, value in fields.items():
        body += (f"--{boundary}\r\n"
                 f'content-disposition: form-data; name="{name}"\r\n\r\n'
                 f"{value}\r\n").encode()
    body += (f"--{boundary}\r\n"
             "content-type: application/octet-stream\r\n"
             f'content-disposition: form-data; name="file"; filename="{filename}"'
             "\r\n\r\n").encode()
    body += data + b"\r\n" + f"--{boundary}--\r\n".encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}",
               "content-length": str(len(body))}
    return headers, bytes(body)


class KeepAliveClient:
    """One HTTP/1.1 connection reused for every request, as Dart's and browsers'
    clients do; ``connections`` counts how many it had to open. A request on a
    connection the server closed without saying so fails (http.client raises
    RemoteDisconnected: the "socket hang up" of Node)."""

    def __init__(self, base_url: str, token: str | None = None):
        import http.client
        url = urlparse(base_url)
        self._http = http.client
        self.host, self.port = url.hostname, url.port
        self.token = token
        self.conn = None
        self.connections = 0

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 30):
        if self.conn is None or self.conn.sock is None:
            self.conn = self._http.HTTPConnection(self.host, self.port, timeout=timeout)
            self.conn.connect()
            self.connections += 1
        hdrs = dict(headers or {})
        if self.token:
            hdrs["authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, body=body, headers=hdrs)
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.will_close:
            # The server said Connection: close: the next request opens another.
            self.conn.close()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, data

    def upload(self, fields: dict, data: bytes, filename: str):
        headers, body = dart_multipart(fields, data, filename)
        return self.request("POST", "/api/chat/uploadFile", body, headers)

    def close(self):
        if self.conn is not None:
            self.conn.close()


async def start_upload(base_url: str, token: str | None, size: int, message_type=4,
                       first: bytes = b"", filename: str = "clip.mp4"):
    """Open a connection and send an upload's headers and the first bytes of a body
    that would be ``size`` bytes of file: the upload is then in flight, held by the
    caller. Returns (reader, writer)."""
    url = urlparse(base_url)
    boundary = "----syarah" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"messageType\""
            f"\r\n\r\n{message_type}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"file\"; filename=\"{filename}\"\r\nContent-Type: "
            "application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = [f"POST /api/chat/uploadFile HTTP/1.1", f"Host: {url.hostname}:{url.port}",
               f"Content-Type: multipart/form-data; boundary={boundary}",
               f"Content-Length: {len(head) + size + len(tail)}"]
    if token:
        request.append(f"Authorization: Bearer {token}")
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(("\r\n".join(request) + "\r\n\r\n").encode() + head + first)
    await writer.drain()
    return reader, writer


async def read_answer(reader) -> tuple[int, dict, bytes]:
    """The status, headers and body of an HTTP answer; raises ConnectionError when the
    connection closes without one."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    hdrs = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode("latin1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    length = int(hdrs.get("content-length", 0))
    return int(status_line.split()[1]), hdrs, await reader.readexactly(length)
