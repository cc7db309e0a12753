"""What a push says: the FCM v1 message for one outbox row. No I/O."""

from __future__ import annotations

from syarah.types import MessageType, PushJob

# Words shown instead of a media message's stored path.
MEDIA_WORDS = {
    MessageType.AUDIO: "Voice message",
    MessageType.IMAGE: "Photo",
    MessageType.FILE: "File",
    MessageType.VIDEO: "Video",
}
# FCM refuses messages over 4096 bytes; a notification shows a few lines anyway.
MAX_BODY = 500


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def notification_text(job: PushJob) -> tuple[str, str]:
    """(title, body): the sender's name, or the group's name with the sender before
    the text; the text, or a word for the media type and its caption."""
    m = job.message
    sender = (m.author.name if m.author and m.author.name else "") or "Someone"
    if m.message_type == MessageType.TEXT:
        body = m.message
    else:
        word = MEDIA_WORDS.get(m.message_type, "Attachment")
        body = f"{word}: {m.caption}" if m.caption else word
    if job.chat_is_group:
        return _clip(job.chat_name or "Group", 100), _clip(f"{sender}: {body}", MAX_BODY)
    return _clip(sender, 100), _clip(body, MAX_BODY)


def fcm_message(job: PushJob) -> dict:
    title, body = notification_text(job)
    m = job.message
    return {
        "token": job.token,
        "notification": {"title": title, "body": body},
        # FCM data values must be strings.
        "data": {
            "chatHeaderId": str(m.chat_header_id),
            "messageId": str(m.id),
            "messageType": str(m.message_type),
            "senderId": str(m.user_id),
        },
        "android": {
            "priority": "high",
            "notification": {"notification_count": job.unread_count,
                             "sound": "default"},
        },
        "apns": {
            # 10 = deliver now; alert pushes need the push type on iOS 13+.
            "headers": {"apns-priority": "10", "apns-push-type": "alert"},
            "payload": {"aps": {"badge": job.unread_count, "sound": "default"}},
        },
    }
