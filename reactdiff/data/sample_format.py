"""The members of one shard sample and how they are encoded (no pickles: npy, flac/wav, png, json).

    <key>.meta.json                     site, session, clip, split, persons, frames, fps, audio_rate, rows, features
    <key>.a.fv.npy    <key>.b.fv.npy    (T, 58) float32, the exact source 3DMM values
    <key>.a.emotion.npy / b.emotion.npy (T, 25) float32
    <key>.a.audio.flac / b.audio.flac   16 kHz mono (or .wav with --audio-format wav)
    <key>.a.ref.png   / b.ref.png       first video frame (the rendering reference)
    <key>.a.feat.npy  / b.feat.npy      optional precomputed audio features, float16, at meta.features.fps

Person `a` is the pair list's speaker column, `b` its listener column.
"""
from __future__ import annotations

import io
import json

import numpy as np
import soundfile as sf

from . import frame_layout as fv

PERSONS = ("a", "b")
PEERS = {0: ("a", "b"), 1: ("b", "a")}  # role -> (speaker, listener): role 0 is "a speaks to b"
AUDIO_FORMATS = ("flac", "wav")
FORMAT_VERSION = 1


def sample_key(row: int, site: str, session: str, clip: str) -> str:
    """Readable, sortable, and free of '.' and '/' (WebDataset splits keys at the first dot)."""
    raw = f"{row:05d}-{site}-{session}-{clip}"
    return raw.replace(".", "_").replace("/", "_")


def encode_npy(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(arr), allow_pickle=False)
    return out.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_audio(audio: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    sf.write(out, np.clip(audio, -1.0, 1.0), fv.AUDIO_RATE, format=fmt.upper(), subtype="PCM_16")
    return out.getvalue()


def decode_audio(data: bytes) -> np.ndarray:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    if rate != fv.AUDIO_RATE:
        raise ValueError(f"shard audio is {rate} Hz; shards store {fv.AUDIO_RATE} Hz")
    return audio


def wds_audio(key: str, data: bytes):
    """A webdataset decoder handler for our audio members: `WebDataset(urls).decode(wds_audio)` (before any other
    handler). webdataset's own audio decoder goes through torchaudio.load, which needs torchcodec + FFmpeg; this
    one reads flac/wav with soundfile. -> a float32 numpy array at 16 kHz; other members are left to webdataset."""
    if key.lower().rsplit(".", 1)[-1] in AUDIO_FORMATS:
        return decode_audio(data)
    return None


def encode_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decode_json(data: bytes):
    return json.loads(data)
