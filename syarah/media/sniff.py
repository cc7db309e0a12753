"""Content sniffing for audio and video: the first bytes must look like a media
container of that kind, whatever the file's name says (puremagic's signature table)."""

from __future__ import annotations

import puremagic

from syarah.types import MessageType

# How many leading bytes are looked at; every container signature sits well inside.
HEAD_BYTES = 8192

# puremagic names some containers by a sibling extension (an .m4a is an MP4 file, a
# .wma an ASF one), so a match by extension accepts the container family.
_AUDIO_EXT = {"mp3", "mpga", "wav", "ogg", "oga", "opus", "m4a", "f4a", "mp4", "aac",
              "flac", "wma", "asf", "webm", "weba", "mka"}
_VIDEO_EXT = {"mp4", "m4v", "avi", "mov", "qt", "3gp", "wmv", "asf", "flv", "webm",
              "mkv", "ogv", "ogg"}
_AUDIO_MIME = ("audio/", "application/ogg")
_VIDEO_MIME = ("video/", "application/x-matroska", "application/ogg")


def looks_like(message_type: int, head: bytes) -> bool:
    """Whether ``head`` (the file's first bytes) starts an audio or video file."""
    if message_type == MessageType.AUDIO:
        extensions, mimes = _AUDIO_EXT, _AUDIO_MIME
    elif message_type == MessageType.VIDEO:
        extensions, mimes = _VIDEO_EXT, _VIDEO_MIME
    else:
        return True
    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        return False
    except Exception:
        # A signature table quirk must not accept what it could not read.
        return False
    for m in matches:
        ext = (m.extension or "").lstrip(".").lower()
        mime = (m.mime_type or "").lower()
        if ext in extensions or mime.startswith(mimes):
            return True
    return False
