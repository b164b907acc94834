"""`reactdiff serve`: live listener reactions over WebSockets (protocol.py), many sessions at once (batcher.py), and
the web page that streams a clip, a wav file or the microphone and draws the listener as a grey FaceVerse mesh.

HTTP routes (same port): /  /app.js (the page), /info (the service's settings), /clips (speaker clips of
--shards), /clip/<row>/face.f32 and /clip/<row>/audio.f32 (a clip's raw streams, float32 little-endian),
/mesh.bin (the FaceVerse mesh of --faceverse for the page: header, mean shape, expression basis, triangles).
"""
from __future__ import annotations

import asyncio
import http
import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from .batcher import WindowBatcher
from .clips import ClipCatalogue
from .protocol import Limits, ProtocolError, frames_message, parse_binary, parse_json, parse_open
from .session import LiveModel, ReactionSession, SessionError

WEB = Path(__file__).resolve().parent / "web"
log = logging.getLogger("reactdiff.serve")


def mesh_bytes(faceverse: str | Path) -> bytes:
    """The page's mesh: uint32 V, F, then float32 mean shape (V x 3), expression basis (52 x V x 3), uint32
    triangles (F x 3). The identity is FaceVerse's mean face."""
    from ..render.faceverse import FaceVerseModel

    model = FaceVerseModel.load(faceverse)
    v, f = model.num_vertices, model.tri.shape[0]
    exp = model.exp_base.permute(2, 0, 1).contiguous().numpy().astype("<f4")  # (52, V, 3)
    return b"".join([np.array([v, f], "<u4").tobytes(), model.meanshape.numpy().astype("<f4").tobytes(),
                     exp.tobytes(), model.tri.numpy().astype("<u4").tobytes()])


class ReactionServer:
    def __init__(self, live: LiveModel, limits: Limits | None = None, batcher: WindowBatcher | None = None,
                 shards: str | Path | None = None, faceverse: str | Path | None = None) -> None:
        self.live, self.limits = live, limits or Limits()
        self.batcher = batcher or WindowBatcher()
        self.clips = ClipCatalogue(shards) if shards else None
        self.mesh = mesh_bytes(faceverse) if faceverse else None
        self.sessions: dict[int, ReactionSession] = {}
        self._ids = itertools.count(1)
        self.audio_error = None  # why live PCM cannot be turned into this export's features, once
        try:
            live.frontend()
        except SessionError as exc:
            self.audio_error = str(exc)

    def info(self) -> dict:
        cfg, audio_error = self.live.cfg, self.audio_error
        return {"fps": self.live.fps, "window": cfg.sample.window, "overlap": cfg.sample.overlap,
                "history": cfg.data.history, "k": cfg.sample.k, "steps": cfg.sample.steps,
                "audio": self.live.model.audio.kind != "none" and audio_error is None, "audio_error": audio_error,
                "audio_only": self.live.audio_only and audio_error is None, "clips": self.clips is not None,
                "mesh": self.mesh is not None, "sessions": len(self.sessions), "limits": self.limits.describe(),
                "export": self.live.source}

    # ---- HTTP
    def process_request(self, connection: ServerConnection, request):
        path = request.path.split("?")[0]
        if path == "/ws":
            return None  # the WebSocket handshake goes on
        try:
            body, kind = self._route(path)
        except KeyError as exc:
            return _response(http.HTTPStatus.NOT_FOUND, str(exc).strip("'").encode(), "text/plain; charset=utf-8")
        return _response(http.HTTPStatus.OK, body, kind)

    def _route(self, path: str) -> tuple[bytes, str]:
        if path in ("/", "/index.html"):
            return (WEB / "index.html").read_bytes(), "text/html; charset=utf-8"
        if path == "/app.js":
            return (WEB / "app.js").read_bytes(), "text/javascript; charset=utf-8"
        if path == "/info":
            return json.dumps(self.info()).encode(), "application/json"
        if path == "/clips":
            return json.dumps(self.clips.entries if self.clips else []).encode(), "application/json"
        if path == "/mesh.bin" and self.mesh is not None:
            return self.mesh, "application/octet-stream"
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "clip" and parts[1].isdigit() and self.clips is not None:
            face, audio, _, _ = self.clips.speaker(int(parts[1]))
            if parts[2] == "face.f32":
                return face.astype("<f4").tobytes(), "application/octet-stream"
            if parts[2] == "audio.f32":
                return audio.astype("<f4").tobytes(), "application/octet-stream"
        raise KeyError(f"{path}: not found")

    # ---- WebSocket sessions
    async def handle(self, ws: ServerConnection) -> None:
        sid = next(self._ids)
        try:
            if len(self.sessions) >= self.limits.max_sessions:
                raise ProtocolError(f"the service is full: {self.limits.max_sessions} sessions at once "
                                    f"(--max-sessions)", code=1013)
            try:
                first = await asyncio.wait_for(ws.recv(), self.limits.open_timeout_s)
            except asyncio.TimeoutError:
                raise ProtocolError(f"no 'open' message within {self.limits.open_timeout_s:g} s") from None
            if not isinstance(first, str):
                raise ProtocolError("the first message must be the JSON 'open' message")
            kwargs = parse_open(first, self.limits)
            audio_format = kwargs.pop("audio_format")
            if len(self.sessions) >= self.limits.max_sessions:  # others opened while this one was waiting
                raise ProtocolError(f"the service is full: {self.limits.max_sessions} sessions at once "
                                    f"(--max-sessions)", code=1013)
            session = ReactionSession(self.live, **kwargs)
            self.sessions[sid] = session
            await ws.send(json.dumps({"type": "ready", "session": sid, "fps": self.live.fps, "window": session.window,
                                      "overlap": session.overlap, "hop": session.hop, "history": session.history,
                                      "k": session.k, "face": session.face, "audio": session.audio is not None,
                                      "limits": self.limits.describe()}))
            await self._stream(ws, session, audio_format)
        except (ProtocolError, SessionError) as exc:
            await _refuse(ws, str(exc), getattr(exc, "code", 1008))
        except ConnectionClosed:
            pass  # the client went away: its session ends here, the others go on
        except Exception as exc:  # noqa: BLE001 - a bug or a failing model: this session hears it, the others go on
            log.exception("session %d failed", sid)
            await _refuse(ws, f"internal error: {type(exc).__name__}: {exc}", 1011)
        finally:
            self.sessions.pop(sid, None)

    async def _stream(self, ws: ServerConnection, session: ReactionSession, audio_format: str) -> None:
        """Receive the speaker while the pump samples and sends; whichever fails first ends the session."""
        wake, ended = asyncio.Event(), asyncio.Event()
        pump = asyncio.create_task(self._pump(ws, session, wake, ended))
        try:
            while not ended.is_set():
                receive = asyncio.create_task(ws.recv())
                await asyncio.wait({receive, pump}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():  # the pump ended first (an error): stop listening
                    receive.cancel()
                    break
                message = receive.result()  # ConnectionClosed when the client went away
                if len(message) > self.limits.max_message_bytes:
                    raise ProtocolError(f"message of {len(message)} bytes: the limit is "
                                        f"{self.limits.max_message_bytes} (send smaller chunks)", code=1009)
                if isinstance(message, str):
                    msg = parse_json(message)
                    if msg.get("type") != "end":
                        raise ProtocolError(f"unknown message type {msg.get('type')!r} (expected binary data or "
                                            f"{{\"type\": \"end\"}})")
                    ended.set()
                else:
                    audio, face = parse_binary(message, audio_format)
                    # on the worker thread, like every other use of the session: one thread owns its state
                    await self.batcher.offload(session.feed, audio, face)
                wake.set()
            await pump
        finally:
            if not pump.done():
                pump.cancel()

    async def _pump(self, ws, session: ReactionSession, wake: asyncio.Event, ended: asyncio.Event) -> None:
        """Sample the session's windows as they fall due, one in flight at a time; send each update."""
        offload = self.batcher.offload
        while True:
            await wake.wait()
            wake.clear()
            while (pending := await offload(session.due)) is not None:
                await self._window(ws, session, pending)
            if ended.is_set():
                while (pending := await offload(session.finish_pending)) is not None:
                    await self._window(ws, session, pending)
                if not session.final_sent:
                    await ws.send(frames_message(await offload(session.remaining), self.live.fps, []))
                await ws.send(json.dumps({"type": "done", "frames": session.clip_frames}))
                await ws.close(1000, "done")
                return

    async def _window(self, ws, session: ReactionSession, pending) -> None:
        result = await self.batcher.run(pending)
        update = await self.batcher.offload(session.accept, pending, result.frames, result.compute_s)
        if update is not None:
            windows = [{"start": start, "compute_ms": 1000 * seconds, "queue_ms": 1000 * result.queue_s,
                        "batch_rows": result.batch_rows} for start, seconds in update.windows]
            await ws.send(frames_message(update, self.live.fps, windows))


def _response(status: http.HTTPStatus, body: bytes, kind: str) -> Response:
    headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))), ("Connection", "close"),
                       ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)


async def _refuse(ws: ServerConnection, message: str, code: int) -> None:
    try:
        await ws.send(json.dumps({"type": "error", "message": message}))
        await ws.close(code, message[:120])
    except ConnectionClosed:
        pass


async def run_server(server: ReactionServer, host: str = "127.0.0.1", port: int = 8765, ready=None,
                     stop: asyncio.Future | None = None) -> None:
    """Serve until `stop` resolves (forever when None); `ready(port)` is called once listening."""
    async with serve(server.handle, host, port, process_request=server.process_request,
                     max_size=2 * server.limits.max_message_bytes, ping_interval=20, ping_timeout=20) as ws_server:
        bound = ws_server.sockets[0].getsockname()[1]
        if ready is not None:
            ready(bound)
        try:
            await (stop if stop is not None else asyncio.get_running_loop().create_future())
        finally:
            server.batcher.close()
            log.info("stopped at %s", time.strftime("%H:%M:%S"))
