"""The streaming alternative to our seeking reader, for `reactdiff bench loader`: stock webdataset reads every
sample front to back and decodes every member (both persons' audio, 3DMM, emotion, features, reference frames),
then the windows are cut, as a streaming loader must. Our reader instead seeks to a sample's offset and reads only
the members a window needs."""
from __future__ import annotations

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from ..data.sample_format import PEERS, wds_audio


class StreamingWindows(IterableDataset):
    def __init__(self, urls: list[str], window: int, windows_per_clip: int, normaliser, seed: int = 0) -> None:
        self.urls, self.window, self.per_clip = list(urls), window, windows_per_clip
        self.norm, self.seed = normaliser, seed

    def __iter__(self):
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        split = wds.split_by_worker if info is None or len(self.urls) >= info.num_workers else None  # else all read all
        while True:  # endless, like training
            stream = wds.WebDataset(self.urls, shardshuffle=False, nodesplitter=None, workersplitter=split,
                                    empty_check=False)
            for sample in stream.decode(wds_audio, "rgb8"):
                yield from self._windows(sample, rng)

    def _windows(self, sample: dict, rng):
        for _ in range(self.per_clip):
            speaker, listener = PEERS[int(rng.integers(2))]
            fv_l, fv_s = sample[f"{listener}.fv.npy"], sample[f"{speaker}.fv.npy"]
            start = int(rng.integers(0, len(fv_l) - self.window + 1))
            cut = slice(start, start + self.window)
            yield {"listener_fv": torch.from_numpy(self.norm.normalise(fv_l[cut]).astype(np.float32)),
                   "speaker_fv": torch.from_numpy(self.norm.normalise(fv_s[cut]).astype(np.float32)),
                   "audio": torch.from_numpy(sample[f"{speaker}.feat.npy"][cut].astype(np.float32))}
