"""The push service: decides who is pushed for a new message, queues it in the
message's transaction, and drains the outbox in the background.

``createMessage`` only writes outbox rows and, after the commit, calls ``wake()``;
FCM is never on its path. The worker leases rows with a claim (so several nodes share one outbox without
sending a row twice), re-checks each row just before sending (deleted message, read
already, device gone) and settles it: deleted when sent or dropped, rescheduled with
backoff when FCM asks for patience, kept as failed when retrying cannot help.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from dataclasses import dataclass

from syarah.clock import now_ms
from syarah.push import metrics
from syarah.push.fcm import FcmClient, SendResult
from syarah.push.payload import fcm_message
from syarah.types import PushJob

log = logging.getLogger("syarah.push")

# A claimed row is this node's for this long. It must outlast one send (token fetch
# plus FCM call, each bounded by REQUEST_TIMEOUT); after it, another node may take the
# row of a node that died mid-send.
LEASE_MS = 60_000
# With nothing due, the outbox is still looked at this often: rows another node
# queued, or rows whose lease ran out.
IDLE_POLL = 5.0
# How often the outbox depth gauge is refreshed.
DEPTH_REFRESH_SECONDS = 5.0
# Never wait less than this between claims, so a row due "now" cannot spin the loop.
MIN_WAIT = 0.02
# Backoff ceiling for one retry.
MAX_BACKOFF = 600.0




@dataclass
class PushPlan:
    """The outbox rows for one message, and who was left out and why."""

    pushes: list[tuple[str, str]]
    skipped_viewing: int
    skipped_no_device: int


class PushService:
    def __init__(self, store, presence, fcm: FcmClient, *, concurrency: int = 8,
                 max_attempts: int = 8, retry_base: float = 1.0):
        self.store = store
        self.presence = presence
        self.fcm = fcm
        self.concurrency = max(1, concurrency)
        self.max_attempts = max(1, max_attempts)
        self.retry_base = max(0.0, retry_base)
        self.node_id = uuid.uuid4().hex[:16]
        self._claims = itertools.count(1)
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        # send task -> the claim it works under
        self._in_flight: dict[asyncio.Task, str] = {}

    # The message path

    async def plan(self, chat_id: int, sender_id: str) -> "PushPlan":
        """Who is pushed for a message the sender is about to store in the chat: every
        member but the sender with no socket viewing the chat, on each of their
        devices. Decided before the message's transaction, so that the presence
        lookup (a Redis round trip with the scale-out presence) never runs while the
        chat's row is locked. What changes in between is caught when the row is sent:
        a member who left, a device removed, a message read or deleted."""
        targets = await self.store.push_targets(chat_id, sender_id)
        members = list(dict.fromkeys(user_id for user_id, _ in targets))
        if not members:
            return PushPlan([], 0, 0)
        viewing = await self.presence.viewing(chat_id, members)
        queued = [(u, token) for u, token in targets
                  if u not in viewing and token is not None]
        with_device = {u for u, _ in queued}
        return PushPlan(queued, len(viewing),
                        len([u for u in members if u not in viewing and u not in with_device]))

    def queued(self, plan: "PushPlan") -> None:
        """The message carrying ``plan.pushes`` was committed: count the decisions once
        (however often its transaction was retried) and look at the outbox now."""
        metrics.count("skipped_viewing", plan.skipped_viewing)
        metrics.count("skipped_no_device", plan.skipped_no_device)
        if plan.pushes:
            self.wake()

    def wake(self) -> None:
        """New rows were queued: look at the outbox now rather than at the next poll."""
        self._wakeup.set()

    # The worker

    async def start(self):
        await self.fcm.start()
        self._task = asyncio.create_task(self._run(), name="push-worker")
        log.info("push notifications on: FCM project %s, %d concurrent sends",
                 self.fcm.account.project_id, self.concurrency)

    async def stop(self, grace: float):
        """Stop claiming; give sends in flight ``grace`` seconds, cancel the rest and
        hand their rows back so the next node sends them at once."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._in_flight:
            _, pending = await asyncio.wait(list(self._in_flight), timeout=grace)
            claims = {self._in_flight[t] for t in pending if t in self._in_flight}
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                try:
                    await self.store.release_pushes(claims)
                except Exception as exc:
                    log.warning("push rows stay leased until their lease ends: %s", exc)
                log.info("push: %d unfinished sends handed back to the outbox", len(pending))
        await self.fcm.close()

    async def _run(self):
        depth_due = 0.0
        while not self._stopping:
            self._wakeup.clear()
            if time.monotonic() >= depth_due:
                # A COUNT over the outbox: cheap, but not for every wake-up.
                depth_due = time.monotonic() + DEPTH_REFRESH_SECONDS
                await self._refresh_depth()
            try:
                delay = await self._claim_and_start()
            except Exception as exc:
                log.warning("push outbox unavailable: %s", exc)
                delay = IDLE_POLL
            if delay is None:
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _refresh_depth(self):
        try:
            depth = await self.store.push_outbox_depth()
        except Exception:
            return
        for status, rows in depth.items():
            metrics.OUTBOX.labels(status).set(rows)

    async def _claim_and_start(self) -> float | None:
        """Start sends for due rows; returns how long to wait before looking again
        (None: look again at once)."""
        free = self.concurrency - len(self._in_flight)
        if free <= 0:
            return IDLE_POLL   # a finishing send wakes the loop
        claim = f"{self.node_id}:{next(self._claims)}"
        jobs = await self.store.claim_pushes(claim, now_ms(), LEASE_MS, free)
        for job in jobs:
            task = asyncio.create_task(self._send(claim, job))
            self._in_flight[task] = claim
            task.add_done_callback(self._sent)
        if jobs and len(jobs) == free:
            return IDLE_POLL if self._stopping else None
        due = await self.store.next_push_due_ms()
        if due is None:
            return IDLE_POLL
        return min(IDLE_POLL, max(MIN_WAIT, (due - now_ms()) / 1000))

    def _sent(self, task: asyncio.Task):
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("push send failed: %r", task.exception())
        self._wakeup.set()

    @staticmethod
    def drop_reason(job: PushJob) -> str | None:
        """Why a queued row should not be sent any more, if it should not."""
        if job.device_user_id != job.user_id:
            return "skipped_no_device"
        if job.message is None:
            return "dropped_deleted"
        if job.last_read_message_id is None:
            return "dropped_left"
        if job.last_read_message_id >= job.message_id:
            return "dropped_read"
        return None

    async def _send(self, claim: str, job: PushJob):
        reason = self.drop_reason(job)
        if reason is not None:
            await self.store.delete_pushes([job.id])
            metrics.count(reason)
            log.debug("push %d to %s dropped: %s", job.id, job.user_id, reason)
            return
        result = await self.fcm.send(fcm_message(job))
        await self._settle(claim, job, result)

    async def _settle(self, claim: str, job: PushJob, result: SendResult):
        if result.outcome == "ok":
            await self.store.delete_pushes([job.id])
            metrics.count("pushed")
            log.debug("push %d (message %d) sent to %s", job.id, job.message_id, job.user_id)
            return
        if result.outcome == "bad_token":
            await self.store.remove_device(job.token)
            metrics.count("token_removed")
            log.info("push: device of %s removed: %s", job.user_id, result.error)
            return
        attempts = job.attempts + 1
        if result.outcome == "retry" and attempts < self.max_attempts:
            delay = min(MAX_BACKOFF, self.retry_base * 2 ** (attempts - 1))
            delay *= 1 + random.random() * 0.1   # spread a burst of retries
            if result.retry_after is not None:
                delay = max(delay, min(result.retry_after, 3600.0))
            await self.store.retry_push(job.id, claim, attempts,
                                        now_ms() + int(delay * 1000), result.error)
            metrics.count("retried")
            log.debug("push %d retried in %.2fs: %s", job.id, delay, result.error)
            return
        await self.store.fail_push(job.id, claim, attempts, result.error)
        metrics.count("failed")
        log.warning("push %d (message %d) to %s failed after %d attempts: %s",
                    job.id, job.message_id, job.user_id, attempts, result.error)
