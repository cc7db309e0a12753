"""Media paths as uploadFile returns them; shape only, the handler checks the file."""

from __future__ import annotations

import re

from syarah.errors import Validation
from syarah.types import MessageType

FOLDERS = {
    MessageType.AUDIO: "audios",
    MessageType.IMAGE: "images",
    MessageType.FILE: "files",
    MessageType.VIDEO: "videos",
}
URL_PREFIX = "/uploads/chat-messages/"
_PATH = re.compile(r"^/uploads/chat-messages/(audios|images|files|videos)/"
                   r"([A-Za-z0-9_-]{16,64})(\.[a-z0-9]{1,10})?$")


def parse_media_path(path: str, message_type: int) -> tuple[str, str]:
    """Check that ``path`` is an upload path of the folder that ``message_type`` uses.
    Returns (folder, file name)."""
    match = _PATH.match(path)
    if not match:
        raise Validation("For a media message, message must be the path that "
                         "uploadFile returned.")
    folder = match.group(1)
    if folder != FOLDERS[MessageType(message_type)]:
        raise Validation(f"That file was uploaded as {folder}, not as message type "
                         f"{message_type}.")
    return folder, match.group(2) + (match.group(3) or "")
