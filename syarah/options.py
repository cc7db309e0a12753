"""Every setting of the server, in one place.

Precedence, lowest first: the defaults below, ``--config FILE`` (a Python
file of ``name = value`` lines, as tornado.options reads it), ``SYARAH_<NAME>`` in the
environment, then command-line flags ``--name=value`` (dashes or underscores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from tornado.options import Error as TornadoOptionsError
from tornado.options import OptionParser

from syarah import paths
from syarah.transport import compat

_DEFS = [
    # name, default, type, help
    ("port", 3005, int, "TCP port for HTTP and Socket.IO"),
    ("address", "0.0.0.0", str, "address to listen on"),
    ("database_url", "", str,
     "sqlite:///relative.db, sqlite:////absolute.db or mysql://user:pass@host:3306/db "
     "(default: an SQLite file in the data folder)"),
    ("data_dir", "data", str, "folder for the embedded SQLite database"),
    ("db_pool_size", 10, int, "MariaDB connections per process"),
    ("db_timeout", 5.0, float,
     "seconds a database call may take before the event answers UNAVAILABLE"),
    ("migrate_on_start", True, bool, "apply schema migrations when the server starts"),
    # New messages that arrive while one batch is being stored share the next
    # transaction and its COMMIT (group commit).
    ("message_batch_size", 64, int, "most new messages stored in one transaction (up to 1000)"),
    ("message_batches_in_flight", 1, int,
     "message transactions one process runs at once on MariaDB (SQLite: always 1)"),
    ("busy_after_ms", 2000, int,
     "a new message that waited this many milliseconds for its transaction to begin, "
     "or whose client has been ahead of the server that long (its frames waiting to "
     "be read), is answered UNAVAILABLE and not stored, so that an overloaded node "
     "answers at once instead of queueing without bound (0: wait without limit)"),
    ("database_ssl_ca", "", str,
     "PEM CA bundle to verify MariaDB's certificate; any database_ssl_* turns TLS on"),
    ("database_ssl_cert", "", str, "PEM client certificate for MariaDB (with the key)"),
    ("database_ssl_key", "", str, "PEM private key of database_ssl_cert"),
    ("database_ssl_verify", "identity", str,
     "identity: the CA and the host name; ca: the CA only (a host name not in the "
     "certificate)"),
    ("upload_dir", "data/uploads", str, "folder where uploaded media is stored"),
    ("upload_max_video_mb", 500, int, "largest video upload (messageType 4), in MiB"),
    ("upload_max_audio_mb", 50, int, "largest audio upload (messageType 1), in MiB"),
    ("upload_max_file_mb", 50, int, "largest document upload (messageType 3), in MiB"),
    ("upload_max_image_mb", 25, int,
     "largest image upload (messageType 2) before conversion, in MiB: a 50 MP phone "
     "photo is 10-20 MiB as JPEG"),
    ("image_max_pixels", 50_000_000, int,
     "images with more pixels are refused before decoding (decompression bombs)"),
    # A client uploads and then sends its message at once; an upload kept unused for
    # long only holds disk.
    ("upload_orphan_hours", 2.0, float,
     "an upload no message uses is deleted after this many hours"),
    ("upload_cleanup_interval", 600.0, float, "seconds between sweeps for unused uploads"),
    # A client that was away syncs edits and deletions from these records; one away
    # longer reloads the chat (findAllChatHeaders tells it so).
    ("deleted_message_retention_days", 30.0, float,
     "days the record of a deleted message is kept for clients that were away "
     "(0: kept forever)"),
    ("deleted_message_prune_interval", 3600.0, float,
     "seconds between prunings of deleted-message records older than the retention"),
    ("upload_max_in_flight", 3, int,
     "uploads one user may have arriving at once on this node (0: no limit)"),
    ("upload_bytes_per_day", 2 * 1024 ** 3, int,
     "bytes one user may upload per UTC day, counted in the store (0: no limit)"),
    ("upload_min_rate_kib", 8.0, float,
     "an upload whose body arrives slower than this many KiB/s over "
     "upload_rate_window is cut off (0: no minimum)"),
    ("upload_rate_window", 30.0, float, "seconds over which upload_min_rate_kib is measured"),
    ("http_idle_timeout", 60.0, float,
     "seconds a connection may take to send a request's headers, or stay idle between "
     "requests"),
    ("http_body_timeout", 3600.0, float,
     "seconds a request's whole body may take to arrive (a 500 MB video: 1.2 Mbit/s)"),
    ("jwt_secret", "", str, "shared secret for HS256 access tokens"),
    ("jwt_public_key_file", "", str, "PEM public key for RS256/ES256 access tokens"),
    ("jwt_algorithms", "HS256", str, "comma-separated algorithms accepted for tokens"),
    ("jwt_issuer", "", str, "required `iss` claim (empty: not checked)"),
    ("jwt_audience", "", str, "required `aud` claim (empty: not checked)"),
    ("jwt_user_claim", "", str,
     "claim holding the user id (empty: `sub`, then the ASP.NET nameidentifier claim)"),
    ("jwt_leeway", 30.0, float,
     "seconds a token is still accepted after its `exp` (clock skew); a socket is "
     "closed when the token it rests on has expired by this much"),
    ("recovery_window", 120.0, float,
     "seconds within which a reconnecting socket.io-client gets back the chat rooms "
     "of the socket it replaces (connection state recovery; 0: off)"),
    ("require_connect_token", False, bool,
     "refuse Socket.IO connections that carry no access token"),
    ("redis_url", "", str, "redis://host:6379/0 to run several nodes as one deployment"),
    ("redis_prefix", "syarah", str,
     "prefix of this deployment's Redis keys and channel (several can share a Redis)"),
    ("redis_manager", "rooms", str,
     "rooms: a channel per room, so a node hears only the rooms it holds sockets in; "
     "broadcast: python-socketio's one channel that every node hears in full"),
    ("redis_pubsub", "auto", str,
     "with redis_manager rooms: sharded (SPUBLISH/SSUBSCRIBE, Redis 7+), plain "
     "(PUBLISH/SUBSCRIBE), or auto (sharded where Redis has it); every node of a "
     "deployment must use the same"),
    ("redis_cluster", "auto", str,
     "yes: redis_url names a node of a Redis Cluster (the client follows its slots); "
     "no: a single Redis; auto: a cluster when that server says cluster_enabled"),
    ("presence_ttl", 45.0, float,
     "seconds after which a silent node's users stop counting as online (and their "
     "friends are told they went offline)"),
    ("fcm_service_account_file", "", str, "Firebase service-account JSON (empty: no push)"),
    ("fcm_endpoint", "https://fcm.googleapis.com", str, "FCM HTTP v1 base URL"),
    ("push_concurrency", 8, int, "FCM sends in flight at once per process"),
    ("push_max_attempts", 8, int,
     "sends of one push (429/5xx/network) before it is kept as failed"),
    ("push_retry_base", 1.0, float,
     "seconds before the first retry of a push; doubled each time after"),
    ("service_key", "", str, "key the main backend sends as X-Service-Key to /api/admin"),
    ("cors_allowed_origins", "*", str,
     "comma-separated origins allowed for Socket.IO and REST ('*' for any)"),
    ("websocket_compression", False, bool,
     "negotiate permessage-deflate; off because it costs ~150 KiB per idle socket"),
    # A sync reply can be a few MiB; a client that stopped reading past this would
    # otherwise make the server hold every frame sent to it until its ping times out.
    ("websocket_write_buffer_mb", 8.0, float,
     "MiB of frames a WebSocket client may leave unread before it is closed (0: no limit)"),
    ("ping_interval", 25, int, "seconds between Engine.IO pings"),
    ("ping_timeout", 20, int, "seconds to wait for a pong before dropping a socket"),
    # The largest event a client needs: 10 000 + 2 000 characters of text and caption,
    # each at worst a 6-byte JSON escape (72 KB), plus a token and field names. 256 KiB
    # leaves room to answer an oversized text with VALIDATION instead of a dropped
    # socket, and keeps a hostile client from making the server buffer megabytes.
    ("max_http_buffer_size", 256 * 1024, int,
     "largest Socket.IO packet accepted, in bytes; media goes through HTTP uploads"),
    ("shutdown_grace", 10.0, float, "seconds in-flight work may take after SIGTERM"),
    ("event_loop", "auto", str,
     "auto: uvloop when it is installed, else asyncio's own loop; uvloop; asyncio"),
    ("log_format", "text", str, "text or json"),
    ("log_level", "info", str, "debug, info, warning or error"),
    ("xheaders", False, bool, "trust X-Real-Ip / X-Forwarded-For from a reverse proxy"),
    ("log_socketio", False, bool,
     "log every Socket.IO and Engine.IO packet at debug (tokens are still redacted)"),
    ("metrics_token", "", str,
     "bearer token GET /metrics requires (empty: none; keep it off the public side)"),
    ("metrics_port", 0, int,
     "serve /metrics on this port of its own instead of the main one (0: main port)"),
    ("metrics_address", "127.0.0.1", str, "address of the metrics_port listener"),
    # Rates are COUNT/SECONDS token buckets (a burst of COUNT, then COUNT per SECONDS);
    # empty or 0 turns one off. Addresses are shared behind NAT, hence higher rates.
    ("rate_create_message_user", "30/10", str, "createMessage per user"),
    ("rate_create_message_address", "3000/10", str,
     "createMessage per client address (high: carrier NAT puts many users behind one)"),
    ("rate_room_typing_user", "30/10", str, "roomTyping per user"),
    ("rate_room_typing_address", "3000/10", str, "roomTyping per client address"),
    ("rate_connect_user", "30/60", str, "Socket.IO connection attempts per user"),
    ("rate_connect_address", "600/60", str,
     "Socket.IO connection attempts per client address"),
    # Every other event, per user (all the user's sockets share a bucket, across the
    # nodes when they share a Redis).
    # Each is several times what a person does in the fastest client flow, so only a
    # script meets it.
    ("rate_find_all_messages_user", "60/10", str,
     "findAllMessages per user (opening chats and scrolling back, a page each)"),
    ("rate_find_all_chat_headers_user", "60/10", str,
     "findAllChatHeaders per user (clients refresh their chat list as messages arrive)"),
    ("rate_get_my_chats_user", "60/10", str, "getMyChats per user"),
    ("rate_get_my_friendships_user", "30/10", str,
     "getMyFriendships and GET /api/friendships per user"),
    # The API document's own client opens a chat with every friend at once, so the
    # burst is as large as the rooms a socket may hold.
    ("rate_join_room_user", "500/60", str,
     "joinRoom and GET /api/chat/getChatHeaderAsync per user"),
    ("rate_leave_room_user", "500/60", str, "leaveRoom per user"),
    ("rate_read_message_user", "60/10", str,
     "readMessage per user (clients mark a chat read as each message arrives)"),
    ("rate_update_message_user", "30/10", str, "updateMessage per user"),
    ("rate_remove_message_user", "30/10", str, "removeMessage per user"),
    ("rate_friend_request_user", "30/600", str, "POST /api/friendships per user"),
    ("rate_friendship_change_user", "60/60", str,
     "accept, reject, block, unblock and delete of friendships per user"),
    ("rate_group_create_user", "20/600", str, "POST /api/chat/groups per user"),
    ("rate_group_members_user", "60/60", str,
     "adding and removing group members per user (one request, any number of ids)"),
    ("rate_device_user", "20/60", str,
     "push device registrations and removals per user"),
    ("friend_request_cooldown_hours", 24.0, float,
     "after a user rejects a request, hours before its sender may ask them again "
     "(0: at once)"),
    ("max_sockets_per_user", 20, int,
     "open sockets one user may hold (on all nodes together when they share a Redis)"),
    ("max_rooms_per_socket", 500, int, "chat rooms one socket may have joined at once"),
    ("max_tokenless_sockets_per_address", 100, int,
     "sockets without a token one address may hold (they claim a userId unproven)"),
    ("playground", False, bool,
     "serve the web playground at /playground, which mints a token for any user who "
     "asks: development only"),
]

NAMES = [d[0] for d in _DEFS]

_BOOL_WORDS = {"true", "false", "1", "0", "yes", "no", "on", "off"}


class OptionsError(ValueError):
    """A setting that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class Settings:
    port: int
    address: str
    database_url: str
    data_dir: str
    db_pool_size: int
    db_timeout: float
    migrate_on_start: bool
    message_batch_size: int
    message_batches_in_flight: int
    busy_after_ms: int
    database_ssl_ca: str
    database_ssl_cert: str
    database_ssl_key: str
    database_ssl_verify: str
    upload_dir: str
    upload_max_video_mb: int
    upload_max_audio_mb: int
    upload_max_file_mb: int
    upload_max_image_mb: int
    image_max_pixels: int
    upload_orphan_hours: float
    upload_cleanup_interval: float
    deleted_message_retention_days: float
    deleted_message_prune_interval: float
    upload_max_in_flight: int
    upload_bytes_per_day: int
    upload_min_rate_kib: float
    upload_rate_window: float
    http_idle_timeout: float
    http_body_timeout: float
    jwt_secret: str
    jwt_public_key_file: str
    jwt_algorithms: str
    jwt_issuer: str
    jwt_audience: str
    jwt_user_claim: str
    jwt_leeway: float
    recovery_window: float
    require_connect_token: bool
    redis_url: str
    redis_prefix: str
    redis_manager: str
    redis_pubsub: str
    redis_cluster: str
    presence_ttl: float
    fcm_service_account_file: str
    fcm_endpoint: str
    push_concurrency: int
    push_max_attempts: int
    push_retry_base: float
    service_key: str
    cors_allowed_origins: str
    websocket_compression: bool
    websocket_write_buffer_mb: float
    ping_interval: int
    ping_timeout: int
    max_http_buffer_size: int
    shutdown_grace: float
    event_loop: str
    log_format: str
    log_level: str
    xheaders: bool
    log_socketio: bool
    metrics_token: str
    metrics_port: int
    metrics_address: str
    rate_create_message_user: str
    rate_create_message_address: str
    rate_room_typing_user: str
    rate_room_typing_address: str
    rate_connect_user: str
    rate_connect_address: str
    rate_find_all_messages_user: str
    rate_find_all_chat_headers_user: str
    rate_get_my_chats_user: str
    rate_get_my_friendships_user: str
    rate_join_room_user: str
    rate_leave_room_user: str
    rate_read_message_user: str
    rate_update_message_user: str
    rate_remove_message_user: str
    rate_friend_request_user: str
    rate_friendship_change_user: str
    rate_group_create_user: str
    rate_group_members_user: str
    rate_device_user: str
    friend_request_cooldown_hours: float
    max_sockets_per_user: int
    max_rooms_per_socket: int
    max_tokenless_sockets_per_address: int
    playground: bool

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return "sqlite:///" + os.path.join(self.data_dir, "syarah.db")

    @property
    def algorithms(self) -> list[str]:
        return [a.strip() for a in self.jwt_algorithms.split(",") if a.strip()]

    @property
    def origins(self) -> str | list[str]:
        raw = self.cors_allowed_origins.strip()
        if raw == "*":
            return "*"
        return [o.strip() for o in raw.split(",") if o.strip()]


def make_parser() -> OptionParser:
    parser = OptionParser()
    parser.define("config", default="", type=str, help="settings file (Python syntax)")
    for name, default, type_, help_ in _DEFS:
        parser.define(name, default=default, type=type_, help=help_)
    return parser


def _from_env(parser: OptionParser, environ) -> None:
    for name in NAMES:
        raw = environ.get("SYARAH_" + name.upper())
        if raw is None:
            continue
        opt = compat.option(parser, name)
        # tornado's own flag parser knows how to turn text into each option's type
        try:
            opt.parse(_bool_text(raw) if opt.type is bool else raw)
        except ValueError:
            raise OptionsError(f"SYARAH_{name.upper()}={raw!r} is not a valid "
                               f"{opt.type.__name__}.")


def _joined(parser: OptionParser, argv: list[str]) -> list[str]:
    """Accept `--name value` as well as tornado's `--name=value`: people type both, and
    `--flag false` would otherwise silently mean true."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        opt = None
        if arg.startswith("-") and "=" not in arg:
            opt = compat.option(parser, arg.lstrip("-"))
        if opt is not None and i + 1 < len(argv) and (
                opt.type is not bool or argv[i + 1].lower() in _BOOL_WORDS):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def _check_flags(argv: list[str]) -> None:
    """Name the flag whose value is wrong (tornado's own error does not)."""
    probe = make_parser()
    for arg in argv:
        name, eq, value = arg.lstrip("-").partition("=")
        opt = compat.option(probe, name)
        if eq and opt is not None:
            try:
                opt.parse(value)
            except ValueError:
                raise OptionsError(f"--{name}={value!r} is not a valid {opt.type.__name__}.")


def _bool_text(value: str) -> str:
    # tornado reads every bool text but false/0/f as true: no, off and "" are false too.
    return "false" if value.strip().lower() in ("no", "off", "") else value


def _bool_words(parser: OptionParser, argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        opt = compat.option(parser, name.lstrip("-"))
        if eq and opt is not None and opt.type is bool:
            arg = f"{name}={_bool_text(value)}"
        out.append(arg)
    return out


def load(argv: list[str] | None = None, environ=None) -> Settings:
    """Build the settings from defaults, config file, environment and flags."""
    environ = os.environ if environ is None else environ
    parser = make_parser()
    argv = _bool_words(parser, _joined(parser, list(argv if argv is not None else [])))
    _check_flags(argv)
    try:
        # First pass only to learn --config; flags are parsed again last so they win.
        parser.parse_command_line(["syarah-server"] + argv, final=False)
        config = parser.config or environ.get("SYARAH_CONFIG", "")
        if config:
            try:
                parser.parse_config_file(paths.resolve(config), final=False)
            except Exception as exc:
                raise OptionsError(f"cannot read the config file {config}: {exc}") from exc
        _from_env(parser, environ)
        parser.parse_command_line(["syarah-server"] + argv, final=False)
    except (TornadoOptionsError, ValueError) as exc:
        if isinstance(exc, OptionsError):
            raise
        raise OptionsError(str(exc)) from exc
    values = {f.name: getattr(parser, f.name) for f in fields(Settings)}
    return Settings(**values)


def defaults(**overrides) -> Settings:
    """Settings as a fresh install has them; for tools and tests."""
    parser = make_parser()
    values = {f.name: getattr(parser, f.name) for f in fields(Settings)}
    values.update(overrides)
    return Settings(**values)
