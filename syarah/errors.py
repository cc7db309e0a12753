"""Typed errors. Anything below the transport raises a ChatError; the Socket.IO namespace (and
the REST base handler) turn it into the reply {error, code} in one place each."""

from __future__ import annotations


class ChatError(Exception):
    code = "INTERNAL"
    # HTTP status for the same error when it happens on a REST endpoint.
    status = 500

    def __init__(self, message: str | None = None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message

    default_message = "Something went wrong on the server."

    def reply(self) -> dict:
        return {"error": self.message, "code": self.code}


class Unauthorized(ChatError):
    code = "UNAUTHORIZED"
    status = 401
    default_message = "A valid access token is required."


class Forbidden(ChatError):
    code = "FORBIDDEN"
    status = 403
    default_message = "You are not allowed to do that."


class NotFound(ChatError):
    code = "NOT_FOUND"
    status = 404
    default_message = "Not found."


class Validation(ChatError):
    code = "VALIDATION"
    status = 400
    default_message = "The request is not valid."


class Conflict(ChatError):
    code = "CONFLICT"
    status = 409
    default_message = "That conflicts with the current state."


class RateLimited(ChatError):
    code = "RATE_LIMITED"
    status = 429
    default_message = "Too many requests; slow down."

    def __init__(self, message: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        # Seconds until the action is allowed again (HTTP's Retry-After), when known.
        self.retry_after = retry_after


# What an overloaded node answers instead of handling an event that waited too long.
BUSY = "The server is busy; try again in a moment."


class Unavailable(ChatError):
    code = "UNAVAILABLE"
    status = 503
    default_message = "The chat store is unavailable; try again shortly."


class Internal(ChatError):
    code = "INTERNAL"
    status = 500


class PayloadTooLarge(ChatError):
    code = "VALIDATION"
    status = 413
    default_message = "The upload is larger than allowed."


class UnsupportedMedia(ChatError):
    code = "VALIDATION"
    status = 415
    default_message = "That kind of file is not accepted here."
