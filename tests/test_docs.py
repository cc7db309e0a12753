"""The protocol documents the server serves: valid for each format's own validator,
complete against the route table and the URL table, and true to the
replies and broadcasts a real server sends."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import types

import jsonschema
import pytest
import socketio
import yaml
from openapi_spec_validator import validate as validate_openapi

from conftest import IN_CI, ROOT, http_get
from helpers import people, send
from syarah import metrics, options
from syarah.transport.web import make_app
from syarah.handlers.routes import EVENTS

BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
GUID = "550e8400-e29b-41d4-a716-446655440000"


def node_tool_or_skip(package: str) -> str:
    """node, with ``package`` installed in tests/browser (bin/setup-env --test)."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed (Node.js 20+ is needed)"
    elif not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", *package.split("/"))):
        missing = f"{package} is missing: run bin/setup-env --test (npm ci in tests/browser)"
    if missing:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    return node


def served(server, name: str) -> tuple[str, dict]:
    status, headers, body = http_get(server, f"/api/docs/{name}.yaml")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/yaml"), headers
    return body.decode(), yaml.safe_load(body)


def test_openapi_document_is_valid(server):
    _, doc = served(server, "openapi")
    validate_openapi(doc)
    assert doc["openapi"] == "3.1.0"


def test_asyncapi_document_is_valid_for_the_official_parser(server, tmp_path):
    node = node_tool_or_skip("@asyncapi/parser")
    text, _ = served(server, "asyncapi")
    path = tmp_path / "asyncapi.yaml"
    path.write_text(text)
    proc = subprocess.run([node, "validate-asyncapi.mjs", str(path)], cwd=BROWSER_DIR,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid: AsyncAPI 3.0.0" in proc.stdout, proc.stdout


def test_the_parser_refuses_a_broken_asyncapi_document(server, tmp_path):
    """The check above can fail: an operation without a valid action is refused."""
    node = node_tool_or_skip("@asyncapi/parser")
    _, doc = served(server, "asyncapi")
    doc["operations"]["createMessage"]["action"] = "listen"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run([node, "validate-asyncapi.mjs", str(path)], cwd=BROWSER_DIR,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "operations/createMessage/action" in proc.stdout, \
        proc.stdout


def _operations(doc: dict, action: str) -> dict[str, dict]:
    """Socket.IO event name -> the message the operation carries."""
    out = {}
    for op in doc["operations"].values():
        if op["action"] != action:
            continue
        (ref,) = op["messages"]
        message = doc["channels"]["chat"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
        message = doc["components"]["messages"][message["$ref"].rsplit("/", 1)[1]]
        out[message["name"]] = dict(message, operation=op)
    return out


def _schema(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_event_of_the_route_table_is_documented_with_its_aliases(server):
    _, doc = served(server, "asyncapi")
    received = _operations(doc, "receive")
    missing = sorted(set(EVENTS) - set(received))
    assert not missing, f"events of the route table missing from AsyncAPI: {missing}"
    for event, route in EVENTS.items():
        payload = _schema(doc, received[event]["payload"])
        names = {n for f in dataclasses.fields(route.dto) for n in f.metadata["names"]}
        assert names <= set(payload["properties"]), (event, names - set(payload["properties"]))
        assert received[event]["operation"]["reply"]["messages"], event


def _emitted_events() -> set[str]:
    """Every event name the server's code emits (the first text argument of an emit)."""
    found = set()
    call = re.compile(r'\b(?:to_chat|to_users|to_socket|emit)\(([^()"]*)"(\w+)"')
    for folder, _, files in os.walk(os.path.join(ROOT, "syarah")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    found |= {m.group(2) for m in call.finditer(f.read())}
    return found


def test_every_event_the_server_emits_is_documented(server):
    _, doc = served(server, "asyncapi")
    emitted = _emitted_events()
    # The scan itself must see the API document's server events.
    assert {"message", "typing", "messageUpdated", "messageDeleted", "messageHasBeenRead",
            "onMemberJoin", "clientStatus", "exception"} <= emitted, emitted
    sent = _operations(doc, "send")
    assert emitted <= set(sent), f"emitted but not documented: {emitted - set(sent)}"


def test_the_connection_and_the_error_object_are_documented(server):
    _, doc = served(server, "asyncapi")
    assert doc["servers"]["local"]["pathname"] == "/socket.io/"
    query = _schema(doc, doc["channels"]["chat"]["bindings"]["ws"]["query"])
    assert {"userId", "clientType"} <= set(query["properties"])
    auth = doc["components"]["schemas"]["ConnectionAuth"]
    assert "accessToken" in auth["properties"]
    error = doc["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "code"}
    assert set(error["properties"]["code"]["enum"]) == {
        "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "VALIDATION", "CONFLICT",
        "RATE_LIMITED", "UNAVAILABLE", "INTERNAL"}


def _url_table() -> list[str]:
    """The regexes of the server's URL table, as bin/syarah-server builds it."""
    services = types.SimpleNamespace(settings=options.defaults(playground=True))
    sio = socketio.AsyncServer(async_mode="tornado")
    app = make_app(services, sio, extra_routes=[(r"/metrics", metrics.MetricsHandler)])
    return [rule.matcher.regex.pattern for rule in app.wildcard_router.rules]


def _example_path(doc: dict, path: str, operations: dict) -> str:
    params = {p["name"]: p["schema"] for op in operations.values()
              if isinstance(op, dict) for p in op.get("parameters", [])
              if p["in"] == "path"}

    def sample(match):
        schema = params[match.group(1)]
        if "enum" in schema:
            return schema["enum"][0]
        if schema.get("type") == "integer":
            return "7"
        return GUID if schema.get("format") == "uuid" else "some-thing.txt"

    return re.sub(r"\{(\w+)\}", sample, path)


def test_every_url_of_the_url_table_is_documented(server):
    _, doc = served(server, "openapi")
    routes = [r for r in _url_table() if r != "/socket.io/$"]
    examples = {path: _example_path(doc, path, ops) for path, ops in doc["paths"].items()}
    for route in routes:
        assert any(re.fullmatch(route.rstrip("$"), example) for example in examples.values()), \
            f"URL {route!r} of the URL table is missing from the OpenAPI document"
    for path, example in examples.items():
        assert any(re.fullmatch(route.rstrip("$"), example) for route in routes), \
            f"{path} is documented but the server has no such URL"


class Validator:
    """Checks live replies against the AsyncAPI document's schemas."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.received = _operations(doc, "receive")
        self.sent = _operations(doc, "send")

    def check(self, schema: dict, value, what: str) -> None:
        root = {"allOf": [schema], "components": self.doc["components"]}
        errors = list(jsonschema.Draft7Validator(root).iter_errors(value))
        assert not errors, f"{what}: {errors[0].message} at {list(errors[0].path)}\n{value!r}"

    def ack(self, event: str, reply) -> None:
        op = self.received[event]["operation"]
        ack_ref = op["reply"]["messages"][0]["$ref"].rsplit("/", 1)[1]
        name = self.doc["channels"]["chat"]["messages"][ack_ref]["$ref"].rsplit("/", 1)[1]
        self.check(self.doc["components"]["messages"][name]["payload"], reply,
                   f"ack of {event}")

    def event(self, event: str, payloads: list) -> None:
        assert payloads, f"no {event} arrived"
        for payload in payloads:
            self.check(self.sent[event]["payload"], payload, f"server event {event}")


async def test_replies_and_broadcasts_match_the_documented_schemas(server, clients):
    """Every client event's ack and every server event, from a real server, validate
    against the document; so a field the server adds or drops fails here."""
    _, doc = served(server, "asyncapi")
    v = Validator(doc)
    ann, bob = await people(server, "Ann", "Bob")
    status, body = ann.http("POST", "/api/friendships", {"userId": bob.id})
    assert status == 200, body
    status, body = bob.http("POST", f"/api/friendships/{ann.id}/accept")
    assert status == 200, body
    b = await clients(bob, client_type="web")
    a = await clients(ann, client_type="web")
    await b.wait_for("clientStatus")
    reply = await a.call("joinRoom", {"otherUserId": bob.id})
    v.ack("joinRoom", reply)
    chat = reply["chatHeaderId"]
    v.ack("joinRoom", await b.call("joinRoom", {"chatHeaderId": chat}))
    first = await send(a, chat, "Hello Bob")
    v.ack("createMessage", await a.call("createMessage", {
        "message": "Second", "chatHeaderId": chat, "messageType": 0,
        "clientMessageId": "c-2", "caption": "a caption"}))
    v.ack("findAllMessages", await a.call("findAllMessages", {"chatHeaderId": str(chat)}))
    v.ack("updateMessage", await a.call("updateMessage", {
        "id": first["id"], "chatHeaderId": chat, "message": "Hello Bob!"}))
    v.ack("roomTyping", await a.call("roomTyping", {"chatHeaderId": chat, "isTyping": True,
                                                    "name": "Ann"}))
    v.ack("readMessage", await b.call("readMessage", {"chatHeaderId": chat}))
    v.ack("findAllChatHeaders", await b.call("findAllChatHeaders", {
        "UserId": bob.id, "RoomsWithLastMessageIds": [
            {"ChatHeaderId": chat, "LastMessageId": first["id"]}]}))
    v.ack("getMyChats", await b.call("getMyChats", {}))
    v.ack("getMyFriendships", await b.call("getMyFriendships", {}))
    v.ack("removeMessage", await a.call("removeMessage", {"id": first["id"],
                                                          "chatHeaderId": chat}))
    v.ack("leaveRoom", await a.call("leaveRoom", {"chatHeaderId": chat}))
    failed = await a.call("createMessage", {"chatHeaderId": "many"})
    v.check({"$ref": "#/components/schemas/Error"}, failed, "error ack")
    await a.emit("findAllMessages", {"chatHeaderId": -1})
    await a.wait_for("exception")
    await b.wait_for("messageDeleted")
    await a.wait_for("messageHasBeenRead")
    v.event("message", b.received("message"))
    v.event("typing", b.received("typing"))
    v.event("messageUpdated", b.received("messageUpdated"))
    v.event("messageDeleted", b.received("messageDeleted"))
    v.event("messageHasBeenRead", a.received("messageHasBeenRead"))
    v.event("onMemberJoin", a.received("onMemberJoin"))
    v.event("clientStatus", b.received("clientStatus"))
    v.event("exception", a.received("exception"))
    # A group member added over REST: onMemberJoin from the other path too.
    status, body = ann.http("POST", "/api/chat/groups", {"name": "Trip", "memberIds": []})
    assert status == 201, body
    group = body["data"]["id"]
    await a.call("joinRoom", {"chatHeaderId": group})
    status, body = ann.http("POST", f"/api/chat/groups/{group}/members",
                            {"userIds": [bob.id]})
    assert status == 200, body
    joined = await a.wait_for("onMemberJoin", count=2)
    v.event("onMemberJoin", joined)
