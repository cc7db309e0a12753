"""What each media message type accepts, as the API document lists it."""

from __future__ import annotations

from dataclasses import dataclass

from syarah.protocol.media import FOLDERS
from syarah.types import MessageType


@dataclass(frozen=True)
class Kind:
    message_type: MessageType
    folder: str
    # Extensions stored: for audio and video, what the content is detected as must be
    # one of these; None: any (images become WebP, files keep the client's).
    extensions: frozenset | None
    # Served inline (players, <img>) or as a download.
    inline: bool


KINDS = {
    MessageType.AUDIO: Kind(MessageType.AUDIO, FOLDERS[MessageType.AUDIO],
                            frozenset({"mp3", "wav", "ogg", "m4a", "aac", "flac", "wma"}),
                            inline=True),
    # Any common photo format is accepted at the door; images.py decides by content.
    MessageType.IMAGE: Kind(MessageType.IMAGE, FOLDERS[MessageType.IMAGE], None, inline=True),
    MessageType.FILE: Kind(MessageType.FILE, FOLDERS[MessageType.FILE], None, inline=False),
    MessageType.VIDEO: Kind(MessageType.VIDEO, FOLDERS[MessageType.VIDEO],
                            frozenset({"mp4", "avi", "mov", "wmv", "flv", "webm", "mkv"}),
                            inline=True),
}

BY_FOLDER = {k.folder: k for k in KINDS.values()}

# Content types for serving. Images are always WebP after conversion; documents are
# attachments whatever their type, so theirs only helps the browser name the download.
CONTENT_TYPES = {
    "webp": "image/webp",
    "mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "m4a": "audio/mp4",
    "aac": "audio/aac", "flac": "audio/flac", "wma": "audio/x-ms-wma",
    "mp4": "video/mp4", "avi": "video/x-msvideo", "mov": "video/quicktime",
    "wmv": "video/x-ms-wmv", "flv": "video/x-flv", "webm": "video/webm",
    "mkv": "video/x-matroska",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
    "pdf": "application/pdf", "txt": "text/plain; charset=utf-8", "csv": "text/csv",
    "zip": "application/zip", "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
