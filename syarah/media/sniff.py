"""Content sniffing for audio and video: the first bytes say which container a file
is (puremagic's signature table), whatever the client's file name or part type says;
the file is stored under that container's extension."""

from __future__ import annotations

import puremagic

from syarah.types import MessageType

# How many leading bytes are looked at; every container signature sits well inside.
HEAD_BYTES = 8192

# puremagic names a container by any of its family's extensions (an M4A file matches
# as .mp4 and .m4a, a WMA as .wmv, .wma and .asf); for each message type, the
# extension of the document's list that a file of that family is stored under. A
# family not here (Matroska audio, Ogg video, ...) is refused.
_STORED_AS = {
    MessageType.AUDIO: {
        "mp3": "mp3", "mpga": "mp3", "wav": "wav", "ogg": "ogg", "oga": "ogg",
        "opus": "ogg", "m4a": "m4a", "f4a": "m4a", "mp4": "m4a", "aac": "aac",
        "flac": "flac", "wma": "wma", "wmv": "wma", "asf": "wma",
    },
    MessageType.VIDEO: {
        "mp4": "mp4", "m4v": "mp4", "3gp": "mp4", "3gpp": "mp4", "3g2": "mp4",
        "mov": "mov", "qt": "mov", "avi": "avi", "wmv": "wmv", "asf": "wmv",
        "flv": "flv", "webm": "webm", "mkv": "mkv",
    },
}
# Matches without an extension, by type.
_STORED_AS_MIME = {
    MessageType.VIDEO: {"application/x-matroska": "mkv"},
}


def detect(message_type: int, head: bytes) -> str | None:
    """The extension a file of ``message_type`` starting with ``head`` is stored
    under, or None when its content is no container of that type's list."""
    if message_type not in _STORED_AS:
        return None
    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        return None
    except Exception:
        # A signature table quirk must not accept what it could not read.
        return None
    # Matches come most confident first. The first one that names a media container
    # decides: a WAV file also matches RIFF's AVI signature, less surely, and must not
    # pass as a video through it; a match outside both lists (a rare sibling format
    # sharing a signature) is passed over.
    for m in matches:
        ext = (m.extension or "").lstrip(".").lower()
        mime = (m.mime_type or "").lower()
        for kind in (message_type, *(k for k in _STORED_AS if k != message_type)):
            stored = _STORED_AS[kind].get(ext) or _STORED_AS_MIME.get(kind, {}).get(mime)
            if stored:
                return stored if kind == message_type else None
    return None
