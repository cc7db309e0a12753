"""Background work that runs every so often for as long as the server runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("syarah.periodic")


class Periodic:
    """Runs ``work()`` every ``interval`` seconds until stopped. A failure is logged
    and the work tried again next time: a store that is away for a while must not end
    the sweeps for good."""

    def __init__(self, interval: float, work, what: str):
        self.interval = interval
        self.work = work
        self.what = what
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again next time", self.what)
