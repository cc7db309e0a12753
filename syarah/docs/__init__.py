"""Machine-readable protocol documents: AsyncAPI 3.0 for Socket.IO, OpenAPI 3.1 for
REST, written from the protocol's dataclasses and the server's tables, and served at
``GET /api/docs/asyncapi.yaml`` and ``GET /api/docs/openapi.yaml``."""

from __future__ import annotations

import functools

import yaml

from syarah.transport.http.base import ApiHandler


class _Dumper(yaml.SafeDumper):
    """Descriptions of several lines as literal blocks, readable as written; shared
    schema pieces written out each time, not as YAML anchors some tools mishandle."""

    def ignore_aliases(self, data):
        return True


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


@functools.cache
def document_text(name: str) -> str:
    """The document as YAML; written once per process, it never changes while running."""
    # Imported here: the documents read the route table, which the app imports.
    from syarah.docs import asyncapi, openapi

    maker = {"asyncapi": asyncapi.document, "openapi": openapi.document}[name]
    return yaml.dump(maker(), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     width=88)


class DocsHandler(ApiHandler):
    def get(self, name: str):
        self.set_header("Content-Type", "application/yaml; charset=utf-8")
        self.finish(document_text(name))
