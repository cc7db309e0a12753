"""Field kinds for inbound DTOs: how a raw JSON value becomes a typed, checked value.

A DTO field declares its kind and the wire names it answers to (the API document's
aliases); ``decode`` in ``inbound`` walks the fields. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from syarah.errors import Validation

MISSING = object()

# JavaScript's Number.MAX_SAFE_INTEGER: ids beyond it cannot round-trip through a
# JavaScript client, so they cannot be real.
MAX_ID = 2**53 - 1
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_INT_TEXT = re.compile(r"^\s*-?\d{1,20}\s*$")
# A JavaScript string may hold half of a surrogate pair; it has no UTF-8 form, so
# neither store could write it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Kind:
    def parse(self, value: Any, name: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def _to_int(value: Any, name: str) -> int:
    # bool is an int subclass in Python; true/false is never a number on the wire.
    if isinstance(value, bool):
        raise Validation(f"{name} must be a number.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.match(value):
        return int(value)
    raise Validation(f"{name} must be a whole number.")


class Id(Kind):
    """A chat header or message id: a positive integer, or its decimal text."""

    def parse(self, value, name):
        number = _to_int(value, name)
        if not 1 <= number <= MAX_ID:
            raise Validation(f"{name} must be a positive id.")
        return number


class Int(Kind):
    def __init__(self, lo: int, hi: int, clamp_hi: bool = False, beyond: str = ""):
        self.lo, self.hi, self.clamp_hi = lo, hi, clamp_hi
        # A sentence for a client that asks for more than hi: what to do instead.
        self.beyond = beyond

    def parse(self, value, name):
        number = _to_int(value, name)
        if number > self.hi and self.clamp_hi:
            return self.hi
        if not self.lo <= number <= self.hi:
            hint = f" {self.beyond}" if number > self.hi and self.beyond else ""
            raise Validation(f"{name} must be between {self.lo} and {self.hi}.{hint}")
        return number


class Text(Kind):
    def __init__(self, max_len: int, min_len: int = 0):
        self.max_len, self.min_len = max_len, min_len

    def parse(self, value, name):
        if not isinstance(value, str):
            raise Validation(f"{name} must be a string.")
        if len(value) > self.max_len:
            raise Validation(f"{name} is too long (at most {self.max_len} characters).")
        if len(value) < self.min_len:
            raise Validation(f"{name} must not be empty." if self.min_len == 1
                             else f"{name} is too short.")
        if "\x00" in value:
            raise Validation(f"{name} must not contain NUL characters.")
        if _LONE_SURROGATE.search(value):
            raise Validation(f"{name} is not valid Unicode text.")
        return value


class Guid(Kind):
    """A user id. Compared case-insensitively, so kept in lower case."""

    def parse(self, value, name):
        if not isinstance(value, str) or not _GUID.match(value):
            raise Validation(f"{name} must be a user id in GUID format.")
        return value.lower()


class Bool(Kind):
    def parse(self, value, name):
        if isinstance(value, bool):
            return value
        if value in (0, 1) and not isinstance(value, float):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise Validation(f"{name} must be true or false.")


class Token(Kind):
    """An access token as clients send it, with or without the `Bearer ` prefix."""

    def parse(self, value, name):
        if not isinstance(value, str):
            raise Validation(f"{name} must be a string.")
        if len(value) > 16384:
            raise Validation(f"{name} is too long to be an access token.")
        if _LONE_SURROGATE.search(value):
            raise Validation(f"{name} is not valid Unicode text.")
        value = value.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        return value or None


class IdList(Kind):
    def __init__(self, max_items: int, allow_empty: bool = False):
        self.max_items, self.allow_empty = max_items, allow_empty

    def parse(self, value, name):
        if not isinstance(value, list):
            raise Validation(f"{name} must be an array of ids.")
        if not value and not self.allow_empty:
            raise Validation(f"{name} must not be empty.")
        if len(value) > self.max_items:
            raise Validation(f"{name} may hold at most {self.max_items} ids.")
        ids = [Id().parse(v, name) for v in value]
        # Duplicates would make an all-or-nothing delete count wrong; keep first order.
        return list(dict.fromkeys(ids))


class GuidList(Kind):
    def __init__(self, max_items: int):
        self.max_items = max_items

    def parse(self, value, name):
        if not isinstance(value, list):
            raise Validation(f"{name} must be an array of user ids.")
        if len(value) > self.max_items:
            raise Validation(f"{name} may hold at most {self.max_items} user ids.")
        return list(dict.fromkeys(Guid().parse(v, name) for v in value))


class Object(Kind):
    """A nested object decoded into another DTO class."""

    def __init__(self, cls):
        self.cls = cls

    def parse(self, value, name):
        return decode(self.cls, value, context=name)


class ListOf(Kind):
    def __init__(self, kind: Kind, max_items: int):
        self.kind, self.max_items = kind, max_items

    def parse(self, value, name):
        if not isinstance(value, list):
            raise Validation(f"{name} must be an array.")
        if len(value) > self.max_items:
            raise Validation(f"{name} may hold at most {self.max_items} entries.")
        return [self.kind.parse(v, name) for v in value]


def wire(kind: Kind, *names: str, required: bool = False, default: Any = None):
    """Declare a DTO field: its kind and the wire names (aliases) it is read from.

    The first name is the one used in error messages. With several names, the first
    one present in the payload wins.
    """
    return dataclasses.field(
        default=default,
        metadata={"kind": kind, "names": names, "required": required},
    )


def decode(cls, payload: Any, context: str = "payload"):
    """Turn a raw event payload into an instance of the DTO class ``cls``."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise Validation(f"The {context} must be an object.")
    values = {}
    for name, wire_names, required, kind in _plan(cls):
        raw = MISSING
        for wire_name in wire_names:
            candidate = payload.get(wire_name, MISSING)
            if candidate is not MISSING and candidate is not None:
                raw = candidate
                break
        if raw is MISSING:
            if required:
                raise Validation(f"{wire_names[0]} is required.")
            continue
        values[name] = kind.parse(raw, wire_names[0])
    return cls(**values)


@functools.cache
def _plan(cls) -> tuple:
    """What decode reads of each field of a DTO class, looked up once per class."""
    return tuple((f.name, tuple(f.metadata["names"]), f.metadata["required"],
                  f.metadata["kind"]) for f in dataclasses.fields(cls))
