"""Every setting of the server, in one place.

Precedence, lowest first (CONTRACT §9): the defaults below, ``--config FILE`` (a Python
file of ``name = value`` lines, as tornado.options reads it), ``SYARAH_<NAME>`` in the
environment, then command-line flags ``--name=value`` (dashes or underscores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from tornado.options import OptionParser

from syarah import paths

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
    ("upload_dir", "data/uploads", str, "folder where uploaded media is stored"),
    ("jwt_secret", "", str, "shared secret for HS256 access tokens"),
    ("jwt_public_key_file", "", str, "PEM public key for RS256/ES256 access tokens"),
    ("jwt_algorithms", "HS256", str, "comma-separated algorithms accepted for tokens"),
    ("jwt_issuer", "", str, "required `iss` claim (empty: not checked)"),
    ("jwt_audience", "", str, "required `aud` claim (empty: not checked)"),
    ("jwt_user_claim", "", str,
     "claim holding the user id (empty: `sub`, then the ASP.NET nameidentifier claim)"),
    ("require_connect_token", False, bool,
     "refuse Socket.IO connections that carry no access token"),
    ("redis_url", "", str, "redis://host:6379/0 to run several nodes as one deployment"),
    ("fcm_service_account_file", "", str, "Firebase service-account JSON (empty: no push)"),
    ("fcm_endpoint", "https://fcm.googleapis.com", str, "FCM HTTP v1 base URL"),
    ("service_key", "", str, "key the main backend sends as X-Service-Key to /api/admin"),
    ("cors_allowed_origins", "*", str,
     "comma-separated origins allowed for Socket.IO and REST ('*' for any)"),
    ("websocket_compression", False, bool,
     "negotiate permessage-deflate; off because it costs ~150 KiB per idle socket"),
    ("ping_interval", 25, int, "seconds between Engine.IO pings"),
    ("ping_timeout", 20, int, "seconds to wait for a pong before dropping a socket"),
    # The largest event a client needs: 10 000 + 2 000 characters of text and caption,
    # each at worst a 6-byte JSON escape (72 KB), plus a token and field names. 256 KiB
    # leaves room to answer an oversized text with VALIDATION instead of a dropped
    # socket, and keeps a hostile client from making the server buffer megabytes.
    ("max_http_buffer_size", 256 * 1024, int,
     "largest Socket.IO packet accepted, in bytes; media goes through HTTP uploads"),
    ("shutdown_grace", 10.0, float, "seconds in-flight work may take after SIGTERM"),
    ("log_format", "text", str, "text or json"),
    ("log_level", "info", str, "debug, info, warning or error"),
    ("xheaders", False, bool, "trust X-Real-Ip / X-Forwarded-For from a reverse proxy"),
    ("log_socketio", False, bool,
     "log every Socket.IO and Engine.IO packet at debug (tokens are still redacted)"),
    # Rates are COUNT/SECONDS token buckets (a burst of COUNT, then COUNT per SECONDS);
    # empty or 0 turns one off. Addresses are shared behind NAT, hence higher rates.
    ("rate_create_message_user", "30/10", str, "createMessage per user"),
    ("rate_create_message_address", "300/10", str, "createMessage per client address"),
    ("rate_room_typing_user", "30/10", str, "roomTyping per user"),
    ("rate_room_typing_address", "300/10", str, "roomTyping per client address"),
    ("rate_connect_user", "30/60", str, "Socket.IO connection attempts per user"),
    ("rate_connect_address", "120/60", str,
     "Socket.IO connection attempts per client address"),
    ("max_sockets_per_user", 20, int, "open sockets one user may hold on this node"),
    ("max_rooms_per_socket", 500, int, "chat rooms one socket may have joined at once"),
]

NAMES = [d[0] for d in _DEFS]


@dataclass(frozen=True)
class Settings:
    port: int
    address: str
    database_url: str
    data_dir: str
    db_pool_size: int
    db_timeout: float
    migrate_on_start: bool
    upload_dir: str
    jwt_secret: str
    jwt_public_key_file: str
    jwt_algorithms: str
    jwt_issuer: str
    jwt_audience: str
    jwt_user_claim: str
    require_connect_token: bool
    redis_url: str
    fcm_service_account_file: str
    fcm_endpoint: str
    service_key: str
    cors_allowed_origins: str
    websocket_compression: bool
    ping_interval: int
    ping_timeout: int
    max_http_buffer_size: int
    shutdown_grace: float
    log_format: str
    log_level: str
    xheaders: bool
    log_socketio: bool
    rate_create_message_user: str
    rate_create_message_address: str
    rate_room_typing_user: str
    rate_room_typing_address: str
    rate_connect_user: str
    rate_connect_address: str
    max_sockets_per_user: int
    max_rooms_per_socket: int

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
        opt = parser._options[parser._normalize_name(name)]
        # tornado's own flag parser knows how to turn text into each option's type
        opt.parse(raw)


def load(argv: list[str] | None = None, environ=None) -> Settings:
    """Build the settings from defaults, config file, environment and flags."""
    environ = os.environ if environ is None else environ
    argv = list(argv if argv is not None else [])
    parser = make_parser()
    # First pass only to learn --config; flags are parsed again last so that they win.
    parser.parse_command_line(["syarah-server"] + argv, final=False)
    config = parser.config or environ.get("SYARAH_CONFIG", "")
    if config:
        parser.parse_config_file(paths.resolve(config), final=False)
    _from_env(parser, environ)
    parser.parse_command_line(["syarah-server"] + argv, final=False)
    values = {f.name: getattr(parser, f.name) for f in fields(Settings)}
    return Settings(**values)


def defaults(**overrides) -> Settings:
    """Settings as a fresh install has them; for tools and tests."""
    parser = make_parser()
    values = {f.name: getattr(parser, f.name) for f in fields(Settings)}
    values.update(overrides)
    return Settings(**values)
