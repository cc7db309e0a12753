"""The OpenAPI 3.1 document of the REST endpoints.

Request bodies come from the inbound DTOs the handlers decode, replies from the
outbound dataclasses, wrapped in the `{success, data, message}` envelope. Each path
here stands for a line of the URL table; the tests match the two.
"""

from __future__ import annotations

from syarah import __version__
from syarah.docs.schemas import Registry
from syarah.protocol import inbound, outbound

REF = "#/components/schemas/"
BEARER = [{"bearer": []}]
SERVICE_KEY = [{"serviceKey": []}]

# What each status means on this API; every failure carries the envelope.
FAILURES = {
    400: "The request is not valid (the message says which field and why).",
    401: "No valid access token: send Authorization: Bearer <token>.",
    403: "Not allowed: not a member, not yours, or blocked.",
    404: "No such chat, user, friendship or endpoint.",
    409: "Conflicts with the current state.",
    413: "The body or the upload is larger than allowed.",
    415: "That kind of file is not accepted for this messageType.",
    429: "Too many requests or uploads, or a rejected friend request asked again too "
         "soon; Retry-After gives the seconds to wait where the wait is known.",
    503: "The chat store is unavailable; try again shortly.",
}


def _envelope(data: dict | None) -> dict:
    return {
        "type": "object",
        "properties": {
            "success": {"type": "boolean"},
            "data": data if data is not None else {"type": "null"},
            "message": {"type": ["string", "null"],
                        "description": "Why it failed; null on success."},
        },
        "required": ["success", "data", "message"],
    }


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _object(**properties) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties)}


GUID = {"type": "string", "format": "uuid"}
INTEGER = {"type": "integer"}


def _param(name: str, schema: dict, where: str = "path", description: str = "",
           required: bool = True) -> dict:
    out = {"name": name, "in": where, "required": required, "schema": schema}
    if description:
        out["description"] = description
    return out


def _op(summary: str, data: dict | None = None, *, body: dict | None = None,
        status: int = 200, fails=(400, 401, 503), security=BEARER, params=(),
        description: str = "", responses: dict | None = None) -> dict:
    op = {"summary": summary}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    op["responses"] = responses or {
        str(status): {"description": "Done.", "content": _json(_envelope(data))}}
    for code in fails:
        op["responses"][str(code)] = {"$ref": f"#/components/responses/Failure{code}"}
    op["security"] = security
    return op


def _text(content_type: str, description: str) -> dict:
    return {"description": description,
            "content": {content_type: {"schema": {"type": "string"}}}}


def _files(summary: str, names: list[str], missing: str) -> dict:
    return {"get": {
        "summary": summary,
        "parameters": [_param("file", {"type": "string", "enum": names})],
        "responses": {"200": {"description": "The file."},
                      "404": {"description": missing}},
        "security": []}}


def _paths(r: Registry) -> dict:
    header = r.ref(outbound.ChatHeader)
    friendship = _object(userId=GUID, status={
        "type": ["integer", "null"],
        "description": "0 Pending, 1 Accepted, 2 Rejected, 3 Blocked; null once deleted."})
    user_param = _param("userId", GUID, description="The other user's id.")
    group_param = _param("id", {"type": "integer", "minimum": 1},
                         description="The group's chatHeaderId.")
    paths = {
        "/api/chat/uploadFile": {"post": _op(
            "Upload a file for a media message",
            fails=(400, 401, 413, 415, 429, 503),
            description="Images are decoded safely, turned upright, stripped of "
                        "metadata, fitted inside 1920x1920 and saved as WebP; audio "
                        "and video are judged by their content. Limits: video 500 MB, "
                        "audio and files 50 MB.",
            responses={"200": {"description": "Stored.", "content": _json(_envelope(
                {"type": "string", "pattern": "^/uploads/chat-messages/(images|videos|"
                                              "audios|files)/",
                 "description": "The path to send as `message` of createMessage.",
                 "examples": ["/uploads/chat-messages/images/abc123.webp"]}))}},
        ) | {"requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["file", "messageType"],
                       "properties": {
                           "file": {"type": "string", "contentMediaType":
                                    "application/octet-stream"},
                           "messageType": {"type": "integer", "enum": [1, 2, 3, 4],
                                           "description": "1 audio, 2 image, 3 file, "
                                                          "4 video."}}}}}}}},
        "/uploads/{path}": {"get": {
            "summary": "A stored upload",
            "description": "Range requests work (video); documents come as "
                           "attachments.",
            "parameters": [_param("path", {"type": "string"},
                                  description="What follows /uploads/ in the path "
                                              "uploadFile returned.")],
            "responses": {"200": {"description": "The file.", "content": {
                              "*/*": {"schema": {"type": "string"}}}},
                          "206": {"description": "The requested range."},
                          "404": {"description": "No such file."}},
            "security": []}},
        "/api/chat/getChatHeaderAsync": {"get": _op(
            "Get or create the individual chat of two users", header,
            fails=(400, 401, 403, 429, 503),
            description="The caller must be one of the two.",
            params=[_param("user1Id", GUID, "query"), _param("user2Id", GUID, "query")])},
        "/api/friendships": {
            "get": _op("Your friendships, pending and blocked ones included",
                       {"type": "array", "items": r.ref(outbound.FriendshipRecord)},
                       fails=(401, 429, 503)),
            "post": _op("Ask a user for friendship", friendship,
                        body=r.ref(inbound.FriendRequest), fails=(400, 401, 404, 429, 503),
                        description="After the user rejected your request, asking again "
                                    "waits friend_request_cooldown_hours (24 by "
                                    "default): 429 until then. They may still ask you."),
        },
        "/api/friendships/{userId}": {"delete": _op(
            "End a friendship", friendship, params=[user_param],
            fails=(400, 401, 404, 429, 503))},
    }
    for action, what in (("accept", "Accept a friendship request"),
                         ("reject", "Reject a friendship request"),
                         ("block", "Block a user"), ("unblock", "Unblock a user")):
        paths[f"/api/friendships/{{userId}}/{action}"] = {"post": _op(
            what, friendship, params=[user_param], fails=(400, 401, 404, 409, 429, 503))}
    paths |= {
        "/api/chat/groups": {"post": _op(
            "Create a group chat", header, body=r.ref(inbound.CreateGroup), status=201,
            fails=(400, 401, 403, 404, 429, 503))},
        "/api/chat/groups/{id}/members": {"post": _op(
            "Add members to a group", header, body=r.ref(inbound.AddGroupMembers),
            params=[group_param], fails=(400, 401, 403, 404, 429, 503),
            description="Sends onMemberJoin to the group's room for each new member.")},
        "/api/chat/groups/{id}/members/{userId}": {"delete": _op(
            "Remove a member from a group (or leave it)",
            _object(chatHeaderId=INTEGER, userId=GUID, removed={"const": True}),
            params=[group_param, user_param], fails=(400, 401, 403, 404, 429, 503),
            description="Only the group's creator may remove others.")},
        "/api/admin/users/{id}": {"put": _op(
            "Set a user's name and avatar (for the main backend)",
            _object(id=GUID, name={"type": "string"},
                    avatar={"type": ["string", "null"]}),
            body=r.ref(inbound.AdminUser), security=SERVICE_KEY,
            params=[_param("id", GUID, description="The user's id.")],
            fails=(400, 401, 403, 503),
            description="403 while the server has no service_key configured.")},
        "/api/chat/devices": {"post": _op(
            "Register a device token for push",
            _object(token={"type": "string"}, platform={"type": "string"}),
            body=r.ref(inbound.RegisterDevice), fails=(400, 401, 429, 503))},
        "/api/chat/devices/{token}": {"delete": _op(
            "Unregister one of your device tokens",
            _object(token={"type": "string"}, removed={"const": True}),
            params=[_param("token", {"type": "string"})], fails=(401, 404, 429, 503))},
        "/healthz": {"get": _op("The process is up", _object(status={"const": "up"}),
                                fails=(), security=[])},
        "/readyz": {"get": _op("The store is reachable",
                               _object(status={"const": "ready"}), fails=(503,),
                               security=[])},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "responses": {"200": _text("text/plain", "The Prometheus text format.")},
            "security": []}},
        "/api/docs/asyncapi.yaml": {"get": {
            "summary": "The AsyncAPI 3.0 document of the Socket.IO events",
            "responses": {"200": _text("application/yaml", "This server's protocol.")},
            "security": []}},
        "/api/docs/openapi.yaml": {"get": {
            "summary": "This document",
            "responses": {"200": _text("application/yaml", "OpenAPI 3.1.")},
            "security": []}},
        "/": {"get": {
            "summary": "Where things are",
            "description": "With the playground on, a redirect to /playground; else a "
                           "short page naming the endpoints (JSON for Accept: "
                           "application/json).",
            "responses": {
                "200": {"description": "The endpoints.", "content": {
                    "text/html": {"schema": {"type": "string"}},
                    "application/json": {"schema": _envelope({"type": "object"})}}},
                "302": {"description": "To /playground."}},
            "security": []}},
        "/playground": {"get": {
            "summary": "The playground: a web client of this server (development)",
            "description": "Only with the setting playground = True; else 404.",
            "responses": {"200": _text("text/html", "The page."),
                          "404": {"$ref": "#/components/responses/Failure404"}},
            "security": []}},
        "/playground/token": {"post": _op(
            "Mint a development access token (playground only)",
            _object(accessToken={"type": "string"}, userId=GUID,
                    name={"type": "string"}),
            body=r.add("PlaygroundToken", {
                "type": "object",
                "properties": {"userId": GUID | {"description": "Default: a new id."},
                               "name": {"type": "string", "minLength": 1,
                                        "maxLength": 100}},
                "required": ["name"]}),
            fails=(400, 403, 404), security=[],
            description="Signed with the server's HS256 jwt_secret. Exists only "
                        "while playground = True: anyone who reaches it can act as "
                        "any user. 404 when the playground is off.")},
        "/playground/static/{file}": _files(
            "The playground's script and style sheet", ["playground.js", "playground.css"],
            "No such file, or the playground is off."),
        "/playground/vendor/{file}": _files(
            "socket.io-client's browser build, as bin/setup-env installed it",
            ["socket.io.min.js", "socket.io.min.js.map"],
            "Not installed (bin/setup-env needs npm), or the playground is off."),
    }
    return paths


DESCRIPTION = """\
REST endpoints beside the Socket.IO protocol (the AsyncAPI document at
/api/docs/asyncapi.yaml). Every JSON reply is the envelope `{success, data,
message}`: on failure `success` is false, `data` null and `message` says why.
Authenticate with the user's access token as `Authorization: Bearer <token>`; the
admin API takes the configured service key as `X-Service-Key`.
"""


def document() -> dict:
    r = Registry(REF)
    paths = _paths(r)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Syarah Chat (REST)", "version": __version__,
                 "description": DESCRIPTION},
        "servers": [{"url": "http://localhost:3005"}],
        "paths": paths,
        "components": {
            "schemas": r.schemas,
            "responses": {
                f"Failure{code}": {"description": text,
                                   "content": _json(_envelope(None))}
                for code, text in FAILURES.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "serviceKey": {"type": "apiKey", "in": "header", "name": "X-Service-Key"},
            },
        },
    }
