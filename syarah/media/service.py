"""MediaService: where uploads live, their limits, turning a streamed upload into a
stored file and a record, checking the paths that media messages carry, and sweeping
uploads that no message ever used."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor

from syarah import paths
from syarah.errors import RateLimited, UnsupportedMedia, Validation
from syarah.clock import now_ms
from syarah.periodic import Periodic
from syarah.media import images, sniff
from syarah.media.kinds import KINDS
from syarah.protocol.media import URL_PREFIX, parse_media_path
from syarah.types import MessageType

log = logging.getLogger("syarah.media")

MIB = 1024 * 1024
# Room for the multipart boundaries, part headers and the messageType field.
MULTIPART_OVERHEAD = 1 * MIB
# A staged file not written to for this long belongs to a request that died with its
# process; live uploads touch theirs with every chunk.
STALE_PARTIAL_SECONDS = 3600
SWEEP_BATCH = 500
_SAFE_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")


def client_extension(filename: str | None) -> str:
    """The lower-case extension of the client's file name, or '' when it has none
    that could be part of a stored name. Only the extension is ever used."""
    if not filename:
        return ""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if "." not in base:
        return ""
    ext = base.rsplit(".", 1)[1].strip().lower()
    return ext if _SAFE_EXTENSION.match(ext) else ""


# The uploads column holds 255 characters; names that long are cut, keeping the end
# (the extension says what the document is).
MAX_ORIGINAL_NAME = 255


def client_file_name(filename: str | None) -> str | None:
    """The client's file name as a document downloads under it: the last path
    component, without control or format characters, at most 255 characters; None
    when nothing is left. Never used for anything on disk."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    # No UTF-8 form (a lone surrogate) or invisible: neither belongs in a header.
    base = base.encode("utf-8", "replace").decode("utf-8")
    base = "".join(" " if ch.isspace() else ch for ch in base
                   if ch.isspace() or unicodedata.category(ch)[0] != "C")
    base = " ".join(base.split()).strip(". ")
    if not base:
        return None
    if len(base) > MAX_ORIGINAL_NAME:
        stem, dot, ext = base.rpartition(".")
        if dot and 0 < len(ext) <= 20:
            base = stem[:MAX_ORIGINAL_NAME - len(ext) - 1] + "." + ext
        else:
            base = base[:MAX_ORIGINAL_NAME]
    return base


class MediaService:
    def __init__(self, settings, store):
        self.store = store
        self.root = paths.resolve(settings.upload_dir)
        self.base = os.path.join(self.root, *URL_PREFIX.strip("/").split("/")[1:])
        self.staging = os.path.join(self.base, ".partial")
        self.max_pixels = settings.image_max_pixels
        self.limits = {
            MessageType.AUDIO: settings.upload_max_audio_mb * MIB,
            MessageType.IMAGE: settings.upload_max_image_mb * MIB,
            MessageType.FILE: settings.upload_max_file_mb * MIB,
            MessageType.VIDEO: settings.upload_max_video_mb * MIB,
        }
        # Until the form says which type a file is, the largest limit holds.
        self.max_limit = max(self.limits.values())
        self.max_body = self.max_limit + MULTIPART_OVERHEAD
        self.orphan_ms = int(settings.upload_orphan_hours * 3600 * 1000)
        self.max_in_flight = settings.upload_max_in_flight
        self.bytes_per_day = settings.upload_bytes_per_day
        self.min_rate = settings.upload_min_rate_kib * 1024
        self.rate_window = settings.upload_rate_window
        # Uploads arriving now, per user (this node's).
        self.in_flight: dict[str, int] = {}
        self.sweep_interval = settings.upload_cleanup_interval
        # Two decodes at a time bound the memory a burst of big photos can take; the
        # event loop never waits on Pillow.
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="images")
        self._sweeper = Periodic(self.sweep_interval, self.sweep, "upload sweep")
        images.configure(self.max_pixels)

    # ----- lifecycle

    def start(self) -> None:
        for kind in KINDS.values():
            os.makedirs(os.path.join(self.base, kind.folder), exist_ok=True)
        os.makedirs(self.staging, exist_ok=True)
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ----- uploading

    def take_slot(self, user_id: str) -> None:
        """One more upload of the user arriving; refused beyond upload_max_in_flight.
        Every slot taken is given back with give_slot."""
        count = self.in_flight.get(user_id, 0)
        if self.max_in_flight and count >= self.max_in_flight:
            raise RateLimited(f"You may send at most {self.max_in_flight} uploads at "
                              "once; wait for one to finish.")
        self.in_flight[user_id] = count + 1

    def give_slot(self, user_id: str) -> None:
        count = self.in_flight.pop(user_id, 0) - 1
        if count > 0:
            self.in_flight[user_id] = count

    def over_quota(self) -> RateLimited:
        return RateLimited(f"You may upload at most {self.bytes_per_day // MIB} MB per "
                           "day; try again tomorrow.")

    async def quota_left(self, user_id: str) -> int | None:
        """Bytes the user may still upload today; None without a quota."""
        if not self.bytes_per_day:
            return None
        left = self.bytes_per_day - await self.store.uploaded_bytes(user_id, today())
        if left <= 0:
            raise self.over_quota()
        return left

    async def count_bytes(self, user_id: str, size: int) -> None:
        """Count a received upload against the user's day; refused when it does not
        fit (then nothing is counted)."""
        if self.bytes_per_day and not await self.store.count_uploaded_bytes(
                user_id, today(), size, self.bytes_per_day):
            raise self.over_quota()

    def limit(self, message_type: int | None) -> int:
        return self.limits[message_type] if message_type else self.max_limit

    def staging_path(self) -> str:
        return os.path.join(self.staging, secrets.token_hex(16) + ".part")

    def media_extension(self, message_type: int, head: bytes) -> str:
        """The extension an audio or video file starting with ``head`` is stored under:
        its content decides, not the name it was sent under."""
        ext = sniff.detect(message_type, head)
        if ext is None or ext not in KINDS[message_type].extensions:
            what = "an audio" if message_type == MessageType.AUDIO else "a video"
            names = ", ".join(sorted(KINDS[message_type].extensions))
            raise UnsupportedMedia(f"The file's content is not {what} file ({names}).")
        return ext

    async def store_upload(self, user_id: str, message_type: int, staged: str, ext: str,
                           head: bytes, original_name: str | None = None) -> str:
        """Turn a fully received staged file into a stored upload; returns its path.
        The staged file is gone afterwards, whatever happens."""
        kind = KINDS[message_type]
        name = secrets.token_urlsafe(24)
        try:
            if message_type == MessageType.IMAGE:
                ext = "webp"
                final = self._final(kind.folder, name, ext)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.executor, images.convert_to_webp,
                                           staged, final, self.max_pixels)
            else:
                if message_type in (MessageType.AUDIO, MessageType.VIDEO):
                    ext = self.media_extension(message_type, head)
                final = self._final(kind.folder, name, ext)
                os.replace(staged, final)
        finally:
            _remove(staged)
        path = f"{URL_PREFIX}{kind.folder}/{name}" + (f".{ext}" if ext else "")
        try:
            await self.store.add_upload(path, user_id, int(message_type),
                                        os.path.getsize(final), now_ms(), original_name)
        except BaseException:
            _remove(final)
            raise
        return path

    def _final(self, folder: str, name: str, ext: str) -> str:
        target = os.path.realpath(os.path.join(self.base, folder,
                                               name + (f".{ext}" if ext else "")))
        # The name is ours and the folder a constant, but a stored path outside the
        # folder would be served: check anyway.
        if os.path.dirname(target) != os.path.realpath(os.path.join(self.base, folder)):
            raise Validation("The upload could not be placed.")
        return target

    def file_for(self, path: str) -> str:
        return os.path.join(self.root, *path.strip("/").split("/")[1:])

    # ----- media messages

    async def check_message_path(self, user_id: str, message_type: int, path: str) -> None:
        """A media message may carry only a path that uploadFile returned for that type,
        whose file is still there, uploaded by the sender."""
        parse_media_path(path, message_type)
        if not os.path.isfile(self.file_for(path)):
            raise Validation("That file does not exist (anymore); upload it again.")
        upload = await self.store.get_upload(path)
        if upload is None:
            raise Validation("That file was not uploaded through uploadFile.")
        if upload.user_id != user_id:
            raise Validation("A message can only carry files that you uploaded.")
        if upload.message_type != message_type:
            raise Validation(f"That file was uploaded as message type "
                             f"{upload.message_type}, not {message_type}.")

    async def forget_released(self, paths: list[str]) -> None:
        """After the commit of a transaction that released ``paths`` (messages deleted,
        or edited to another file): the file of each that no message carries any more
        is deleted at once, since a deleted photo must not stay served until the next
        sweep. A user may send one upload in several messages, so only the last one
        frees it."""
        for path in dict.fromkeys(paths):
            try:
                # Only a path with an upload record can be forgotten, so a message's
                # text never names a file to delete by itself.
                if await self.store.forget_unused_upload(path):
                    _remove(self.file_for(path))
            except Exception:
                # The message is gone either way; the orphan sweep takes the file.
                log.warning("could not delete the released upload %s now", path,
                            exc_info=True)

    # ----- disk hygiene

    async def sweep(self) -> int:
        """Remove uploads that no message used within upload_orphan_hours, and staged
        files of requests that died. Returns how many uploads were removed."""
        removed = 0
        cutoff = now_ms() - self.orphan_ms
        while True:
            batch = await self.store.unused_uploads(cutoff, SWEEP_BATCH)
            for path in batch:
                # The record goes first: a message that takes the upload at this
                # moment then fails its own check instead of pointing at nothing.
                if await self.store.forget_unused_upload(path):
                    _remove(self.file_for(path))
                    removed += 1
            if len(batch) < SWEEP_BATCH:
                break
        # Yesterday's count is kept: the nodes' clocks differ a little around midnight.
        await self.store.forget_uploaded_bytes_before(today() - 1)
        stale = time.time() - STALE_PARTIAL_SECONDS
        try:
            with os.scandir(self.staging) as entries:
                for entry in entries:
                    try:
                        if entry.is_file() and entry.stat().st_mtime < stale:
                            _remove(entry.path)
                    except OSError:
                        pass
        except FileNotFoundError:
            pass
        if removed:
            log.info("removed %d uploads that no message used", removed)
        return removed


def today() -> int:
    """The UTC day, counted from 1970-01-01."""
    return now_ms() // 86_400_000


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
