"""JSON Schemas written from the protocol's own dataclasses, so that the published
documents say what the decoder accepts and what the serialiser writes.

Inbound: each field kind of ``syarah.protocol.fields`` has its schema, and every wire
name a field answers to (the API document's aliases) becomes a property. Outbound:
the dataclass types of ``syarah.protocol.outbound``, in the camelCase ``to_wire``
writes, times as ISO 8601 strings.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from syarah.protocol import fields as k
from syarah.protocol import outbound

ID_TEXT = r"^\s*-?\d{1,20}\s*$"


def _number(lo: int | None, hi: int | None, description: str) -> dict:
    # Numbers may come as numeric strings (chatHeaderId: '123' in the document).
    number = {"type": "integer"}
    if lo is not None:
        number["minimum"] = lo
    if hi is not None:
        number["maximum"] = hi
    return {"oneOf": [number, {"type": "string", "pattern": ID_TEXT}],
            "description": description}


def kind_schema(kind: k.Kind, ref) -> dict:
    """The schema of one inbound field kind; ``ref(cls)`` names a nested DTO."""
    if isinstance(kind, k.Id):
        return _number(1, k.MAX_ID, "A positive id, as a number or its decimal text.")
    if isinstance(kind, k.Int):
        if kind.clamp_hi:
            return _number(kind.lo, None, f"At least {kind.lo}; larger values count as "
                                          f"{kind.hi}.")
        return _number(kind.lo, kind.hi,
                       " ".join(filter(None, (f"From {kind.lo} to {kind.hi}.", kind.beyond))))
    if isinstance(kind, k.Text):
        schema = {"type": "string", "maxLength": kind.max_len}
        if kind.min_len:
            schema["minLength"] = kind.min_len
        return schema
    if isinstance(kind, k.Guid):
        return {"type": "string", "format": "uuid",
                "description": "A user id in GUID format (compared case-insensitively)."}
    if isinstance(kind, k.Bool):
        return {"oneOf": [{"type": "boolean"}, {"enum": [0, 1, "true", "false"]}]}
    if isinstance(kind, k.Token):
        return {"type": "string", "maxLength": 16384,
                "description": "An access token (JWT), with or without the `Bearer ` "
                               "prefix; without it, the connection's token is used."}
    if isinstance(kind, k.IdList):
        schema = {"type": "array", "maxItems": kind.max_items,
                  "items": kind_schema(k.Id(), ref)}
        if not kind.allow_empty:
            schema["minItems"] = 1
        return schema
    if isinstance(kind, k.GuidList):
        return {"type": "array", "maxItems": kind.max_items,
                "items": kind_schema(k.Guid(), ref)}
    if isinstance(kind, k.Object):
        return ref(kind.cls)
    if isinstance(kind, k.ListOf):
        return {"type": "array", "maxItems": kind.max_items,
                "items": kind_schema(kind.kind, ref)}
    raise TypeError(f"no schema for the field kind {type(kind).__name__}")


def inbound_schema(cls, ref) -> dict:
    """An event payload or request body: every wire name of every field, aliases
    marked as such; a required field is satisfied by any of its names."""
    properties, required = {}, []
    for f in dataclasses.fields(cls):
        names = f.metadata["names"]
        schema = kind_schema(f.metadata["kind"], ref)
        if f.default is not None and f.default is not dataclasses.MISSING:
            schema = dict(schema, default=f.default)
        properties[names[0]] = schema
        for alias in names[1:]:
            properties[alias] = dict(schema, description=f"Alias of `{names[0]}`.")
        if f.metadata["required"]:
            required.append(names)
    schema = {"type": "object", "properties": properties}
    plain = [names[0] for names in required if len(names) == 1]
    aliased = [names for names in required if len(names) > 1]
    if plain:
        schema["required"] = plain
    if aliased:
        schema["allOf"] = [{"anyOf": [{"required": [n]} for n in names]}
                           for names in aliased]
    return schema


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _nullable(schema: dict) -> dict:
    if "$ref" in schema:
        return {"oneOf": [schema, {"type": "null"}]}
    schema = dict(schema)
    schema["type"] = [schema["type"], "null"]
    return schema


def type_schema(tp, ref) -> dict:
    """The schema of an outbound field's type hint."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = type_schema(args[0], ref)
        return _nullable(inner) if len(args) < len(typing.get_args(tp)) else inner
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": type_schema(item, ref)}
    if tp is outbound.Time:
        return {"type": "string", "format": "date-time",
                "description": "ISO 8601 UTC with milliseconds, e.g. "
                               "2024-01-15T10:30:00.000Z."}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is str:
        return {"type": "string"}
    if dataclasses.is_dataclass(tp):
        return ref(tp)
    raise TypeError(f"no schema for the outbound type {tp!r}")


def outbound_schema(cls, ref, items=None) -> dict:
    """An object the server sends, as ``to_wire`` writes it. ``items`` gives the
    element schema of an untyped ``list`` field (a Page's items)."""
    hints = typing.get_type_hints(cls)
    properties, required = {}, []
    for f in dataclasses.fields(cls):
        key = _camel(f.name)
        tp = hints[f.name]
        if tp is list:
            properties[key] = {"type": "array", "items": items}
        elif f.name in outbound._OMIT_WHEN_NONE:
            # Left out when empty rather than sent as null: optional, never null.
            properties[key] = type_schema(
                next(a for a in typing.get_args(tp) if a is not type(None)), ref)
        else:
            properties[key] = type_schema(tp, ref)
        if f.name not in outbound._OMIT_WHEN_NONE:
            required.append(key)
    # Closed: a field the serialiser writes and the schema lacks fails the tests.
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


class Registry:
    """Collects the named schemas that documents refer to, under ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.schemas: dict[str, dict] = {}

    def ref(self, cls) -> dict:
        name = cls.__name__
        if name not in self.schemas:
            self.schemas[name] = {}   # placeholder first: schemas may refer to each other
            if cls.__module__ == outbound.__name__:
                self.schemas[name] = outbound_schema(cls, self.ref)
            else:
                self.schemas[name] = inbound_schema(cls, self.ref)
        return {"$ref": self.prefix + name}

    def add(self, name: str, schema: dict) -> dict:
        self.schemas[name] = schema
        return {"$ref": self.prefix + name}

    def page(self, name: str, item_cls) -> dict:
        return self.add(name, outbound_schema(outbound.Page, self.ref,
                                              items=self.ref(item_cls)))
