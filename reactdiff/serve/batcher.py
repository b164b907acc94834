"""Dynamic batching of live sessions' windows: windows that are due together go through the network in one call.

Each session has at most one window in flight (the next one needs its frames). The batcher takes the first window
that arrives, waits up to `max_wait_s` for others (or until `max_rows` reactions are gathered), groups them by
sampling settings (windows of equal settings share one call), and runs the calls one after another on a single
worker thread, so the event loop keeps receiving while the model runs. Every row keeps its own noise generator, so
a session's frames do not depend on what it was batched with.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from .session import Pending, window_sampler


@dataclass
class Result:
    frames: torch.Tensor  # (rows, window, dim)
    compute_s: float  # the network call this window shared
    queue_s: float  # from submission to the call's start
    batch_rows: int  # rows in that call


class WindowBatcher:
    def __init__(self, max_wait_s: float = 0.01, max_rows: int = 256) -> None:
        self.max_wait_s, self.max_rows = float(max_wait_s), int(max_rows)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reactdiff-windows")
        self.calls = 0

    async def run(self, pending: Pending) -> Result:
        """Sample a session's due window (batched with whatever else is due)."""
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((pending, future, time.perf_counter()))
        return await future

    async def offload(self, fn, *args):
        """Run fn(*args) on the model's worker thread: all torch work of the service happens on that one thread,
        so two threads never contend for torch's intra-op thread pool (measured: 5x slower windows on 2 cores)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = time.perf_counter() + self.max_wait_s
            rows = batch[0][0].session.k
            while rows < self.max_rows:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
                batch.append(item)
                rows += item[0].session.k
            groups: dict = {}
            for item in batch:
                s = item[0].session
                groups.setdefault((tuple(sorted(s.settings.items())), s.window, s.face, id(s.live)), []).append(item)
            for items in groups.values():
                await self._call(items)

    async def _call(self, items: list) -> None:
        items = [item for item in items if not item[1].done()]  # sessions that went away are not sampled
        if not items:
            return
        start = time.perf_counter()
        try:
            frames, seconds = await asyncio.get_running_loop().run_in_executor(self._pool, _sample, items)
        except Exception as exc:  # noqa: BLE001 - only the session at fault hears of it
            if len(items) > 1:  # find it: each window on its own
                for item in items:
                    await self._call([item])
                return
            if not items[0][1].done():
                items[0][1].set_exception(exc)
            return
        self.calls += 1
        rows, at = sum(p.session.k for p, _, _ in items), 0
        for pending, future, queued in items:
            k = pending.session.k
            if not future.done():
                future.set_result(Result(frames[at:at + k], seconds, start - queued, rows))
            at += k

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _sample(items: list) -> tuple[torch.Tensor, float]:
    """One network pass over the windows of several sessions (equal settings): their conditions stacked by row."""
    sessions = [p.session for p, _, _ in items]
    conds = [p.cond for p, _, _ in items]
    cond = {key: (None if conds[0][key] is None else torch.cat([c[key] for c in conds]))
            for key in conds[0]}
    gens = [g for p, _, _ in items for g in p.gens]
    first = sessions[0]
    t0 = time.perf_counter()
    with torch.inference_mode():
        frames = window_sampler(first.live, first.settings)(cond, gens, first.window)
    return frames, time.perf_counter() - t0
