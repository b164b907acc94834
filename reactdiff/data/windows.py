"""Turn one decoded dyadic sample into role-assigned items: speaker streams + listener 3DMM over a window.

An item covers frames [start - history, start + window): the first `history` frames are context (zero-padded
before the clip starts, `valid` says which frames are real), the last `window` frames are what the model generates.
"""
from __future__ import annotations

import numpy as np

from . import frame_layout as fv
from .normalise import FaceNormaliser
from .sample_format import PEERS, PERSONS, decode_audio, decode_json, decode_npy


def needed_fields(audio: str, emotion: bool):
    """Predicate over member names: read only what items will use (never the reference frame in training)."""
    wanted = {"meta.json", "a.fv.npy", "b.fv.npy"}
    if audio == "feat":
        wanted |= {"a.feat.npy", "b.feat.npy"}
    if emotion:
        wanted |= {"a.emotion.npy", "b.emotion.npy"}

    def select(name: str) -> bool:
        return name in wanted or (audio == "raw" and ".audio." in name)

    return select


def decode_sample(raw: dict, normaliser: FaceNormaliser, audio: str, emotion: bool) -> dict:
    """Bytes -> arrays: normalised 3DMM, features as float32, waveform, emotion."""
    meta = decode_json(raw["meta.json"])
    out = {"meta": meta}
    for p in PERSONS:
        out[f"{p}.fv"] = normaliser.normalise(decode_npy(raw[f"{p}.fv.npy"])).astype(np.float32)
        if audio == "feat":
            if f"{p}.feat.npy" not in raw:
                raise ValueError(f"{raw.get('__url__')}: sample {meta['key']} has no audio features (shards made with "
                                 f"--audio-features none); use data.audio=raw or data.audio=none")
            out[f"{p}.feat"] = decode_npy(raw[f"{p}.feat.npy"]).astype(np.float32)
        elif audio == "raw":
            out[f"{p}.audio"] = decode_audio(raw[f"{p}.audio.{meta['audio_format']}"])
        if emotion:
            out[f"{p}.emotion"] = decode_npy(raw[f"{p}.emotion.npy"])
    return out


def _frames(x: np.ndarray, lo: int, hi: int, hold: bool = False) -> np.ndarray:
    """x[lo:hi] along time, zero-padded where lo < 0; past the end zero-padded too, or (hold) the last frame held."""
    out = np.zeros((hi - lo,) + x.shape[1:], x.dtype)
    a, b = max(lo, 0), min(hi, len(x))
    if a < b:
        out[a - lo:b - lo] = x[a:b]
        if hold and b < hi:
            out[b - lo:] = x[b - 1]
    return out


def memory_mean(x: np.ndarray, start: int, frames: int) -> np.ndarray:
    """The mean of x[start - frames:start] along time (what of it lies in the clip; zeros at the clip start): the
    listener memory of a window at `start` (model.anchor_memory; past_regression.py)."""
    a = max(0, start - frames)
    return x[a:start].mean(0) if start > a else np.zeros(x.shape[1:], x.dtype)


def window_start(seed: int, epoch: int, sample_id: int, role: int, w: int, frames: int, window: int) -> int:
    """Random window start, a pure function of the item (so resumes and worker counts never change it). A clip
    shorter than the window starts at 0: the item is padded past its end and `valid` marks the real frames."""
    if frames <= window:
        return 0
    return int(np.random.default_rng([seed, epoch, sample_id, role, w, 0x3A7]).integers(0, frames - window + 1))


def cut_item(sample: dict, role: int, start: int, window: int, history: int, memory: int = 0) -> dict:
    """memory > 0: the item also carries the mean of the listener's `memory` frames before the window."""
    spk, lis = PEERS[role]
    meta = sample["meta"]
    lo, hi = start - history, start + window
    item = {
        "speaker_fv": _frames(sample[f"{spk}.fv"], lo, hi),
        "listener_fv": _frames(sample[f"{lis}.fv"], lo, hi, hold=True),  # a still face past the end (not scored)
        "valid": _frames(np.ones(meta["frames"], bool), lo, hi),
        "start": start,
        "matrix_row": meta["matrix_rows"][spk],
        "key": meta["key"],
        "role": f"{spk}->{lis}",
    }
    if f"{spk}.feat" in sample:
        item["speaker_feat"] = _frames(sample[f"{spk}.feat"], lo, hi)
    if f"{spk}.audio" in sample:  # the samples of frames [lo, hi) at the clip's frame rate (REACT 25, MARS 30)
        spf = fv.AUDIO_RATE / meta.get("fps", fv.FPS)
        a0 = round(lo * spf)
        item["speaker_audio"] = _frames(sample[f"{spk}.audio"], a0, a0 + round((hi - lo) * spf))
    if f"{spk}.emotion" in sample:
        item["speaker_emotion"] = _frames(sample[f"{spk}.emotion"], lo, hi)
        item["listener_emotion"] = _frames(sample[f"{lis}.emotion"], lo, hi)
    if memory:
        item["listener_memory"] = memory_mean(sample[f"{lis}.fv"], start, memory)
        if f"{lis}.emotion" in sample:
            item["listener_emotion_memory"] = memory_mean(sample[f"{lis}.emotion"], start, memory)
    return item
