"""The live service's WebSocket protocol (ws://HOST:PORT/ws): JSON text messages and tagged binary messages.

client -> server
  {"type": "open", "k": 1, "seed": 0, "key": "live", "role": "speaker->listener", "face": true,
   "audio_format": "f32" | "s16", "audio_rate": 16000, "steps": null, "sampler": null}      first message, once
  binary b"PCM " + little-endian samples (f32 in [-1, 1] or s16), 16 kHz mono           the speaker's audio
  binary b"3DMM" + little-endian float32 frames (n x 58), raw FaceVerse coefficients       the speaker's face
  {"type": "end"}                                                                         the speaker stopped

server -> client
  {"type": "ready", "session": id, "fps", "window", "overlap", "hop", "history", "k", "face", "audio",
   "limits": {...}}                                                                       after "open"
  {"type": "frames", "start": s, "count": n, "time": s / fps, "k": K, "face": [K][n][58], ("emotion": ...),
   "windows": [{"start", "compute_ms", "queue_ms", "batch_rows"}], "final": bool}          listener frames
  {"type": "done", "frames": T}                                                           then a normal close
  {"type": "error", "message": "..."}                                                     then the socket closes

Frames [s, s + n) are raw FaceVerse 3DMM at `fps`; a later message never starts before an earlier one's end, except
the final one, which may (the clip's last window is flush with its end): the client overwrites those frames.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..data import frame_layout as fv

PCM, FACE = b"PCM ", b"3DMM"
OPEN_KEYS = {"type", "k", "seed", "key", "role", "face", "audio_format", "audio_rate", "steps", "sampler",
             "window", "overlap", "guidance", "temperature"}


class ProtocolError(ValueError):
    """A message the service cannot take; `code` is the WebSocket close code it ends the session with."""

    def __init__(self, message: str, code: int = 1008) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Limits:
    max_message_bytes: int = 1 << 20  # one message: ~32 s of f32 audio, ~4,500 3DMM frames
    max_sessions: int = 16
    open_timeout_s: float = 10.0
    max_k: int = 16
    max_steps: int = 100  # sampling steps a session may ask for (one session must not hold the worker)
    max_window: int = 256  # frames per window a session may ask for

    def describe(self) -> dict:
        return {"max_message_bytes": self.max_message_bytes, "max_sessions": self.max_sessions, "max_k": self.max_k,
                "max_steps": self.max_steps, "max_window": self.max_window}


def parse_open(text: str, limits: Limits) -> dict:
    """The "open" message -> ReactionSession keyword arguments (+ "audio_format"); ProtocolError says what is wrong."""
    msg = parse_json(text)
    if msg.get("type") != "open":
        raise ProtocolError(f"the first message must be {{\"type\": \"open\", ...}}, got type {msg.get('type')!r}")
    unknown = set(msg) - OPEN_KEYS
    if unknown:
        raise ProtocolError(f"open: unknown keys {sorted(unknown)}; known: {sorted(OPEN_KEYS - {'type'})}")
    rate = msg.get("audio_rate", fv.AUDIO_RATE)
    if rate != fv.AUDIO_RATE:
        raise ProtocolError(f"open: audio_rate {rate}: the service takes {fv.AUDIO_RATE} Hz mono PCM (resample first)")
    fmt = msg.get("audio_format", "f32")
    if fmt not in ("f32", "s16"):
        raise ProtocolError(f"open: audio_format {fmt!r}: expected 'f32' (float32 in [-1, 1]) or 's16' (int16)")
    k = msg.get("k", 1)
    if not isinstance(k, int) or not 1 <= k <= limits.max_k:
        raise ProtocolError(f"open: k={k!r}: expected an integer in 1..{limits.max_k}")
    kwargs = {"k": k, "audio_format": fmt, "face": bool(msg.get("face", True))}
    for name, kind in (("seed", int), ("key", str), ("role", str), ("steps", int), ("sampler", str),
                       ("window", int), ("overlap", int), ("guidance", (int, float)), ("temperature", (int, float))):
        if msg.get(name) is not None:
            if not isinstance(msg[name], kind) or isinstance(msg[name], bool):
                raise ProtocolError(f"open: {name}={msg[name]!r} has the wrong type")
            kwargs[name] = msg[name]
    for name, top in (("steps", limits.max_steps), ("window", limits.max_window)):
        if name in kwargs and not 1 <= kwargs[name] <= top:
            raise ProtocolError(f"open: {name}={kwargs[name]}: expected 1..{top}")
    return kwargs


def parse_json(text: str) -> dict:
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not a JSON message: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a text message must be a JSON object with a 'type'")
    return msg


def parse_binary(data: bytes, audio_format: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A binary message -> (audio float32, None) or (None, 3DMM frames (n, 58) float32)."""
    tag, payload = bytes(data[:4]), bytes(data[4:])
    if tag == PCM:
        width = 4 if audio_format == "f32" else 2
        if len(payload) % width:
            raise ProtocolError(f"PCM message of {len(payload)} bytes: not whole {audio_format} samples")
        if audio_format == "s16":
            return np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0, None
        audio = np.frombuffer(payload, "<f4").astype(np.float32)
        if np.isfinite(audio).all() and np.abs(audio).max(initial=0) > 1.0 + 1e-6:
            raise ProtocolError("f32 PCM samples must lie in [-1, 1] (int16 audio? open with audio_format 's16')")
        return audio, None
    if tag == FACE:
        if len(payload) % (4 * fv.FV_DIM):
            raise ProtocolError(f"3DMM message of {len(payload)} bytes: expected float32 frames of {fv.FV_DIM} "
                                f"values ({4 * fv.FV_DIM} bytes each)")
        return None, np.frombuffer(payload, "<f4").reshape(-1, fv.FV_DIM).astype(np.float32)
    raise ProtocolError(f"binary message with tag {tag!r}: expected {PCM!r} (audio) or {FACE!r} (3DMM frames)")


def frames_message(update, fps: int, windows: list[dict]) -> str:
    msg = {"type": "frames", "start": update.start, "count": update.face.shape[1], "time": update.start / fps,
           "k": update.face.shape[0], "face": update.face.tolist(), "windows": windows, "final": update.final}
    if update.emotion is not None:
        msg["emotion"] = update.emotion.tolist()
    return json.dumps(msg)
