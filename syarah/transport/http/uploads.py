"""POST /api/chat/uploadFile (streamed to disk while it arrives) and GET /uploads/...

The body is never held in memory: Tornado hands each received piece to
data_received, streaming-form-data splits the multipart stream into parts, and the
file part goes to a staging file through aiofiles, chunk by chunk. Limits hold while
the bytes arrive: the request is answered 413 as soon as the file passes its type's
limit (the largest limit until the form has said the type), and the staged part is
deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import unicodedata
import urllib.parse


import aiofiles
import tornado.web
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget

from syarah import metrics
from syarah.errors import (ChatError, Internal, PayloadTooLarge,
                           UnsupportedMedia, Validation)
from syarah.transport.http.base import ApiHandler, as_chat_error, render_error
from syarah.media.kinds import BY_FOLDER, CONTENT_TYPES
from syarah.media.service import MIB, MediaService, client_extension, client_file_name
from syarah.media.sniff import HEAD_BYTES
from syarah.transport import compat
from syarah.types import MessageType

log = logging.getLogger("syarah.uploads")

# messageType is one digit; anything longer is not a message type.
MAX_FIELD_BYTES = 16
# A body's boundaries, part headers and messageType field: what a declared length
# may hold beyond the file when it is weighed against the day's quota.
FORM_SLACK = 16 * 1024
# After refusing a body that is still arriving, the connection stays open this long,
# taking and dropping what comes, before it closes. Closing a socket with unread
# input sends a reset, and a reset makes the client's system discard our answer
# unread: the sender would see "connection reset" instead of the 413.
LINGER_SECONDS = 2.0


class TooSlow(ChatError):
    code = "VALIDATION"
    status = 408
    default_message = "The upload arrived too slowly and was stopped; try again."


class IncomingUpload:
    """One upload request's state while its body streams in."""

    def __init__(self, media: MediaService, user_id: str):
        self.media = media
        self.user_id = user_id
        self.message_type: int | None = None
        self.ext = ""
        self.original_name: str | None = None
        self.staged: str | None = None
        self._file = None
        self.file_parts = 0
        self.file_done = False
        self.size = 0
        self.head = bytearray()
        self.sniffed = False

    def set_message_type(self, raw: bytes) -> None:
        text = raw.decode("ascii", "replace").strip()
        if text not in ("1", "2", "3", "4"):
            raise Validation("messageType must be 1 (audio), 2 (image), 3 (file) or "
                             "4 (video).")
        self.message_type = int(text)
        self._check_size()
        self._sniff_early()

    async def open_file(self, filename: str | None) -> None:
        self.file_parts += 1
        if self.file_parts > 1:
            raise Validation("Send one file per upload.")
        self.ext = client_extension(filename)
        self.original_name = client_file_name(filename)
        self.staged = self.media.staging_path()
        self._file = await aiofiles.open(self.staged, "wb")

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._check_size()
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[:HEAD_BYTES - len(self.head)]
            self._sniff_early()
        await self._file.write(chunk)

    async def close_file(self) -> None:
        await self._file.close()
        self._file = None
        self.file_done = True

    def _check_size(self) -> None:
        limit = self.media.limit(self.message_type)
        if self.size > limit:
            what = {1: "An audio file", 2: "An image", 3: "A file", 4: "A video"}.get(
                self.message_type, "An upload")
            raise PayloadTooLarge(f"{what} may be at most {limit // MIB} MB.")

    def _sniff_early(self) -> None:
        # A renamed executable is refused after its first 8 KiB, not after 500 MB.
        if (not self.sniffed and self.message_type is not None
                and (len(self.head) >= HEAD_BYTES or self.file_done)):
            self.sniffed = True
            if self.message_type in (MessageType.AUDIO, MessageType.VIDEO):
                self.media.media_extension(self.message_type, bytes(self.head))

    async def complete(self) -> str:
        if self.message_type is None:
            raise Validation("messageType is required: 1 (audio), 2 (image), 3 (file) "
                             "or 4 (video).")
        if not self.file_done:
            raise Validation("file is required: send the file as the multipart field "
                             "'file'.")
        if self.size == 0:
            raise Validation("The file is empty.")
        await self.media.count_bytes(self.user_id, self.size)
        staged, self.staged = self.staged, None
        return await self.media.store_upload(self.user_id, self.message_type, staged,
                                             self.ext, bytes(self.head), self.original_name)

    async def discard(self) -> None:
        """Close and delete whatever was staged; safe to call more than once."""
        file, self._file = self._file, None
        if file is not None:
            try:
                await file.close()
            except Exception:
                pass
        staged, self.staged = self.staged, None
        if staged is not None:
            try:
                os.remove(staged)
            except FileNotFoundError:
                pass


class _FileTarget(BaseTarget):
    def __init__(self, upload: IncomingUpload):
        super().__init__()
        self.upload = upload

    async def on_start_async(self):
        await self.upload.open_file(self.multipart_filename)

    async def on_data_received_async(self, chunk: bytes):
        await self.upload.write(chunk)

    async def on_finish_async(self):
        await self.upload.close_file()


class _FieldTarget(BaseTarget):
    """A small text field, refused when it is not small."""

    def __init__(self, on_value):
        super().__init__()
        self.on_value = on_value
        self.value = bytearray()

    async def on_start_async(self):
        self.value = bytearray()

    async def on_data_received_async(self, chunk: bytes):
        self.value += chunk
        if len(self.value) > MAX_FIELD_BYTES:
            raise Validation("messageType must be 1, 2, 3 or 4.")

    async def on_finish_async(self):
        self.on_value(bytes(self.value))


@tornado.web.stream_request_body
class UploadFileHandler(ApiHandler):
    """POST /api/chat/uploadFile: multipart `file` + `messageType`, Bearer token."""

    upload: IncomingUpload | None = None
    parser: StreamingFormDataParser | None = None
    received = 0
    body_complete = False
    closes_early = False
    # The user whose in-flight slot this request holds, until it ends.
    slot_user: str | None = None
    quota_left: int | None = None
    rate_timer: asyncio.TimerHandle | None = None
    received_at_check = 0

    async def prepare(self):
        # prepare() runs before any of the body is read: everything that can refuse
        # the request without its body does so here.
        if self.request.method != "POST":
            return
        media: MediaService = self.services.media
        # The server-wide limit is sized for Socket.IO polling packets; this request
        # may stream up to the largest upload. data_received counts the body itself
        # so that an oversize one gets the envelope; Tornado's own check (a bare 400)
        # is only a backstop, beyond what a client may declare at once. Set first,
        # so that a refusal below is not followed by that bare 400.
        self.request.connection.set_max_body_size(4 * media.max_body)
        ctx = await self.context()
        media.take_slot(ctx.user.id)
        self.slot_user = ctx.user.id
        self.quota_left = await media.quota_left(ctx.user.id)
        raw_length = self.request.headers.get("Content-Length")
        if raw_length is not None:
            try:
                length = int(raw_length)
            except ValueError:
                raise Validation("Content-Length must be a number.")
            if length > media.max_body:
                raise PayloadTooLarge(
                    f"The upload is {length // MIB} MB; at most "
                    f"{media.max_limit // MIB} MB is accepted (video).")
            if self.quota_left is not None and length > self.quota_left + FORM_SLACK:
                raise media.over_quota()
        try:
            self.parser = StreamingFormDataParser(self.request.headers)
        except ParseFailedException:
            raise UnsupportedMedia("Send the upload as multipart/form-data with the "
                                   "fields file and messageType.")
        self.received = 0
        self.upload = IncomingUpload(media, ctx.user.id)
        self.parser.register("file", _FileTarget(self.upload))
        self.parser.register("messageType", _FieldTarget(self.upload.set_message_type))
        if media.min_rate:
            self.rate_timer = asyncio.get_running_loop().call_later(
                media.rate_window, self._check_rate)

    def _check_rate(self):
        """A body arriving slower than upload_min_rate_kib ties up a connection and a
        slot: cut off. Nothing arriving at all counts too, so this runs on a timer."""
        self.rate_timer = None
        if self.parser is None or self._finished or self.body_complete:
            return
        media = self.services.media
        if self.received - self.received_at_check < media.min_rate * media.rate_window:
            log.info("upload from %s cut off: %d bytes in %.0f s", self.slot_user,
                     self.received - self.received_at_check, media.rate_window)
            asyncio.ensure_future(self._abort(TooSlow(
                f"The upload arrived slower than {media.min_rate / 1024:g} KiB/s and "
                "was stopped; try again on a better connection.")))
            return
        self.received_at_check = self.received
        self.rate_timer = asyncio.get_running_loop().call_later(
            media.rate_window, self._check_rate)

    def _end(self):
        """The request is over, however it ended: its slot and timer go."""
        if self.rate_timer is not None:
            self.rate_timer.cancel()
            self.rate_timer = None
        user, self.slot_user = self.slot_user, None
        if user is not None:
            self.services.media.give_slot(user)


    async def data_received(self, chunk: bytes):
        if self.parser is None or self._finished:
            return
        self.received += len(chunk)
        try:
            if self.received > self.services.media.max_body:
                raise PayloadTooLarge(
                    f"The upload may be at most {self.services.media.max_limit // MIB} MB.")
            if self.quota_left is not None and self.received > self.quota_left + FORM_SLACK:
                raise self.services.media.over_quota()
            await self.parser.adata_received(chunk)
        except Exception as exc:
            await self._abort(exc)

    async def _abort(self, exc: Exception):
        self.parser = None
        upload, self.upload = self.upload, None
        if upload is not None:
            await upload.discard()
        if isinstance(exc, ChatError):
            error = exc
        elif isinstance(exc, ParseFailedException):
            error = Validation("The multipart body is malformed.")
        else:
            log.error("upload failed", exc_info=exc)
            error = Internal()
        if not self._finished:
            log.debug("upload refused: %s %s", error.status, error.message)
            # The rest of the body is not read: Tornado closes the connection once
            # this answer is written.
            self.send_error(error.status, exc_info=(type(error), error, None))

    def send_error(self, status_code: int = 500, **kwargs):
        if not self.body_complete:
            # The answer comes before the whole body, and the connection closes after
            # it (see LINGER_SECONDS).
            self.closes_early = True
            compat.linger_before_close(self.request.connection, LINGER_SECONDS)
        super().send_error(status_code, **kwargs)

    def clear(self):
        super().clear()
        if self.closes_early:
            # Said in the answer (send_error clears the headers first, hence here): a
            # keep-alive client must not send its next request on this connection.
            self.set_header("Connection", "close")

    async def post(self):
        self.body_complete = True
        if self.rate_timer is not None:
            self.rate_timer.cancel()
            self.rate_timer = None
        upload = self.upload
        if upload is None:
            return
        try:
            path = await upload.complete()
        finally:
            self.upload = None
            await upload.discard()
        metrics.UPLOAD_BYTES.inc(upload.size)
        self.reply(path)

    def on_connection_close(self):
        super().on_connection_close()
        self._end()
        self._discard_later()

    def on_finish(self):
        self._end()
        self._discard_later()

    def _discard_later(self):
        upload, self.upload = self.upload, None
        if upload is not None:
            asyncio.ensure_future(upload.discard())


def content_disposition(name: str) -> str:
    """An attachment header for any name: an ASCII ``filename`` for old clients and
    the exact name as RFC 5987 ``filename*`` (which every current browser prefers)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r'[^A-Za-z0-9 !#$&\'()+,.;=@\[\]^_`{}~-]', "_", ascii_name).strip()
    stem, dot, ext = ascii_name.rpartition(".")
    if not ascii_name.strip("._ ") or (dot and not stem.strip("._ ")):
        # Nothing of the name survives in ASCII ("Отчёт.pdf"): keep the extension.
        ascii_name = "download" + (f".{ext}" if dot and ext else "")
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        value += "; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    return value


class UploadedFileHandler(tornado.web.StaticFileHandler):
    """GET /uploads/chat-messages/<folder>/<name>: range requests come with
    StaticFileHandler; types are set from our own table, never sniffed."""

    def initialize(self, path: str, services=None):
        super().initialize(path)
        self.services = services
        self.download_name: str | None = None

    async def get(self, path: str, include_body: bool = True):
        kind = BY_FOLDER.get(path.split("/")[1] if path.count("/") == 2 else "")
        if kind is not None and not kind.inline and self.services is not None:
            # A document downloads under the name it was uploaded with.
            try:
                upload = await self.services.store.get_upload("/uploads/" + path)
            except ChatError:
                upload = None   # the store is down: the file itself is still served
            if upload is not None:
                self.download_name = upload.original_name
        await super().get(path, include_body)

    def validate_absolute_path(self, root: str, absolute_path: str):
        rel = os.path.relpath(absolute_path, root).split(os.sep)
        if (len(rel) != 3 or rel[0] != "chat-messages" or rel[1] not in BY_FOLDER
                or rel[2].startswith(".")):
            raise tornado.web.HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)

    def compute_etag(self) -> str | None:
        # Tornado's default hashes the whole file (500 MB for a video) on the event
        # loop and caches it per path forever; a stored file never changes under its
        # random name, so name and size identify it.
        try:
            size = os.path.getsize(self.absolute_path)
        except OSError:
            return None
        return f'"{os.path.basename(self.absolute_path)}-{size}"'

    def _folder(self) -> str:
        return os.path.basename(os.path.dirname(self.absolute_path))

    def get_content_type(self) -> str:
        ext = os.path.splitext(self.absolute_path)[1].lstrip(".").lower()
        return CONTENT_TYPES.get(ext, "application/octet-stream")

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        # Whatever a file holds, a browser opening it directly runs nothing from it.
        self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
        kind = BY_FOLDER.get(self._folder())
        if kind is None or not kind.inline:
            self.set_header("Content-Disposition", content_disposition(
                self.download_name or os.path.basename(self.absolute_path)))
        # Stored names are random and a file never changes under its name.
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        origin = self.request.headers.get("Origin")
        origins = self.services.settings.origins if self.services else None
        if origin and origins and (origins == "*" or origin in origins):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")

    def write_error(self, status_code: int, **kwargs):
        self.set_header("X-Content-Type-Options", "nosniff")
        for name in ("Content-Disposition", "Cache-Control", "Content-Range"):
            self.clear_header(name)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        render_error(self, as_chat_error(
            exc, status_code, "No such file." if status_code == 404 else self._reason))



