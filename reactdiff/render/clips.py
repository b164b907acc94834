"""What a render needs of a clip besides the reactions: the speaker's 3DMM and audio, the true listener and the
reference frames, read from the shards by sample key."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.frame_layout import AUDIO_RATE
from ..data.sample_format import decode_audio, decode_json, decode_npy
from ..data.shard_index import ShardIndex


class SpeakerSource:
    """Speaker 3DMM, audio and true listener of a sample's role, read from the shards by key."""

    def __init__(self, shards: Path) -> None:
        self.index = ShardIndex.open(shards)
        self.where = {key: (s, i) for s, keys in enumerate(self.index.keys) for i, key in enumerate(keys)}

    def clip(self, key: str, role: str) -> dict:
        if key not in self.where:
            raise KeyError(f"sample {key} is not in {self.index.folder} (were the reactions made from other shards?)")
        spk, lis = role.split("->")
        want = {"meta.json", f"{spk}.fv.npy", f"{lis}.fv.npy", f"{spk}.ref.png", f"{lis}.ref.png"}
        raw = self.index.read(*self.where[key], lambda name: name in want or name.startswith(f"{spk}.audio."))
        meta = decode_json(raw["meta.json"])
        audio_name = next((n for n in raw if n.startswith(f"{spk}.audio.")), None)
        audio = decode_audio(raw[audio_name]) if audio_name else None
        if audio is not None and meta.get("audio_rate", AUDIO_RATE) != AUDIO_RATE:
            raise ValueError(f"{key}: audio at {meta['audio_rate']} Hz; shards store {AUDIO_RATE} Hz")
        refs = {}
        for who, person in (("speaker_ref", spk), ("listener_ref", lis)):
            if f"{person}.ref.png" in raw:
                refs[who] = np.asarray(Image.open(io.BytesIO(raw[f"{person}.ref.png"])).convert("RGB"))
        return {"speaker": decode_npy(raw[f"{spk}.fv.npy"]), "listener": decode_npy(raw[f"{lis}.fv.npy"]),
                "audio": audio, **refs}
