"""Inference exports: a folder with the weights (safetensors), the resolved config and facts about them.

    export/model.safetensors   ReactDiff state dict (EMA weights when written by training), normalisation stats
    export/config.yaml         the run's resolved config (model, data normalisation, sampling defaults)
    export/export.json         parameter count, sha256 of the weights, what the weights are (ema / random-init),
                               how its audio features are made from 16 kHz PCM (`audio`: live sessions read it)
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import atomic, config
from ..data import frame_layout as fv
from ..data.audio_features import pcm_recipe
from ..digest import sha256_file
from ..data.normalise import FaceStats
from .reactdiff import ReactDiff

WEIGHTS, CONFIG, META = "model.safetensors", "config.yaml", "export.json"
_FRONTEND = "audio.frontend."  # frozen third-party weights (wav2vec2): loaded from their own folder, not exported


def build_model(cfg, stats: FaceStats | None = None) -> ReactDiff:
    config.check_model_data(cfg)
    convention = cfg.data.normalisation.value
    stats = stats or FaceStats(torch.zeros(fv.FV_DIM), torch.ones(fv.FV_DIM), convention)
    return ReactDiff.from_config(cfg.model, stats, window=cfg.data.window)


def export_weights(cfg, weights: dict[str, torch.Tensor], out: str | Path, kind: str, source: str = "") -> Path:
    """An export of `weights` (EMA parameters and the model's buffers, as checkpoints keep them) in a fresh CPU
    model built from `cfg`; names the model lacks are refused (`source` names where they came from)."""
    model = build_model(cfg)
    state = model.state_dict()
    unknown = set(weights) - set(state)
    if unknown:
        raise ValueError(f"{source or 'the weights'} holds weights the config's model lacks, e.g. "
                         f"{sorted(unknown)[:3]}")
    state.update({k: v.detach().cpu() for k, v in weights.items()})
    model.load_state_dict(state, strict=True)
    return save_export(out, model, cfg, kind=kind)


def save_export(folder: str | Path, model: ReactDiff, cfg, kind: str) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith(_FRONTEND)}
    with atomic.replacing_file(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    config.save(cfg, folder / CONFIG)
    atomic.write_json(folder / META, {"weights": kind, "parameters": model.num_parameters(),
                                      "sha256": sha256_file(folder / WEIGHTS), "audio": pcm_recipe(cfg)})
    return folder


def load_export(folder: str | Path, overrides=()) -> tuple[ReactDiff, object, dict]:
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG, META):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: expected an export folder "
                                    f"({WEIGHTS}, {CONFIG}, {META}) written by training or "
                                    f"`reactdiff sample --random-init`")
    cfg = config.load(folder / CONFIG, overrides, saved=True)
    model = build_model(cfg)
    state = load_file(str(folder / WEIGHTS))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"{folder / WEIGHTS} does not fit model.size={cfg.model.size.value}: "
                         f"{str(exc).splitlines()[1].strip()}") from None
    missing = [k for k in missing if not k.startswith(_FRONTEND)]
    if missing or unexpected:
        raise ValueError(f"{folder / WEIGHTS} does not fit model.size={cfg.model.size.value}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    meta = json.loads((folder / META).read_text())
    return model.eval(), cfg, meta
