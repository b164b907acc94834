"""A Python client of the live service: stream a speaker clip to ws://HOST:PORT/ws and collect the listener.

    frames, messages = stream_clip("ws://127.0.0.1:8765/ws", face, audio, k=2, key="clip", role="a->b")

`face` (T, 58) raw FaceVerse 3DMM, `audio` 16 kHz float32 (None for audio-only sessions, face=None likewise);
`realtime` paces the chunks at the clip's frame rate instead of sending as fast as the socket takes them.
"""
from __future__ import annotations

import json
import time

import numpy as np

from .protocol import FACE, PCM


def stream_clip(url: str, face: np.ndarray | None, audio: np.ndarray | None, k: int = 1, key: str = "live",
                role: str = "speaker->listener", chunk: int = 10, realtime: bool = False, fps: int = 25,
                **settings) -> tuple[np.ndarray, list[dict]]:
    """-> (listener frames (K, T, 58) assembled from the updates, every message the service sent)."""
    from websockets.sync.client import connect

    spf = 16000 // fps
    frames = len(face) if face is not None else len(audio) // spf
    out = np.zeros((k, frames, 58), np.float32)
    messages: list[dict] = []
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"type": "open", "k": k, "key": key, "role": role, "face": face is not None, **settings}))
        ready = json.loads(ws.recv())
        if ready["type"] != "ready":
            raise RuntimeError(f"the service refused the session: {ready.get('message', ready)}")
        t0 = time.perf_counter()
        for f in range(0, frames, chunk):
            if realtime:
                time.sleep(max(0.0, t0 + f / fps - time.perf_counter()))
            if audio is not None:
                ws.send(PCM + np.asarray(audio[f * spf:(f + chunk) * spf], "<f4").tobytes())
            if face is not None:
                ws.send(FACE + np.asarray(face[f:f + chunk], "<f4").tobytes())
        if audio is not None and len(audio) > frames * spf:
            ws.send(PCM + np.asarray(audio[frames * spf:], "<f4").tobytes())
        ws.send(json.dumps({"type": "end"}))
        while True:
            msg = json.loads(ws.recv())
            messages.append(msg)
            if msg["type"] == "frames":
                out[:, msg["start"]:msg["start"] + msg["count"]] = np.asarray(msg["face"], np.float32)
            if msg["type"] == "error":
                raise RuntimeError(f"the service: {msg['message']}")
            if msg["type"] == "done":
                return out, messages
