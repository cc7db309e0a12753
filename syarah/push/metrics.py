"""Counters of every push decision, in the default Prometheus registry so that the
metrics endpoint exports them with everything else."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

_DECISIONS = {
    "pushed": "pushes FCM accepted",
    "skipped_viewing": "members not pushed because a socket of theirs views the chat",
    "skipped_no_device": "members (or queued rows) with no registered device",
    "dropped_read": "queued pushes dropped because the member had read the message",
    "dropped_deleted": "queued pushes dropped because the message was deleted",
    "dropped_left": "queued pushes dropped because the member left the chat",
    "retried": "sends that failed for now (429, 5xx, network) and were rescheduled",
    "failed": "pushes given up on (kept in the outbox as failed)",
    "token_removed": "device tokens removed because FCM called them invalid",
}

COUNTERS = {name: Counter(f"syarah_push_{name}", help_)
            for name, help_ in _DECISIONS.items()}
OUTBOX = Gauge("syarah_push_outbox_rows",
               "Rows in the push outbox: pending (to send) and failed (given up on)",
               ["status"])
# The same numbers as a plain dict, for logs and for code without Prometheus.
_totals = dict.fromkeys(_DECISIONS, 0)


def count(decision: str, n: int = 1) -> None:
    if n:
        COUNTERS[decision].inc(n)
        _totals[decision] += n


def counters() -> dict[str, int]:
    """Decisions so far in this process, by name."""
    return dict(_totals)
