"""Prometheus metrics, served at ``GET /metrics`` from the default registry.

Everything here lives in prometheus_client's default registry, so counters that other
parts define (push: ``syarah_push_*``; uploads count into ``UPLOAD_BYTES``) appear at
the same endpoint without being wired through this module.
"""

from __future__ import annotations

import hmac

import prometheus_client
import tornado.web
from prometheus_client import Counter, Gauge, Histogram

# Nothing from syarah is imported here, so any module (uploads, push) can import its
# counters from this one without an import cycle.

SOCKETS = Gauge("syarah_connected_sockets", "Socket.IO connections open on this node")
USERS = Gauge("syarah_connected_users", "Users with at least one socket on this node")
EVENT_COUNT = Counter("syarah_events", "Socket events handled, by name and outcome "
                      "(ok or the error code of the reply)", ["event", "outcome"])
# Chat events are a few milliseconds when the store is healthy; the long buckets show
# an overloaded store before db_timeout turns waits into UNAVAILABLE.
EVENT_SECONDS = Histogram(
    "syarah_event_seconds", "Time from an event's arrival to its reply", ["event"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DB_IN_USE = Gauge("syarah_db_connections_in_use",
                  "Database connections running a transaction right now")
DB_POOL_SIZE = Gauge("syarah_db_pool_size", "Most database connections the pool opens")
UPLOAD_BYTES = Counter("syarah_upload_bytes_total", "Bytes of media stored by uploadFile")
RATE_LIMITED = Counter("syarah_rate_limited", "Actions refused with RATE_LIMITED",
                       ["action", "scope"])
# Only a node of several (redis_url set) has a Redis to lose; a single node reports 1.
REDIS_UP = Gauge("syarah_redis_up", "1 while this node reaches the Redis that joins it to "
                 "the other nodes, 0 while it serves its own sockets only")
REDIS_UP.set(1)
ROOM_CHANNELS = Gauge("syarah_room_channels",
                      "Redis channels this node is subscribed to (a room, a user or a "
                      "socket it holds, and its own), with redis_manager rooms")
NODE_MESSAGES = Counter("syarah_node_messages",
                        "Messages of other nodes heard on this node's room channels")
CONNECTIONS_REFUSED = Counter("syarah_connections_refused",
                              "Socket.IO connections refused, by reply code", ["code"])


class MetricsObserver:
    """The namespace's EventObserver, counting into the metrics above."""

    def __init__(self, known_events):
        # Event names come from clients: only known ones become label values, so a
        # client cannot create unbounded time series.
        self.known_events = frozenset(known_events)
        # The labelled series of each (event, outcome): a labels() lookup is a lock
        # and a dict of tuples per event otherwise.
        self._series: dict[tuple[str, str], tuple] = {}

    def event_done(self, event: str, outcome: str, seconds: float) -> None:
        series = self._series.get((event, outcome))
        if series is None:
            label = event if event in self.known_events else "unknown"
            series = (EVENT_COUNT.labels(label, outcome), EVENT_SECONDS.labels(label))
            if label != "unknown":
                # Bounded: known events times the outcomes, which are error codes.
                self._series[(event, outcome)] = series
        count, seconds_of = series
        count.inc()
        seconds_of.observe(seconds)

    def connection_refused(self, code: str) -> None:
        CONNECTIONS_REFUSED.labels(code).inc()


def watch(sockets=None, database=None) -> None:
    """Read live figures from the node's objects at scrape time."""
    if sockets is not None:
        # Read from the registry itself: a socket that is gone cannot be counted.
        SOCKETS.set_function(lambda: len(sockets))
        USERS.set_function(lambda: len(sockets.user_sockets))
    if database is not None:
        DB_IN_USE.set_function(lambda: database.in_use)
        DB_POOL_SIZE.set(getattr(database, "pool_size", 1))


def render() -> tuple[bytes, str]:
    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST


class MetricsHandler(tornado.web.RequestHandler):
    """``GET /metrics`` in the Prometheus text format. It says how busy the node is,
    nothing about users; still, keep it off the public side of the reverse proxy, or
    behind ``metrics_token``, or on a listener of its own (``metrics_port``)."""

    def initialize(self, token: str = ""):
        self.token = token

    def get(self):
        if self.token and not self._authorized():
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.finish("a bearer token is required for /metrics\n")
            return
        body, content_type = render()
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def _authorized(self) -> bool:
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        # Constant-time: the comparison's duration says nothing about the token.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode())
