"""Typed run configuration: omegaconf structured dataclasses, YAML files in configs/, dotlist overrides.

Unknown keys and wrong types fail at start-up with the key and the file that set it; the resolved config is
saved with every run (`save`).
"""
from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import atomic


class Normalisation(str, enum.Enum):
    zscore = "zscore"  # (x - mean) / std: ReactDiff's convention
    center = "center"  # x - mean: the REACT 2023/24 baselines' convention
    none = "none"      # raw 3DMM values


class AudioInput(str, enum.Enum):
    feat = "feat"  # precomputed features stored in the shards (make_shards --audio-features)
    raw = "raw"    # 16 kHz waveform windows, for a frontend that runs in the model
    none = "none"  # no audio (3DMM-only models and tests)


@dataclasses.dataclass
class DataConfig:
    """Where the shards are and how training windows are cut from them."""

    shards: str = "shards/train"  # folder with index.json and the .tar shards (tools/make_shards.py --out)
    window: int = 64  # frames the model denoises at once (25 fps)
    history: int = 64  # past frames given as context (speaker streams and past listener frames); 0 = none
    windows_per_clip: int = 4  # random windows cut from each role sample per epoch (each costs no extra read)
    batch_size: int = 8  # windows per batch on each rank
    shuffle_buffer: int = 256  # windows in the shuffle buffer of each worker
    num_workers: int = 2  # DataLoader worker processes per rank (0: read in the main process)
    seed: int = 0  # shard order, window starts and shuffling all derive from it
    audio: AudioInput = AudioInput.feat  # which speaker audio stream items carry
    emotion: bool = False  # also carry the 25-d emotion streams
    mean_face: str = ""  # mean_face.npy (58,); empty: the copy next to index.json
    std_face: str = ""  # std_face.npy (58,); empty: the copy next to index.json
    normalisation: Normalisation = Normalisation.zscore  # how 3DMM is normalised for the model
    eval_frames: int = 750  # frames per clip in eval mode (REACT scores frames 0..749)


@dataclasses.dataclass
class RunConfig:
    """The whole run. Later sections (model, train, sample, eval) join as their issues land."""

    name: str = "reactdiff"  # run name (folder and wandb name)
    seed: int = 0  # global seed
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


class ConfigError(ValueError):
    """A config that does not match the schema; the message names the key and where it came from."""


def _explain(exc: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or "?"
    msg = str(exc).splitlines()[0]
    return ConfigError(f"{source}: {key}: {msg}")


def load(path: str | Path | None = None, overrides: Sequence[str] = (), schema: type = RunConfig) -> DictConfig:
    """Schema defaults <- YAML file <- `key=value` overrides; returns a read-only, fully typed config."""
    cfg = OmegaConf.structured(schema)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        except OmegaConfBaseException as exc:
            raise _explain(exc, str(path)) from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. data.window=32)")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as exc:
            raise _explain(exc, f"override {item!r}") from None
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise _explain(exc, str(path or "config")) from None
    check(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


_POSITIVE = ("data.window", "data.windows_per_clip", "data.batch_size", "data.shuffle_buffer", "data.eval_frames")
_NON_NEGATIVE = ("data.history", "data.num_workers")


def check(cfg: DictConfig) -> None:
    """Value ranges the types cannot express."""
    for key in _POSITIVE + _NON_NEGATIVE:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if value < (1 if key in _POSITIVE else 0):
            raise ConfigError(f"{key}: must be {'>= 1' if key in _POSITIVE else '>= 0'}, got {value}")


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save(cfg: Any, path: str | Path) -> None:
    """Write the resolved config (atomically) so a run can always be reproduced from its folder."""
    atomic.write_text(path, to_yaml(cfg))
