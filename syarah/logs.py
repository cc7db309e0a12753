"""Logging setup: text or JSON lines, and a filter that keeps tokens out of every line."""

from __future__ import annotations

import json
import logging
import re
import sys

_SECRETS = [
    re.compile(r"(accessToken=)[^&\s\"']+", re.I),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I),
    re.compile(r"([\"']?(?:access_?token|token)[\"']?\s*[:=]\s*[\"'])[^\"']+", re.I),
    # Any JWT-shaped run, wherever it appears.
    re.compile(r"()eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
]


def redact(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "message": redact(record.getMessage())}
        if record.exc_info:
            out["traceback"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    # The filter cleans the message; tracebacks and stack dumps are added by the
    # formatter, after filters ran (Tornado's include the request and its headers).
    def format(self, record):
        return redact(super().format(record))


def configure(level: str = "info", fmt: str = "text", socketio: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # python-socketio logs every packet at info: only when asked (log_socketio), else
    # its own warnings still come through.
    for noisy in ("socketio", "engineio", "socketio.server", "engineio.server"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if socketio else logging.WARNING)
    logging.getLogger("tornado.access").setLevel(
        logging.INFO if level.lower() == "debug" else logging.WARNING)
