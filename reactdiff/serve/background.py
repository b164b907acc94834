"""A live service on a free localhost port in a background thread of this process (the tests and bench_stream)."""
from __future__ import annotations

import asyncio
import threading

from .batcher import WindowBatcher
from .protocol import Limits
from .server import ReactionServer, run_server


class RunningServer:
    def __init__(self, server: ReactionServer) -> None:
        self.server, self.port = server, None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the service did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = self._loop.create_future()

        def ready(port):
            self.port = port
            self._ready.set()

        self._loop.run_until_complete(run_server(self.server, "127.0.0.1", 0, ready, self._stop))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))
        self._thread.join(30)


def start(live, shards=None, faceverse=None, max_sessions: int = 16, max_message_bytes: int = 1 << 20,
          max_wait_s: float = 0.01, max_rows: int = 256) -> RunningServer:
    limits = Limits(max_message_bytes=max_message_bytes, max_sessions=max_sessions)
    batcher = WindowBatcher(max_wait_s=max_wait_s, max_rows=max_rows)
    return RunningServer(ReactionServer(live, limits, batcher, shards=shards, faceverse=faceverse))
