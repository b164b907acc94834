"""The baseline for bench_loader: a map-style dataset over the raw REACT layout, the way the released ReactDiff
(and REACT baseline) datasets read it: per item, decode the 44.1 kHz wav and resample it, load both 3DMM npy files
and the emotion csv, then cut one random window. Kept only to measure against; training never uses it.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import Dataset

from ..data import frame_layout as fv
from ..data.layout import ClipPath, pair_list_path, read_pair_list
from ..data.normalise import FaceNormaliser


class RawReactDataset(Dataset):
    def __init__(self, root: str | Path, split: str, window: int, normaliser: FaceNormaliser) -> None:
        self.split_dir = Path(root) / split
        rows = read_pair_list(pair_list_path(Path(root), split))
        # mirrored: every row in both directions
        self.pairs = [(r.a, r.b) for r in rows] + [(r.b, r.a) for r in rows]
        self.window, self.normaliser = window, normaliser

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        speaker, listener = (ClipPath.parse(p) for p in self.pairs[i])
        wav, rate = sf.read(str(speaker.audio(self.split_dir)), dtype="float32", always_2d=True)
        audio = AF.resample(torch.from_numpy(wav.mean(1)), rate, fv.AUDIO_RATE).numpy()
        s_fv = np.load(speaker.fv(self.split_dir)).reshape(-1, fv.FV_DIM)
        l_fv = np.load(listener.fv(self.split_dir)).reshape(-1, fv.FV_DIM)
        np.loadtxt(speaker.emotion(self.split_dir), delimiter=",", skiprows=1, dtype=np.float32)
        np.loadtxt(listener.emotion(self.split_dir), delimiter=",", skiprows=1, dtype=np.float32)
        start = random.randint(0, len(s_fv) - self.window)
        spf = fv.SAMPLES_PER_FRAME
        return {
            "speaker_fv": torch.from_numpy(self.normaliser.normalise(s_fv[start:start + self.window])),
            "listener_fv": torch.from_numpy(self.normaliser.normalise(l_fv[start:start + self.window])),
            "speaker_audio": torch.from_numpy(np.ascontiguousarray(audio[start * spf:(start + self.window) * spf])),
        }
